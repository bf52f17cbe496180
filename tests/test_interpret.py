"""Interpret your results: the explanations quote the student's own numbers (labkit.teaching.interpret*).

Crafted results (tests/support/analysis_data.py rows, written and read back as a sweep would) whose
numbers are known, so each text must contain exactly them. The notebooks' manually graded
cells that sit under these explanations are checked on the source notebooks and the rubric.
"""

from __future__ import annotations

import json

import pandas as pd
import pytest

from tests.support.analysis_data import make_row, write_csv
from labkit.handout import PART1_SLA, PART2_SLA
from labkit.teaching import findings
from labkit.teaching.interpret import bottleneck_text, littles_law_text, noise_text, points, usl_text
from labkit.teaching.first_run import HANDOUT_STATUS, handout_bug_text, payload_text
from labkit.teaching.network import backlog_text, round_robin_text, strictly_alternates
from labkit.lab import NOTEBOOKS_DIR
from labkit.grading.release import graded_cells, rubric
from labkit.results import load_results
from labkit.vertical import vertical_finding, vertical_text


def _df(tmp_path, rows):
    return load_results(write_csv(tmp_path / "r.csv", rows))


def _point(nodes, c, rps, mean, **over):
    """A clean point with throughput ``rps`` and mean ``mean`` ms (10,000 requests unless ``over`` says)."""
    n = over.pop("requests", 10000)
    over = {"requests": n, "complete": n, "time_taken_s": n / rps, **over}
    return make_row(nodes, c, mean, rps=rps, **over)


@pytest.fixture
def one_node(tmp_path):
    rows = [_point(1, 10, 200.0, 50.0), _point(1, 50, 240.0, 208.0), _point(1, 100, 250.0, 400.0),
            _point(1, 200, 248.0, 806.0, connect_mean_ms=1012.0, max_ms=3050.0),
            make_row(1, 500, aborted=True, abort_reason="apr_pollset_poll: The timeout specified has expired (70007)")]
    return _df(tmp_path, rows)


def test_littles_law_finding_by_value(one_node):
    f = findings.littles_law(one_node, nodes=1, k=5)
    assert [(p.concurrency, p.rps, p.mean_ms) for p in f.points] == [(10, 200.0, 50.0), (50, 240.0, 208.0),
                                                                     (100, 250.0, 400.0), (200, 248.0, 806.0)]
    p100 = f.points[2]
    assert p100.xr == pytest.approx(100.0) and p100.ratio == pytest.approx(1.0) and p100.holds
    (sat,) = f.saturation
    # flat from c=50 (240 ≥ 0.9 × 250); the highest level still delivers 248 of 250: flat, not dropping
    assert (sat.flat_from, sat.peak_rps, sat.last, sat.drops) == (50, 250.0, 200, False)
    assert sat.model_mean_ms == pytest.approx(800.0)


def test_littles_law_shows_evidence_and_flags_not_the_computation(one_node, tmp_path):
    text = littles_law_text(one_node, nodes=1, k=5)
    assert "| c=100 | 100 | 250.0 | 400 ms |  |" in text, "N, X, R: the student computes X·R"
    assert "X·R /" not in text and "flat" not in text and "100.0" not in text
    solved = littles_law_text(one_node, nodes=1, k=5, solve=True)
    assert "| c=100 | 100 | 250.0 | 400 ms | 100.0 | 1.00 |" in solved
    assert "throughput flat from c=50 (peak 250 req/s); mean 208 ms at c=50 → 806 ms at c=200 (model R" in solved
    assert "c=500" not in text, "an aborted point has no throughput to check"
    far = _df(tmp_path, [_point(2, 500, 300.0, 950.0)])  # 300 × 0.95 = 285 of 500
    f = findings.littles_law(far)
    assert f.points[0].ratio == pytest.approx(0.57) and not f.points[0].holds
    assert "| 2 nodes, c=500 | 500 | 300.0 | 950 ms | ⚠ |" in littles_law_text(far)
    assert "far from N at 2 nodes, c=500" in littles_law_text(far)


def test_a_throughput_that_falls_is_a_drop_not_flat(tmp_path):
    df = _df(tmp_path, [_point(2, 50, 400.0, 125.0), _point(2, 500, 500.0, 1000.0), _point(2, 1000, 365.0, 2700.0)])
    (sat,) = findings.littles_law(df).saturation
    assert sat.drops and sat.peak_rps == 500.0 and sat.last_rps == 365.0


