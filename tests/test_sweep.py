"""Sweeps on the real local backend: the CSV contract, scaling, aborts, resume, the lock."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import pandas as pd
import pytest

from labkit import profiles, results, state
from labkit.backends.base import ClusterSpec
from labkit.backends.local.backend import LocalBackend
from labkit.errors import ConfigError, LockError, SlaSyntaxError
from labkit.record import COLUMNS, EXTRA_COLUMNS, Measurement
from labkit.sweep import scale_grids, Grid, locked, point_key, profiles_grid, run_sweep
from tests.data.capture import silent_listener
from tests.support.local import labkit_cgroups


def _rows(path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.mark.cgroups
@pytest.mark.serial
def test_cli_sweep_two_nodes_scale_and_nothing_is_left(local_env):
    """The design's check: 4 rows with the §7 columns; 2 nodes >= 1.6x one node at c=100."""
    out = local_env["tmp"] / "runs" / "x.csv"
    res = subprocess.run(
        [sys.executable, "-m", "labkit.cli", "sweep", "--backend", "local", "--nodes", "1,2",
         "--concurrency", "10,100", "--requests", "400", "--machine-type", "f1-micro", "--out", str(out)],
        capture_output=True, text=True, timeout=240,
    )
    assert res.returncode == 0, res.stderr
    with open(out, newline="") as fh:
        header = next(csv.reader(fh))
    assert tuple(header) == COLUMNS + EXTRA_COLUMNS
    rows = _rows(out)
    assert [(r["nodes"], r["concurrency"]) for r in rows] == [("1", "10"), ("1", "100"), ("2", "10"), ("2", "100")]
    assert all(r["complete"] == "400" and r["failed"] == "0" and r["aborted"] == "false" for r in rows)
    assert all(r["backend"] == "local" and r["machine_type"] == "f1-micro" and r["cpu_limited"] == "true" for r in rows)
    rps = {int(r["nodes"]): float(r["rps"]) for r in rows if r["concurrency"] == "100"}
    assert rps[2] >= 1.6 * rps[1], rps
    # the lab came up for the sweep, so it went down after it: nothing left
    assert state.load(local_env["settings"], "local") is None
    assert labkit_cgroups(local_env["state_dir"]) == []
    df = results.load_results(out)
    assert len(df) == 4 and df["p98_ms"].notna().all()


class HangingAtOneNode(LocalBackend):
    """The real local backend, except that with one node ab talks to a server that never answers."""

    hang_url = None

    @property
    def url(self) -> str:
        if self.spec and self.spec.nodes == 1:
            return self.hang_url
        return super().url


def test_a_70007_abort_is_recorded_and_the_sweep_goes_on(local_env):
    hang, stop = silent_listener()
    try:
        b = HangingAtOneNode()
        b.hang_url = hang
        grid = Grid(ClusterSpec(), nodes=(1, 2), concurrency=(10,), requests=50, timeout_s=1, retries=1)
        out = local_env["tmp"] / "abort.csv"
        run_sweep(b, grid, out, progress=False)
        b.down()
    finally:
        stop()
    rows = _rows(out)
    assert [r["nodes"] for r in rows] == ["1", "2"]
    assert rows[0]["aborted"] == "true" and rows[0]["attempts"] == "2"
    assert "70007" in rows[0]["abort_reason"]
    assert rows[0]["mean_ms"] == "" and rows[0]["p98_ms"] == ""
    assert rows[1]["aborted"] == "false" and rows[1]["complete"] == "50"
    df = results.load_results(out)
    assert df["aborted"].tolist() == [True, False]


