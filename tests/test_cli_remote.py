"""The ssh and gcp backends through the `labkit` CLI, each command its own process ("another shell").

ssh: a hosts file pointing at the real sshd fixture on 127.0.0.1 (real service, real
nginx). gcp: the real google-cloud-compute client against tests/support/compute_stub.py, the
CLI reaching it through $LABKIT_GCP_API_ENDPOINT (loopback, anonymous credentials).
Every test has its own state folder ($LABKIT_STATE_DIR).
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from labkit.backends.gcp import compute as gcp
from labkit.backends.gcp import api_requests as req
from labkit import machine_types, state
from labkit.backends import get_backend
from labkit.backends.base import ClusterSpec
from labkit.backends.gcp import backend as gcp_backend
from labkit.backends.gcp.backend import GcpBackend
from labkit.backends.ssh.backend import SshBackend
from labkit.errors import ConfigError
from labkit.backends.ssh.hosts_file import load_hosts_file
from labkit.settings import Settings
from tests.support.compute_stub import ComputeStub
from tests.support.compute_stub import anonymous_compute as _compute
from tests.support.ports import free_ports
from tests.support.processes import alive

LABKIT = [sys.executable, "-m", "labkit.cli"]
PROJECT, ZONE = "lab-project", "us-central1-a"
HAVE_NGINX_AB = bool((shutil.which("nginx") or os.path.exists("/usr/sbin/nginx")) and shutil.which("ab"))


@pytest.fixture
def state_dir(tmp_path, monkeypatch):
    """The state folder for the CLI processes (by env) and for in-process code (``SETTINGS``)."""
    d = tmp_path / ".labkit"
    monkeypatch.setenv("LABKIT_STATE_DIR", str(d))
    monkeypatch.chdir(tmp_path)
    for var in ("LABKIT_SSH_HOSTS", "LABKIT_GCP_PROJECT", "LABKIT_GCP_ZONE", "LABKIT_GCP_API_ENDPOINT"):
        monkeypatch.delenv(var, raising=False)
    return d


def _settings(state_dir) -> Settings:
    return Settings(state_dir=state_dir)


def labkit(*args, env=None, timeout=180):
    """Run `labkit ARGS` in a fresh process; return (exit code, stdout, stderr)."""
    p = subprocess.run([*LABKIT, *args], capture_output=True, text=True, timeout=timeout,
                       env={**os.environ, **(env or {})})
    return p.returncode, p.stdout, p.stderr


# -- ssh ----------------------------------------------------------------------------------


def _hosts_file(path: Path, sshd, root: Path, balancer_port: int, python: str | None = None) -> Path:
    python = python or sys.executable
    path.write_text(f"""\
[defaults]
user = "{sshd.user}"
port = {sshd.port}
key_filename = "{sshd.key}"
known_hosts = "{sshd.known_hosts}"

[[servers]]
host = "127.0.0.1"

[[servers]]
host = "127.0.0.1"

[balancer]
host = "127.0.0.1"

[tester]
host = "127.0.0.1"

