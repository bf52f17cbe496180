"""One node reached directly vs the same node behind nginx: the table, the finding and its words, by value."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from labkit.analysis.balancer_cost import balancer_cost, finding
from labkit.analysis.points import one_node_behind_balancer, points
from labkit.errors import ConfigError
from labkit.handout import handout_rows
from labkit.results import load_results
from labkit.teaching.network import balancer_cost_text
from tests.support.analysis_data import make_row, write_csv

#: f1-micro: 0.2 vCPU. 2 s runs: server_cpu_s 0.4 = 100 % busy, 0.1 = 25 %.
DIRECT = [
    make_row(1, 1, mean=11.0, requests=180, time_taken_s=2.0, rps=90.0, server_cpu_s=0.10),
    make_row(1, 20, mean=230.0, requests=174, time_taken_s=2.0, rps=87.0, server_cpu_s=0.40),
    make_row(1, 50, mean=560.0, requests=180, time_taken_s=2.0, rps=90.0, server_cpu_s=0.40),  # direct only
]
BEHIND = [
    make_row(1, 1, mean=12.3, requests=170, time_taken_s=2.0, rps=85.0, server_cpu_s=0.10,
             balancer_machine_type="f1-micro", balancer_cpu_s=0.017),
    make_row(1, 20, mean=250.0, requests=160, time_taken_s=2.0, rps=80.0, server_cpu_s=0.40,
             balancer_machine_type="f1-micro", balancer_cpu_s=0.040),
]


@pytest.fixture
def data(tmp_path):
    d = load_results(write_csv(tmp_path / "direct.csv", DIRECT))
    b = write_csv(tmp_path / "balancer.csv", BEHIND)
    return d, load_results(b), b


def test_the_table_compares_each_level_measured_both_ways(data):
    d, b, _ = data
    t = balancer_cost(d, b).set_index("concurrency")
    assert list(t.index) == [1, 20]  # c=50 was measured directly only: not compared, not extrapolated
    assert t.loc[1, "rps_change_pct"] == pytest.approx((85 / 90 - 1) * 100)
    assert t.loc[20, "rps_change_pct"] == pytest.approx((80 / 87 - 1) * 100)
    assert t.loc[1, "added_mean_ms"] == pytest.approx(1.3)
    assert t.loc[20, "added_mean_ms"] == pytest.approx(20.0)
    assert t.loc[1, "server_util_direct"] == pytest.approx(0.25) and t.loc[20, "server_util_behind"] == pytest.approx(1.0)
    assert t.loc[20, "balancer_util"] == pytest.approx(0.040 / (2.0 * 0.2))
    assert t.loc[1, "balancer_cpu_ms_per_request"] == pytest.approx(0.017 / 170 * 1000)
    assert t.loc[20, "balancer_cpu_ms_per_request"] == pytest.approx(0.25)


def test_the_finding_picks_the_hop_and_the_loaded_level(data):
    f = finding(*data[:2])
    assert f.hop.concurrency == 1 and f.hop_unsaturated  # 25 % busy: the difference is the hop
    assert f.load.concurrency == 20 and f.busier == "server"  # 100 % vs the balancer's 10 %
    assert f.balancer_type == "f1-micro" and f.balancer_vcpu == 0.2
    assert f.unclean == () and not f.repeated


def test_the_words_quote_the_table_and_follow_the_numbers(data):
    d, _, path = data
    text = str(balancer_cost_text(d, path))
    # server CPU per request: 0.10 s / 180 requests = 0.56 ms direct, 0.10 s / 170 = 0.59 ms behind nginx
    assert "| 1 | 90.0 | 85.0 | −5.6 % | 11.0 | 12.3 | +1.3 ms | 25.0 % | 25.0 % | 4.2 % | 0.10 | 0.56 | 0.59 |" in text
    assert "| 20 | 87.0 | 80.0 | −8.0 % | 230.0 | 250.0 | +20.0 ms | 100.0 % | 100.0 % | 10.0 % | 0.25 | 2.30 | 2.50 |" in text
    assert ("At 1 user, going through nginx added 1.3 ms to the mean request time (11.0 ms direct, 12.3 ms "
            "behind nginx); the server was 25.0 % busy there, so this is the extra hop itself") in text
    assert ("At 20 users, throughput was 80.0 req/s behind nginx against 87.0 req/s direct (−8.0 %); the balancer "
            "used 0.25 CPU ms per request, 10.0 % of its f1-micro's vCPU, while the server was 100.0 % busy") in text
    assert "The server, not the balancer, was the busier machine" in text
    # saturated both ways: the server's own CPU per request accounts for the throughput change
    assert ("The server was saturated both ways (100.0 % and 100.0 % busy), and a saturated server answers its CPU "
            "share divided by its CPU per request. Its CPU per request was 2.30 ms direct and 2.50 ms behind nginx; "
            "that alone changes throughput by −8.0 % (direct ÷ behind nginx − 1), against −8.0 % measured; whether") in text
    assert "measured once each way" in text


def test_a_faster_path_behind_nginx_is_not_called_the_hops_cost(tmp_path):
    """The shape of a quick lab on this machine (2026-12-05): the Flask dev server answers faster behind
    nginx (its 10 ms wait before closing no longer delays ab) and spends less CPU per request."""
    d = load_results(write_csv(tmp_path / "d.csv", [
        make_row(1, 1, mean=11.7, requests=500, time_taken_s=5.875, rps=85.1, server_cpu_s=0.795),
        make_row(1, 20, mean=123.6, requests=500, time_taken_s=3.133, rps=159.6, server_cpu_s=0.63)]))
    b = write_csv(tmp_path / "b.csv", [
        make_row(1, 1, mean=5.3, requests=500, time_taken_s=2.662, rps=187.8, server_cpu_s=0.535,
                 balancer_machine_type="f1-micro", balancer_cpu_s=0.115),
        make_row(1, 20, mean=89.6, requests=500, time_taken_s=2.265, rps=220.8, server_cpu_s=0.46,
                 balancer_machine_type="f1-micro", balancer_cpu_s=0.10)])
    text = str(balancer_cost_text(d, b))
    assert ("**Faster behind nginx.** At 1 user, the mean request time was 5.3 ms behind nginx against 11.7 ms "
            "direct, 6.4 ms less. A hop can only add time, so this is not the balancer's cost") in text
    assert "The hop" not in text and "added" not in text.split("**Faster")[1].split("**Under")[0]
    assert "throughput was 220.8 req/s behind nginx against 159.6 req/s direct (+38.3 %)" in text
    assert f_saturated(d, b)
    assert ("Its CPU per request was 1.26 ms direct and 0.92 ms behind nginx; that alone changes throughput by "
            "+37.0 % (direct ÷ behind nginx − 1), against +38.3 % measured") in text


def f_saturated(direct, behind_csv) -> bool:
    return finding(direct, load_results(behind_csv)).load_saturated


def test_a_saturated_hop_and_a_busier_balancer_are_said_as_such(tmp_path):
    d = load_results(write_csv(tmp_path / "d.csv", [
        make_row(1, 1, mean=12.0, time_taken_s=2.0, server_cpu_s=0.36),
        make_row(1, 20, mean=200.0, time_taken_s=2.0, server_cpu_s=0.2)]))
    b = write_csv(tmp_path / "b.csv", [
        make_row(1, 1, mean=12.5, time_taken_s=2.0, server_cpu_s=0.36, balancer_machine_type="f1-micro",
                 balancer_cpu_s=0.01),
        make_row(1, 20, mean=260.0, time_taken_s=2.0, server_cpu_s=0.2, balancer_machine_type="f1-micro",
                 balancer_cpu_s=0.38)])
    text = str(balancer_cost_text(d, b))
    assert "going through nginx added 0.5 ms to the mean request time" in text
    assert "the server was already busy there (90.0 %), so the difference includes its queue" in text
    assert "The balancer, not the server, was the busier machine" in text
    # the server was 50 % busy at 20 users (0.2 s of CPU for 1,000 requests): its CPU per request does not set its throughput, so no such claim
    assert "saturated both ways" not in text and "alone changes throughput" not in text
    assert "The server spent 0.20 CPU ms per request behind nginx against 0.20 direct." in text


def test_errors_on_one_side_are_not_compared_and_a_missing_file_is_said(tmp_path):
    d = load_results(write_csv(tmp_path / "d.csv", [make_row(1, 10), make_row(1, 50)]))
    b = write_csv(tmp_path / "b.csv", [
        make_row(1, 10, balancer_machine_type="f1-micro", balancer_cpu_s=0.01),
        make_row(1, 50, balancer_machine_type="f1-micro", balancer_cpu_s=0.01, non_2xx=40)])
    f = finding(d, load_results(b))
    assert f.unclean == (50,) and f.hop.concurrency == 10 and f.load is None
    text = str(balancer_cost_text(d, b))
    assert "Not compared (errors or an aborted run on one side): 50 users." in text
    assert "Under load" not in text
    missing = str(balancer_cost_text(d, tmp_path / "nothing.csv"))
    assert missing.strip() == "No results of one node behind nginx at nothing.csv (the measuring cell above writes them)."
    other = write_csv(tmp_path / "o.csv", [make_row(1, 10, machine_type="e2-medium", balancer_machine_type="f1-micro")])
    assert "share no concurrency level of this machine type" in str(balancer_cost_text(d, other))


def test_rows_of_one_node_behind_nginx_never_pool_with_the_handouts_single_server(data):
    d, b, _ = data
    both = pd.concat([d, b], ignore_index=True)
    assert list(one_node_behind_balancer(both)) == [False, False, False, True, True]
    with pytest.raises(ConfigError, match=r"different points \(both at c=1, c=20\)"):
        points(both)
    kept = handout_rows(both, "f1-micro")
    assert len(kept) == 3 and kept["balancer_machine_type"].isna().all()
    t = points(kept)  # the handout's table reads the direct rows only
    assert list(t["mean_ms"]) == [11.0, 230.0, 560.0]
    assert math.isnan(t["balancer_util"].iloc[0])


def test_the_dashboard_says_a_csv_holds_one_node_behind_nginx(data):
    from labkit.dashboard.reanalysis import describe_results

    d, b, _ = data
    assert describe_results(b, "balancer.csv") == ("balancer.csv: 2 rows of f1-micro/flask; node counts 1; "
                                                   "concurrency 1, 20; 2 row(s) of one node behind nginx "
                                                   "(notebook 02's balancer cost)")
    assert describe_results(d, "results.csv").endswith("concurrency 1, 20, 50")