def test_resume_measures_only_the_missing_points(local_env):
    b = LocalBackend()
    out = local_env["tmp"] / "r.csv"
    spec = ClusterSpec()
    run_sweep(b, Grid(spec, nodes=(1,), concurrency=(10, 20), requests=60), out, progress=False)
    first = _rows(out)
    with pytest.raises(ConfigError, match="--resume"):
        run_sweep(b, Grid(spec, nodes=(1,), concurrency=(10, 20, 30), requests=60), out, progress=False)
    assert _rows(out) == first  # refused without touching the file
    run_sweep(b, Grid(spec, nodes=(1,), concurrency=(10, 20, 30), requests=60), out, resume=True, progress=False)
    rows = _rows(out)
    assert rows[:2] == first
    assert [r["concurrency"] for r in rows] == ["10", "20", "30"]
    # every row carries the host's calibration (once per process), bursting and the quota scale;
    # the provenance the calibration of the first run, and the resumed run's under its run id
    prov = json.loads(out.with_suffix(".provenance.json").read_text())
    cal = prov["calibration"]
    # (this lab runs without cgroups, so there is no quota to burst above: burst is recorded false)
    assert cal["run_id"] == rows[0]["run_id"] and cal["burst"] is False and cal["cpu_scale"] == 1.0
    assert cal["steal_pct_over_sweep"] is not None and cal["cpu_ms_per_request"] > 0
    assert {r["host_cpu_ms_per_request"] for r in rows} == {str(round(cal["cpu_ms_per_request"], 3))}
    assert {(r["burst"], r["cpu_scale"]) for r in rows} == {("false", "1.0")}
    assert all(r["steal_pct"] != "" for r in rows)
    assert list(prov["calibrations"]) == [rows[2]["run_id"]] != [rows[0]["run_id"]]
    b.down()


def test_a_second_sweep_on_the_same_file_is_refused(local_env):
    out = local_env["tmp"] / "locked.csv"
    with locked(out):
        with pytest.raises(LockError, match="being written by another sweep"):
            run_sweep(LocalBackend(), Grid(ClusterSpec(), nodes=(1,), concurrency=(10,), requests=20), out,
                      progress=False)
    assert not out.exists()
    assert state.load(local_env["settings"], "local") is None  # nothing was started


def test_bad_grid_is_one_clear_error():
    with pytest.raises(ConfigError, match="between 1 and --requests"):
        Grid(ClusterSpec(), nodes=(1,), concurrency=(10, 500), requests=100)
    for bad in (0, -2, 1.5, "x", True, None):
        with pytest.raises(ConfigError, match="--repeats must be a positive integer"):
            Grid(ClusterSpec(), nodes=(1,), concurrency=(10,), requests=100, repeats=bad)
    with pytest.raises(SlaSyntaxError):
        Grid(ClusterSpec(), nodes=(1,), concurrency=(10,), requests=100, refine="mean>3")


