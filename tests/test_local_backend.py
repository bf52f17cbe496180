"""The local backend with real processes: Flask servers, nginx, cgroups, state, down."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from labkit import processes, state
from labkit.backends.local import cgroups
from labkit.ab import AbCommand
from labkit.backends.base import ClusterSpec
from labkit.backends.local.backend import LocalBackend
from labkit.errors import ConfigError, NginxConfigError
from labkit.backends.local.nginx import LocalNginx

from tests.support.local import labkit_cgroups


def _status(url: str) -> dict:
    with urllib.request.urlopen(f"{url}/status", timeout=5) as resp:
        return json.loads(resp.read())


def _pids(backend: LocalBackend) -> list[processes.ProcessRecord]:
    return [processes.ProcessRecord(**r) for r in state.load(backend.settings, "local")["processes"].values()]


@pytest.mark.cgroups
def test_up_gives_each_machine_its_address_and_cgroup_limits(local_env):
    b = LocalBackend(local_env["settings"])
    b.up(ClusterSpec(nodes=2, machine_type="f1-micro"))
    net = local_env["net"]
    assert b.url == f"http://{net}.2:8080"
    assert _status(f"http://{net}.10:8080")["node"] == "restserver-0"
    assert _status(f"http://{net}.11:8080")["node"] == "restserver-1"
    groups = cgroups.detect(b.settings)
    assert groups.version in ("v1", "v2"), "this machine's cgroups are writable; the test expects limits"
    period = groups.period_us
    assert b.cpu_limited
    rel = f"labkit/{b.run_id}/restserver-0"
    pid = str(_pids(b)[[r.role for r in _pids(b)].index("restserver-0")].pid)
    if groups.version == "v1":
        cpu = groups.bases["cpu"] / rel
        assert (cpu / "cpu.cfs_quota_us").read_text().strip() == str(int(0.2 * period))
        assert int((groups.bases["memory"] / rel / "memory.limit_in_bytes").read_text()) == int(0.6 * 1024**3) // 4096 * 4096
        assert pid in (cpu / "cgroup.procs").read_text().split()
    else:
        assert (groups.base / rel / "cpu.max").read_text().split() == [str(int(0.2 * period)), str(period)]
        assert pid in (groups.base / rel / "cgroup.procs").read_text().split()
    # each f1-micro is one vCPU: its processes run on one host CPU, servers round-robin, the balancer
    # on the CPU before the last
    host = sorted(os.sched_getaffinity(0))
    for r in _pids(b):
        slot = {"loadbalancer-0": -2, "tester-0": -1}.get(r.role) or int(r.role.split("-")[1])
        want = {host[slot % len(host)]}
        assert os.sched_getaffinity(r.pid) == want, r.role
    _status(f"http://{net}.10:8080")  # a request's thread inherits it

    seen = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            seen.add(frozenset(os.sched_getaffinity(int(task.name))))
        except ProcessLookupError:  # a request's thread that has just ended
            pass
    assert seen == {frozenset({host[0]})}
    b.down()


def test_balancer_round_robins_and_scales(local_env):
    b = LocalBackend(local_env["settings"])
    b.up(ClusterSpec(nodes=2))
    seen = [_status(b.url)["node"] for _ in range(6)]
    # an f1-micro balancer runs one nginx worker (one per vCPU, not per core of this machine),
    # so sequential calls alternate strictly, as on the handout's balancer
    assert all(a != b_ for a, b_ in zip(seen, seen[1:])), seen
    assert sorted(set(seen)) == ["restserver-0", "restserver-1"]
    conf = b.balancer_config()
    assert "worker_processes 1;" in conf
    assert f"server {local_env['net']}.10:8080;" in conf and f"server {local_env['net']}.11:8080;" in conf
    before = {r.role: r.pid for r in _pids(b)}
    b.ensure(ClusterSpec(nodes=2))  # the running spec: nothing restarts
    assert {r.role: r.pid for r in _pids(b)} == before
    b.ensure(ClusterSpec(nodes=2, fib_max=500))  # anything but nodes changed: the servers restart, nginx stays
    after = {r.role: r.pid for r in _pids(b)}
    assert after["loadbalancer-0"] == before["loadbalancer-0"] and after["restserver-0"] != before["restserver-0"]
    assert b.spec == ClusterSpec(nodes=2, fib_max=500)
    b.scale(3)
    seen = {_status(b.url)["node"] for _ in range(9)}
    assert seen == {"restserver-0", "restserver-1", "restserver-2"}
    b.scale(1)  # the handout's single server: no balancer, the server directly
    roles = {r.role for r in _pids(b)}
    assert roles == {"restserver-0"}
    assert b.url.endswith(f"{local_env['net']}.10:8080")
    assert b.balancer_config().startswith("(no balancer is running")
    b.down()


@pytest.mark.cgroups
def test_down_from_another_shell_leaves_nothing(local_env):
    b = LocalBackend(local_env["settings"])
    b.up(ClusterSpec(nodes=2, server="gunicorn", workers=2))
    records = _pids(b)
    assert len(records) == 3 and all(r.alive() for r in records)
    run_dir = b.run_dir
    assert run_dir.is_dir()
    res = subprocess.run([sys.executable, "-m", "labkit.cli", "down"], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["stopped"] == ["restserver-0", "restserver-1", "loadbalancer-0"]
    assert not any(r.alive() for r in records)
    assert labkit_cgroups(local_env["state_dir"]) == []
    assert not run_dir.exists()
    assert state.load(b.settings, "local") is None


def test_invalid_balancer_config_keeps_the_old_one_serving(local_env):
    b = LocalBackend(local_env["settings"])
    b.up(ClusterSpec(nodes=2))
    nginx = LocalNginx(b.run_dir / "nginx", b.address("loadbalancer-0"), 8080)
    before = nginx.conf.read_text()
    bad = before.replace("worker_connections 4096;", "worker_connections four;")
    with pytest.raises(NginxConfigError, match=r'rejected the new configuration \(invalid number "four" in .*nginx.conf.new:\d+\)'):
        nginx.apply(text=bad)
    assert nginx.conf.read_text() == before
    assert _status(b.url)["node"].startswith("restserver-")
    b.down()


def test_bad_network_prefix_is_a_clear_error(local_env):
    settings = local_env["settings"].replace(local_net="10.0.0")
    with pytest.raises(ConfigError, match="loopback"):
        LocalBackend(settings)
    assert state.load(settings, "local") is None


def test_without_cgroups_runs_unlimited_and_records_it(local_env):
    b = LocalBackend(local_env["settings"].replace(cgroups="off"))
    b.up(ClusterSpec(nodes=1))
    assert b.cpu_limited is False
    assert b.status()["cgroups"] == "unlimited"
    assert _status(b.url)["node"] == "restserver-0"
    b.down()


@pytest.mark.cgroups
def test_attaching_can_resize_the_tester_for_the_next_ab_run(local_env):
    b = LocalBackend(local_env["settings"])
    b.up(ClusterSpec(nodes=1))
    again = LocalBackend(local_env["settings"], tester_machine_type="e2-standard-2")  # e.g. notebook 03, same lab
    assert again.run_id == b.run_id
    assert state.load(b.settings, "local")["tester_machine_type"] == "e2-standard-2"
    run = again.run_ab(AbCommand(again.url, 1, 5), timeout=30)
    assert run.exit_code == 0 and "Complete requests:      5" in run.stdout
    assert run.argv[0].endswith("/ab") and run.argv[run.argv.index("-p") + 1].endswith("/payload.json")
    assert len(run.percentiles_csv.splitlines()) == 102 and len(run.gnuplot_tsv.splitlines()) == 6
    assert not (again.run_dir / "ab").exists() or not any((again.run_dir / "ab").iterdir())  # files cleaned up
    groups = cgroups.detect(b.settings)
    rel = f"labkit/{b.run_id}/tester-0"
    want = str(int(2 * groups.period_us))
    if groups.version == "v1":
        assert (groups.bases["cpu"] / rel / "cpu.cfs_quota_us").read_text().strip() == want
    else:
        assert (groups.base / rel / "cpu.max").read_text().split()[0] == want
    with pytest.raises(ConfigError, match="unknown machine type"):
        LocalBackend(local_env["settings"], tester_machine_type="e2-huge")
    again.down()


@pytest.mark.cgroups
def test_down_removes_groups_whose_record_was_lost(local_env):
    """Two objects attached to one lab can overwrite each other's record; down still cleans up."""
    b = LocalBackend(local_env["settings"])
    b.up(ClusterSpec(nodes=1))
    b.run_ab(AbCommand(b.url, 1, 3), timeout=30)
    saved = state.load(b.settings, "local")
    kept = [d for d in saved["cgroup_dirs"] if "tester-0" not in d]
    assert len(kept) < len(saved["cgroup_dirs"])  # the tester's groups were recorded...
    saved["cgroup_dirs"] = kept  # ...and a stale writer drops them
    state.save(b.settings, "local", saved)
    assert any("tester-0" in d for d in labkit_cgroups(local_env["state_dir"]))
    assert LocalBackend(b.settings).down() == {"backend": "local", "stopped": ["restserver-0"], "left": []}
    assert labkit_cgroups(local_env["state_dir"]) == []
