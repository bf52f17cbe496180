"""build_report keys and values (design §8), and the human-readable tables."""

from __future__ import annotations

import json

import pytest

from tests.support.analysis_data import make_row, write_csv
from labkit.errors import ConfigError, SlaSyntaxError
from labkit.analysis.report import build_report, format_report
from labkit.results import load_results
from labkit.analysis.usl import usl

PART2 = "max<=1000 mean<300 p98<400"


def _lab(tmp_path, nodes=(1, 2, 3, 4, 5)):
    """Throughput follows USL(σ=0.05, κ=0.02, λ=1000); latency = c / X(N) seconds."""
    rows = []
    for n in nodes:
        x = float(usl(n, 0.05, 0.02, 1000.0))
        for c in (10, 100, 200, 500, 700, 1000, 2000, 3000):
            mean = 1000.0 * c / x
            rows.append(make_row(n, c, mean=mean, p98=1.2 * mean, max_ms=2 * mean, rps=x))
    return load_results(write_csv(tmp_path / "r.csv", rows))


def test_report_answers_and_keys(tmp_path):
    df = _lab(tmp_path)
    report = build_report(df, PART2, users=500)
    # mean = 1000 c / X < 300 -> c < 0.3 X (p98 < 400 -> c < X / 3, max <= 1000 -> c <= X / 2)
    # X: 1000, 1826.1, 2459.0, 2877.7, 3125.0 -> limits 300, 548, 738, 863, 938
    assert report["sla"] == PART2
    assert report["users"] == 500
    assert report["max_concurrency"] == {1: 200, 2: 500, 3: 700, 4: 700, 5: 700}
    assert report["nodes_needed"] == 2
    assert report["extrapolation"] is None
    assert report["usl"]["sigma"] == pytest.approx(0.05, abs=1e-3)
    assert report["usl"]["kappa"] == pytest.approx(0.02, abs=1e-3)
    assert report["usl"]["lambda"] == pytest.approx(1000.0, rel=1e-3)
    assert report["tested"] == {"nodes": [1, 2, 3, 4, 5],
                                "concurrency": [10, 100, 200, 500, 700, 1000, 2000, 3000]}
    # node counts stay integers in Python; JSON (the CLI, summary.json) writes them as strings
    assert json.loads(json.dumps(report))["max_concurrency"] == {"1": 200, "2": 500, "3": 700, "4": 700, "5": 700}


def test_users_never_reached_gives_labelled_extrapolation(tmp_path):
    df = _lab(tmp_path)
    report = build_report(df, PART2, users=2000)
    assert report["nodes_needed"] is None
    ex = report["extrapolation"]
    assert ex["label"].startswith("extrapolation (USL fit)")
    # the fitted throughput peaks at ~3271 req/s (6.9 nodes): 700·X(N)/X(5) never reaches 2000
    assert ex["nodes"] is None and "peaks at about 6.9 nodes" in ex["note"]
    text = format_report(report)
    assert "Nodes needed for 2000 users: none of the tested node counts (1, 2, 3, 4, 5)" in text
    assert "extrapolation (USL fit) — not measured: not reachable by adding nodes" in text


def test_extrapolation_refused_with_two_node_counts(tmp_path):
    df = _lab(tmp_path, nodes=(1, 2))
    report = build_report(df, PART2, users=2000)
    assert report["usl"] is None
    assert report["extrapolation"]["nodes"] is None
    assert "3 or more distinct sizes" in report["extrapolation"]["refused"]
    assert any("no USL fit of throughput vs nodes" in n for n in report["notes"])
    assert "refused — USL fit needs throughput at 3 or more" in format_report(report)


def test_without_users(tmp_path):
    report = build_report(_lab(tmp_path, nodes=(1,)), "mean<300")
    assert report["users"] is None and report["nodes_needed"] is None and report["extrapolation"] is None
    assert report["max_concurrency"] == {1: 200}