def test_connections_attribute_stalls_only_where_a_backlog_can_be_full(one_node, tmp_path):
    f = findings.connections(one_node)
    assert f.one_node_aborted == (500,) and f.above_backlog == (200, 500)
    assert f.one_node_max_connect == (200, 1012.0, 3050.0)
    assert {(s.concurrency, s.what, s.retry_s, s.cause) for s in f.stalls} == {
        (200, "connect_mean_ms", 1.0, "client"), (200, "max_ms", 3.0, "client"),
        (100, "max_ms", 1.0, "")}  # c=100's max of 1,000 ms: under the backlog, connect mean small
    # c=100 is under Werkzeug's 128 and its connect mean is 1 ms: a 2.9 s max is not a SYN retry;
    # behind nginx, 2 nodes × c=500 is 250 users per server: nginx's own connects stall (15 s), the client's do not
    df = _df(tmp_path, [_point(1, 100, 97.0, 1000.0, max_ms=2870.0, connect_mean_ms=1.0),
                        _point(2, 500, 230.0, 2100.0, max_ms=15600.0, connect_mean_ms=2.0),
                        _point(5, 500, 580.0, 860.0, max_ms=7100.0, connect_mean_ms=2.0),
                        make_row(3, 1200, non_2xx=10000, failed=0),
                        make_row(2, 1500, aborted=True, abort_reason="apr_pollset_poll: (70007)")])
    f = findings.connections(df)
    assert {(s.nodes, s.concurrency, s.retry_s, s.cause) for s in f.stalls} == {
        (1, 100, 3.0, ""), (2, 500, 15.0, "upstream"), (5, 500, 7.0, "")}
    assert f.behind_aborted == ((2, 1500),) and f.behind_errors == ((3, 1200, "refused", 10000, 0),)
    text = backlog_text(df)
    assert "| 2 nodes, c=500 | 250 | 2.0 ms | 15,600 ms | ok |" in text and "- 2 nodes, c=500: longest request ≈ 15 s\n" in text
    assert "- c=100: longest request ≈ 3 s\n" in text, "evidence, not the attribution the question asks for"
    solved = backlog_text(df, solve=True)
    assert "- c=100: longest request ≈ 3 s — not a SYN retry" in solved
    assert "- 2 nodes, c=500: longest request ≈ 15 s — nginx's connects to the servers" in solved
    assert "| 3 nodes, c=1200 | refused | 10000 | 0 |" in text
    assert "queue" not in text, "the mechanism is the notebook's fixed text; no upstream queue is claimed"


def test_bottleneck_names_the_busy_role_with_its_utilisation(tmp_path):
    # 20 s runs: the server used 3.8 CPU-s of 0.2 vCPU (95 %), the tester 0.4 of 0.2 (10 %)
    rows = [_point(1, 50, 100.0, 500.0, time_taken_s=20.0, requests=2000, complete=2000, server_cpu_s=3.8,
                   tester_cpu_s=0.4, tester_machine_type="f1-micro"),
            _point(2, 50, 200.0, 250.0, time_taken_s=10.0, requests=2000, complete=2000, server_cpu_s=3.8,
                   balancer_cpu_s=1.6, tester_cpu_s=0.2, balancer_machine_type="f1-micro",
                   tester_machine_type="f1-micro")]
    df = _df(tmp_path, rows)
    text = bottleneck_text(df, PART2_SLA, 2000)
    assert "| 1 | c=50 | 100.0 | 95 % | — | 10 % | server |" in text
    assert "| 2 | c=50 | 200.0 | 95 % | 80 % | 10 % | server |" in text
    # balancer: 1.6 CPU-s / 2000 requests = 0.80 ms: one 0.2-vCPU f1-micro carries 250 rps (a model)
    assert "| balancer | 0.800 (0.80–0.80) | median | f1-micro | 0.2 | 250 |" in text
    assert "(model: vCPU / CPU per request)" in text
    assert "USL fit of peak throughput vs nodes: not available" in text, "two node counts cannot be fitted"
    assert "Capacity for 2000 users (model" in text and "6,667 req/s" in text


