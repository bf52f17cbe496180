"""A lower max concurrency at more nodes is explained: resolution, or the failing point's own reason."""

from __future__ import annotations

from tests.support.analysis_data import make_row, write_csv
from labkit.analysis.capacity_steps import steps_down
from labkit.analysis.report import build_report, format_report
from labkit.results import load_results
from labkit.analysis.sla import max_concurrency_of_table, point_table

PART2 = "max<=1000 mean<300 p98<400"


def _table(tmp_path, rows):
    df = load_results(write_csv(tmp_path / "r.csv", rows))
    table = point_table(df, PART2)
    return df, table, max_concurrency_of_table(table)


def test_a_probe_level_at_one_node_is_a_difference_of_resolution(tmp_path):
    # quick lab 2: the part-1 probe at 27 users on one node; two nodes tested at 20 and 50 only
    rows = [make_row(1, 20, mean=150.0, p98=250.0, max_ms=400.0),
            make_row(1, 27, mean=200.0, p98=330.0, max_ms=500.0),
            make_row(1, 50, mean=420.0, p98=600.0, max_ms=900.0),
            make_row(2, 20, mean=80.0, p98=150.0, max_ms=300.0),
            make_row(2, 50, mean=320.0, p98=390.0, max_ms=700.0)]
    _, table, mc = _table(tmp_path, rows)
    assert mc == {1: 27, 2: 20}
    assert steps_down(table, mc) == [
        "2 nodes support fewer users (20) than 1 node(s) (27) only on paper, a difference of resolution: "
        "2 nodes were tested at 20 and 50 (failed) and never in between, where 1 node(s) met 27."]


def test_a_measured_tail_is_named_with_its_numbers(tmp_path):
    # quick lab 3: 3 nodes failed at c=20 on a tail that 2 nodes did not have
    rows = [make_row(2, 10, mean=52.0, p98=126.0, max_ms=167.0),
            make_row(2, 20, mean=100.0, p98=164.0, max_ms=199.0),
            make_row(2, 50, mean=232.0, p98=331.0, max_ms=374.0),
            make_row(3, 10, mean=24.0, p98=78.0, max_ms=106.0),
            make_row(3, 20, mean=68.7, p98=196.4, max_ms=1434.2, p99_ms=1219.0),
            make_row(3, 50, mean=158.0, p98=300.0, max_ms=900.0),
            make_row(4, 10, mean=17.0, p98=65.0, max_ms=78.0),
            make_row(4, 20, mean=33.0, p98=79.0, max_ms=96.0),
            make_row(4, 50, mean=91.0, p98=196.0, max_ms=222.0)]
    df, table, mc = _table(tmp_path, rows)
    assert mc == {2: 50, 3: 10, 4: 50}
    why = ("3 nodes support fewer users (10) than 2 node(s) (50): at 20 users, which 2 node(s) met, 3 nodes "
           "failed in one run; `--repeats` shows whether it recurs (max 1434 > 1000: a tail, between 1 % and "
           "2 % of the requests took longer than 1000 ms (p98 196 ms, p99 1219 ms)).")
    assert steps_down(table, mc) == [why]  # 4 nodes equal 2 nodes' 50: not a step down
    report = build_report(df, PART2)
    assert report["steps_down"] == [why]
    assert f"  note: {why}" in format_report(report).splitlines()


def test_non_decreasing_answers_need_no_explanation(tmp_path):
    rows = [make_row(n, c, mean=10.0 * c / n, p98=15.0 * c / n, max_ms=20.0 * c / n)
            for n in (1, 2, 3) for c in (10, 20, 50)]
    _, table, mc = _table(tmp_path, rows)
    assert mc == {1: 20, 2: 50, 3: 50}
    assert steps_down(table, mc) == []


def test_with_cpu_columns_the_busiest_machine_is_named_beside_the_smaller_count(tmp_path):
    # quick lab of 2026-11-29: 5 nodes failed c=100 on p98 where 4 nodes met it
    cpu = dict(balancer_machine_type="f1-micro", tester_machine_type="f1-micro", time_taken_s=2.0)
    rows = [make_row(4, 50, mean=60.0, p98=160.0, max_ms=250.0, server_cpu_s=0.4, balancer_cpu_s=0.20,
                     tester_cpu_s=0.1, **cpu),
            make_row(4, 100, mean=110.0, p98=385.0, max_ms=460.0, server_cpu_s=0.5, balancer_cpu_s=0.28,
                     tester_cpu_s=0.1, **cpu),
            make_row(5, 50, mean=40.0, p98=180.0, max_ms=240.0, server_cpu_s=0.5, balancer_cpu_s=0.24,
                     tester_cpu_s=0.1, **cpu),
            make_row(5, 100, mean=80.0, p98=517.0, max_ms=700.0, server_cpu_s=0.6, balancer_cpu_s=0.36,
                     tester_cpu_s=0.1, **cpu)]
    df, table, mc = _table(tmp_path, rows)
    assert mc == {4: 100, 5: 50}
    # balancer: 0.36 CPU-s / (2 s x 0.2 vCPU) = 90 %; at 4 nodes 0.28 / 0.4 = 70 %
    assert steps_down(table, mc, df) == [
        "5 nodes support fewer users (50) than 4 node(s) (100): at 100 users, which 4 node(s) met, 5 nodes failed "
        "in one run; `--repeats` shows whether it recurs (p98 517 >= 400); the busiest machine there was the "
        "balancer at 90% of its CPU (at 4 node(s): 70%)."]
    assert steps_down(table, mc) == [steps_down(table, mc, df)[0].split("; the busiest")[0] + "."]