def test_profiles_grid_and_its_points():
    spec = ClusterSpec(machine_type="e2-medium", server="gunicorn", workers=3)
    quick = profiles_grid("quick", spec)
    assert (quick.nodes, quick.concurrency, quick.requests, quick.requests_per_user, quick.retries) == (
        (1, 2, 3, 5), (1, 2, 5, 10, 20, 50, 100, 200), 500, 5, 1)
    assert [p.requests for p in quick.points()][-3:] == [500, 500, 1000]  # max(500, 5 × users) at 50, 100, 200
    # notebook 02's (and `labkit sweep --profile quick`'s) grids: 1 node refined, 2-5 nodes, 2,000 users at 5
    one, more, top = scale_grids("quick", spec)
    assert (one.nodes, one.refine, more.nodes, more.concurrency, more.refine) == (
        (1,), "max<=1500 mean<200 p98<=300", (2, 3, 5), (10, 50, 200, 500, 1000), None)
    assert (top.nodes, top.concurrency, [p.requests for p in top.points()]) == ((5,), (2000,), [10000])
    assert [g.nodes for g in scale_grids("quick", spec, concurrency=(10,))] == [(1, 2, 3, 5)]
    mine = profiles_grid(profiles.get("full"), spec, nodes=[2, 1], concurrency=(10,), requests=50)
    assert (mine.nodes, mine.concurrency, mine.requests, mine.timeout_s) == ((2, 1), (10,), 50, 10)
    points = mine.points()
    assert points == [Measurement(machine_type="e2-medium", server="gunicorn", workers=3, nodes=n,
                                  concurrency=10, requests=50, repeat=0) for n in (1, 2)]
    assert point_key(points[1]) == ("e2-medium", "gunicorn", 3, 2, 10, 50, 0)
    assert point_key(points[1].replace(repeat=None)) == point_key(points[1])  # rows from before repeats
    # the quick profile refines part 1 at one node, on its own levels; overriding them drops that
    assert (quick.refine, quick.refine_nodes, quick.repeats) == ("max<=1500 mean<200 p98<=300", (1,), 1)
    assert quick.refined_nodes() == (1,)
    assert profiles_grid("quick", spec, concurrency=(10, 100)).refine is None
    # an explicit SLA refines every node count; "" none; repeats from the caller
    mine = profiles_grid("quick", spec, nodes=(1, 2), refine="mean<300", repeats=3)
    assert (mine.refine, mine.refined_nodes(), mine.repeats) == ("mean<300", (1, 2), 3)
    assert [(p.nodes, p.concurrency, p.repeat) for p in mine.points()[:4]] == [
        (1, 1, 0), (1, 1, 1), (1, 1, 2), (1, 2, 0)]
    assert profiles_grid("quick", spec, refine="").refined_nodes() == ()
    assert profiles_grid("tiny", spec).refine is None
    with pytest.raises(ConfigError, match="unknown profile"):
        profiles_grid("huge", spec)


def test_cli_errors_are_one_line(local_env, cli_run):
    res = cli_run("sweep", "--nodes", "1,x", "--out", "y.csv")
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == ["labkit: error: --nodes must be comma-separated integers, like 1,2,3 (got '1,x')"]
    assert not (local_env["tmp"] / "y.csv").exists()


def test_a_lab_left_up_in_another_configuration_is_redeployed_before_measuring(local_env):
    """Rows carry their configuration; the sweep makes the machines match it."""
    b = LocalBackend()
    b.up(ClusterSpec(nodes=1, machine_type="e2-medium", server="gunicorn", workers=2))
    out = local_env["tmp"] / "cfg.csv"
    run_sweep(b, Grid(ClusterSpec(machine_type="f1-micro"), nodes=(1,), concurrency=(5,), requests=20), out,
              progress=False)
    assert b.spec == ClusterSpec(nodes=1, machine_type="f1-micro", server="flask", workers=1)
    argv = state.load(local_env["settings"], "local")["processes"]["restserver-0"]["argv"]
    assert "flask" in argv and "gunicorn" not in argv
    row = _rows(out)[0]
    assert (row["machine_type"], row["server"], row["workers"]) == ("f1-micro", "flask", "1")
    b.down()


@pytest.mark.parametrize("bad", ["0", "-1", "1.5", "x"])
def test_bad_repeats_is_one_line_and_nothing_is_measured(local_env, cli_run, bad):
    out = local_env["tmp"] / "rep.csv"
    res = cli_run("sweep", "--nodes", "1", "--concurrency", "10", "--requests", "20", "--repeats", bad, "--out", out)
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == [
        f"labkit: error: --repeats must be a positive integer (times to measure each point), got {bad!r}"]
    assert not out.exists()
    assert state.load(local_env["settings"], "local") is None  # nothing was started


