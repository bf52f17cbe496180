"""labkit.backends.ssh.connection against a real OpenSSH sshd on loopback."""

import subprocess

import pytest

from labkit.errors import BackendError, CommandError
from labkit.backends.ssh.connection import Connection, Result
from tests.support.backend_doubles import NoMachinesBackend


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
    from tests.support.service import free_port

    url = service_proc("flask", env={"LABKIT_NODE": "tunnelled"})
    assert get_status(url, via=conn)["node"] == "tunnelled"  # the same client as the direct call
    assert get_status(url) == get_status(url, via=conn)
    with pytest.raises(ConnectionRefusedError):
        conn.tunnel("127.0.0.1", free_port(), timeout=5)
    assert conn.run("echo still usable").ok


# -- issue 15: a hung remote command is killed on the host; pid files checked; temp files ----------

def _running(pattern: str) -> list[str]:
    """Processes on this machine (the sshd's host) whose command line contains ``pattern``."""
    r = subprocess.run(["pgrep", "-af", pattern], capture_output=True, text=True)
    return [line for line in r.stdout.splitlines() if "pgrep" not in line]


def test_run_bounded_kills_the_remote_command_and_all_it_started_and_raises_command_timeout(conn):
    import random
    import time

    from labkit.errors import CommandTimeout

    marker = f"{random.randrange(10**6)}.{random.randrange(10**6)}"  # sleep takes a float: a unique argv
    started = time.monotonic()
    with pytest.raises(CommandTimeout) as info:
        conn.run_bounded(f"sleep 7{marker} & sleep 8{marker}; wait", timeout=1, kill_after=1)
    assert time.monotonic() - started < 15
    assert isinstance(info.value, CommandError) and "timed out" in info.value.stderr
    deadline = time.monotonic() + 5
    while _running(marker) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _running(marker) == []  # neither the command nor its child outlives the limit
    # a command that finishes in time: its result, whatever its exit code
    assert conn.run_bounded("echo fine; exit 3", timeout=10) == Result(3, "fine\n", "")


def test_a_hung_ab_on_the_tester_is_killed_and_measure_records_a_hung_row(sshd, tmp_path):
    import dataclasses
    import random
    import time

    from labkit.ab import AbCommand
    from labkit.backends.ssh.backend import SshBackend
    from labkit.errors import CommandTimeout
    from labkit.backends.ssh.hosts_file import HostSpec
    from labkit.measure import measure
    from labkit.settings import Settings

    marker = f"9{random.randrange(10**6)}.{random.randrange(10**6)}"

    @dataclasses.dataclass(frozen=True)
    class HangingAb(AbCommand):  # an ab that never finishes
        def argv(self, payload, percentiles, gnuplot, ab="ab"):
            return ["sleep", marker]

    h = HostSpec(sshd.host, user=sshd.user, port=sshd.port, key_filename=sshd.key, known_hosts=sshd.known_hosts)
    b = SshBackend(Settings(state_dir=tmp_path / ".labkit"), persist=False, servers=[h], balancer=h, tester=h,
                   root=str(tmp_path / "labkit-root"))
    b._ab_ready = {h.key}  # no `command -v ab` (the fake does not need it)
    cmd = HangingAb("http://127.0.0.1:9", 1, 1)
    try:
        with pytest.raises(CommandTimeout):
            b.run_ab(cmd, timeout=1)
        deadline = time.monotonic() + 8
        while _running(marker) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _running(marker) == []

        class Stub(NoMachinesBackend):  # run_ab hangs on a host
            name, cpu_limited = "ssh", True

            def run_ab(self, command, timeout, progress=None):
                raise CommandTimeout("tester-0", "ab ...", 124, "timed out after 1 s")

        row = measure(Stub(), AbCommand("http://127.0.0.1:9", 1, 1), retries=1, timeout=1, retry_delay=0)
        assert row.aborted and row.attempts == 2 and "did not finish" in row.abort_reason
    finally:
        b.close()


def test_a_stale_pid_file_is_not_signalled_when_its_pid_belongs_to_a_newer_process(conn, tmp_path):
    import os
    import time

    victim = subprocess.Popen(["sleep", "300"], start_new_session=True)
    try:
        pidfile = tmp_path / "old.pid"
        pidfile.write_text(f"{victim.pid}\n")
        hour_ago = time.time() - 3600
        os.utime(pidfile, (hour_ago, hour_ago))  # written long before this process started
        assert conn.pid_in_file(str(pidfile)) is None
        conn.stop_pidfile(str(pidfile))
        assert victim.poll() is None and not pidfile.exists()  # removed, nobody signalled
        pidfile.write_text(f"{victim.pid}\n")  # the file of this very process
        assert conn.pid_in_file(str(pidfile)) == victim.pid
        assert conn.pid_in_file(str(pidfile), expect="nginx") is None  # not the program expected
        conn.stop_pidfile(str(pidfile), expect="sleep")
        assert victim.wait(10) is not None and not pidfile.exists()
        conn.stop_pidfile(str(pidfile))  # a missing file is fine
    finally:
        if victim.poll() is None:
            victim.kill()
            victim.wait()


def test_mktemp_makes_a_random_0600_file(conn):
    import os
    import stat

    a, b = conn.mktemp("labkit-nginx"), conn.mktemp("labkit-nginx")
    try:
        assert a != b and a.startswith("/tmp/labkit-nginx.") and len(a) > len("/tmp/labkit-nginx.") + 6
        assert stat.S_IMODE(os.stat(a).st_mode) == 0o600 and os.path.getsize(a) == 0
    finally:
        conn.run(f"rm -f {a} {b}")
    with pytest.raises(ValueError):
        conn.mktemp("x; rm -rf /")
