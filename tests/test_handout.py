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
    # no tested count supports 2000 users, so part 2 is the capacity model's bound (design §8):
    # 2000 users / 0.3 s = 6,667 req/s; the best per-server rate is 500 req/s (1 node), so ceil(13.3) = 14
    assert a["report2"]["capacity"]["per_server_rps"] == 500.0
    assert a["part2"] == 14 and a["part2_source"].startswith("model:")


def test_part2_from_report_branches():
    """Design §8: the measured nodes_needed, else the capacity model's servers_min (labelled), never the USL."""
    base = {"users": 2000, "max_concurrency": {1: 100, 2: 200}}
    ex = {"label": "extrapolation (USL fit) — not measured", "nodes": 9}
    assert handout.part2_from_report({**base, "nodes_needed": 4, "extrapolation": ex}) == (4, "measured")
    cap = {"servers_min": 22, "servers_usl": 24, "throughput_needed_rps": 6666.7, "mean_bound_s": 0.3,
           "per_server_rps": 314.1, "per_server_basis": {"nodes": 2, "concurrency": 200, "rps": 628.17},
           "roles": {"balancer": {"cpu_ms_per_request": 0.26, "machine_type": "e2-medium"}},
           "balancer_needed": "e2-medium", "bottleneck": "balancer"}
    nodes, why = handout.part2_from_report({**base, "nodes_needed": None, "extrapolation": ex, "capacity": cap})
    assert nodes == 22 and why.startswith("model:") and "not measured" in why
    nodes, why = handout.part2_from_report({**base, "nodes_needed": None, "extrapolation": ex, "capacity": {}})
    assert nodes is None and why.startswith("unanswered")
    text = handout.justify_part2({**base, "nodes_needed": None, "extrapolation": ex, "capacity": cap})
    assert "1 node(s): 100, 2 node(s): 200" in text
    assert "at least 6,667 req/s" in text and "314 req/s (628 req/s at 2 node(s), c=200)" in text
    assert "no fewer than 22 servers" in text and "puts it at 24" in text
    assert "0.26 CPU ms per request it must be at least e2-medium" in text
    no_cpu = {**cap, "roles": {}, "balancer_needed": None, "bottleneck": None}
    text = handout.justify_part2({**base, "nodes_needed": None, "capacity": no_cpu})
    assert "do not measure the balancer's CPU" in text


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
