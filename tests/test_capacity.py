"""labkit.analysis.capacity: the model answer (design §8) on crafted tables with known answers."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from tests.support.analysis_data import cpu_rows, grid_rows, make_row, write_csv
from labkit.analysis import capacity
from labkit.backends.gcp.api_requests import DISK_GB, HOURS_PER_MONTH, PD_STANDARD_PER_GB_MONTH
from labkit.machine_types import MACHINE_TYPES
from labkit.results import load_results

PART2 = "max<=1000 mean<300 p98<400"
DISK = DISK_GB * PD_STANDARD_PER_GB_MONTH / HOURS_PER_MONTH


@pytest.fixture
def cpu_df(tmp_path):
    return load_results(write_csv(tmp_path / "cpu.csv", cpu_rows()))


def test_littles_law_bound_for_the_handouts_part2(cpu_df):
    a = capacity.capacity_answer(cpu_df, PART2, 2000, model=False)
    assert a["throughput_needed_rps"] == pytest.approx(6666.7, abs=0.05)  # 2000 / 0.3 s
    assert f"{a['throughput_needed_rps']:,.0f}" == "6,667"
    assert a["mean_bound_s"] == 0.3 and "mean<300 ms" in a["basis"]
    assert a["label"].startswith("model")
    # servers 80 % busy at 200 req/s: the utilisation law gives each 0.2 vCPU / 0.8 ms = 250 req/s
    assert a["per_server_rps"] == 250.0 and a["per_server_basis"]["source"].startswith("server service demand")
    assert a["servers_min"] == 27  # ceil(6666.7 / 250)


def test_servers_min_uses_the_best_rps_per_node_over_clean_rows(tmp_path):
    rows = [make_row(1, 10, rps=250.0), make_row(2, 10, rps=600.0), make_row(3, 10, rps=750.0),
            make_row(3, 50, rps=5000.0, non_2xx=1000),  # fast errors do not count
            make_row(3, 100, aborted=True)]
    df = load_results(write_csv(tmp_path / "r.csv", rows))
    a = capacity.capacity_answer(df, "mean<200", 1000, model=False)
    assert a["throughput_needed_rps"] == 5000.0
    assert a["per_server_rps"] == 300.0
    assert a["per_server_basis"] == {"nodes": 2, "concurrency": 10, "rps": 600.0, "source": "best clean rps / nodes"}
    assert a["servers_min"] == 17  # ceil(5000 / 300)


def test_without_a_mean_clause_the_max_bounds_the_mean(cpu_df):
    a = capacity.capacity_answer(cpu_df, "max<=1000 p98<400", 2000, model=False)
    assert a["throughput_needed_rps"] == 2000.0 and "max<=1000 ms" in a["basis"]
    none = capacity.capacity_answer(cpu_df, "p98<400", 2000, model=False)
    assert none["throughput_needed_rps"] is None and none["servers_min"] is None
    assert any("neither the mean nor the max" in u for u in none["unavailable"])


def test_roles_cpu_vcpu_machine_type_and_the_balancer_bottleneck(cpu_df):
    a = capacity.capacity_answer(cpu_df, PART2, 2000, model=False)
    r = a["roles"]
    assert r["server"]["cpu_ms_per_request"] == pytest.approx(0.8, rel=1e-3)
    assert r["balancer"]["cpu_ms_per_request"] == pytest.approx(0.1)
    assert r["balancer"]["rows"] == 8  # only rows with a balancer (nodes > 1)
    assert r["tester"]["cpu_ms_per_request"] == pytest.approx(0.025)
    # vCPU the need takes: 6666.7 req/s × CPU s per request
    assert r["balancer"]["vcpu_needed"] == pytest.approx(0.667, abs=1e-3)
    assert r["tester"]["vcpu_needed"] == pytest.approx(0.167, abs=1e-3)
    assert r["server"]["vcpu_needed"] == pytest.approx(5.333, abs=1e-2)
    # cheapest type at <= 80 %: balancer needs >= 0.83 vCPU -> e2-medium; tester >= 0.21 -> e2-micro
    assert r["balancer"]["machine_type"] == "e2-medium"
    assert r["tester"]["machine_type"] == "e2-micro"
    assert r["server"]["machine_type"] == "e2-highcpu-8"  # 5.3 vCPU at <= 80 %: 8 vCPU, the cheapest such
    assert r["balancer"]["spread_ms"] == pytest.approx([0.1, 0.1], rel=1e-2)
    # capacity at the measured f1-micro (0.2 vCPU): balancer 2000 req/s, tester 8000 req/s
    assert r["balancer"]["capacity_rps"] == pytest.approx(2000.0, rel=1e-3)
    assert r["tester"]["capacity_rps"] == pytest.approx(8000.0, rel=1e-2)
    assert a["bottleneck"] == "balancer" and a["bottleneck_capacity_rps"] == pytest.approx(2000.0, rel=1e-3)
    assert a["balancer_needed"] == "e2-medium"
    assert "the balancer must grow too" in a["conclusion"]
    assert "at least e2-medium" in a["conclusion"]
    assert a["unavailable"] == []


def test_bottleneck_is_the_tester_when_it_caps_first(tmp_path):
    df = load_results(write_csv(tmp_path / "t.csv", cpu_rows(balancer="e2-standard-2", tester_ms=0.3)))
    a = capacity.capacity_answer(df, PART2, 2000, model=False)
    assert a["roles"]["tester"]["capacity_rps"] == pytest.approx(666.7, rel=1e-2)  # 0.2 vCPU / 0.3 ms
    assert a["bottleneck"] == "tester"


def test_bottleneck_is_the_server_when_balancer_and_tester_keep_up(tmp_path):
    df = load_results(write_csv(tmp_path / "s.csv", cpu_rows(balancer="e2-standard-2", tester="e2-standard-2")))
    a = capacity.capacity_answer(df, PART2, 2000, model=False)
    assert a["roles"]["balancer"]["capacity_rps"] == pytest.approx(20000.0, rel=1e-3)
    assert a["bottleneck"] == "server" and a["bottleneck_capacity_rps"] is None


def test_cost_per_hour_of_the_plan_counts_every_machine_and_its_ipv4(cpu_df):
    a = capacity.capacity_answer(cpu_df, PART2, 2000, model=False)
    per = lambda t: MACHINE_TYPES[t].price_per_hour + DISK + capacity.EXTERNAL_IPV4_PER_HOUR  # noqa: E731
    expected = 27 * per("f1-micro") + per("e2-medium") + per("e2-micro")  # servers_min's machines (no model)
    assert a["cost_per_hour"] == pytest.approx(expected, abs=1e-4)
    assert [(m["role"], m["machine_type"], m["count"]) for m in a["cost"]["machines"]] == [
        ("server", "f1-micro", 27), ("balancer", "e2-medium", 1), ("tester", "e2-micro", 1)]
    assert all(m["of_which_ipv4"] == 0.005 for m in a["cost"]["machines"])


def test_without_cpu_columns_it_lists_what_it_cannot_give_and_keeps_the_bound(tmp_path):
    rows = grid_rows(lambda n, c: (c / n, 1.2 * c / n, 1.5 * c / n), nodes=(1, 2, 3), levels=(10, 100))
    df = load_results(write_csv(tmp_path / "old.csv", rows))  # rps = 500 at every point
    a = capacity.capacity_answer(df, PART2, 2000, model=False)
    assert a["throughput_needed_rps"] == pytest.approx(6666.7, abs=0.05)
    assert a["per_server_rps"] == 500.0 and a["servers_min"] == 14
    assert a["bottleneck"] is None
    assert all(r["cpu_ms_per_request"] is None and r["machine_type"] is None for r in a["roles"].values())
    assert any("server_cpu_s, balancer_cpu_s, tester_cpu_s" in u for u in a["unavailable"])
    assert any(u.startswith("bottleneck") for u in a["unavailable"])
    assert a["cost_per_hour"] is not None and a["cost"]["assumptions"]
    assert "not measured in these results" in a["conclusion"]


def test_servers_usl_is_null_when_the_fit_peaks_below_the_need(tmp_path):
    from labkit.analysis.usl import usl

    rows = [make_row(n, 100, rps=float(usl(n, 0.05, 0.02, 300.0))) for n in (1, 2, 3, 4, 5)]
    df = load_results(write_csv(tmp_path / "u.csv", rows))
    a = capacity.capacity_answer(df, PART2, 2000, model=False)  # peak about 1,900 req/s < 6,667
    assert a["servers_usl"] is None and "peaks at 6.9 nodes" in a["servers_usl_note"]
    linear = load_results(write_csv(tmp_path / "l.csv", [make_row(n, 100, rps=300.0 * n) for n in (1, 2, 3)]))
    b = capacity.capacity_answer(linear, PART2, 2000, model=False)
    assert b["servers_usl"] == 23 and b["servers_min"] == 23  # ceil(6666.7 / 300)
    assert "linear so far: no contention measured" in b["servers_usl_note"]


def test_point_helpers_read_the_analysis_core(cpu_df, tmp_path):
    one = cpu_df[(cpu_df["nodes"] == 3) & (cpu_df["concurrency"] == 100)]
    assert capacity.littles_law(one) == pytest.approx(1.0, rel=1e-4)
    assert capacity.point_bottleneck(one) == "server"
    busy_lb = load_results(write_csv(tmp_path / "b.csv", cpu_rows(server_ms=0.2, balancer_ms=0.5)))
    assert capacity.point_bottleneck(busy_lb[(busy_lb["nodes"] == 2) & (busy_lb["concurrency"] == 10)]) == "balancer"
    no_cpu = load_results(write_csv(tmp_path / "n.csv", [make_row(1, 10)]))
    assert capacity.point_bottleneck(no_cpu) is None
    assert capacity.littles_law(load_results(write_csv(tmp_path / "a.csv", [make_row(1, 10, aborted=True)]))) is None


def test_part2_rule(cpu_df, tmp_path):
    # nothing tested meets 2000 users: a count from servers_min (27) to the model plan's, naming a balancer
    a = capacity.capacity_answer(cpu_df, PART2, 2000)
    plan = a["plan"]
    top, need = plan["servers"], plan["balancer"]["machine_type"]
    assert top >= 27 and plan["predicted"]["meets"] and plan["tester"]["processes"] >= 1
    assert capacity.part2_accepts(cpu_df, PART2, 2000, 27, need, answer=a)
    assert capacity.part2_accepts(cpu_df, PART2, 2000, top, "e2-standard-16", answer=a)
    v = capacity.part2_accepts(cpu_df, PART2, 2000, 26, need, answer=a)
    assert not v and "servers_min = 27" in v.why
    v = capacity.part2_accepts(cpu_df, PART2, 2000, top + 1, need, answer=a)
    assert not v and "more than the model's plan" in v.why
    v = capacity.part2_accepts(cpu_df, PART2, 2000, 27, answer=a)  # must name the balancer
    assert not v and f"at least {need}" in v.why and "ab process" in v.why
    assert not capacity.part2_accepts(cpu_df, PART2, 2000, 27, "f1-micro", answer=a)  # too small for the need
    assert not capacity.part2_accepts(cpu_df, PART2, 2000, 27.5, need, answer=a)
    # a measured nodes_needed exists: exactly that one is accepted
    assert capacity.part2_accepts(cpu_df, PART2, 50, 1)
    assert not capacity.part2_accepts(cpu_df, PART2, 50, 3)
    # without CPU columns the balancer cannot be required: n >= servers_min suffices
    old = load_results(write_csv(tmp_path / "old.csv", grid_rows(lambda n, c: (c / n, c / n, c / n),
                                                                  nodes=(1, 2), levels=(10, 100))))
    assert capacity.part2_accepts(old, PART2, 2000, 14) and not capacity.part2_accepts(old, PART2, 2000, 13)


def test_cheapest_type():
    assert capacity.cheapest_type(0.16) == "f1-micro"
    assert capacity.cheapest_type(0.17) == "e2-micro"
    assert capacity.cheapest_type(0.5) == "e2-medium"
    assert capacity.cheapest_type(1.6) == "e2-standard-2"
    assert capacity.cheapest_type(1.7) == "e2-highcpu-4"  # the table reaches 16 vCPU
    assert capacity.cheapest_type(12.8) == "e2-highcpu-16"
    assert capacity.cheapest_type(12.9) is None


def test_an_old_csv_gives_the_bound_and_says_what_it_cannot(tmp_path):
    from pathlib import Path

    df = load_results(Path(__file__).resolve().parent / "data" / "reference-2026-11-28.csv")  # no CPU columns
    a = capacity.capacity_answer(df, PART2, 2000, model=False)
    assert a["servers_min"] == math.ceil(6666.67 / a["per_server_rps"]) == 22
    assert a["bottleneck"] is None and a["unavailable"]
    assert isinstance(pd.Series(a["roles"]).to_dict(), dict)


def test_the_reference_csv_names_the_balancer():
    from pathlib import Path

    df = load_results(Path(__file__).resolve().parent.parent / "data" / "reference.csv")
    a = capacity.capacity_answer(df, PART2, 2000, model=False)
    # servers saturated everywhere: capacity X/U per row, floored at the best delivered (5 nodes, c=50: 1,359 req/s)
    assert round(a["per_server_rps"]) == 282 and a["servers_min"] == 24
    assert a["roles"]["server"]["estimator"] == "saturated"
    assert (a["servers_usl"], a["bottleneck"], a["balancer_needed"]) == (28, "balancer", "e2-medium")
    # every role's cap is at least what it delivered / its utilisation there
    for role, r in a["roles"].items():
        assert r["capacity_rps"] >= r["floor_rps"] * (1 - 1e-6), role
    assert 0.05 < a["roles"]["balancer"]["cpu_ms_per_request"] < 0.16
    check = a["utilisation_check"]
    assert check["balancer"]["mean_abs_error"] < 0.06 and check["tester"]["mean_abs_error"] < 0.03


def test_role_utilisation_chart(cpu_df, tmp_path):
    from labkit.analysis.plots import save_chart
    from labkit.analysis.plots_roles import role_utilisation_chart, role_utilisation_table

    long = role_utilisation_table(cpu_df)
    assert set(long["role"]) == {"server", "balancer", "tester"}
    assert set(long[long["role"] == "balancer"]["nodes"]) == {2, 3}  # no balancer at one node
    fig = role_utilisation_chart(cpu_df)
    assert len([ax for ax in fig.axes if ax.axison]) == 3  # one panel per node count
    path = save_chart(fig, tmp_path, "roles.png")
    assert path.read_bytes()[:4] == b"\x89PNG" and fig._repr_png_()[:4] == b"\x89PNG"
    old = load_results(write_csv(tmp_path / "old.csv", [make_row(1, 10)]))
    empty = role_utilisation_chart(old)
    assert "no per-role CPU columns" in empty.axes[0].texts[0].get_text()


def test_a_role_whose_cpu_reads_zero_is_capped_at_what_it_delivered_not_divided_by_zero():
    """A tester's few ms of CPU read 0 in /proc's 10 ms ticks on a remote host: no demand, no crash."""
    import pandas as pd

    from labkit.analysis.demand import service_demand
    from tests.support.analysis_data import cpu_rows

    df = pd.DataFrame([m.to_json() for m in cpu_rows(tester_ms=0.0)])
    d = service_demand(df, "tester")
    assert d["capacity_rps"] is None and d["cpu_ms_per_request"] == 0.0
