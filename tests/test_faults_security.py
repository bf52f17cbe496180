"""Security faults: where servers listen, SSH keys, the GCP firewall, unknown host keys."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from labkit.backends.gcp import api_requests as req
from labkit import state
from labkit.backends.base import ClusterSpec
from labkit.backends.local.backend import LocalBackend
from labkit.errors import BackendError
from labkit.backends.ssh.hosts_file import HostSpec
from labkit.backends.ssh.connection import Connection
from labkit.settings import Settings

REPO = Path(__file__).resolve().parents[1]


# -- the local backend: each machine listens on its own loopback address only --------------

def _listening() -> dict[int, list[tuple[str, int]]]:
    """socket inode -> (address, port) for every listening TCP socket (IPv4 and IPv6)."""
    out: dict[int, list[tuple[str, int]]] = {}
    for name in ("tcp", "tcp6"):
        path = Path("/proc/net") / name
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            f = line.split()
            if f[3] != "0A":  # LISTEN
                continue
            hexaddr, hexport = f[1].split(":")
            raw = bytes.fromhex(hexaddr)
            if name == "tcp":
                addr = socket.inet_ntop(socket.AF_INET, raw[::-1])
            else:
                addr = socket.inet_ntop(socket.AF_INET6, b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4)))
            out.setdefault(int(f[9]), []).append((addr, int(hexport, 16)))
    return out


def _group_listeners(pgid: int) -> set[tuple[str, int]]:
    """Every listening address of the processes in process group ``pgid`` (a server, nginx + workers)."""
    listening = _listening()
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.getpgid(int(entry.name)) != pgid:
                continue
            fds = list((entry / "fd").iterdir())
        except (OSError, ProcessLookupError):
            continue
        for fd in fds:
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                found.update(listening.get(int(target[8:-1]), []))
    return found


@pytest.mark.parametrize("server", ["flask", "gunicorn"])
def test_local_machines_listen_only_on_their_own_loopback_address(local_env, server):
    b = LocalBackend(local_env["settings"])
    b.up(ClusterSpec(nodes=2, server=server, workers=2 if server == "gunicorn" else 1))
    try:
        procs = state.load(b.settings, "local")["processes"]
        net = local_env["net"]
        expected = {"restserver-0": {(f"{net}.10", 8080)}, "restserver-1": {(f"{net}.11", 8080)},
                    "loadbalancer-0": {(f"{net}.2", 8080)}}
        assert set(procs) == set(expected)
        for role, want in expected.items():
            got = _group_listeners(procs[role]["pid"])
            assert got == want, (role, got)
            assert not any(addr in ("0.0.0.0", "::") or not addr.startswith("127.") for addr, _ in got)
    finally:
        b.down()


@pytest.mark.parametrize("server", ["flask", "gunicorn"])
def test_the_remote_unit_listens_only_on_the_address_the_balancer_uses(tmp_path, server):
    """On ssh/gcp machines the deployed systemd unit binds the server's internal address
    (what the balancer and tester use), never 0.0.0.0; the firewall (below) keeps that
    address reachable only from the balancer and the tester. Asserted on the unit the
    ssh backend installs (the gcp backend hands its machines to it), not on a copy."""
    from labkit.backends.ssh.backend import SshBackend

    hosts = [HostSpec("203.0.113.10", address="10.128.0.10"), HostSpec("203.0.113.11", address="10.128.0.11")]
    b = SshBackend(Settings(state_dir=tmp_path), persist=False, servers=hosts,
                   balancer=HostSpec("203.0.113.2", address="10.128.0.2"),
                   tester=HostSpec("203.0.113.3", address="10.128.0.3"))
    b.record.spec = ClusterSpec(nodes=2, server=server, port=8080)
    for i, internal in enumerate(("10.128.0.10", "10.128.0.11")):
        unit = b.unit_text(i)
        exec_start = next(line for line in unit.splitlines() if line.startswith("ExecStart="))
        bind = f"--host {internal} --port 8080" if server == "flask" else f"-b {internal}:8080"
        assert bind in exec_start, exec_start
        assert "0.0.0.0" not in exec_start and "203.0.113." not in exec_start
    b.close()  # nothing was connected: rendering the unit needs no SSH


# -- the GCP firewall ------------------------------------------------------------------------

def test_gcp_firewall_opens_http_only_on_the_balancer():
    rules = {r["name"]: r for r in req.firewall_bodies("run1", "9999999999", service_port=8080,
                                                       ssh_source_ranges=["203.0.113.7/32"])}
    assert sorted(rules) == ["labkit-run1-http", "labkit-run1-servers", "labkit-run1-ssh"]
    world = [r for r in rules.values() if "0.0.0.0/0" in r.get("sourceRanges", [])]
    assert [r["name"] for r in world] == ["labkit-run1-http"]  # the only rule open to the internet
    http = rules["labkit-run1-http"]
    assert http["allowed"] == [{"IPProtocol": "tcp", "ports": ["80"]}] and http["targetTags"] == [req.TAG_HTTP]
    servers = rules["labkit-run1-servers"]
    assert servers["allowed"] == [{"IPProtocol": "tcp", "ports": ["8080"]}]
    assert servers["sourceTags"] == [req.TAG_BALANCER, req.TAG_TESTER] and "sourceRanges" not in servers
    assert servers["targetTags"] == [req.TAG_SERVER]
    ssh = rules["labkit-run1-ssh"]
    assert ssh["allowed"] == [{"IPProtocol": "tcp", "ports": ["22"]}] and ssh["sourceRanges"] == ["203.0.113.7/32"]
    assert all(r["direction"] == "INGRESS" for r in rules.values())
    # the HTTP tag is on the balancer only: servers and tester accept no HTTP from outside
    assert req.role_tags("balancer") == [req.TAG_HTTP, req.TAG_BALANCER]
    assert req.TAG_HTTP not in req.role_tags("server") and req.TAG_HTTP not in req.role_tags("tester")
    bodies = {r["body"]["name"]: r["body"] for r in req.plan("p", "us-central1-a", 3)["requests"]
              if "tags" in r.get("body", {})}
    assert {"restserver-0", "loadbalancer-0", "tester-0"} <= set(bodies)
    tagged_http = sorted(n for n, b in bodies.items() if req.TAG_HTTP in b["tags"]["items"])
    assert tagged_http == ["loadbalancer-0"]


# -- generated SSH keys: 0600, never in CSVs, notebooks, logs or state ------------------------

def test_generated_ssh_keys_are_0600_and_never_written_anywhere_else(tmp_path, caplog):
    from google.auth.credentials import AnonymousCredentials

    from labkit.backends.gcp.backend import GcpBackend
    from labkit.backends.gcp.compute import Compute
    from labkit.record import Measurement
    from labkit.results import append_row
    from tests.support.compute_stub import ComputeStub

    caplog.set_level(logging.DEBUG, logger="labkit")
    with ComputeStub() as stub:
        compute = Compute(credentials=AnonymousCredentials(), client_options={"api_endpoint": stub.endpoint})
        b = GcpBackend(Settings(state_dir=tmp_path / ".labkit"), project="lab-project", zone=["us-central1-a"],
                       run_id="run1", compute=compute, timeout=30, deploy=False)
        b.up(ClusterSpec(nodes=2, port=80))
        try:
            keys = list((tmp_path / ".labkit" / "gcp").rglob("id_ed25519"))
            assert len(keys) == 1
            key = keys[0]
            assert stat.S_IMODE(key.stat().st_mode) == 0o600
            secret = key.read_text()
            assert "PRIVATE KEY" in secret
            body = "".join(line for line in secret.splitlines() if "PRIVATE KEY" not in line)
            public = Path(str(key) + ".pub").read_text().split()[1]
            # OpenSSH private key files embed the public key: look only for the other parts
            chunks = [c for c in (body[i:i + 24] for i in range(0, len(body) - 24, 8)) if c not in public]
            assert len(chunks) > 10
            # the public half went to the instances' metadata; the private half nowhere
            sent = json.dumps(stub.requests)
            assert public in sent
            status = json.dumps(b.status(), default=str)
            csv_path = tmp_path / "rows.csv"
            append_row(csv_path, Measurement(run_id=b.run_id, backend="gcp", nodes=2, concurrency=1, attempts=1))
            state_text = "".join(p.read_text() for p in (tmp_path / ".labkit").glob("*.json"))
            for where, text in (("logs", caplog.text), ("Compute requests", sent), ("status", status),
                                ("results CSV", csv_path.read_text()), ("state", state_text)):
                assert "PRIVATE KEY" not in text, where
                assert not any(c in text for c in chunks), where
        finally:
            b.down()


def test_no_private_key_in_the_projects_notebooks_csvs_or_logs():
    files = [p for pattern in ("notebooks/*.ipynb", "notebooks/*.py", "data/**/*.csv", "data/**/*.json",
                               "**/*.log")
             for p in REPO.glob(pattern) if ".venv" not in p.parts and ".labkit" not in p.parts]
    assert any(p.suffix == ".ipynb" for p in files)
    leaked = [str(p) for p in files if "PRIVATE KEY-----" in p.read_text(errors="replace")]
    assert leaked == []
    assert ".labkit/" in (REPO / ".gitignore").read_text().split()  # where generated keys live


# -- unknown host keys are refused -------------------------------------------------------------

def test_unknown_and_changed_host_keys_are_refused(sshd, tmp_path):
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    marker = Path(sshd.dir) / "ran"
    c = Connection(sshd.host, sshd.user, port=sshd.port, key_filename=sshd.key, known_hosts=str(empty))
    with pytest.raises(BackendError, match="unknown host key; refusing to connect"):
        c.run(f"touch {marker}")
    assert not c.is_connected and not marker.exists()
    # a machine whose key changed (replaced, or someone in the middle) is refused as well
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "other")], check=True)
    other = " ".join((tmp_path / "other.pub").read_text().split()[:2])
    c = Connection(sshd.host, sshd.user, port=sshd.port, key_filename=sshd.key, host_key=other)
    with pytest.raises(BackendError, match="host key mismatch"):
        c.run(f"touch {marker}")
    assert not marker.exists()
    # and the user's own ~/.ssh/known_hosts does not make an unknown key acceptable
    c = Connection(sshd.host, sshd.user, port=sshd.port, key_filename=sshd.key)
    if Path("~/.ssh/known_hosts").expanduser().exists() and \
            sshd.host_key_line in Path("~/.ssh/known_hosts").expanduser().read_text():
        pytest.skip("this user's known_hosts trusts the test sshd")
    with pytest.raises(BackendError, match="unknown host key|SSH failed"):
        c.run(f"touch {marker}")
    assert not marker.exists()


# -- issue 15 item 4: hosts-file values never reach a remote shell -----------------------------

_GOOD_HOSTS = """\
[[servers]]
host = "127.0.0.1"
{server}
[balancer]
host = "127.0.0.1"
[tester]
host = "127.0.0.1"
[options]
{options}
"""


@pytest.mark.parametrize("server, options, names", [
    ('name = "web$(touch /tmp/labkit-pwned)"', "", ["name", "web$(touch"]),
    ('name = "ssh"', "", ["server name 'ssh'", "restserver-"]),
    ('name = "restserver-0;reboot"', "", ["name", "restserver-0;reboot"]),
    ('address = "10.0.0.1; rm -rf /"', "", ["address", "not an IP address"]),
    ('address = "10.0.0.1\\nserver evil:80"', "", ["address"]),
    ('user = "root$(id)"', "", ["user"]),
    ("port = 70000", "", ["port 70000"]),
    ("", 'root = "/"', ["root '/'", "system folder"]),
    ("", 'root = "/usr"', ["system folder"]),
    ("", 'root = "/etc/restserver"', ["system folder"]),
    ("", 'root = "/home/alice"', ["system folder"]),
    ("", 'root = "/home/alice/.ssh"', ["named for labkit"]),  # issue 21 item 5: passed the old deny-list
    ("", 'root = "/usr/local/etc"', ["named for labkit"]),
    ("", 'root = "/var/www/html"', ["named for labkit"]),
    ("", 'root = "/opt/../etc"', ["'..'"]),
    ("", 'root = "/opt/rest server"', ["root"]),
    ("", 'python = "/usr/bin/python3 -c evil"', ["python"]),
    ("", "balancer_port = 0", ["balancer_port 0"]),
])
def test_hosts_file_values_that_would_reach_a_shell_are_refused_at_parse_time(tmp_path, server, options, names):
    """One ConfigError naming file, table and value, before any connection (nothing listens on :22 here)."""
    from labkit.errors import ConfigError
    from labkit.backends.ssh.hosts_file import load_hosts_file

    path = tmp_path / "hosts.toml"
    path.write_text(_GOOD_HOSTS.format(server=server, options=options))
    with pytest.raises(ConfigError) as info:
        load_hosts_file(path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message
    for name in names:
        assert name in message, message
    assert not Path("/tmp/labkit-pwned").exists()


def test_good_hosts_file_values_still_load(tmp_path):
    from labkit.backends.ssh.hosts_file import load_hosts_file

    path = tmp_path / "hosts.toml"
    path.write_text(_GOOD_HOSTS.format(server='name = "labkit-web1"\naddress = "fd00::11"',
                                       options='root = "/opt/restserver/"\npython = "/usr/bin/python3"'))
    args = load_hosts_file(path)
    assert args["servers"][0].name == "labkit-web1" and args["servers"][0].addr == "fd00::11"
    assert args["root"] == "/opt/restserver"


def test_hosts_file_names_the_balancer_and_tester_machine_types(tmp_path):
    """The per-role CPU columns need each role's machine type; an unknown one is refused at parse time."""
    from labkit.errors import ConfigError
    from labkit.backends.ssh.hosts_file import load_hosts_file

    path = tmp_path / "hosts.toml"
    path.write_text(_GOOD_HOSTS.format(server='name = "labkit-web1"',
                                       options='balancer_machine_type = "e2-medium"\ntester_machine_type = "e2-small"'))
    args = load_hosts_file(path)
    assert (args["balancer_machine_type"], args["tester_machine_type"]) == ("e2-medium", "e2-small")
    path.write_text(_GOOD_HOSTS.format(server='name = "labkit-web1"', options='tester_machine_type = "m9-huge"'))
    with pytest.raises(ConfigError, match=r"\[options\].*m9-huge"):
        load_hosts_file(path)