def test_one_node_behind_nginx_measures_the_balancer_and_its_rows_stay_apart(local_env):
    """Issue 20: the balancer-cost point — the same single server reached through nginx, beside it reached
    directly. The server is not restarted, the rows record the balancer, and the analysis never pools
    them with the direct rows."""
    from labkit.analysis.balancer_cost import balancer_cost
    from labkit.analysis.points import points
    from labkit.handout import handout_rows, handout_spec
    from labkit.sweep import balancer_grid

    net = local_env["net"]
    b = LocalBackend()
    spec = handout_spec("f1-micro")
    direct, behind = local_env["tmp"] / "direct.csv", local_env["tmp"] / "balancer.csv"
    run_sweep(b, Grid(spec, nodes=(1,), concurrency=(5,), requests=150), direct, progress=False)
    server_pid = state.load(local_env["settings"], "local")["processes"]["restserver-0"]["pid"]
    run_sweep(b, balancer_grid("tiny", spec, concurrency=(5,), requests=150), behind, progress=False)
    assert b.spec == handout_spec("f1-micro", balanced=True) and b.url == f"http://{net}.2:8080"
    procs = state.load(local_env["settings"], "local")["processes"]
    assert set(procs) == {"restserver-0", "loadbalancer-0"}
    assert procs["restserver-0"]["pid"] == server_pid  # putting nginx in front restarts nothing
    conf = b.balancer_config()
    assert conf.count(f"server {net}.10:8080;") == 1 and f"{net}.11" not in conf  # one upstream server

    d, v = _rows(direct)[0], _rows(behind)[0]
    assert (d["nodes"], d["balancer_machine_type"], d["balancer_cpu_s"]) == ("1", "", "")
    assert (v["nodes"], v["concurrency"], v["balancer_machine_type"]) == ("1", "5", "f1-micro")
    assert v["complete"] == "150" and float(v["balancer_cpu_s"]) > 0 and float(v["server_cpu_s"]) > 0

    dd, vv = results.load_results(direct), results.load_results(behind)
    t = balancer_cost(dd, vv)
    assert list(t["concurrency"]) == [5]
    assert t.loc[0, "rps_direct"] == pytest.approx(float(d["rps"])) and t.loc[0, "rps_behind"] == pytest.approx(
        float(v["rps"]))
    assert t.loc[0, "added_mean_ms"] == pytest.approx(float(v["mean_ms"]) - float(d["mean_ms"]))
    assert t.loc[0, "balancer_cpu_ms_per_request"] == pytest.approx(float(v["balancer_cpu_s"]) / 150 * 1000)
    both = pd.concat([dd, vv], ignore_index=True)
    with pytest.raises(ConfigError, match="one node reached directly and one node behind nginx are different"):
        points(both)
    assert len(handout_rows(both, "f1-micro")) == 1  # the handout's single server: the direct row only

    b.ensure(spec)  # back to the server reached directly: nginx stopped, the server kept
    procs = state.load(local_env["settings"], "local")["processes"]
    assert set(procs) == {"restserver-0"} and procs["restserver-0"]["pid"] == server_pid
    assert b.url == f"http://{net}.10:8080"
    b.down()


def test_cli_balanced_up_sweep_and_plan(local_env, cli_run):
    """``--balanced`` on up, sweep and plan: one node behind nginx from the command line."""
    res = cli_run("up", "--balanced")
    assert res.returncode == 0, res.stderr
    shown = json.loads(res.stdout)
    assert shown["url"] == f"http://{local_env['net']}.2:8080" and shown["balanced"] is True
    out = local_env["tmp"] / "balancer.csv"
    res = cli_run("sweep", "--balanced", "--nodes", "1", "--concurrency", "3", "--requests", "30", "--out", out)
    assert res.returncode == 0, res.stderr
    row = _rows(out)[0]
    assert (row["nodes"], row["concurrency"], row["complete"], row["balancer_machine_type"]) == ("1", "3", "30",
                                                                                                 "f1-micro")
    assert cli_run("down").returncode == 0
    assert state.load(local_env["settings"], "local") is None
    res = cli_run("plan", "--project", "p1", "--zone", "us-central1-a", "--nodes", "1", "--balanced", "--json")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["instances"] == ["restserver-0", "loadbalancer-0", "tester-0"]
