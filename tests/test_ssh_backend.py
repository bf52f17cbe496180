"""The ssh backend end to end on 127.0.0.1 through a real sshd: real service, nginx and ab."""

import json
import os
import shutil
import socket
import sys
import time
import urllib.request

import pytest

from labkit.ab import AbCommand
from labkit.backends.base import ClusterSpec
from labkit.backends.ssh.backend import SshBackend
from labkit.errors import ConfigError
from labkit.measure import measure
from labkit.backends.ssh.hosts_file import HostSpec
from labkit.settings import Settings
from tests.support.ports import free_ports
from tests.support.processes import alive

pytestmark = [pytest.mark.nginx, pytest.mark.ab, pytest.mark.sshd,
              pytest.mark.skipif(not (shutil.which("nginx") or os.path.exists("/usr/sbin/nginx"))
                                 or not shutil.which("ab"), reason="nginx and ab are needed (make test installs them)")]



def _get(url):
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=5) as r:
        return json.loads(r.read())


@pytest.fixture
def backend(sshd, tmp_path):
    def host(name):
        return HostSpec(sshd.host, user=sshd.user, port=sshd.port, key_filename=sshd.key,
                        known_hosts=sshd.known_hosts, name=name)

    lb_port = free_ports(1)[0]
    python = sys.executable  # the venv running the tests has flask and gunicorn
    b = SshBackend(Settings(state_dir=tmp_path / ".labkit"),
                   servers=[host("restserver-0"), host("restserver-1")], balancer=host("loadbalancer-0"),
                   tester=host("tester-0"), root=str(tmp_path / "opt-restserver"), python=python,
                   balancer_port=lb_port, nginx_workers=1)  # one worker: strict round-robin order
    yield b
    b.down()


def test_deploy_balance_bench_and_down(backend, tmp_path):
    base = free_ports(2)[0]  # the second server on the same address gets the next port
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
    assert backend.balancer_config() == conf  # read back over SSH

    warmed = [s["status"]["requests"] for s in st["servers"]]
    assert sum(warmed) == 100 and min(warmed) > 0  # up() warmed both servers up (ab -c 4 -n 100)

    nodes = [_get(backend.url + "/status")["node"] for _ in range(4)]
    assert sorted(nodes) == ["restserver-0", "restserver-0", "restserver-1", "restserver-1"]
    assert nodes[0] != nodes[1]

    run = backend.run_ab(AbCommand(backend.url, 4, 40, payload=b'{"fibonacci_number": 20}'), timeout=60)
    assert run.exit_code == 0, run.stderr
    assert "Complete requests:      40" in run.stdout
    assert "Failed requests:        0" in run.stdout
    assert run.percentiles_csv.splitlines()[0] == "Percentage served,Time in ms"
    assert len(run.percentiles_csv.splitlines()) == 102  # header + 0..100
    assert len(run.gnuplot_tsv.splitlines()) == 41  # header + one line per request
    assert not any("{" in a for a in run.argv)
    assert run.argv[run.argv.index("-p") + 1].startswith("/tmp/labkit-ab.")
    counts = [s["status"]["requests"] for s in backend.status()["servers"]]
    assert [c - w for c, w in zip(counts, warmed)] == [20, 20]

    # a measured point: settled first, CPU per role read on the hosts around ab
    row = measure(backend, AbCommand(backend.url, 4, 200))
    assert row.complete == 200 and not row.aborted
    assert 0 <= row.settle_s < 30
    assert (row.balancer_machine_type, row.tester_machine_type) == ("f1-micro", "f1-micro")
    # the service's own demand is ~1 ms of CPU per fib(20) request here; /proc counts in 10 ms ticks
    assert 0.02 <= row.server_cpu_s <= 200 * 0.05, row.server_cpu_s
    assert 0 < row.balancer_cpu_s < row.server_cpu_s * 3, row.balancer_cpu_s
    # ab's own CPU for 200 requests is a few ms: below one 10 ms tick it reads 0, never missing or negative
    assert row.tester_cpu_s is not None and 0 <= row.tester_cpu_s < 5, row.tester_cpu_s

    pids = [s["pid"] for s in st["servers"]] + [st["balancer"]["pid"]]
    assert all(alive(p) for p in pids)

    backend.scale(1)  # back to the single server, no balancer
    assert backend.url == f"http://127.0.0.1:{base}"
    row = measure(backend, AbCommand(backend.url, 2, 100), settle=False)
    assert row.settle_s is None and row.balancer_cpu_s is None and row.balancer_machine_type is None
    assert row.server_cpu_s > 0 and row.tester_cpu_s is not None and row.tester_cpu_s >= 0  # 10 ms ticks
    assert not alive(pids[1]) and not alive(pids[2]) and alive(pids[0])
    assert backend.balancer_config().startswith("(no balancer is running")

    root = str(tmp_path / "opt-restserver")
    assert backend.down() == {"backend": "ssh", "stopped": ["restserver-0"], "left": [f"restserver-0:{root}",
                                                                                    f"restserver-1:{root}"]}
    assert backend.down() == {"backend": "ssh", "stopped": [], "left": []}  # safe twice
    deadline = time.time() + 5
    while any(alive(p) for p in pids) and time.time() < deadline:
        time.sleep(0.1)
    assert [p for p in pids if alive(p)] == []


