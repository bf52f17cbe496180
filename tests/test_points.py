"""labkit.analysis.points (the one per-point table), demand (service demand, floor, utilisation check),
queueing (MVA, simulation with the listen backlog), plan (balancer, tester, servers) and pricing."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from tests.support.analysis_data import make_row, write_csv
from labkit import pricing
from labkit.analysis import demand, plan, points, queueing
from labkit.analysis.sla import point_table
from labkit.results import load_results

REFERENCE = Path(__file__).resolve().parent.parent / "data" / "reference.csv"


def test_repeats_report_the_worst_run_per_clause_not_an_average(tmp_path):
    # the case: three runs of one point with max 1,320 / 320 / 330 ms
    rows = [make_row(1, 13, mean=m, p98=p, max_ms=x, repeat=i, rps=r)
            for i, (m, p, x, r) in enumerate([(140.0, 300.0, 1320.0, 90.0), (147.0, 391.0, 320.0, 88.0),
                                                (120.0, 250.0, 330.0, 110.0)])]
    df = load_results(write_csv(tmp_path / "r.csv", rows))
    t = points.points(df)
    assert len(t) == 1 and list(t.columns) == list(points.COLUMNS)
    row = t.iloc[0]
    assert (row["runs"], row["clean_runs"], row["status"]) == (3, 3, "ok")
    assert (row["mean_ms"], row["p98_ms"], row["max_ms"]) == (147.0, 391.0, 1320.0)  # worst run each
    assert row["rps"] == pytest.approx(96.0)  # throughput: the mean over clean runs
    assert "worst run" in t.attrs["note"]
    # the SLA verdict reads the same values: one run fails max<=1000, so the point fails
    v = point_table(df, "max<=1000 mean<200").iloc[0]
    assert (v["passing"], bool(v["meets"]), v["max_ms"]) == (2, False, 1320.0)


def test_one_clean_row_rule_and_the_status(tmp_path):
    rows = [make_row(2, 10, repeat=0), make_row(2, 10, repeat=1, non_2xx=5),  # errors in one run
            make_row(2, 50, aborted=True), make_row(2, 100, non_2xx=1000, rps=5000.0)]  # refused
    t = points.points(load_results(write_csv(tmp_path / "r.csv", rows))).set_index("concurrency")
    assert t.loc[10, "status"] == "errors" and t.loc[10, "clean_runs"] == 1
    assert t.loc[50, "status"] == "aborted" and math.isnan(t.loc[50, "mean_ms"])
    assert t.loc[100, "status"] == "refused" and math.isnan(t.loc[100, "rps"])  # fast 502s are no throughput
    assert t.loc[10, "rps"] == 500.0  # only the clean run's
    assert points.points(load_results(write_csv(tmp_path / "e.csv", [make_row()])).iloc[0:0]).empty


def test_littles_law_and_utilisation_per_point(tmp_path):
    row = make_row(2, 100, mean=200.0, rps=500.0, time_taken_s=2.0, server_cpu_s=0.64, balancer_cpu_s=0.1,
                   balancer_machine_type="f1-micro", tester_cpu_s=0.02, tester_machine_type="e2-medium")
    t = points.points(load_results(write_csv(tmp_path / "r.csv", [row]))).iloc[0]
    assert t["littles_law"] == pytest.approx(1.0)  # 500 × 0.2 / 100
    assert t["server_util"] == pytest.approx(0.8)  # 0.64 / (2 s × 0.2 × 2 servers)
    assert t["balancer_util"] == pytest.approx(0.25) and t["tester_util"] == pytest.approx(0.01)
    assert t["server_cpu_ms_per_request"] == pytest.approx(0.64) and t["bottleneck"] == "server"


def test_the_role_chart_plots_the_utilisation_the_tables_quote(tmp_path):
    """One point, one value: a repeated point with one clean run and one with failed requests has
    the clean run's utilisation in the per-point table and in the role-utilisation chart's data."""
    from labkit.analysis.plots_roles import role_utilisation_table

    kw = dict(mean=200.0, rps=500.0, time_taken_s=2.0, balancer_machine_type="f1-micro",
              tester_machine_type="e2-medium", balancer_cpu_s=0.1, tester_cpu_s=0.02)
    rows = [make_row(2, 100, server_cpu_s=0.64, repeat=0, **kw),
            make_row(2, 100, server_cpu_s=0.16, repeat=1, failed=40, **kw)]
    df = load_results(write_csv(tmp_path / "r.csv", rows))
    t = points.points(df).iloc[0]
    assert t["server_util"] == pytest.approx(0.8)  # the clean run only (the errored one would make it 0.5)
    chart = role_utilisation_table(df).set_index("role")["utilisation"]
    assert chart["server"] == pytest.approx(t["server_util"])
    assert chart["balancer"] == pytest.approx(t["balancer_util"])


@pytest.fixture(scope="module")
def reference():
    return load_results(REFERENCE)


def test_demand_from_the_busy_points_never_caps_below_what_was_delivered(reference):
    d = demand.demands(reference)
    util = points.utilisation(reference)
    clean = reference[points.is_clean(reference)]
    for role in points.ROLES:
        rows = demand.role_rows(reference, role)
        per_machine = rows["rps"] / points.machines_of(rows, role)
        delivered = (per_machine / util.loc[rows.index, role].clip(upper=1.0)).loc[per_machine.idxmax()]
        assert d[role]["capacity_rps"] >= delivered * (1 - 1e-9), role
        assert d[role]["capacity_rps"] >= per_machine.max(), role
    assert len(clean) > 0
    # nginx's per-request CPU falls with load: the busy points' estimate is below the all-rows median
    b = d["balancer"]
    all_rows = demand.role_rows(reference, "balancer")
    median = float((all_rows["balancer_cpu_s"] / all_rows["complete"]).median() * 1000)
    assert b["estimator"] == "regression" and b["cpu_ms_per_request"] < median
    assert b["spread_ms"][0] <= b["spread_ms"][1]
    check = demand.utilisation_check(reference, d)
    assert check["balancer"]["rows"] == 26 and check["balancer"]["mean_abs_error"] < 0.06
    assert check["tester"]["mean_abs_error"] < 0.03


def test_mva_is_exact_at_one_user_and_bounded_by_the_bottleneck():
    net = queueing.Network(servers=2, server_cpu_s=0.001, server_vcpu=0.2, balancer_cpu_s=0.0001,
                           balancer_vcpu=0.2, tester_cpu_s=0.0001, tester_vcpu=0.2, z_s=0.002)
    one = queueing.mva(net, 1)
    assert one["mean_ms"] == pytest.approx(2.0 + 5.0 + 0.5 + 0.5)  # no queueing: the sum of demands
    many = queueing.mva(net, 500)
    assert many["rps"] == pytest.approx(400.0, rel=5e-3)  # 2 servers × 0.2 vCPU / 1 ms
    assert many["mean_ms"] == pytest.approx(500 / 400 * 1000, rel=1e-2)  # N = X·R


def test_simulation_shows_syn_retry_stalls_when_the_backlog_is_full():
    base = queueing.Network(servers=1, server_cpu_s=0.001, server_vcpu=0.2)
    open_ = queueing.simulate(base, 50, 600)
    assert open_["syn_retries"] == 0 and open_["failed"] == 0
    assert open_["mean_ms"] == pytest.approx(50 / 200 * 1000, rel=0.15)
    full = queueing.simulate(queueing.with_(base, admit=20), 50, 600)
    assert full["syn_retries"] > 0 and full["max_ms"] >= 1000.0  # a dropped SYN waits 1 s at least
    assert full["p50_ms"] < 1000.0


def test_service_shape_is_read_from_the_least_queued_point(reference):
    shape, src = queueing.service_shape(reference)
    assert len(shape) == 10 and list(shape) == sorted(shape) and "c=10" in src and "-g" in src


def test_balancer_and_tester_plans():
    one = plan.balancer_plan(6667, 0.0001)  # 0.67 vCPU → at ≤ 80 %: 1 vCPU
    assert one["count"] == 1 and one["machine_type"] == "e2-medium" and one["workers"] == 1
    big = plan.balancer_plan(200000, 0.0001)  # 20 vCPU: no single type of the table
    assert big["count"] == 2 and big["machine_type"].endswith("-16") and big["workers"] == 16
    assert "DNS round robin" in big["kind"] and big["managed_alternative"]
    t = plan.tester_plan(30000, 0.0001)  # 3 vCPU of ab: four single-threaded processes at ≤ 80 %
    assert t["processes"] == 4 and t["machines"] == 1 and t["machine_type"] == "e2-highcpu-4"
    t = plan.tester_plan(200000, 0.0001)
    assert t["processes"] == 25 and t["machines"] == 2


def test_pricing_is_defined_once():
    from labkit.backends.gcp import api_requests

    assert api_requests.hourly_cost is pricing.hourly_cost
    assert api_requests.EXTERNAL_IPV4_PER_HOUR is pricing.EXTERNAL_IPV4_PER_HOUR
    c = pricing.plan_cost([("server", "f1-micro", 2), ("balancer", "e2-standard-4", 1)], managed_lb=True)
    per = lambda t: pricing.machine_hourly(t)["total"]  # noqa: E731
    assert c["cost_per_hour"] == pytest.approx(2 * per("f1-micro") + per("e2-standard-4")
                                               + pricing.MANAGED_LB_RULE_PER_HOUR, abs=1e-4)
    assert c["prices_as_of"]["machine types"]
