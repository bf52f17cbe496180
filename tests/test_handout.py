"""labkit.workbook: the logic behind the notebooks' steps, on hand-made results."""

from __future__ import annotations

import pytest

from labkit import profiles, workbook
from labkit.errors import ConfigError
from labkit.gcp_requests import plan
from labkit.results import load_results
from tests.analysis_data import grid_rows, make_row, write_csv


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
    df = workbook.load_handout(mixed_csv, "f1-micro")
    assert len(df) == 18 and set(df["machine_type"]) == {"f1-micro"} and set(df["server"]) == {"flask"}
    with pytest.raises(ConfigError, match=r"no n1-standard-1/flask rows in these results \(they hold: e2-medium/flask, e2-medium/gunicorn, f1-micro/flask\)"):
        workbook.handout_rows(load_results(mixed_csv), "n1-standard-1")


def test_answers_from_the_csv(mixed_csv):
    a = workbook.answers(mixed_csv, "f1-micro")
    # part 1 (mean<200 p98<=300 max<=1500), 1 node: c=50 -> mean 100, p98 150, max 300; c=100 -> mean 200 fails
    assert a["part1"] == 50
    # part 2 (mean<300 p98<400 max<=1000): n nodes pass while 2c/n < 266.7 (p98 bound binds) and 6c/n <= 1000
    assert a["report2"]["max_concurrency"] == {"1": 100, "2": 100, "3": 100}
    assert (a["part2"], a["part2_source"]) == (None, a["part2_source"]) and a["part2_source"].startswith("unanswered")


def test_part2_from_report_branches():
    base = {"users": 2000, "max_concurrency": {"1": 100, "2": 200}}
    assert workbook.part2_from_report({**base, "nodes_needed": 4, "extrapolation": None}) == (4, "measured")
    ex = {"label": "extrapolation (USL fit) — not measured", "nodes": 9}
    assert workbook.part2_from_report({**base, "nodes_needed": None, "extrapolation": ex}) == (9, ex["label"])
    nodes, why = workbook.part2_from_report({**base, "nodes_needed": None,
                                             "extrapolation": {"label": "x", "nodes": None, "refused": "2 points"}})
    assert nodes is None and why.endswith("(2 points)")
    nodes, why = workbook.part2_from_report({**base, "nodes_needed": None, "extrapolation": {"nodes": None}})
    assert nodes is None and "no node count does" in why
    text = workbook.justify_part2({**base, "nodes_needed": None, "extrapolation": ex})
    assert "9 nodes" in text and "estimate" in text and "1 node(s): 100, 2 node(s): 200" in text


def test_justify_part1_quotes_the_deciding_numbers(mixed_csv):
    df = workbook.load_handout(mixed_csv, "f1-micro")
    text = workbook.justify_part1(df, 50)
    assert "up to 50 concurrent users" in text and "mean 100 ms, p98 150 ms, longest 300 ms" in text
    assert "at 100 users it fails (mean 200 >= 200" in text
    low = workbook.justify_part1(df, None, sla="mean<1")
    assert low.startswith("Even the lowest tested level (10 users) breaks the SLA mean<1")


def test_require_answer_raises_not_implemented_until_answered():
    with pytest.raises(NotImplementedError):
        workbook.require_answer(3, workbook.UNANSWERED)
    workbook.require_answer(None, 0, "a sentence")  # None is a valid answer (lowest level fails)


def test_vertical_table_averages_per_configuration(mixed_csv):
    t = workbook.vertical_table(load_results(mixed_csv), concurrency=(10,))
    assert list(t["machine_type"]) == ["f1-micro", "e2-medium", "e2-medium"]  # ordered by vCPU
    assert list(t["vcpu"]) == [0.2, 1.0, 1.0]
    assert list(t["server"]) == ["flask", "flask", "gunicorn"]
    assert list(t["rps@10"]) == [500.0, 300.0, 900.0]
    assert list(t["mean_ms@10"]) == [20.0, 30.0, 1.0]
    fig = workbook.vertical_chart(load_results(mixed_csv), concurrency=(10,))
    assert fig.axes[0].get_ylabel() == "throughput (requests/s)" and len(fig.axes[0].patches) >= 3


def test_grids_follow_the_profile_and_the_parameters():
    tiny = profiles.get("tiny")
    g = workbook.horizontal_grid("tiny", "f1-micro")
    assert (g.nodes, g.concurrency, g.requests, g.spec.server) == (tiny.nodes, tiny.concurrency, 100, "flask")
    g = workbook.horizontal_grid("tiny", "e2-small", nodes=[1, 3], concurrency=[5], requests=20)
    assert (g.nodes, g.concurrency, g.requests, g.spec.machine_type) == ((1, 3), (5,), 20, "e2-small")
    assert workbook.single_server_grid(g).nodes == (1,)
    v = workbook.vertical_grids("tiny")
    assert [(x.spec.machine_type, x.spec.server, x.spec.workers, x.nodes) for x in v] == \
        [("f1-micro", "flask", 1, (1,)), ("e2-medium", "gunicorn", 3, (1,))]


def test_reanalysis_csv_prefers_reference_then_latest_report_then_fallback(tmp_path):
    fallback = tmp_path / "runs" / "lab.csv"
    with pytest.raises(ConfigError, match="run the lab first"):
        workbook.reanalysis_csv(root=tmp_path, fallback=fallback)
    write_csv(fallback, [make_row()])
    assert workbook.reanalysis_csv(root=tmp_path, fallback=fallback) == fallback
    for stamp in ("20240101-000000", "20250101-000000"):
        write_csv(tmp_path / "reports" / stamp / "results.csv", [make_row()])
    assert workbook.reanalysis_csv(root=tmp_path, fallback=fallback) == \
        tmp_path / "reports" / "20250101-000000" / "results.csv"
    write_csv(tmp_path / "data" / "reference.csv", [make_row()])
    assert workbook.reanalysis_csv(root=tmp_path, fallback=fallback) == tmp_path / "data" / "reference.csv"
    assert workbook.reanalysis_csv("x.csv", root=tmp_path) == workbook.Path("x.csv")


def test_cloud_cost_prices_the_largest_cluster_for_the_estimated_time():
    c = workbook.cloud_cost("full", "f1-micro", rps_per_node=100.0)
    hourly = plan(project="my-project", zone="us-central1-a", nodes=5, machine_type="f1-micro")["cost"]["total_per_hour"]
    seconds = sum(10000 * 13 / (100.0 * n) for n in (1, 2, 3, 4, 5))  # 13 levels x 10,000 requests per node count
    assert c["per hour (USD)"] == round(hourly, 4)
    assert c["estimated hours"] == round(0.5 + seconds / 3600, 2)
    assert c["estimated cost (USD)"] == round(hourly * (0.5 + seconds / 3600), 2)


def test_profiles_table_counts_points_and_requests():
    t = workbook.profiles_table().set_index("profile")
    assert t.loc["full", "points (01+02)"] == 65 and t.loc["full", "requests in total"] == (65 + 35) * 10000
    assert t.loc["tiny", "points (01+02)"] == 4 and t.loc["tiny", "points (03)"] == 2