def test_usl_is_worded_only_when_it_explains_the_peaks(tmp_path):
    linear = _df(tmp_path, [_point(n, 100, 200.0 * n, 500.0 / n) for n in (1, 2, 3)])
    f = findings.usl(linear)
    assert f.available and f.r2 == pytest.approx(1.0) and f.explains
    assert ("USL fit of peak throughput vs nodes (a model, fitted to your peaks 1: 200, 2: 400, 3: 600 req/s): "
            "linear so far") in bottleneck_text(linear)
    noisy = _df(tmp_path, [_point(n, 100, rps, 100.0) for n, rps in ((1, 100.0), (2, 300.0), (3, 120.0),
                                                                     (4, 290.0), (5, 110.0))])
    f = findings.usl(noisy)
    assert f.available and f.r2 < 0.5 and not f.explains
    text = usl_text(noisy)
    assert f"R² {f.r2:.2f} — it explains too little" in text and "serialised" not in text


def test_noise_finding_lists_every_clause_near_its_bound(tmp_path):
    rows = [_point(1, 15, 120.0, 125.0, p98_ms=319.5, max_ms=600.0),  # p98 6.5 % over 300: near
            _point(1, 20, 200.0, 100.0, max_ms=1040.0, p99_ms=150.0),
            _point(1, 50, 230.0, 195.0, repeat=0), _point(1, 50, 240.0, 205.0, repeat=1)]
    f = findings.noise(_df(tmp_path, rows), PART1_SLA)
    near = {(x.concurrency, x.metric): round(x.over, 3) for x in f.near}
    assert near[(15, "p98")] == 0.065 and near[(50, "mean")] == 0.025
    assert f.gaps[0].concurrency == 20 and f.gaps[0].ratio == pytest.approx(1040 / 150)
    (rep,) = f.repeats
    assert (rep.concurrency, rep.runs, rep.clean, rep.mean_lo, rep.mean_hi) == (50, 2, 2, 195.0, 205.0)
    text = noise_text(_df(tmp_path, rows), PART1_SLA)
    assert "| c=15 | p98 | 320 ms | 300 ms | +6.5 % |" in text and "| c=20 | 150 ms | 1,040 ms | 6.9 |" in text
    assert "| c=50 | 0 | ok | 195 ms |" in text and "| c=50 | 1 | ok | 205 ms |" in text
    assert [(r.repeat, r.mean_ms) for r in f.runs] == [(0, 195.0), (1, 205.0)]
    assert "No clause" not in text


def test_noise_without_repeats_says_how_to_get_them(one_node):
    assert "set `repeats = 3`" in noise_text(one_node)


def test_vertical_heading_states_the_measured_ratios_and_what_is_not_shown(tmp_path):
    rows = [_point(1, 100, 100.0, 1000.0, machine_type="f1-micro", time_taken_s=10.0, server_cpu_s=2.0,
                   tester_machine_type="f1-micro"),
            _point(1, 100, 742.0, 135.0, machine_type="e2-medium", time_taken_s=10.0, server_cpu_s=9.0,
                   tester_machine_type="e2-standard-2"),
            _point(1, 100, 450.0, 222.0, machine_type="e2-medium", server="gunicorn", workers=2,
                   time_taken_s=10.0, server_cpu_s=9.5, tester_machine_type="e2-standard-2"),
            _point(1, 100, 1600.0, 62.5, machine_type="e2-standard-2", server="gunicorn", workers=4,
                   time_taken_s=10.0, server_cpu_s=19.0, tester_machine_type="e2-standard-2")]
    df = _df(tmp_path, rows)
    f = vertical_finding(df)
    flask = next(c for c in f.scaling if c.server == "flask")
    assert (flask.small, flask.large, flask.vcpu_ratio, round(flask.rps_ratio, 2), flask.verdict) == (
        "f1-micro", "e2-medium", 5.0, 7.42, "scaled")
    gun = next(c for c in f.scaling if c.server == "gunicorn")
    assert gun.vcpu_ratio == 2.0 and round(gun.rps_ratio, 2) == 3.56 and gun.verdict == "scaled"
    assert not f.flask_above_one_vcpu and f.testers == ("e2-standard-2", "f1-micro")
    text = vertical_text(df)
    assert text.startswith("### Your numbers: flask ×7.42 throughput for ×5.0 vCPU (scaled); gunicorn ×3.56")
    assert "whether it stays flat beyond one core is **not shown**" in text
    assert "measured with different testers (e2-standard-2, f1-micro)" in text
    assert "| flask ×1 | f1-micro | 0.2 | 100 | 100 | 1,000 ms | 0.20 | f1-micro |" in text