[options]
root = "{root}"
python = "{python}"
balancer_port = {balancer_port}
nginx_workers = 1
""")
    return path


def _get(url):
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=5) as r:
        return json.loads(r.read())


@pytest.mark.skipif(not HAVE_NGINX_AB, reason="nginx and ab are needed (make test installs them)")
def test_ssh_up_status_down_from_separate_processes(sshd, state_dir, tmp_path):
    lb_port, base = free_ports(1)[0], free_ports(2)[0]
    hosts = _hosts_file(tmp_path / "hosts.toml", sshd, tmp_path / "opt-restserver", lb_port)
    try:
        rc, out, err = labkit("up", "--backend", "ssh", "--hosts", str(hosts), "--nodes", "2", "--port", str(base))
        assert rc == 0, err
        assert json.loads(out) == {"url": f"http://127.0.0.1:{lb_port}", "nodes": 2, "balanced": True,
                                   "cpu_limited": True}  # balanced: 2 nodes are behind nginx

        saved = json.loads((state_dir / "ssh.json").read_text())
        assert saved["hosts_file"] == str(hosts)
        assert saved["spec"]["nodes"] == 2 and saved["spec"]["port"] == base
        assert sorted(saved["running"]) == ["0", "1"]
        assert [saved["running"][i]["port"] for i in ("0", "1")] == [base, base + 1]
        pids = [saved["running"][i]["pid"] for i in ("0", "1")] + [saved["nginx"]["pid"]]
        assert all(isinstance(p, int) and alive(p) for p in pids)
        nodes = sorted(_get(f"http://127.0.0.1:{lb_port}/status")["node"] for _ in range(2))
        assert nodes == ["restserver-0", "restserver-1"]

        rc, out, err = labkit("status", "--backend", "ssh")  # no --hosts: attaches to the saved state
        assert rc == 0, err
        st = json.loads(out)
        assert st["url"] == f"http://127.0.0.1:{lb_port}"
        assert [s["status"]["node"] for s in st["servers"]] == ["restserver-0", "restserver-1"]
        assert [s["pid"] for s in st["servers"]] == pids[:2]
        assert st["balancer"]["pid"] == pids[2] and st["balancer"]["port"] == lb_port

        rc, out, err = labkit("down", "--backend", "ssh")
        assert rc == 0, err
        root = str(tmp_path / "opt-restserver")
        assert json.loads(out) == {"backend": "ssh", "stopped": ["loadbalancer-0", "restserver-0", "restserver-1"],
                                   "left": [f"restserver-0:{root}", f"restserver-1:{root}"]}
        deadline = time.time() + 5
        while any(alive(p) for p in pids) and time.time() < deadline:
            time.sleep(0.1)
        assert [p for p in pids if alive(p)] == []
        assert not (state_dir / "ssh.json").exists()

        rc, out, err = labkit("status", "--backend", "ssh")
        assert (rc, json.loads(out)) == (0, {"backend": "ssh", "up": False})
        rc, out, err = labkit("down", "--backend", "ssh")  # safe twice
        assert (rc, json.loads(out)) == (0, {"backend": "ssh", "down": "nothing was up"})
    finally:
        if state.load(state_dir, "ssh"):
            SshBackend(_settings(state_dir)).down()


def test_ssh_state_is_written_before_the_server_answers(sshd, state_dir, tmp_path):
    """A server that never comes up is still recorded, so `labkit down` stops it."""
    port = free_ports(1)[0]
    fake = tmp_path / "fake-python"  # "starts" the service (and stays), but its health check fails
    fake.write_text('#!/bin/sh\nif [ "$1" = "-c" ]; then exit 1; fi\nexec sleep 120\n')
    fake.chmod(0o755)
    hosts = _hosts_file(tmp_path / "hosts.toml", sshd, tmp_path / "opt-labkit", free_ports(1)[0], python=str(fake))
    hosts.write_text(hosts.read_text() + "service_timeout = 3\n")  # nothing will ever answer
    b = SshBackend(_settings(state_dir), hosts=str(hosts))
    with pytest.raises(Exception, match="did not come up"):
        b.up(ClusterSpec(nodes=1, port=port))
    saved = state.load(state_dir, "ssh")
    assert list(saved["running"]) == ["0"]
    pidfile = saved["running"]["0"]["pidfile"]
    pid = int(Path(pidfile).read_text())
    assert "pid" not in saved["running"]["0"] and alive(pid)
    rc, out, err = labkit("down", "--backend", "ssh")
    assert rc == 0, err
    assert json.loads(out)["stopped"] == ["restserver-0"]
    deadline = time.time() + 5
    while alive(pid) and time.time() < deadline:
        time.sleep(0.1)
    assert not alive(pid) and not Path(pidfile).exists() and state.load(state_dir, "ssh") is None


def test_unknown_host_key_is_refused_and_a_fixed_hosts_file_wins(sshd, state_dir, tmp_path):
    empty = tmp_path / "empty_known_hosts"
    empty.write_text("")
    hosts = _hosts_file(tmp_path / "hosts.toml", sshd, tmp_path / "opt-labkit", free_ports(1)[0])
    hosts.write_text(hosts.read_text().replace(sshd.known_hosts, str(empty)))
    rc, out, err = labkit("up", "--backend", "ssh", "--hosts", str(hosts), "--port", str(free_ports(1)[0]))
    assert rc == 2 and len(err.splitlines()) == 1
    assert f"[127.0.0.1]:{sshd.port}: unknown host key; refusing to connect" in err
    assert state.load(state_dir, "ssh")["running"] == {}  # nothing started
    hosts.write_text(hosts.read_text().replace(str(empty), sshd.known_hosts))
    b = SshBackend(_settings(state_dir).replace(ssh_hosts=str(hosts)))  # the hosts file from the settings
    assert [s.known_hosts for s in b.servers] == [sshd.known_hosts] * 2
    assert b.spec is None


@pytest.mark.parametrize("text, names", [
    ('[[servers]]\nhost = "a"\n[balancer]\nhost = "b"\n[tester]\nhots = "c"\n', ["[tester]", "'hots'"]),
    ('[defaults]\nport = "22"\n[[servers]]\nhost = "a"\n[balancer]\nhost = "b"\n[tester]\nhost = "c"\n',
     ["[defaults]", "'port'", "integer"]),
    ('[[servers]]\nuser = "x"\n[balancer]\nhost = "b"\n[tester]\nhost = "c"\n', ["[[servers]] #1", "'host'"]),
    ('[balancer]\nhost = "b"\n[tester]\nhost = "c"\n', ["'servers'"]),
    ('[[servers]]\nhost = "a"\n[tester]\nhost = "c"\n', ["'balancer'"]),
    ('[[servers]]\nhost = "a"\n[balancer]\nhost = "b"\n[tester]\nhost = "c"\n[options]\nuse_systemd = "yes"\n',
     ["[options]", "'use_systemd'", "true or false"]),
    ('[[servers]\nhost = "a"\n', ["not valid TOML", "line 1"]),
])
def test_bad_hosts_file_is_one_line_and_exit_2(state_dir, tmp_path, text, names):
    hosts = tmp_path / "hosts.toml"
    hosts.write_text(text)
    rc, out, err = labkit("up", "--backend", "ssh", "--hosts", str(hosts))
    assert rc == 2 and out == ""
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith(f"labkit: error: {hosts}: ")
    for name in names:
        assert name in err
    assert not (state_dir / "ssh.json").exists()


def test_missing_hosts_file_and_no_hosts(state_dir, tmp_path):
    rc, out, err = labkit("up", "--backend", "ssh", "--hosts", str(tmp_path / "nope.toml"))
    assert rc == 2 and err == f"labkit: error: hosts file {tmp_path / 'nope.toml'} does not exist\n"
    rc, out, err = labkit("up", "--backend", "ssh")
    assert rc == 2 and len(err.splitlines()) == 1 and "--hosts FILE" in err


def test_hosts_file_paths_defaults_and_pinned_keys(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "keys").mkdir()
    hosts = tmp_path / "hosts.toml"
    hosts.write_text('[defaults]\nuser = "ubuntu"\nkey_filename = "~/.ssh/id_ed25519"\nknown_hosts = "keys/kh"\n'
                     '[[servers]]\nhost = "10.0.0.11"\naddress = "192.168.0.11"\n'
                     '[[servers]]\nhost = "10.0.0.13"\nuser = "root"\nport = 2222\n'
                     '[balancer]\nhost = "10.0.0.10"\n'
                     '[tester]\nhost = "10.0.0.12"\nhost_key = ["ssh-ed25519 AAAA", "ssh-rsa BBBB"]\n'
                     '[options]\nbalancer_port = 8000\nnginx_workers = "auto"\n')
    args = load_hosts_file(hosts)
    s0, s1 = args["servers"]
    assert (s0.host, s0.addr, s0.user, s0.port) == ("10.0.0.11", "192.168.0.11", "ubuntu", 22)
    assert s0.key_filename == str(tmp_path / "home" / ".ssh" / "id_ed25519")
    assert s0.known_hosts == str(tmp_path / "keys" / "kh")
    assert (s1.user, s1.port, s1.addr) == ("root", 2222, "10.0.0.13")
    assert args["tester"].host_key == ("ssh-ed25519 AAAA", "ssh-rsa BBBB")
    assert (args["balancer_port"], args["nginx_workers"]) == (8000, "auto")
    b = SshBackend(Settings(state_dir=tmp_path / ".labkit"), persist=False, **args)
    assert [s.name for s in b.servers] == ["restserver-0", "restserver-1"]
    again = SshBackend.from_state(b.to_state())  # the state round-trips, pinned keys included
    assert again.servers == b.servers and again.tester == b.tester and again.balancer_port == 8000
    assert again.settings == Settings.from_env() and not again.persist


# -- gcp ------------------------------------------------------------------------------------


def _deletes(stub):
    return sorted(r["path"].rsplit("/", 2)[-2] + "/" + r["path"].rsplit("/", 1)[-1]
                  for r in stub.requests if r["method"] == "DELETE")


def test_gcp_state_lets_another_backend_tear_down(stub, state_dir, tmp_path):
    b = GcpBackend(_settings(state_dir), project=PROJECT, zone=ZONE, compute=_compute(stub), run_id="run2",
                   deploy=False, timeout=30)
    assert b.zones == [ZONE] and b.key_dir == str(state_dir / "gcp")
    assert not (state_dir / "gcp.json").exists()  # nothing created, nothing recorded
    try:
        b.up(ClusterSpec(nodes=3, port=80))
        names = ["loadbalancer-0", "restserver-0", "restserver-1", "restserver-2", "tester-0"]
        assert sorted(stub.instances) == names
        saved = json.loads((state_dir / "gcp.json").read_text())
        assert saved["project"] == PROJECT and saved["run_id"] == "run2" and saved["zones"] == [ZONE]
        assert saved["created"] == {n: ZONE for n in names}
        assert saved["images"] == ["lab02-restserver-run2"]
        assert sorted(saved["firewalls"]) == ["labkit-run2-http", "labkit-run2-servers", "labkit-run2-ssh"]
        assert saved["spec"]["nodes"] == 3
        assert [s["host_key"] for s in saved["ssh"]["servers"]] == [stub.host_keys] * 3
        assert (state_dir / "gcp" / "run2" / "id_ed25519").exists()
        n_before = len(stub.requests)

        # "another shell": a new backend from the state alone (no project given)
        other = get_backend("gcp", _settings(state_dir), compute=_compute(stub))
        assert (other.run_id, other.project, other.created, other.expires) == ("run2", PROJECT, b.created, b.expires)
        assert other.spec == ClusterSpec(nodes=3, port=80)
        assert other.ssh.servers[2].host_key == tuple(stub.host_keys)
        assert other.balancer_config() == "(no balancer is running: with one node the tester talks to the server directly)"
        result = other.down()
        assert result["left"] == [] and result["stopped"] == ["firewall labkit-run2-http", "firewall labkit-run2-servers",
                                     "firewall labkit-run2-ssh", "image lab02-restserver-run2"] + \
            [f"instance {n}" for n in names]
        assert _deletes(stub) == sorted([f"instances/{n}" for n in names] + ["images/lab02-restserver-run2"]
                                        + [f"firewalls/labkit-run2-{k}" for k in ("http", "servers", "ssh")])
        assert all(r["method"] in ("DELETE", "GET") for r in stub.requests[n_before:])
        assert stub.instances == {} and stub.images == {} and stub.firewalls == {}
        assert not (state_dir / "gcp.json").exists()
        assert not (state_dir / "gcp" / "run2").exists()  # the run's SSH key went with it
    finally:
        b.down()  # everything already gone: nothing to do, and the signal handlers are restored
    assert b.down() == {"backend": "gcp", "stopped": [], "left": []}


class ForbiddenDeletes(ComputeStub):
    """The stub, refusing to delete ``tester-0`` (as a missing IAM permission would)."""

    def route(self, method, path, query, body):
        if method == "DELETE" and path.endswith("/instances/tester-0"):
            msg = "Required 'compute.instances.delete' permission for 'tester-0'"
            return 403, {"error": {"code": 403, "message": msg, "errors": [{"reason": "forbidden", "message": msg}]}}
        return super().route(method, path, query, body)


def test_gcp_keeps_what_it_could_not_delete(state_dir):
    with ForbiddenDeletes() as stub:
        b = GcpBackend(_settings(state_dir), project=PROJECT, zone=ZONE, compute=_compute(stub), run_id="run3",
                       deploy=False, timeout=30)
        b.create_firewalls(80)
        b.create({n: b._maker(n, "server", "f1-micro", "") for n in ("restserver-0", "tester-0")})
        with pytest.raises(gcp.CloudError, match="compute.instances.delete.*labkit down --backend gcp"):
            b.down()
        assert sorted(stub.instances) == ["tester-0"] and stub.firewalls == {}
        saved = state.load(state_dir, "gcp")  # only what is left, for the next `down` (or gc after expiry)
        assert (saved["created"], saved["images"], saved["firewalls"]) == ({"tester-0": ZONE}, [], [])
        assert b.created == {"tester-0": ZONE}


def test_gcp_down_after_a_killed_up_from_the_cli(state_dir, tmp_path):
    """SIGKILL in the middle of creating instances: `labkit down` (another process) deletes all of it."""
    with ComputeStub(delay=1.5) as stub:
        env = {"LABKIT_GCP_API_ENDPOINT": stub.endpoint}
        script = ("from labkit.backends import get_backend; from labkit.backends.base import ClusterSpec\n"
                  f"b = get_backend('gcp', project={PROJECT!r}, zone={ZONE!r}, deploy=False, run_id='killed')\n"
                  "b.up(ClusterSpec(nodes=2, port=80))\n")
        proc = subprocess.Popen([sys.executable, "-c", script], env={**os.environ, **env},
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            deadline = time.time() + 30
            while time.time() < deadline:
                saved = state.load(state_dir, "gcp") if (state_dir / "gcp.json").exists() else None
                first = {"restserver-0", "loadbalancer-0", "tester-0"}
                rules = {f"labkit-killed-{k}" for k in ("http", "servers", "ssh")}  # created alongside them
                if (saved and first <= set(saved["created"]) and first <= set(stub.instances)
                        and rules <= set(saved["firewalls"]) and rules <= set(stub.firewalls)):
                    break
                assert proc.poll() is None, proc.communicate()
                time.sleep(0.05)
            killed_at = time.monotonic()
            os.kill(proc.pid, signal.SIGKILL)
        finally:
            proc.wait(10)
        assert proc.returncode == -signal.SIGKILL
        # killed while the creates (instances and firewall rules) were still running: recorded when sent, not when done
        pending = [op["targetLink"] for op in stub.ops.values()
                   if op["operationType"] == "insert" and op["_done_at"] > killed_at]
        assert sorted(pending) == sorted(first | rules)
        assert sorted(saved["firewalls"]) == sorted(stub.firewalls) == [f"labkit-killed-{k}" for k in
                                                                       ("http", "servers", "ssh")]

        rc, out, err = labkit("status", "--backend", "gcp", env=env)
        assert rc == 0, err
        assert json.loads(out)["run_id"] == "killed"
        rc, out, err = labkit("down", "--backend", "gcp", env=env)
        assert rc == 0, err
        down = json.loads(out)
        assert down["backend"] == "gcp" and down["left"] == []
        assert sorted(down["stopped"]) == sorted([f"instance {n}" for n in first] + [f"firewall labkit-killed-{k}"
                                                  for k in ("http", "servers", "ssh")])
        assert stub.instances == {} and stub.firewalls == {} and stub.images == {}
        assert state.load(state_dir, "gcp") is None


def test_gc_cli_dry_run_then_delete(stub, state_dir):
    c = _compute(stub)
    now = time.time()
    for name, expires in (("old", now - 10), ("fresh", now + 3600)):
        exp = str(int(expires))
        gcp.wait(gcp.insert_instance(c, PROJECT, ZONE, req.instance_body(name, ZONE, "f1-micro", "run" + name,
                                                                         exp, "server")), "create")
        for body in req.firewall_bodies("run" + name, exp):
            gcp.wait(gcp.insert_firewall(c, PROJECT, body), "fw")
        gcp.wait(gcp.insert_image(c, PROJECT, req.image_body(ZONE, name, "run" + name, exp, name=f"img-{name}")),
                 "img")
    env = {"LABKIT_GCP_API_ENDPOINT": stub.endpoint}
    expired = ["firewall labkit-runold-http", "firewall labkit-runold-servers", "firewall labkit-runold-ssh",
               "image img-old", "instance old"]

    rc, out, err = labkit("gc", "--project", PROJECT, "--dry-run", "--json", env=env)
    assert rc == 0, err
    got = json.loads(out)
    assert (got["dry_run"], got["deleted"], sorted(got["would_delete"])) == (True, [], expired)
    assert sorted(stub.instances) == ["fresh", "old"] and len(stub.firewalls) == 6
    assert not any(r["method"] == "DELETE" for r in stub.requests)

    rc, out, err = labkit("gc", "--json", env={**env, "LABKIT_GCP_PROJECT": PROJECT})  # project from env
    assert rc == 0, err
    got = json.loads(out)
    assert (got["project"], got["dry_run"], sorted(got["deleted"])) == (PROJECT, False, expired)
    assert sorted(stub.instances) == ["fresh"] and list(stub.images) == ["img-fresh"]
    assert sorted(stub.firewalls) == ["labkit-runfresh-http", "labkit-runfresh-servers", "labkit-runfresh-ssh"]

    rc, out, err = labkit("gc", "--project", PROJECT, env=env)  # nothing left to collect
    assert rc == 0 and out == "" and err.strip().endswith(f"deleted 0 expired resource(s) in {PROJECT}")


def test_plain_http_endpoint_must_be_loopback(tmp_path):
    refused = (r"^Compute endpoint {}: credentials are only sent to https://\*\.googleapis\.com; "
               r"an emulator must listen on loopback \(e\.g\. http://127\.0\.0\.1:PORT\)$")
    with pytest.raises(ConfigError, match=refused.format("http://compute.example.com:80")):
        gcp.Compute(endpoint="http://compute.example.com:80")
    with pytest.raises(ConfigError, match=refused.format("https://compute.example.com")):  # https elsewhere too
        gcp.Compute(endpoint="https://compute.example.com")
    b = GcpBackend(Settings(state_dir=tmp_path, gcp_project=PROJECT, gcp_api_endpoint="http://compute.example.com:80"))
    assert b.project == PROJECT and b.zones == list(gcp_backend.DEFAULT_ZONES)  # project and zones from settings
    with pytest.raises(ConfigError, match=refused.format("http://compute.example.com:80")):
        b.compute


def test_gcp_needs_a_project_and_refuses_another_while_up(stub, state_dir):
    rc, out, err = labkit("up", "--backend", "gcp")
    assert rc == 2 and err == "labkit: error: the gcp backend needs a project: --project P (or $LABKIT_GCP_PROJECT)\n"
    b = GcpBackend(_settings(state_dir), project=PROJECT, zone=f"{ZONE}, us-central1-b", compute=_compute(stub),
                   deploy=False, timeout=30)
    assert b.zones == [ZONE, "us-central1-b"]
    b.create({"tester-0": b._maker("tester-0", "tester", "f1-micro", "")})
    try:
        with pytest.raises(ConfigError, match=f"project {PROJECT} is up"):
            GcpBackend(_settings(state_dir), project="other-project")
    finally:
        b.down()
    assert state.load(state_dir, "gcp") is None


def _sandbox_prefix() -> list[str]:
    """`unshare -n` (no network at all) where this machine allows it."""
    if shutil.which("unshare") and subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode == 0:
        return ["unshare", "-n"]
    return []


def test_plan_cli_offline_without_credentials(tmp_path):
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path),  # no gcloud config, no ADC
           "NO_GCE_CHECK": "true", "GCE_METADATA_HOST": "127.0.0.1:9", "LABKIT_STATE_DIR": str(tmp_path / ".labkit")}
    p = subprocess.run([*_sandbox_prefix(), *LABKIT, "plan", "--backend", "gcp", "--project", "p1", "--zone",
                        "europe-west1-b", "--nodes", "5", "--json"], capture_output=True, text=True, env=env,
                       cwd=tmp_path, timeout=60)
    assert p.returncode == 0, p.stderr
    plan = json.loads(p.stdout)
    assert plan["instances"] == [f"restserver-{i}" for i in range(5)] + ["loadbalancer-0", "tester-0"]
    inserts = [r["body"] for r in plan["requests"] if r["method"] == "instances.insert"]
    assert len(inserts) == 7
    for body in inserts:
        assert body["machineType"] == "zones/europe-west1-b/machineTypes/f1-micro"
        assert body["disks"][0]["initializeParams"]["sourceImage"]
        assert body["networkInterfaces"][0]["accessConfigs"] == [{"name": "External NAT", "type": "ONE_TO_ONE_NAT"}]
        assert body["tags"]["items"] and body["labels"]["labkit-run"] == plan["run_id"]
        assert {i["key"] for i in body["metadata"]["items"]} == {"ssh-keys", "enable-guest-attributes"}
    assert inserts[-1]["disks"][0]["initializeParams"]["sourceImage"] == \
        f"projects/p1/global/images/lab02-restserver-{plan['run_id']}"  # the run's own image
    price = sum(machine_types.get(b["machineType"].rsplit("/", 1)[1]).price_per_hour for b in inserts)
    assert plan["cost"]["instances_per_hour"] == pytest.approx(price)
    assert price == pytest.approx(7 * machine_types.get("f1-micro").price_per_hour)
    ipv4 = 7 * req.EXTERNAL_IPV4_PER_HOUR  # every VM has an external address (accessConfigs above)
    assert plan["cost"]["external_ipv4_per_hour"] == pytest.approx(ipv4)
    assert plan["cost"]["total_per_hour"] == pytest.approx(price + plan["cost"]["disks_per_hour"] + ipv4)
    assert not (tmp_path / ".labkit").exists()  # plan touches no state either
