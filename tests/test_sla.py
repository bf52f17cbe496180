"""SLA clauses and the two answers (design §8), on hand-made tables."""

from __future__ import annotations

import dataclasses

import pytest

from tests.support.analysis_data import grid_rows, make_row, write_csv
from labkit.errors import ConfigError, SlaSyntaxError
from labkit.results import load_results
from labkit.analysis.sla import Clause, Sla, max_concurrency, nodes_needed, point_table

PART1 = "max<=1500 mean<200 p98<=300"


def load(tmp_path, rows):
    return load_results(write_csv(tmp_path / "r.csv", rows))


def test_parse_and_str_roundtrip():
    sla = Sla.parse(PART1)
    assert sla.clauses == (Clause("max", "<=", 1500.0), Clause("mean", "<", 200.0), Clause("p98", "<=", 300.0))
    assert str(sla) == PART1
    assert Sla.parse(str(sla)) == sla
    assert str(Sla.parse(" p98 <= 300ms,  MEAN<199.5 ")) == "p98<=300 mean<199.5"
    with pytest.raises(dataclasses.FrozenInstanceError):
        sla.clauses = ()


@pytest.mark.parametrize("text,needle", [
    ("", "empty SLA"),
    ("max>1500", "operator '>'"),
    ("max=1500", "operator '='"),
    ("latency<5", "unknown metric 'latency'"),
    ("p97<5", "unknown metric 'p97'"),
    ("p98<=", "malformed SLA clause 'p98<='"),
    ("mean<abc", "malformed SLA clause 'mean<abc'"),
    ("max<=1 500", "malformed SLA clause '500'"),
    ("max<=1 max<2", "more than one clause"),
    ("p98<=-1", "negative bound"),
])
def test_malformed_clauses(text, needle):
    with pytest.raises(SlaSyntaxError) as exc:
        Sla.parse(text)
    assert needle in str(exc.value)


def test_strict_and_non_strict_bounds(tmp_path):
    # mean exactly 200 and p98 exactly 300, max exactly 1500
    df = load(tmp_path, [make_row(1, 10, mean=200.0, p98=300.0, max_ms=1500.0)])
    assert Sla.parse("max<=1500 p98<=300 mean<=200").meets(df).tolist() == [True]
    assert Sla.parse("mean<200").meets(df).tolist() == [False]
    assert Sla.parse("p98<300").meets(df).tolist() == [False]
    assert Sla.parse("max<1500").meets(df).tolist() == [False]
    assert Sla.parse("max<1500.001").meets(df).tolist() == [True]


def test_failed_non2xx_and_aborted_rows_never_meet(tmp_path):
    rows = [make_row(1, 10), make_row(1, 20, failed=3), make_row(1, 50, non_2xx=1),
            make_row(1, 100, aborted=True)]
    df = load(tmp_path, rows)
    assert Sla.parse("max<=100000").meets(df).tolist() == [True, False, False, False]
    table = point_table(df, "max<=100000")
    assert table["reason"].tolist() == ["", "3 failed requests", "1 non-2xx responses", "aborted"]


def test_max_concurrency_stops_at_first_failure_non_monotone(tmp_path):
    # mean at 10, 20, 50, 100, 200: 100, 150, 250 (fail), 150 (pass again), 180
    means = {10: 100.0, 20: 150.0, 50: 250.0, 100: 150.0, 200: 180.0}
    rows = [make_row(1, c, mean=m, p98=m, max_ms=m) for c, m in means.items()]
    df = load(tmp_path, rows)
    assert max_concurrency(df, "mean<200") == {1: 20}
    assert point_table(df, "mean<200")["meets"].tolist() == [True, True, False, True, True]


def test_lowest_level_failing_gives_none(tmp_path):
    rows = [make_row(1, 10, mean=300.0), make_row(1, 20, mean=100.0), make_row(2, 10, mean=100.0)]
    df = load(tmp_path, rows)
    assert max_concurrency(df, "mean<200") == {1: None, 2: 10}


def test_repeats_must_all_pass(tmp_path):
    rows = [make_row(1, 10, mean=100.0), make_row(1, 20, mean=100.0), make_row(1, 20, mean=250.0),
            make_row(1, 50, mean=100.0), make_row(1, 50, mean=120.0)]
    df = load(tmp_path, rows)
    table = point_table(df, "mean<200")
    assert table[["concurrency", "runs", "passing", "meets"]].values.tolist() == [
        [10, 1, 1, True], [20, 2, 1, False], [50, 2, 2, True]]
    assert table["mean_ms"].tolist() == [100.0, 250.0, 120.0]  # worst repeat
    assert max_concurrency(df, "mean<200") == {1: 10}