def test_points_mean_over_clean_repeats_only(tmp_path):
    df = _df(tmp_path, [_point(1, 10, 100.0, 100.0), _point(1, 10, 300.0, 33.0, repeat=1),
                        make_row(1, 10, non_2xx=5, repeat=2)])
    p = points(df).iloc[0]
    assert (p["runs"], p["ok_runs"], p["status"], p["rps"]) == (3, 2, "errors", 200.0)


class _FakeLab:
    name = "ssh"
    balancer_machine_type = "f1-micro"

    class spec:  # noqa: N801 - stands in for a ClusterSpec
        nodes = 2

    def __init__(self, conf):
        self.conf = conf

    def balancer_config(self):
        return self.conf

    def inner(self):
        return None


def test_round_robin_text_matches_the_table_and_the_worker_count():
    strict = pd.DataFrame({"node": ["restserver-0", "restserver-1"] * 3})
    text = round_robin_text(strict, _FakeLab("worker_processes auto;\nevents {}"))
    assert "took strict turns" in text and "1 worker(s) (worker_processes auto: one per vCPU of the f1-micro" in text
    assert "alternate strictly" in text
    twice = pd.DataFrame({"node": ["restserver-0", "restserver-0", "restserver-1", "restserver-1"]})
    text = round_robin_text(twice, _FakeLab("worker_processes 2;"))
    assert "did not take strict turns" in text and "2 worker(s)" in text and "(as in your table)" in text
    assert strictly_alternates(["a", "b", "c", "a", "b", "c", "a"], 3)
    assert not strictly_alternates(["a", "a", "b", "b"], 2)


def test_handout_bug_is_demonstrated_and_our_line_quoted():
    with pytest.raises(KeyError):
        HANDOUT_STATUS.format(2, 0)
    text = handout_bug_text()
    assert "KeyError: '\"cache_length\"'" in text and "KeyError: '\"fibonacci_number\"'" in text
    assert "Response(json.dumps(payload)" in text
    assert payload_text().startswith('$ cat payload.json\n{"fibonacci_number": 20}\n')


MANUAL = {"01_single_server": {"interpret_01_littles_law": 2, "interpret_01_backlog": 2, "interpret_01_noise": 1},
          "02_load_balancer": {"interpret_02_balancer": 2, "interpret_02_bottleneck": 2, "interpret_02_scaling": 2},
          "03_vertical_scaling": {"interpret_03_vertical": 2}}


@pytest.mark.parametrize("name", sorted(MANUAL))
def test_each_interpretation_is_followed_by_a_manually_graded_cell(name):
    """The convention of README "For instructors": a markdown answer cell (grade + solution, points),
    right after a markdown question headed "### Interpret your results", after a cell printing the
    explanation from the student's own results (not a measuring cell: it runs when graded)."""
    nb = json.loads((NOTEBOOKS_DIR / f"{name}.ipynb").read_text())
    cells = nb["cells"]
    found = {}
    for i, cell in enumerate(cells):
        meta = cell["metadata"].get("nbgrader", {})
        if not (meta.get("grade") and meta.get("solution")):
            continue
        assert cell["cell_type"] == "markdown" and meta["locked"] is False
        question = "".join(cells[i - 1]["source"])
        assert cells[i - 1]["cell_type"] == "markdown" and question.startswith("### Interpret your results")
        explain = cells[i - 2]
        assert explain["cell_type"] == "code" and "_text(" in "".join(explain["source"])
        assert "measure" not in explain["metadata"].get("tags", [])
        found[meta["grade_id"]] = meta["points"]
    assert found == MANUAL[name]
    graded = {g["grade_id"]: g for g in graded_cells(nb) if g["manual"]}
    assert set(graded) == set(MANUAL[name])
    text = rubric([NOTEBOOKS_DIR / f"{name}.ipynb"])
    for gid, pts in MANUAL[name].items():
        assert f"### {name} · `{gid}` ({pts} points)" in text
        assert graded[gid]["answer"].startswith("A full answer")


def test_nginx_open_file_limit_is_read_and_judged():
    from labkit.teaching.network import _open_files, _verdict

    limits = ("Limit                     Soft Limit           Hard Limit           Units     \n"
              "Max open files            65536                65536                files     \n")
    line, soft = _open_files(limits)
    assert line == "Max open files  65536  65536  files" and soft == 65536
    assert "took effect" in _verdict(65536)
    assert "hard limit caps it" in _verdict(20000) and "4096 worker_connections × 2" in _verdict(20000)
    assert "Too many open files" in _verdict(1024)
