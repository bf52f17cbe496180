"""Several ab processes per point, merged exactly (labkit.ab_merge, design §6/§7 ``testers``).

The pure parts run on small hand-made data and on real captures; the last test runs two
real ab processes against the real service on a local lab and checks the merged row
against the percentiles of the concatenated per-request times.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from labkit import ab_merge, ab_parse
from labkit.ab import AbCommand
from labkit.backends.base import ClusterSpec
from labkit.backends.local.backend import LocalBackend
from labkit.errors import AbParseError, ConfigError
from labkit.measure import measure
from labkit.record import PERCENTILES

DATA = Path(__file__).parent / "data" / "ab"


def _rows(times, ctime=0):
    return [{"starttime": "x", "seconds": 1, "ctime": ctime, "dtime": t - ctime, "ttime": t, "wait": 0}
            for t in times]


def _report(c, complete, taken, failed=0, non_2xx=0):
    return {"concurrency": c, "complete": complete, "time_taken_s": taken, "failed": failed, "non_2xx": non_2xx}


def test_split_deals_users_and_requests_out_evenly():
    parts = ab_merge.split(AbCommand("http://127.0.0.1:8080", 5, 101), 2)
    assert [(p.concurrency, p.requests) for p in parts] == [(3, 51), (2, 50)]
    assert ab_merge.split(AbCommand("http://127.0.0.1:8080", 5, 101), 1)[0].concurrency == 5
    with pytest.raises(ConfigError, match="at least 3 users"):
        ab_merge.split(AbCommand("http://127.0.0.1:8080", 2, 10), 3)
    with pytest.raises(ConfigError, match="positive integer"):
        ab_merge.split(AbCommand("http://127.0.0.1:8080", 2, 10), 0)


def test_percentile_is_abs_e_rule():
    # ab -e: stats[int(0.5 + n*p/100)], 0 -> first, 100 -> last, clamped past the end
    data = [float(x) for x in range(1, 11)]  # n = 10
    assert ab_merge.percentile(data, 50) == 6.0  # int(0.5 + 5) = 5 -> the 6th
    assert ab_merge.percentile(data, 98) == 10.0  # int(0.5 + 9.8) = 10 -> clamped to the last
    assert (ab_merge.percentile(data, 0), ab_merge.percentile(data, 100)) == (1.0, 10.0)


def test_merge_is_over_all_requests_not_an_average_of_percentiles():
    fast = ab_merge.Part(_report(2, 4, 1.0), _rows([1, 1, 1, 1]), ended=101.0)
    slow = ab_merge.Part(_report(2, 4, 1.5, failed=1, non_2xx=2), _rows([9, 9, 9, 100], ctime=3), ended=101.6)
    m = ab_merge.merge([fast, slow])
    row = m.row
    assert (row.concurrency, row.complete, row.failed, row.non_2xx, row.testers) == (4, 8, 1, 2, 2)
    # window: first start 100.0 (101.0 - 1.0) to last end 101.6
    assert row.time_taken_s == pytest.approx(1.6) and row.rps == pytest.approx(8 / 1.6)
    assert m.skew_s == pytest.approx(0.1)  # starts 100.0 and 100.1
    assert row.mean_ms == pytest.approx((4 + 27 + 100) / 8)
    assert row.connect_mean_ms == pytest.approx(12 / 8)
    assert (row.p50_ms, row.p75_ms, row.p90_ms, row.max_ms) == (9.0, 9.0, 100.0, 100.0)
    # the mean of the two processes' medians would say 5 ms: the merge does not average
    assert row.ab_mean_ms == pytest.approx(4 * 1.6 * 1000 / 8)


def test_merge_of_one_real_capture_matches_abs_own_percentile_table():
    report = ab_parse.parse_report((DATA / "keepalive.stdout").read_text())
    rows = ab_parse.parse_gnuplot((DATA / "keepalive.g.tsv").read_text())
    row = ab_merge.merge([ab_merge.Part(report, rows, ended=50.0)]).row
    table = ab_parse.parse_percentiles((DATA / "keepalive.e.csv").read_text())
    for p in PERCENTILES:  # -g is whole ms, -e 0.001 ms: they agree to ab's rounding
        assert abs(getattr(row, f"p{p}_ms") - table[float(p)]) <= 1.0, p
    assert row.rps == pytest.approx(report["rps"], rel=0.01) and row.complete == report["complete"]


def test_merge_refuses_gnuplot_data_that_misses_requests():
    part = ab_merge.Part(_report(1, 3, 1.0), _rows([1, 2]), ended=1.0)
    with pytest.raises(AbParseError, match="completed 3 requests but its -g file holds 2"):
        ab_merge.merge([part])


def test_combined_progress_sums_the_processes():
    seen = []
    a, b = ab_merge.combined_progress(seen.append, 2)
    a(10), b(5), a(20)
    assert seen == [10, 15, 25]
    assert ab_merge.combined_progress(None, 3) == [None, None, None]


def test_two_real_ab_processes_give_one_row_with_the_concatenated_percentiles(local_env, monkeypatch, caplog):
    """k=2 against the real service: each ab on its own core, the row merged from both -g files."""
    b = LocalBackend(local_env["settings"].replace(cgroups="off"))
    b.up(ClusterSpec(nodes=1))
    assert b.max_testers() >= 2, "this test needs two CPUs"
    kept = []
    real = b._run_ab_together

    def keep(commands, timeout, progress=None):
        runs = real(commands, timeout, progress)
        kept.extend(runs)
        return runs

    monkeypatch.setattr(b, "_run_ab_together", keep)
    pinned = []
    real_machine = b._machine
    monkeypatch.setattr(b, "_machine", lambda role, mt, cpus=None: (pinned.append((role, cpus)),
                                                                    real_machine(role, mt, cpus))[1])
    caplog.set_level(logging.INFO, logger="labkit")
    done = []
    row = measure(b, AbCommand(b.url, 6, 400), settle=False, testers=2, progress=done.append)
    b.down()
    assert (row.aborted, row.testers, row.concurrency, row.requests, row.complete) == (False, 2, 6, 400, 400)
    assert len(kept) == 2 and done[-1] == 400
    # each process its share, each on its own core
    assert sorted(r.argv[r.argv.index("-c") + 1] for r, _ in kept) == ["3", "3"]
    assert sorted(r.argv[r.argv.index("-n") + 1] for r, _ in kept) == ["200", "200"]
    cores = [c for role, c in pinned if role.startswith("tester-")]
    assert len(cores) == 2 and all(len(c) == 1 for c in cores) and cores[0] != cores[1]
    # the merged percentiles are those of the concatenated per-request times
    times = sorted(float(g["ttime"]) for r, _ in kept for g in ab_parse.parse_gnuplot(r.gnuplot_tsv))
    assert len(times) == 400
    n = len(times)
    for p in PERCENTILES:
        assert getattr(row, f"p{p}_ms") == times[min(n - 1, int(0.5 + n * p / 100))], p
    assert row.max_ms == times[-1] and row.mean_ms == pytest.approx(sum(times) / n, abs=1e-3)
    # rps over the window from the first start to the last end, which holds both runs
    reports = [ab_parse.parse_report(r.stdout) for r, _ in kept]
    assert row.time_taken_s >= max(rep["time_taken_s"] for rep in reports) - 1e-3
    assert row.rps == pytest.approx(400 / row.time_taken_s, rel=1e-3)
    assert any("2 ab processes merged" in m and "start skew" in m for m in caplog.messages)


def test_a_sweep_with_two_testers_records_merged_rows_and_refuses_too_few_users(local_env, tmp_path):
    from labkit.results import load_results
    from labkit.sweep import Grid, run_sweep

    spec = ClusterSpec(nodes=1)
    with pytest.raises(ConfigError, match=r"concurrency levels \[1\] are below --testers 2"):
        Grid(spec=spec, nodes=(1,), concurrency=(1, 4), requests=60, testers=2)
    b = LocalBackend(local_env["settings"].replace(cgroups="off"))
    b.up(spec)
    with pytest.raises(ConfigError, match=r"has \d+ tester\(s\) for ab; 99 ab processes"):
        b.ensure_testers(99)
    out = run_sweep(b, Grid(spec=spec, nodes=(1,), concurrency=(2, 4), requests=60, testers=2),
                    tmp_path / "r.csv", progress=False)
    b.down()
    df = load_results(out)
    assert list(df["testers"]) == [2, 2] and list(df["concurrency"]) == [2, 4]
    assert list(df["complete"]) == [60, 60] and not df["aborted"].any()


def test_cli_plan_and_bench_take_testers(tmp_path):
    import json
    import subprocess
    import sys

    env = {**os.environ, "LABKIT_STATE_DIR": str(tmp_path / ".labkit")}  # bench --testers 0 starts nothing
    plan = subprocess.run([sys.executable, "-m", "labkit.cli", "plan", "--project", "p1", "--zone", "us-central1-a",
                           "--nodes", "1", "--testers", "3", "--ssh-source", "203.0.113.7/32", "--json"],
                          env=env, capture_output=True, text=True, timeout=60)
    assert plan.returncode == 0, plan.stderr
    assert json.loads(plan.stdout)["instances"] == ["restserver-0", "tester-0", "tester-1", "tester-2"]
    bad = subprocess.run([sys.executable, "-m", "labkit.cli", "bench", "--testers", "0"], env=env,
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "--testers" in bad.stderr
