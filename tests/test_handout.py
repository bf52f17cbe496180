"""labkit.handout: the handout's two questions answered from hand-made results, and the grid notebooks sweep."""

from __future__ import annotations

import pytest

from labkit import handout, profiles
from labkit.errors import ConfigError
from labkit.results import load_results
from labkit.sweep import profiles_grid
from tests.support.analysis_data import grid_rows, make_row, write_csv


def _lat(n, c):
    mean = 2.0 * c / n  # mean<200 holds up to c=50 on 1 node, c=200 on 4 nodes... see each test
    return mean, 1.5 * mean, 3.0 * mean


@pytest.fixture
def mixed_csv(tmp_path):
    """The handout's f1-micro/flask grid plus notebook-03 rows that must not change the answers."""
    rows = grid_rows(_lat, nodes=(1, 2, 3), levels=(10, 50, 100, 500, 1000, 2000))
    rows += [make_row(1, 10, mean=1.0, machine_type="e2-medium", server="gunicorn", workers=3, rps=900.0),
             make_row(1, 2000, mean=1.0, machine_type="e2-medium", server="gunicorn", workers=3, rps=950.0),
             make_row(1, 10, mean=30.0, machine_type="e2-medium", server="flask", rps=300.0)]
    return write_csv(tmp_path / "r.csv", rows)


def test_handout_rows_keep_only_the_handout_configuration(mixed_csv):
    df = handout.load_handout(mixed_csv, "f1-micro")
    assert len(df) == 18 and set(df["machine_type"]) == {"f1-micro"} and set(df["server"]) == {"flask"}
    with pytest.raises(ConfigError, match=r"no n1-standard-1/flask rows in these results \(they hold: e2-medium/flask, e2-medium/gunicorn, f1-micro/flask\)"):
        handout.handout_rows(load_results(mixed_csv), "n1-standard-1")


def test_answers_from_the_csv(mixed_csv):
    a = handout.answers(mixed_csv, "f1-micro")
    # part 1 (mean<200 p98<=300 max<=1500), 1 node: c=50 -> mean 100, p98 150, max 300; c=100 -> mean 200 fails
    assert a["part1"] == 50
    # part 2 (mean<300 p98<400 max<=1000): n nodes pass while 2c/n < 266.7 (p98 bound binds) and 6c/n <= 1000
    assert a["report2"]["max_concurrency"] == {1: 100, 2: 100, 3: 100}
    # no tested count supports 2000 users and these rows have no CPU columns: no validated model, so no
    # answer — servers_min (2000 / 0.3 s = 6,667 req/s at 500 req/s per server: 14) is only a lower bound
    assert a["report2"]["capacity"]["per_server_rps"] == 500.0
    assert a["part2"] is None and a["part2_source"].startswith("unanswered")
    assert "at least 14 servers by Little's law, a lower bound" in a["part2_answer"]["headline"]


PLAN = {"servers": 34, "server_machine_type": "f1-micro", "label": "model (queueing: MVA + simulation) — not measured",
        "balancer": {"kind": "one nginx balancer", "machine_type": "e2-standard-2", "count": 1, "workers": 2},
        "tester": {"processes": 1, "machines": 1, "machine_type": "e2-medium"},
        "predicted": {"mean_ms": 212.0, "p98_ms": 396.0, "max_ms": 456.0}, "cost_per_hour": 0.559,
        "holdout_errors": {"mean_median_abs_pct": 12.3, "p98_median_abs_pct": 28.0, "pass_fail_agreement": "25 of 26"}}
MODEL = {"checked_on": [4, 5], "errors": PLAN["holdout_errors"]}


def test_part2_from_report_branches():
    """Design §8: the measured nodes_needed, else the model's plan (labelled), never servers_min or the USL alone."""
    base = {"users": 2000, "max_concurrency": {1: 100, 2: 200}}
    ex = {"label": "extrapolation (USL fit) — not measured", "nodes": 9}
    assert handout.part2_from_report({**base, "nodes_needed": 4, "extrapolation": ex}) == (4, "measured")
    cap = {"servers_min": 24, "servers_usl": 28, "throughput_needed_rps": 6666.7, "mean_bound_s": 0.3,
           "per_server_rps": 282.3, "per_server_basis": {"nodes": 5, "concurrency": 50, "rps": 1358.96},
           "roles": {"balancer": {"cpu_ms_per_request": 0.086, "machine_type": "e2-medium"}},
           "balancer_needed": "e2-medium", "bottleneck": "balancer", "plan": PLAN, "model": MODEL}
    report = {**base, "nodes_needed": None, "extrapolation": ex, "capacity": cap}
    nodes, why = handout.part2_from_report(report)
    assert (nodes, why) == (34, "model plan")
    a = handout.part2_answer(report)
    assert a["servers_min"] == 24 and a["balancer"]["machine_type"] == "e2-standard-2" and a["cost_per_hour"] == 0.559
    assert a["headline"].startswith("34 servers (model") and "at least 24 by Little's law (a lower bound)" in a["headline"]
    assert "holdout error on 4,5 nodes: mean 12.3%, p98 28.0%" in a["headline"]
    nodes, why = handout.part2_from_report({**base, "nodes_needed": None, "extrapolation": ex,
                                            "capacity": {**cap, "plan": None}})
    assert nodes is None and why.startswith("unanswered")
    text = handout.justify_part2(report)
    assert "1 node(s): 100, 2 node(s): 200" in text
    assert "at least 6,667 req/s" in text and "at most 282 req/s" in text
    assert "at least 24 servers — a lower bound" in text
    # the why names the balancer and the tester constraint
    assert "one nginx balancer of type e2-standard-2 (2 nginx worker(s), one per vCPU)" in text
    assert "1 process(es) on 1 e2-medium machine(s)" in text and "34 f1-micro servers" in text