def test_one_node_behind_nginx_goes_through_the_balancer_and_back(backend, tmp_path):
    """``balanced``: the balancer in front of one server (the balancer-cost point), then removed again;
    the server runs on throughout."""
    port = free_ports(1)[0]
    backend.up(ClusterSpec(nodes=1, port=port))
    assert backend.url == f"http://127.0.0.1:{port}" and backend.status()["balancer"] is None
    server_pid = backend.status()["servers"][0]["pid"]
    backend.up(ClusterSpec(nodes=1, port=port, balanced=True))
    st = backend.status()
    assert backend.url == f"http://127.0.0.1:{backend.balancer_port}" and st["balancer"]["mode"] == "process"
    assert [s["pid"] for s in st["servers"]] == [server_pid]
    conf = backend.balancer_config()
    assert conf.count("server 127.0.0.1:") == 1 and f"server 127.0.0.1:{port};" in conf
    assert {_get(backend.url + "/status")["node"] for _ in range(3)} == {"restserver-0"}
    row = measure(backend, AbCommand(backend.url, 2, 100))
    assert row.complete == 100 and not row.aborted and row.balancer_machine_type == "f1-micro"
    assert row.balancer_cpu_s is not None and row.balancer_cpu_s >= 0  # /proc counts in 10 ms ticks
    nginx_pid = st["balancer"]["pid"]
    backend.up(ClusterSpec(nodes=1, port=port))  # direct again: nginx stopped, the server kept
    assert backend.url == f"http://127.0.0.1:{port}" and backend.status()["balancer"] is None
    assert backend.status()["servers"][0]["pid"] == server_pid
    deadline = time.time() + 5
    while alive(nginx_pid) and time.time() < deadline:
        time.sleep(0.1)
    assert not alive(nginx_pid)


def test_run_ab_without_files_and_failing_ab(backend):
    """A server that accepts but never answers: ab aborts (70007) and writes neither -e nor -g file."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        run = backend.run_ab(AbCommand(f"http://127.0.0.1:{port}", 1, 1, timeout_s=1), timeout=30)
    assert run.exit_code != 0
    assert "70007" in run.stderr or "timeout" in run.stderr.lower(), run.stderr
    assert run.percentiles_csv is None and run.gnuplot_tsv is None


def test_too_many_nodes(backend):
    with pytest.raises(ConfigError, match="only 2 server hosts"):
        backend.up(ClusterSpec(nodes=3))


def test_the_unit_a_server_runs_under_listens_on_its_own_address(sshd, tmp_path):
    """What the backend installs as the systemd unit: one renderer (service.unit_text), the host's address."""
    def host(name, address):
        return HostSpec(sshd.host, user=sshd.user, port=sshd.port, key_filename=sshd.key,
                        known_hosts=sshd.known_hosts, address=address, name=name)

    b = SshBackend(Settings(state_dir=tmp_path / ".labkit"), persist=False,
                   servers=[host("restserver-0", "10.128.0.5"), host("restserver-1", "10.128.0.6")],
                   balancer=host("loadbalancer-0", "10.128.0.2"), tester=host("tester-0", "10.128.0.3"))
    b.record.spec = ClusterSpec(nodes=2, server="gunicorn", workers=2, port=8080)
    try:
        unit = b.unit_text(1)
    finally:
        b.close()
    assert ("ExecStart=/opt/restserver/venv/bin/python -m gunicorn --preload -w 2 -b 10.128.0.6:8080 "
            "--chdir /opt/restserver --backlog 2048 restserver:app\n") in unit
    assert "Environment=LABKIT_NODE=restserver-1\n" in unit and "0.0.0.0" not in unit.split("[Unit]")[1]