def test_aborted_repeat_fails_the_point(tmp_path):
    rows = [make_row(1, 10, mean=100.0), make_row(1, 20, mean=100.0), make_row(1, 20, aborted=True)]
    df = load(tmp_path, rows)
    assert max_concurrency(df, "mean<200") == {1: 10}
    assert point_table(df, "mean<200")["reason"].tolist() == ["", "aborted (1/2 runs)"]


def _handout_like(tmp_path):
    # latency ~ c / n: node n meets mean<200 up to c = 100n (levels 10..1000)
    rows = grid_rows(lambda n, c: (c / n, 1.4 * c / n, 3 * c / n),
                     nodes=(1, 2, 3), levels=(10, 20, 50, 100, 200, 500, 1000))
    return load(tmp_path, rows)


def test_nodes_needed(tmp_path):
    df = _handout_like(tmp_path)
    sla = Sla.parse("max<=1500 mean<200 p98<=300")
    # mean < 200 and p98 = 1.4 c/n <= 300 -> c/n <= 214; max = 3c/n <= 1500 -> c/n <= 500
    assert max_concurrency(df, sla) == {1: 100, 2: 200, 3: 500}
    assert nodes_needed(df, sla, 50) == 1
    assert nodes_needed(df, sla, 100) == 1
    assert nodes_needed(df, sla, 200) == 2
    assert nodes_needed(df, sla, 500) == 3


def test_untested_user_count_needs_a_tested_level_at_or_above(tmp_path):
    df = _handout_like(tmp_path)
    sla = "max<=1500 mean<200 p98<=300"
    # 150 users: node 1 passes only up to 100 (200 fails) -> 150 is not shown -> 2 nodes
    assert nodes_needed(df, sla, 150) == 2
    # 300 users: node 2 stops at 200, node 3 passes 500 -> 3
    assert nodes_needed(df, sla, 300) == 3


def test_no_node_count_passes(tmp_path):
    df = _handout_like(tmp_path)
    assert nodes_needed(df, "max<=1500 mean<200 p98<=300", 2000) is None
    assert nodes_needed(df, "mean<1", 10) is None
    assert max_concurrency(df, "mean<1") == {1: None, 2: None, 3: None}


@pytest.mark.parametrize("users", [0, -5, 2.5, True, "100"])
def test_users_must_be_positive_int(tmp_path, users):
    df = _handout_like(tmp_path)
    with pytest.raises(ConfigError, match="users must be a positive integer"):
        nodes_needed(df, PART1, users)


def test_mixed_configurations_are_refused_not_pooled(tmp_path):
    """An e2-small at c=10 is not a repeat of the f1-micro at c=10 (it would lend it its throughput)."""
    df = load(tmp_path, [make_row(1, 10), make_row(1, 20), make_row(1, 10, machine_type="e2-small")])
    with pytest.raises(ConfigError, match=r"^these rows hold 2 configurations \(f1-micro/flask: 2 rows, "
                                          r"e2-small/flask: 1 row\); a point of one is not a repeat"):
        point_table(df, PART1)
    gun = load(tmp_path, [make_row(1, 10), make_row(1, 10, server="gunicorn", workers=5)])
    with pytest.raises(ConfigError, match="f1-micro/gunicorn×5: 1 row"):
        point_table(gun, PART1)


def test_point_status_from_rows(tmp_path):
    """refused = every response non-2xx; errors = some; aborted wins over all; ok only when every repeat is."""
    from labkit.analysis.sla import point_status

    rows = [make_row(1, 10),
            make_row(1, 20, failed=4, non_2xx=3),
            make_row(2, 20, non_2xx=1000, failed=999, mean=2.0),  # nginx with no live server: fast 502s
            make_row(1, 50, aborted=True),
            make_row(1, 100), make_row(1, 100, non_2xx=1000),  # a refused repeat
            make_row(1, 200), make_row(1, 200, aborted=True), make_row(1, 200, non_2xx=5)]
    df = load(tmp_path, rows)
    by_point = {k: point_status(g) for k, g in df.groupby(["nodes", "concurrency"])}
    assert by_point == {(1, 10): "ok", (1, 20): "errors", (2, 20): "refused", (1, 50): "aborted",
                        (1, 100): "refused", (1, 200): "aborted"}
    table = point_table(df, "max<=100000")
    assert table["status"].tolist() == ["ok", "errors", "aborted", "refused", "aborted", "refused"]
    assert table["meets"].tolist() == [True, False, False, False, False, False]  # a non-ok point never meets
    refused = table[(table["nodes"] == 2)].iloc[0]
    assert refused["reason"] == ("refused: all 1000 responses non-2xx (the balancer had no live server; "
                                 "not a measurement of the service)")
    assert max_concurrency(df, "max<=100000") == {1: 10, 2: None}


