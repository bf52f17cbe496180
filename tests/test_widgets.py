"""SlaExplorer: set widget values as a student would, read the recomputed answers."""

from __future__ import annotations

import pytest

from tests.support.analysis_data import cpu_rows, grid_rows, write_csv
from labkit.results import load_results
from labkit.dashboard.widgets import SlaExplorer


@pytest.fixture
def df(tmp_path):
    # latency ~ c / n: mean = c/n, p98 = 1.4 c/n, max = 3 c/n
    rows = grid_rows(lambda n, c: (c / n, 1.4 * c / n, 3 * c / n),
                     nodes=(1, 2, 3), levels=(10, 20, 50, 100, 200, 500, 1000))
    return load_results(write_csv(tmp_path / "r.csv", rows))


def test_initial_answers(df):
    ex = SlaExplorer(df, "max<=1500 mean<200 p98<=300", users=300)
    assert ex.max_concurrency == {1: 100, 2: 200, 3: 500}
    assert ex.nodes_needed == 3
    assert ex.answers_text.splitlines() == [
        "Max concurrency within the SLA: 1 node: 100, 2 nodes: 200, 3 nodes: 500",
        "Nodes needed for 300 users: 3",
        # every row: 1000 requests in 2 s = 500 req/s; 300 users / 0.2 s = 1,500 req/s
        "Capacity (model, Little's law): 300 users need ≥ 1,500 req/s; so at least 3 servers at 500 req/s each "
        "(a lower bound from the mean clause); "
        "which role saturates first is not measured in these results. "
        "Bottleneck: not measured (no per-role CPU columns)",
    ]
    assert ex.heatmap.value[:4] == b"\x89PNG"
    assert ex.table.value.count("class='pass'") == 15 and ex.table.value.count("class='fail'") == 6
    assert ex.table.value.count("pass ← max") == 3
    for column in ("status", "req/s", "connect (ms)", "X·R/N", "busiest role"):
        assert f"<th>{column}</th>" in ex.table.value
    assert ex.capacity["servers_min"] == 3


def test_changing_bounds_operator_and_users(df):
    ex = SlaExplorer(df, "max<=1500 mean<200 p98<=300", users=300, show_heatmap=False)
    ex.bounds["mean"].value = 1000       # now p98 <= 300 binds: c/n <= 214
    assert ex.max_concurrency == {1: 200, 2: 200, 3: 500}
    ex.enabled["p98"].value = False       # now max <= 1500 binds: c/n <= 500
    assert ex.max_concurrency == {1: 500, 2: 1000, 3: 1000}
    assert str(ex.sla) == "max<=1500 mean<1000"
    ex.ops["max"].value = "<"             # 3c/n == 1500 (n=1, c=500; n=2, c=1000) now fails
    assert ex.max_concurrency == {1: 200, 2: 500, 3: 1000}
    ex.users.value = 700
    assert ex.nodes_needed == 3
    assert ex.answers_text.splitlines()[1] == "Nodes needed for 700 users: 3"
    assert "SLA max&lt;1500 mean&lt;1000" in ex.answers.value  # HTML-escaped


def test_users_beyond_every_node_count_shows_labelled_extrapolation(df):
    ex = SlaExplorer(df, "max<=1500 mean<200 p98<=300", users=5000, show_heatmap=False)
    lines = ex.answers_text.splitlines()
    assert lines[1] == "Nodes needed for 5000 users: none of the tested node counts (1, 2, 3)"
    # every row has the same rps, so the throughput fit cannot scale capacity up
    assert lines[2].startswith("extrapolation (USL fit) — not measured: not reachable by adding nodes")


def test_no_clause_enabled_is_reported_not_raised(df):
    ex = SlaExplorer(df, "mean<200", users=100, show_heatmap=False)
    assert [ex.enabled[m].value for m in ("max", "mean", "p98")] == [False, True, False]
    ex.enabled["mean"].value = False
    assert ex.answers_text.startswith("Invalid SLA: an SLA needs at least one clause")
    assert ex.table.value == "" and ex.nodes_needed is None
    ex.enabled["mean"].value = True
    assert ex.max_concurrency == {1: 100, 2: 200, 3: 500}


def test_fixed_clause_kept(df):
    ex = SlaExplorer(df, "p50<=5", users=10, show_heatmap=False)
    # p50 = 0.8 mean = 0.8 c / n <= 5: only c = 10 with n >= 2 (and n = 1: 8 > 5 fails)
    assert str(ex.sla) == "p50<=5"
    assert ex.max_concurrency == {1: None, 2: 10, 3: 10}
    assert ex.nodes_needed == 2


def test_every_percentile_clause_is_editable(df):
    ex = SlaExplorer(df, "mean<200", users=100, show_heatmap=False, all_percentiles=True)
    assert list(ex.enabled) == ["max", "mean", "p50", "p66", "p75", "p80", "p90", "p95", "p98", "p99"]
    assert [m for m, box in ex.enabled.items() if box.value] == ["mean"]
    ex.enabled["p50"].value = True
    ex.bounds["p50"].value = 40          # p50 = 0.8 c/n <= 40: c/n <= 50
    assert str(ex.sla) == "mean<200 p50<=40"
    assert ex.max_concurrency == {1: 50, 2: 100, 3: 100}


def test_the_bottleneck_is_named_from_the_cpu_columns(tmp_path):

    df = load_results(write_csv(tmp_path / "cpu.csv", cpu_rows()))
    ex = SlaExplorer(df, "max<=1000 mean<300 p98<400", users=2000, show_heatmap=False)
    last = ex.answers_text.splitlines()[-1]
    assert last.startswith("Capacity (model, Little's law): 2000 users need ≥ 6,667 req/s; so at least 27 servers")
    assert last.endswith("Bottleneck: balancer")
    assert "the balancer must be at least e2-medium" in last  # at the mean bound's throughput (no model here)
    assert "<td>server</td>" in ex.table.value  # the busiest role per point: servers at 80 % here
