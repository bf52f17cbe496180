"""labkit.remote against a real OpenSSH sshd on loopback."""

import subprocess

import pytest

from labkit.errors import BackendError, CommandError
from labkit.remote import Connection, Result


@pytest.fixture
def conn(sshd):
    with Connection(sshd.host, sshd.user, port=sshd.port, key_filename=sshd.key, known_hosts=sshd.known_hosts) as c:
        yield c


def test_run_returns_result(conn):
    r = conn.run("echo hello; echo oops >&2; exit 0")
    assert r == Result(0, "hello\n", "oops\n")
    assert r.ok


def test_opens_on_first_use_and_close_is_idempotent(sshd):
    c = Connection(sshd.host, sshd.user, port=sshd.port, key_filename=sshd.key, known_hosts=sshd.known_hosts)
    assert not c.is_connected
    assert c.run("true").exit_code == 0
    assert c.is_connected
    c.close()
    c.close()
    assert not c.is_connected
    assert c.run("echo again").stdout == "again\n"  # reopens
    c.close()


def test_failed_command_raises_command_error(conn, sshd):
    with pytest.raises(CommandError) as info:
        conn.run("echo bad thing >&2; exit 3")
    e = info.value
    assert (e.host, e.command, e.exit_code) == (sshd.host, "echo bad thing >&2; exit 3", 3)
    assert e.stderr == "bad thing\n"
    assert "exited 3" in str(e) and "bad thing" in str(e)


def test_check_false_returns_code(conn):
    assert conn.run("exit 7", check=False).exit_code == 7


def test_timeout(conn):
    with pytest.raises(CommandError) as info:
        conn.run("sleep 5", timeout=0.5)
    assert "timed out" in info.value.stderr


def test_large_output_on_both_streams(conn):
    r = conn.run("head -c 300000 /dev/zero | tr '\\0' a; head -c 200000 /dev/zero | tr '\\0' b >&2")
    assert len(r.stdout) == 300000 and set(r.stdout) == {"a"}
    assert len(r.stderr) == 200000 and set(r.stderr) == {"b"}


def test_put_and_get_reuse_one_sftp_channel(conn, tmp_path, sshd):
    remote = f"{sshd.dir}/put_test.txt"
    conn.put(b"payload \xc3\xa9\n", remote)
    sftp = conn.sftp()
    assert conn.get_text(remote) == "payload é\n"
    local = tmp_path / "local.json"
    local.write_text('{"fibonacci_number": 20}')
    conn.put(local, remote + ".json", mode=0o640)
    assert conn.get_text(remote + ".json") == '{"fibonacci_number": 20}'
    assert conn.run(f"stat -c %a {remote}.json").stdout.strip() == "640"
    assert conn.sftp() is sftp
    assert conn.exists(remote) and not conn.exists(remote + ".nope")


def test_pinned_host_key_accepted(sshd):
    with Connection(sshd.host, sshd.user, port=sshd.port, key_filename=sshd.key, host_key=sshd.host_key_line) as c:
        assert c.run("echo pinned").stdout == "pinned\n"


def test_wrong_pinned_host_key_refused(sshd, tmp_path):
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "other")], check=True)
    other = " ".join((tmp_path / "other.pub").read_text().split()[:2])
    c = Connection(sshd.host, sshd.user, port=sshd.port, key_filename=sshd.key, host_key=other)
    with pytest.raises(BackendError, match="host key mismatch"):
        c.run("true")
    assert not c.is_connected


def test_wrong_known_hosts_refused(sshd, tmp_path):
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "other")], check=True)
    kh = tmp_path / "known_hosts"
    kh.write_text(f"[{sshd.host}]:{sshd.port} " + " ".join((tmp_path / "other.pub").read_text().split()[:2]) + "\n")
    with pytest.raises(BackendError, match="host key mismatch"):
        Connection(sshd.host, sshd.user, port=sshd.port, key_filename=sshd.key, known_hosts=str(kh)).run("true")


def test_unknown_host_refused(sshd, tmp_path):
    kh = tmp_path / "known_hosts"
    kh.write_text("")
    with pytest.raises(BackendError, match="unknown host key"):
        Connection(sshd.host, sshd.user, port=sshd.port, key_filename=sshd.key, known_hosts=str(kh)).run("true")


def test_connection_refused_is_backend_error(tmp_path, sshd):
    with pytest.raises(BackendError, match="cannot connect"):
        Connection("127.0.0.1", sshd.user, port=9, key_filename=sshd.key, known_hosts=sshd.known_hosts,
                   connect_timeout=2).run("true")


def test_sudo_runs_the_whole_command_as_root_with_runs_result(conn, sshd):
    """fabric's shape: ``sudo`` takes what ``run`` takes and returns the same Result."""
    target = f"{sshd.dir}/sudo_test.txt"
    r = conn.sudo(f"echo one > {target} && echo two >> {target}; id -u")
    assert isinstance(r, Result) and r.ok
    if sshd.user == "root":
        assert r.stdout.strip() == "0"
    assert conn.get_text(target) == "one\ntwo\n"
    assert conn.sudo("exit 4", check=False).exit_code == 4
    with pytest.raises(CommandError):
        conn.sudo("exit 5")


def test_sudo_as_another_user_goes_through_sudo_n(sshd):
    """A login that is not root wraps the command in ``sudo -n sh -c`` (no password prompt, ever)."""
    c = Connection(sshd.host, "student", port=sshd.port)
    ran = []
    c.run = lambda cmd, **kw: ran.append((cmd, kw)) or Result(0, "", "")
    c.sudo("mkdir -p /opt/x && chown 1000 /opt/x", timeout=9)
    assert ran == [("sudo -n sh -c 'mkdir -p /opt/x && chown 1000 /opt/x'",
                    {"check": True, "timeout": 9, "stdin": None})]


def test_tunnel_reaches_what_the_host_reaches_and_get_status_uses_it(conn, service_proc):
    from labkit.service import get_status
    from tests.fixtures_service import free_port

    url = service_proc("flask", env={"LABKIT_NODE": "tunnelled"})
    assert get_status(url, via=conn)["node"] == "tunnelled"  # the same client as the direct call
    assert get_status(url) == get_status(url, via=conn)
    with pytest.raises(ConnectionRefusedError):
        conn.tunnel("127.0.0.1", free_port(), timeout=5)
    assert conn.run("echo still usable").ok