# -- issue 15 items 8 and 10: the system nginx on a host (sandboxed: fake nginx and systemctl) ------

class _SandboxConn:
    """A Connection look-alike running commands on this machine, with fake nginx/systemctl first on PATH."""

    host, user = "sandbox", "root"

    def __init__(self, bin_dir: Path):
        self.env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
        self.puts: list[tuple[str, int | None]] = []

    def run(self, cmd, check=True, timeout=None, stdin=None):
        from labkit.errors import CommandError
        from labkit.backends.ssh.connection import Result

        p = subprocess.run(["sh", "-c", cmd], capture_output=True, text=True, env=self.env, timeout=60)
        if check and p.returncode:
            raise CommandError(self.host, cmd, p.returncode, p.stderr)
        return Result(p.returncode, p.stdout, p.stderr)

    sudo = run
    mktemp = Connection.mktemp

    def put(self, data, remote, mode=None):
        existing = stat.S_IMODE(os.stat(remote).st_mode) if os.path.exists(remote) else None
        self.puts.append((remote, existing))
        Path(remote).write_bytes(data)

    def get_text(self, remote):
        return Path(remote).read_text()

    def read_pidfile(self, pidfile, tries=50):
        return 4242


def _sandboxed_system_nginx(tmp_path):
    from labkit.backends.ssh.nginx import SystemNginx

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("nginx", "systemctl"):
        (bin_dir / tool).write_text(f'#!/bin/sh\necho "{tool} $*" >> {tmp_path}/calls.log\nexit 0\n')
        (bin_dir / tool).chmod(0o755)
    etc = tmp_path / "etc"
    (etc / "nginx").mkdir(parents=True)
    conn = _SandboxConn(bin_dir)
    nginx = SystemNginx(conn, "loadbalancer-0", "127.0.0.1", 8080, 1)
    nginx.conf = str(etc / "nginx" / "nginx.conf")
    nginx.BACKUP = str(etc / "nginx" / "nginx.conf.labkit-backup")
    nginx.DROPIN = str(etc / "systemd" / "system" / "nginx.service.d" / "local.conf")
    nginx.pid_file = str(tmp_path / "nginx.pid")
    return nginx, conn, etc


