"""Host speed on record (labkit/calibration.py): the calibration, steal, the reference's figure,
--calibrate's scale, rows and provenance of a sweep, and what a report over two hosts says."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from labkit import calibration
from labkit.analysis.report import build_report, format_report
from labkit.errors import ConfigError
from labkit.results import load_results
from labkit.settings import Settings
from tests.support.local import labkit_cgroups

REPO = Path(__file__).resolve().parents[1]
REFERENCE = REPO / "data" / "reference.csv"
PART1 = "max<=1500 mean<200 p98<=300"


@pytest.fixture(scope="module")
def host_cal():
    """One real calibration for the module (the service and ab really run): the process's cached figure."""
    return calibration.host_calibration()


def test_the_calibration_measures_the_real_service_on_one_core(host_cal):
    assert host_cal.requests == calibration.REQUESTS
    # the Flask dev server spends about a millisecond of CPU per Fibonacci(20) request (0.7-2 ms on
    # this shared 2-core host, bench/RESULTS.md): far from 0 and from a request's wall time (~35 ms at c=10)
    assert 0.2 < host_cal.cpu_ms_per_request < 8
    assert host_cal.cpu_source in ("its cgroup (v1)", "its cgroup (v2)", "/proc/<pid>/stat")
    assert host_cal.steal_pct is None or 0 <= host_cal.steal_pct <= 100
    entry = host_cal.to_json()
    assert entry["cpu_ms_per_request"] == host_cal.cpu_ms_per_request
    assert entry["vs_reference"] == pytest.approx(host_cal.cpu_ms_per_request / 1.05, abs=1e-3)
    assert "ab -c 10 -n 400" in entry["method"] and "fibonacci_number" in entry["method"]
    assert host_cal.concurrency == 10
    assert calibration.host_calibration() is host_cal  # cached: once per process, not per point
    assert not [d for d in labkit_cgroups() if f"calibration-{os.getpid()}-" in d]  # its cgroup is removed


def test_steal_comes_from_the_cpu_line_of_proc_stat():
    before = calibration.cpu_times("cpu  100 0 50 800 10 0 5 35 0 0\ncpu0 1 2 3 4 5 6 7 8 0 0\n")
    after = calibration.cpu_times("cpu  200 0 100 1600 20 0 10 70 0 0\n")
    assert before == (35, 1000) and after == (70, 2000)
    assert calibration.steal_pct(before, after) == 3.5
    assert calibration.cpu_times("cpu  1 2 3 4\n") is None  # a kernel without the steal field
    assert calibration.steal_pct(None, after) is None and calibration.steal_pct(after, after) is None
    assert calibration.cpu_times() is not None  # this machine's /proc/stat has it


def test_the_reference_figure_is_derived_from_data_reference_csv():
    derived = calibration.cost_from_rows(load_results(REFERENCE))
    assert derived == pytest.approx(1.048, abs=0.001)
    assert round(derived, 2) == calibration.REFERENCE_CPU_MS_PER_REQUEST


def test_calibrate_reference_scales_quotas_by_this_hosts_cost_over_the_references():
    slow = calibration.Calibration(cpu_ms_per_request=2.1, requests=400, concurrency=10, steal_pct=0.0,
                                   measured_at="t", wall_s=1)
    assert calibration.reference_scale(slow) == 2.0  # a core half as fast: twice the quota
    fast = calibration.Calibration(cpu_ms_per_request=0.84, requests=400, concurrency=10, steal_pct=0.0,
                                   measured_at="t", wall_s=1)
    assert calibration.reference_scale(fast) == 0.8


def _copy_as_other_host(tmp_path, ms: float) -> Path:
    """data/reference.csv's rows as another run whose host calibrated at ``ms`` CPU ms per request."""
    with open(REFERENCE, newline="") as f:
        rows = list(csv.DictReader(f))
    out = tmp_path / "slow.csv"
    with open(out, "w", newline="") as f:
        writer = csv.DictWriter(f, [*rows[0], "host_cpu_ms_per_request"])
        writer.writeheader()
        for row in rows:
            writer.writerow({**row, "run_id": "20261204T120000Z-slow", "host_cpu_ms_per_request": str(ms)})
    return out


