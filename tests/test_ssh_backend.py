"""The ssh backend end to end on 127.0.0.1 through a real sshd: real service, nginx and ab."""

import json
import os
import random
import shutil
import socket
import sys
import time
import urllib.request

import pytest

from labkit.backends.base import ClusterSpec
from labkit.backends.ssh import HostSpec, SshBackend
from labkit.errors import ConfigError

pytestmark = pytest.mark.skipif(not (shutil.which("nginx") or os.path.exists("/usr/sbin/nginx"))
                                or not shutil.which("ab"), reason="nginx and ab are needed (make test installs them)")

VENV_PY = "/work/main/.venv/bin/python"


def _free_ports(n):
    """``n`` consecutive free ports below the ephemeral range (client sockets cannot steal them)."""
    rng = random.Random()
    for _ in range(200):
        base = rng.randrange(20000, 32000 - n)
        socks = []
        try:
            for p in range(base, base + n):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", p))
            return list(range(base, base + n))
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no free ports")


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has stopped
    except FileNotFoundError:
        return False


def _get(url):
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=5) as r:
        return json.loads(r.read())


@pytest.fixture
def backend(sshd, tmp_path):
    def host(name):
        return HostSpec(sshd.host, user=sshd.user, port=sshd.port, key_filename=sshd.key,
                        known_hosts=sshd.known_hosts, name=name)

    lb_port = _free_ports(1)[0]
    python = VENV_PY if os.path.exists(VENV_PY) else sys.executable
    b = SshBackend([host("restserver-0"), host("restserver-1")], host("loadbalancer-0"), host("tester-0"),
                   root=str(tmp_path / "opt-restserver"), python=python, balancer_port=lb_port,
                   nginx_workers=1)  # one worker: strict round-robin order
    yield b
    b.down()


def test_deploy_balance_bench_and_down(backend, tmp_path):
    base = _free_ports(2)[0]  # the second server on the same address gets the next port
    backend.up(ClusterSpec(nodes=2, server="flask", port=base))
    st = backend.status()
    assert [s["name"] for s in st["servers"]] == ["restserver-0", "restserver-1"]
    assert [s["port"] for s in st["servers"]] == [base, base + 1]
    assert [s["status"]["node"] for s in st["servers"]] == ["restserver-0", "restserver-1"]
    assert st["balancer"]["mode"] == "process"
    assert backend.url == f"http://127.0.0.1:{backend.balancer_port}"
    conf = (tmp_path / "opt-restserver" / "nginx-loadbalancer-0" / "nginx.conf").read_text()
    assert f"server 127.0.0.1:{base};" in conf and f"server 127.0.0.1:{base + 1};" in conf
    assert "worker_connections 4096;" in conf

    nodes = [_get(backend.url + "/status")["node"] for _ in range(4)]
    assert sorted(nodes) == ["restserver-0", "restserver-0", "restserver-1", "restserver-1"]
    assert nodes[0] != nodes[1]

    run = backend.run_ab(["ab", "-p", "{payload}", "-T", "application/json", "-m", "POST", "-c", "4", "-n", "40",
                          "-s", "10", "-r", "-e", "{percentiles}", "-g", "{gnuplot}", backend.url + "/fibonacci"],
                         b'{"fibonacci_number": 20}', timeout=60)
    assert run.exit_code == 0, run.stderr
    assert "Complete requests:      40" in run.stdout
    assert "Failed requests:        0" in run.stdout
    assert run.percentiles_csv.splitlines()[0] == "Percentage served,Time in ms"
    assert len(run.percentiles_csv.splitlines()) == 102  # header + 0..100
    assert len(run.gnuplot_tsv.splitlines()) == 41  # header + one line per request
    assert not any("{" in a for a in run.argv)
    counts = [s["status"]["requests"] for s in backend.status()["servers"]]
    assert counts == [20, 20]

    pids = [s["pid"] for s in st["servers"]] + [st["balancer"]["pid"]]
    assert all(_alive(p) for p in pids)

    backend.scale(1)  # back to the single server, no balancer
    assert backend.url == f"http://127.0.0.1:{base}"
    assert not _alive(pids[1]) and not _alive(pids[2]) and _alive(pids[0])

    backend.down()
    backend.down()  # safe twice
    deadline = time.time() + 5
    while any(_alive(p) for p in pids) and time.time() < deadline:
        time.sleep(0.1)
    assert [p for p in pids if _alive(p)] == []


def test_run_ab_without_files_and_failing_ab(backend):
    port = _free_ports(1)[0]
    run = backend.run_ab(["ab", "-n", "1", f"http://127.0.0.1:{port}/"], b"", timeout=30)
    assert run.exit_code != 0
    assert "Connection refused" in run.stderr
    assert run.percentiles_csv is None and run.gnuplot_tsv is None


def test_too_many_nodes(backend):
    with pytest.raises(ConfigError, match="only 2 server hosts"):
        backend.up(ClusterSpec(nodes=3))