@pytest.mark.parametrize("own_dropin", [None, "[Service]\nNice=5\n"], ids=["no-dropin", "hosts-own-dropin"])
def test_system_nginx_down_restores_exactly_what_the_run_changed(tmp_path, own_dropin):
    nginx, conn, etc = _sandboxed_system_nginx(tmp_path)
    conf, backup, dropin = Path(nginx.conf), Path(nginx.BACKUP), Path(nginx.DROPIN)
    conf.write_text("# the host's nginx.conf, edited last week\n")
    backup.write_text("# an ancient backup an earlier run left behind\n")  # stale: must not win
    if own_dropin:
        dropin.parent.mkdir(parents=True)
        dropin.write_text(own_dropin)
    nginx.apply([("10.0.0.11", 8080)], record=lambda info: None)
    nginx.apply([("10.0.0.11", 8080), ("10.0.0.12", 8080)], record=lambda info: None)  # scale: applied again
    assert conf.read_text().startswith("# Generated by labkit") and "10.0.0.12:8080" in conf.read_text()
    assert "LimitNOFILE=65536" in dropin.read_text()
    nginx.stop({"mode": "system"})
    assert conf.read_text() == "# the host's nginx.conf, edited last week\n"
    assert not backup.exists()
    if own_dropin:
        assert dropin.read_text() == own_dropin and not Path(nginx.DROPIN + ".labkit-backup").exists()
    else:
        assert not dropin.exists() and not dropin.parent.exists()
    assert "systemctl restart nginx" in (tmp_path / "calls.log").read_text().splitlines()[-1]