def test_reasons_in_words(tmp_path):
    rows = [
        # only max fails, p99 holds: one slow request; 1,041 ms is near 1 s but 10 users on 2 nodes cannot
        # fill a backlog and the connect mean is 0: not called a SYN retransmission (issue 20)
        make_row(2, 10, mean=60.0, p98=80.0, max_ms=1041.0, p99_ms=95.0),
        # max fails with mean: no "one slow request"
        make_row(2, 20, mean=400.0, p98=500.0, max_ms=1500.0),
        # connect mean near 3 s: SYN retransmissions
        make_row(2, 50, mean=250.0, p98=600.0, max_ms=900.0, connect_mean_ms=3050.0),
        # only max fails, p99 over too but p98 under: a tail of 1-2 % (quick lab 3, 3 nodes c=20)
        make_row(3, 20, mean=68.7, p98=196.4, max_ms=1434.2, p99_ms=1219.0),
        # 300 users on 2 servers: 150 each, over a server's 128 backlog, behind nginx: upstream retries at 7 s
        make_row(2, 300, mean=250.0, p98=390.0, max_ms=7300.0, p99_ms=395.0),
        # 200 users straight at one server (backlog 128): ab's own SYNs, 15 s
        make_row(1, 200, mean=250.0, p98=390.0, max_ms=15400.0, p99_ms=395.0),
    ]
    table = point_table(load(tmp_path, rows), "max<=1000 mean<300 p98<400")
    assert table["reason"].tolist() == [
        "max 15400 > 1000: one slow request (p99 395 ms); 15400 ms ≈ 15 s: a SYN retransmission (the listen "
        "backlog ab connects to was full)",
        "max 1041 > 1000: one slow request (p99 95 ms); max 1041 ms, 4 % over 1000: a repeat may decide differently",
        "max 1500 > 1000; mean 400 >= 300; p98 500 >= 400",
        "p98 600 >= 400; connect mean 3050 ms ≈ 3 s: SYN retransmissions (the listen backlog was full)",
        "max 7300 > 1000: one slow request (p99 395 ms); 7300 ms ≈ 7 s: a SYN retransmission between nginx and "
        "a server (a server's backlog was full)",
        "max 1434 > 1000: a tail, between 1 % and 2 % of the requests took longer than 1000 ms "
        "(p98 196 ms, p99 1219 ms)",
    ]


def test_borderline_points(tmp_path):
    rows = [make_row(1, 10, mean=150.0, p98=200.0, max_ms=400.0),   # 25 % under: clear
            make_row(1, 20, mean=195.0, p98=250.0, max_ms=500.0),   # mean 2.5 % under 200
            make_row(1, 50, mean=206.0, p98=280.0, max_ms=600.0),   # mean 3 % over 200
            make_row(1, 100, mean=260.0, p98=290.0, max_ms=700.0),  # mean 30 % over: clear
            make_row(1, 200, mean=205.0, p98=450.0, max_ms=800.0)]  # p98 50 % over: not borderline
    table = point_table(load(tmp_path, rows), PART1)
    assert table["borderline"].tolist() == [
        "", "mean 195 ms, 2 % under 200: a repeat may decide differently",
        "mean 206 ms, 3 % over 200: a repeat may decide differently", "", ""]
    assert table["reason"].tolist()[2] == "mean 206 >= 200; mean 206 ms, 3 % over 200: a repeat may decide differently"
    assert table["reason"].tolist()[1] == ""  # it meets; the borderline column says how narrowly


def test_max_concurrency_on_given_levels(tmp_path):
    from labkit.profiles import HANDOUT_CONCURRENCY
    from labkit.analysis.sla import max_concurrency_of_table

    means = {10: 50.0, 20: 80.0, 35: 150.0, 42: 190.0, 46: 210.0, 50: 220.0}  # 35, 42, 46: probes
    df = load(tmp_path, [make_row(1, c, mean=m, p98=m, max_ms=m) for c, m in means.items()])
    table = point_table(df, PART1)
    assert max_concurrency_of_table(table) == {1: 42}
    assert max_concurrency_of_table(table, HANDOUT_CONCURRENCY) == {1: 20}