def test_a_report_over_two_hosts_of_different_speed_says_so(tmp_path):
    slow = _copy_as_other_host(tmp_path, 2.0)
    df = load_results([REFERENCE, slow])
    report = build_report(df, PART1)
    notes = report["host_speed"]
    assert notes[0] == ("run 20261129T123618Z-4852's core is about as fast per request as the reference's "
                        "(1.05 vs 1.05 CPU ms)")
    assert notes[1] == ("run 20261204T120000Z-slow's core is 1.9x slower per request than the reference's "
                        "(2.00 vs 1.05 CPU ms per request)")
    assert notes[2].startswith("these results come from hosts of different speed: run 20261204T120000Z-slow's "
                               "core is 1.9x slower per request than run 20261129T123618Z-4852's")
    text = format_report(report)
    assert "host speed: these results come from hosts of different speed" in text
    # the CLI says it too
    out = subprocess.run([sys.executable, "-m", "labkit.cli", "report", str(REFERENCE), str(slow), "--sla", PART1],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "1.9x slower per request than run 20261129T123618Z-4852's" in out.stdout


def test_hosts_within_ten_percent_are_not_called_different(tmp_path):
    df = load_results([REFERENCE, _copy_as_other_host(tmp_path, 1.1)])
    notes = calibration.host_speed_notes(df)
    assert len(notes) == 2 and not any("different speed" in n for n in notes)
    faster = calibration.host_speed_notes(load_results(_copy_as_other_host(tmp_path, 0.5)))
    assert faster == ["run 20261204T120000Z-slow's core is 2.1x faster per request than the reference's "
                      "(0.50 vs 1.05 CPU ms per request)"]


def test_the_overlay_in_04_names_sources_of_different_speed(tmp_path):
    from labkit.dashboard.reanalysis import ReanalysisDashboard

    slow = _copy_as_other_host(tmp_path, 2.0)
    shutil.copy(REFERENCE, tmp_path / "reference.csv")
    dash = ReanalysisDashboard(tmp_path / "reference.csv", root=tmp_path)
    dash.add(str(slow))
    dash.picker.value = ("reference.csv", "slow.csv")  # overlay both (add() keeps only the new one selected)
    assert "host speed — these results come from hosts of different speed: slow.csv&#x27;s core is 1.9x slower" \
        in dash.status.value


def test_doctor_reports_the_host_speed(host_cal):
    from labkit.doctor import run_checks

    check = next(c for c in run_checks() if c.name == "host speed")
    assert check.ok and not check.required
    assert check.detail.startswith(f"{host_cal.cpu_ms_per_request:.2f} CPU ms per request on one core: ")
    assert "the reference host (1.05 ms)" in check.detail


def _cli(*args, cwd) -> subprocess.CompletedProcess:
    """``labkit ARGS`` in a fresh process, its state in ``cwd/.labkit`` (the rest of the environment as is)."""
    return subprocess.run([sys.executable, "-m", "labkit.cli", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=120, env={**os.environ, "LABKIT_STATE_DIR": str(cwd / ".labkit")})


def test_status_takes_json_and_the_host_flags_are_refused_off_the_local_backend(tmp_path):
    out = _cli("status", "--json", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["up"] is False
    for flags in (["--calibrate", "reference"], ["--no-burst"]):
        out = _cli("sweep", "--backend", "ssh", "--nodes", "1", "--concurrency", "1", "--requests", "1",
                   "--out", str(tmp_path / "x.csv"), *flags, cwd=tmp_path)
        assert out.returncode == 2 and out.stderr.strip() == (
            "labkit: error: --calibrate and --no-burst apply to the local backend only (other backends run on "
            "real machines)")
        assert not (tmp_path / "x.csv").exists()


def test_the_next_scale_is_proportional_then_follows_the_power_law_through_the_last_two():
    target = calibration.REFERENCE_F1_MICRO_RPS
    assert calibration._next_scale([{"cpu_scale": 0.6, "rps": target / 2}]) == pytest.approx(1.2)
    # r = 300 s^2: through (0.6, 108) and (0.9, 243) the target 186.09 is at s = sqrt(186.09 / 300)
    seen = [{"cpu_scale": 0.6, "rps": 108.0}, {"cpu_scale": 0.9, "rps": 243.0}]
    assert calibration._next_scale(seen) == pytest.approx((target / 300) ** 0.5, rel=1e-6)
    noisy = [{"cpu_scale": 0.6, "rps": 200.0}, {"cpu_scale": 0.9, "rps": 190.0}]  # slope < 0.5: proportional
    assert calibration._next_scale(noisy) == pytest.approx(0.9 * target / 190.0)


@pytest.mark.ab
def test_calibrate_reference_refines_the_scale_on_a_real_quota_limited_f1_micro(host_cal):
    first = calibration.reference_scale(host_cal)
    found = calibration.match_reference(first, rounds=2, requests=200)
    assert found["first_scale"] == round(first, 3) and found["target_rps"] == 186.09
    assert [r["cpu_scale"] for r in found["rounds"]][0] == round(first, 3)
    assert all(r["rps"] > 10 for r in found["rounds"])
    assert 0.05 <= found["cpu_scale"] <= 5
    assert found["rounds"][1]["cpu_scale"] == round(calibration._next_scale(found["rounds"][:1]), 3)
    assert not [d for d in labkit_cgroups() if f"calibration-{os.getpid()}-" in d]
    with pytest.raises(ConfigError, match="--calibrate reference needs cgroups"):
        calibration.match_reference(first, Settings(cgroups="off"))


def test_labkit_bench_rows_carry_the_host_columns_too(local_env):
    env_cwd = local_env["tmp"]
    try:
        assert _cli("up", cwd=env_cwd).returncode == 0
        out = _cli("bench", "-c", "2", "-n", "20", cwd=env_cwd)
        assert out.returncode == 0, out.stderr
        row = json.loads(out.stdout)
        assert row["host_cpu_ms_per_request"] > 0 and row["steal_pct"] is not None
        assert (row["burst"], row["cpu_scale"]) == (False, 1.0)  # this lab runs without cgroups: nothing to burst
    finally:
        _cli("down", cwd=env_cwd)