def test_justify_part1_quotes_the_deciding_numbers(mixed_csv):
    df = handout.load_handout(mixed_csv, "f1-micro")
    text = handout.justify_part1(df, 50)
    assert "up to 50 concurrent users" in text and "mean 100 ms, p98 150 ms, longest 300 ms" in text
    assert "at 100 users it fails (mean 200 >= 200" in text
    low = handout.justify_part1(df, None, sla="mean<1")
    assert low.startswith("Even the lowest tested level (10 users) breaks the SLA mean<1")


def test_require_answer_raises_not_implemented_until_answered():
    with pytest.raises(NotImplementedError):
        handout.require_answer(3, handout.UNANSWERED)
    handout.require_answer(None, 0, "a sentence")  # None is a valid answer (lowest level fails)


def test_the_handout_grid_follows_the_profile_and_the_parameters():
    """What notebooks 01/02 sweep: the profile's grid on the handout's spec, any parameter overriding it."""
    tiny = profiles.get("tiny")
    g = profiles_grid("tiny", handout.handout_spec("f1-micro"))
    assert (g.nodes, g.concurrency, g.requests, g.spec.server) == (tiny.nodes, tiny.concurrency, 100, "flask")
    g = profiles_grid("tiny", handout.handout_spec("e2-small"), nodes=[1, 3], concurrency=[5], requests=20)
    assert (g.nodes, g.concurrency, g.requests, g.spec.machine_type) == ((1, 3), (5,), 20, "e2-small")
    assert profiles_grid("tiny", handout.handout_spec("e2-small"), nodes=[1]).nodes == (1,)
    assert handout.handout_spec("f1-micro", nodes=2).nodes == 2


def test_summary_says_the_part2_answer_once_and_agrees_with_itself(tmp_path):
    """summary.json, summary.txt, the justification and the capacity conclusion give one part-2 answer."""
    import datetime as dt
    import json
    import re

    from labkit.lab import format_summary, summarize

    rows = []
    for n in (1, 2, 3, 4, 5):  # servers 80 % busy at 200 req/s each; balancer 0.1 ms, tester 0.025 ms per request
        x, t = 200.0 * n, 1000 / (200.0 * n)
        for c in (10, 50, 100, 200):
            mean = 1000.0 * c / x
            rows.append(make_row(n, c, mean=mean, p98=mean * 1.2, max_ms=mean * 1.5, time_taken_s=t, rps=x,
                                 server_cpu_s=0.8, tester_cpu_s=0.025, tester_machine_type="f1-micro",
                                 balancer_cpu_s=0.1 if n > 1 else None,
                                 balancer_machine_type="f1-micro" if n > 1 else None))
    write_csv(tmp_path / "results.csv", rows)
    s = summarize(tmp_path, profile="quick", backend="local", machine_type="f1-micro",
                  started=dt.datetime.now(dt.timezone.utc))
    json.dumps(s, default=str)
    p2 = s["part2"]
    plan = p2["plan"]
    assert p2["nodes_needed"] is None and p2["answer"] == plan["servers"] and p2["answer_source"] == "model plan"
    assert p2["servers_min_lower_bound"] < p2["answer"]
    text = format_summary(tmp_path, s)
    line = next(ln for ln in text.splitlines() if ln.startswith("Part 2"))
    # the headline, the justification and the capacity conclusion name the same plan
    for said in (line, p2["justification"], p2["capacity"]["conclusion"]):
        assert f"{plan['servers']} f1-micro servers" in said
        assert plan["balancer"]["machine_type"] in said
    counts = {int(m) for m in re.findall(r"(\d+) servers", line)}
    assert counts <= {plan["servers"], p2["servers_min_lower_bound"]}  # no third count
    assert "lower bound" in line and "holdout error" in line