def test_system_nginx_stages_its_config_in_a_random_0600_temp_file(tmp_path):
    nginx, conn, etc = _sandboxed_system_nginx(tmp_path)
    Path(nginx.conf).write_text("# the host's\n")
    nginx.apply([("10.0.0.11", 8080)], record=lambda info: None)
    nginx.apply([("10.0.0.12", 8080)], record=lambda info: None)
    staged = [(path, mode) for path, mode in conn.puts]
    assert len(staged) == 2 and staged[0][0] != staged[1][0]
    for path, mode in staged:
        assert path != "/tmp/labkit-nginx.conf.loadbalancer-0" and path.startswith("/tmp/labkit-nginx.")
        assert mode == 0o600  # created by mktemp before anything was written into it
        assert not os.path.exists(path)  # copied into place and removed


def test_a_server_unit_never_replaces_or_disables_a_unit_of_the_hosts_own(tmp_path):
    """Even past the hosts file (a name from elsewhere, a tampered state): ssh.service is left alone."""
    from labkit.errors import CommandError
    from labkit.backends.ssh.service import RemoteService

    nginx, conn, etc = _sandboxed_system_nginx(tmp_path)  # the fake systemctl answers `cat` for any unit
    root = tmp_path / "root"
    service = RemoteService(conn, "ssh", root=str(root), python="/usr/bin/python3", use_systemd=True)
    with pytest.raises(CommandError, match="labkit did not write"):
        service.start(ClusterSpec(), "ssh", "127.0.0.1", 8080, record=lambda info: None)
    service.stop({"unit": "ssh.service", "port": 8080})  # a state naming the host's ssh.service
    calls = (tmp_path / "calls.log").read_text().splitlines()
    assert calls == ["systemctl cat ssh.service"], calls  # asked, never enabled, restarted or disabled
    with pytest.raises(Exception, match="name"):
        service.start(ClusterSpec(), "web$(touch /tmp/labkit-pwned)", "127.0.0.1", 8080, record=lambda info: None)
    assert not Path("/tmp/labkit-pwned").exists()