def test_lowest_level_failing_is_null(tmp_path):
    df = load_results(write_csv(tmp_path / "r.csv", [make_row(1, 10, mean=500.0), make_row(2, 10, mean=5.0)]))
    report = build_report(df, "mean<300", users=10)
    assert report["max_concurrency"] == {1: None, 2: 10}
    assert report["nodes_needed"] == 2
    assert '"1": null' in json.dumps(report)


def test_format_report_tables(tmp_path):
    text = format_report(build_report(_lab(tmp_path, nodes=(1, 2)), PART2, users=500))
    lines = text.splitlines()
    assert lines[0] == f"SLA: {PART2}"
    assert "      1  200" in lines and "      2  500" in lines
    assert "Nodes needed for 500 users: 2" in text
    grid = [ln for ln in lines if ln.strip().startswith("1 ") and "pass" in ln][0]
    assert grid.split()[1:] == ["pass", "pass", "pass", "FAIL", "FAIL", "FAIL", "FAIL", "FAIL"]
    assert "nodes=1   c=500    max 1000 > 1000" not in text  # max 1000 <= 1000 holds
    assert "nodes=1   c=500    mean 500 >= 300" in text


def test_bad_inputs(tmp_path):
    df = _lab(tmp_path, nodes=(1,))
    with pytest.raises(SlaSyntaxError):
        build_report(df, "mean>3")
    with pytest.raises(ConfigError):
        build_report(df, "mean<3", users=0)
    with pytest.raises(ConfigError, match="no results rows"):
        build_report(df.iloc[0:0], "mean<3")


def test_extrapolation_gives_a_node_count(tmp_path):
    df = _lab(tmp_path, nodes=(1, 2, 3))
    report = build_report(df, PART2, users=900)
    assert report["max_concurrency"] == {1: 200, 2: 500, 3: 700}
    assert report["nodes_needed"] is None
    ex = report["extrapolation"]
    # 700·X(N)/X(3): X(5)=3125 -> 889 < 900, X(6)=3243 -> 923 >= 900
    assert ex["nodes"] == 6
    assert (ex["reference_nodes"], ex["reference_max_concurrency"]) == (3, 700)
    assert "extrapolation (USL fit) — not measured: 6 nodes" in format_report(report)


def test_points_carry_status_and_the_text_marks_borderline_and_refined_answers(tmp_path):
    sla = "max<=1500 mean<200 p98<=300"
    rows = [make_row(1, 10, mean=90.0, p98=150.0, max_ms=300.0),
            make_row(1, 20, mean=195.0, p98=270.0, max_ms=370.0),
            make_row(1, 23, mean=198.0, p98=329.0, max_ms=470.0),  # a probe: p98 10 % over
            make_row(1, 50, mean=450.0, p98=550.0, max_ms=620.0),
            make_row(1, 100, aborted=True),
            make_row(2, 10, mean=50.0, non_2xx=1000, failed=1000)]
    report = build_report(load_results(write_csv(tmp_path / "p.csv", rows)), sla)
    points = {(p["nodes"], p["concurrency"]): p for p in report["points"]}
    assert [points[k]["status"] for k in sorted(points)] == ["ok", "ok", "ok", "ok", "aborted", "refused"]
    assert points[(1, 20)]["borderline"] == "mean 195 ms, 2 % under 200: a repeat may decide differently"
    assert points[(1, 23)]["meets"] is False and points[(1, 23)]["p98_ms"] == 329.0
    assert points[(2, 10)]["reason"].startswith("refused: all 1000 responses non-2xx (the balancer had no live server")
    assert set(points[(1, 10)]) >= {"littles_law", "bottleneck", "mean_ms", "max_ms"}
    assert report["max_concurrency"] == {1: 20, 2: None}
    assert report["max_concurrency_handout_levels"] == {1: 20, 2: None} and report["refined"] == [1]
    assert json.loads(json.dumps(report))["points"][0]["status"] == "ok"
    text = format_report(report)
    assert "      1  20  (refined; on the handout's levels: 20)" in text
    grid = {ln.split()[0]: ln.split()[1:] for ln in text.splitlines() if ln.startswith(("  1 ", "  2 "))}
    assert grid == {"1": ["pass", "pass", "FAIL", "FAIL", "aborted"], "2": ["refused", "-", "-", "-", "-"]}
    assert "Borderline points (the deciding clause within 10 % of its bound)" in text
    assert "nodes=1   c=23     p98 329 ms, 10 % over 300: a repeat may decide differently" in text