def test_root_that_exists_with_files_labkit_did_not_put_there_is_refused(sshd, tmp_path):
    """Issue 21 item 5: an existing non-empty folder without labkit's marker is never chown'ed."""
    from labkit.backends.ssh.service import RemoteService
    from labkit.errors import BackendError

    h = HostSpec(sshd.host, user=sshd.user, port=sshd.port, key_filename=sshd.key, known_hosts=sshd.known_hosts)
    theirs = tmp_path / "labkit-theirs"
    theirs.mkdir()
    (theirs / "data").write_text("not labkit's")
    conn = h.connect()
    try:
        with pytest.raises(BackendError, match="was not made by labkit"):
            RemoteService(conn, "restserver-0", root=str(theirs), python=sys.executable).install()
        assert sorted(p.name for p in theirs.iterdir()) == ["data"]  # nothing copied, no marker
        fresh = tmp_path / "labkit-new"
        RemoteService(conn, "restserver-0", root=str(fresh), python=sys.executable).install()
        assert (fresh / ".labkit-root").exists() and (fresh / "restserver.py").exists()
        RemoteService(conn, "restserver-0", root=str(fresh), python=sys.executable).install()  # its own: fine
    finally:
        conn.close()


def test_remote_commands_and_sftp_have_a_time_limit_by_default(sshd, monkeypatch):
    """Issue 21 item 5: a remote command given no limit (systemctl, chown...) still ends, as CommandTimeout."""
    from labkit.errors import CommandTimeout

    monkeypatch.setattr(Connection, "DEFAULT_TIMEOUT", 1.0)
    h = HostSpec(sshd.host, user=sshd.user, port=sshd.port, key_filename=sshd.key, known_hosts=sshd.known_hosts)
    conn = h.connect()
    try:
        with pytest.raises(CommandTimeout, match="timed out after 1.0 s"):
            conn.run("sleep 3")  # (it ends by itself soon after: nothing left behind)
        assert conn.sftp().get_channel().gettimeout() == Connection.SFTP_TIMEOUT
    finally:
        conn.close()