def test_cli_report_json_gives_the_plan_and_the_holdout_errors(tmp_path):
    """`labkit report CSV --sla ... --users 2000 --json`: servers, balancer type, tester, cost, holdout errors."""
    import subprocess
    import sys

    rows = []
    for n in (1, 2, 3, 4, 5):  # servers 80 % busy at 200 req/s each
        x = 200.0 * n
        for c in (10, 50, 100, 200):
            mean = 1000.0 * c / x
            rows.append(make_row(n, c, mean=mean, p98=mean * 1.2, max_ms=mean * 1.5, time_taken_s=1000 / x, rps=x,
                                 server_cpu_s=0.8, tester_cpu_s=0.025, tester_machine_type="f1-micro",
                                 balancer_cpu_s=0.1 if n > 1 else None,
                                 balancer_machine_type="f1-micro" if n > 1 else None))
    csv = write_csv(tmp_path / "r.csv", rows)
    res = subprocess.run([sys.executable, "-m", "labkit.cli", "report", str(csv), "--sla", "max<=1000 mean<300 p98<400",
                          "--users", "2000", "--json"], capture_output=True, text=True, timeout=240)
    assert res.returncode == 0, res.stderr
    cap = json.loads(res.stdout)["capacity"]
    plan = cap["plan"]
    assert plan["servers"] >= cap["servers_min"] == 27 and plan["predicted"]["meets"]
    assert plan["balancer"]["machine_type"] and plan["balancer"]["workers"] >= 1
    assert plan["tester"]["processes"] >= 1 and plan["tester"]["machines"] >= 1
    assert plan["cost_per_hour"] > 0 and plan["label"].startswith("model")
    assert cap["model"]["calibrated_on"] == [1, 2, 3] and cap["model"]["checked_on"] == [4, 5]
    assert set(cap["model"]["errors"]) >= {"mean_median_abs_pct", "p98_median_abs_pct", "pass_fail_agreement"}
    assert plan["holdout_errors"] == cap["model"]["errors"]


def test_an_extrapolation_past_the_measured_balancers_cap_says_it_scales_servers_only():
    """A linear USL fit (227 req/s per node) extrapolated to 50 nodes behind an f1-micro balancer that caps at
    1,593 req/s (the shape of a quick lab of 2026-12-07): the report says the fit knows no balancer."""
    from labkit.analysis.report import _past_a_cap

    report = {"usl": {"sigma": 0.0, "kappa": 0.0, "lambda": 227.0, "peak_n": None, "peak_throughput": None,
                      "r2": 0.94, "points": 4},
              "capacity": {"roles": {"server": {"capacity_rps": 267.0, "measured_machine_type": "f1-micro"},
                                     "balancer": {"capacity_rps": 1593.0, "measured_machine_type": "f1-micro"},
                                     "tester": {"capacity_rps": 16662.0, "measured_machine_type": "f1-micro"}}}}
    assert _past_a_cap(report, {"nodes": 50}) == (
        "it scales servers only: at 50 nodes the fit gives 11,350 req/s, past the measured f1-micro balancer's cap "
        "of about 1,593 req/s (model; reached near 7.1 nodes), so that many nodes need a bigger balancer too")
    assert _past_a_cap(report, {"nodes": 7}) == ""  # 1,589 req/s: within the cap
    assert _past_a_cap({**report, "capacity": None}, {"nodes": 50}) == ""  # no CPU columns: no cap to compare
