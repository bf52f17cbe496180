"""Interpret your results: the explanations quote the student's own numbers (labkit.teaching.interpret*).

Crafted results (tests/analysis_data.py rows, written and read back as a sweep would) whose
numbers are known, so each text must contain exactly them. The notebooks' manually graded
cells that sit under these explanations are checked on the source notebooks and the rubric.
"""

from __future__ import annotations

import json

import pandas as pd
import pytest

from tests.support.analysis_data import make_row, write_csv
from labkit.handout import PART1_SLA, PART2_SLA
from labkit.teaching.interpret import bottleneck_text, littles_law_text, noise_text, points
from labkit.teaching.first_run import HANDOUT_STATUS, handout_bug_text, payload_text
from labkit.teaching.network import backlog_text, round_robin_text, strictly_alternates
from labkit.lab import NOTEBOOKS_DIR
from labkit.grading.release import graded_cells, rubric
from labkit.results import load_results
from labkit.vertical import vertical_text


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


def test_littles_law_quotes_the_students_numbers(one_node):
    text = littles_law_text(one_node, nodes=1, k=5)
    # c=100, 250 rps, mean 400 ms -> X·R = 100
    assert "c=100: X = 250.0 rps, R = mean 400 ms → X·R = 250.0 × 0.400 s = 100.0 (N = 100; ratio 1.00" in text
    assert "c=10: X = 200.0 rps, R = mean 50 ms" in text and "= 10.0 (N = 10" in text
    # throughput flat from c=50 (240 ≥ 0.9 × 250): R = N / X
    assert "flattens at about 250 rps (from c=50)" in text
    assert "mean 208 ms → 806 ms" in text and "model R = 200 / 250 rps = 800 ms" in text
    assert "c=500" not in text, "an aborted point has no throughput to check"


def test_littles_law_flags_a_ratio_far_from_one(tmp_path):
    df = _df(tmp_path, [_point(2, 500, 300.0, 950.0)])  # 300 × 0.95 = 285 of 500
    text = littles_law_text(df)
    assert "2 nodes, c=500" in text and "ratio 0.57: far from 1: fewer than N" in text


def test_backlog_quotes_aborted_levels_and_syn_stalls(one_node, tmp_path):
    text = backlog_text(one_node)
    assert "backlog of 128" in text and "-s 10" in text and "70007" in text
    assert "aborted: c=500 (apr_pollset_poll: The timeout specified has expired (70007))" in text
    assert "Largest connect mean: 1,012 ms at c=200" in text
    assert "c=200: connect mean 1,012 ms, max 3,050 ms ≈ 3 s" in text
    assert "no rows behind the balancer yet" in text

    behind = _df(tmp_path, [*[make_row(1, 10)], _point(2, 100, 500.0, 200.0, connect_mean_ms=2.5),
                            make_row(3, 1200, non_2xx=10000, failed=0),
                            make_row(2, 1500, aborted=True, abort_reason="apr_pollset_poll: (70007)")])
    text = backlog_text(behind)
    assert "Aborted behind the balancer: 2 nodes, c=1500 (apr_pollset_poll: (70007))" in text
    assert "3 nodes, c=1200 refused (10000 non-2xx, 0 failed)" in text
    assert "502" in text and "Largest connect mean behind the balancer: 2.5 ms at 2 nodes, c=100" in text


def test_bottleneck_names_the_busy_role_with_its_utilisation(tmp_path):
    # 20 s runs: the server used 3.8 CPU-s of 0.2 vCPU (95 %), the tester 0.4 of 0.2 (10 %)
    rows = [_point(1, 50, 100.0, 500.0, time_taken_s=20.0, requests=2000, complete=2000, server_cpu_s=3.8,
                   tester_cpu_s=0.4, tester_machine_type="f1-micro"),
            _point(2, 50, 200.0, 250.0, time_taken_s=10.0, requests=2000, complete=2000, server_cpu_s=3.8,
                   balancer_cpu_s=1.6, tester_cpu_s=0.2, balancer_machine_type="f1-micro",
                   tester_machine_type="f1-micro")]
    df = _df(tmp_path, rows)
    text = bottleneck_text(df, PART2_SLA, 2000)
    assert "1 node(s), best clean point c=50 (100 rps): server 95 %, tester 10 % → busiest: server" in text
    assert ("2 node(s), best clean point c=50 (200 rps): server 95 %, balancer 80 %, tester 10 % → busiest: server"
            in text)
    # balancer: 1.6 CPU-s / 2000 requests = 0.80 ms: one 0.2-vCPU f1-micro carries 250 rps (a model)
    assert "balancer 0.80 ms, so one f1-micro (0.2 vCPU) saturates near 250 rps (model" in text
    assert "USL fit over node counts: not available" in text, "two node counts cannot be fitted"
    assert "Capacity for 2000 users (model" in text and "6,667 req/s" in text


def test_bottleneck_without_cpu_columns_says_so(tmp_path):
    df = _df(tmp_path, [_point(n, 100, 200.0 * n, 500.0 / n) for n in (1, 2, 3)])
    text = bottleneck_text(df)
    assert "no per-role CPU columns" in text
    assert ("USL fit of peak throughput vs nodes (model, fitted to your peaks 1: 200, 2: 400, 3: 600 rps): "
            "linear so far") in text


def test_noise_quotes_max_vs_p99_repeats_and_borderline(tmp_path):
    rows = [_point(1, 20, 200.0, 100.0, max_ms=1040.0, p99_ms=150.0),
            _point(1, 50, 230.0, 195.0, repeat=0), _point(1, 50, 240.0, 205.0, repeat=1)]
    text = noise_text(_df(tmp_path, rows), PART1_SLA)
    assert "c=20: max 1,040 ms vs p99 150 ms (×6.9)" in text
    assert "c=50: 2 runs, mean 195 ms–205 ms (5 % apart)" in text
    assert "Borderline under max<=1500 mean<200 p98<=300: c=50: mean 205 ms, 2 % over 200" in text


def test_noise_without_repeats_says_how_to_get_them(one_node):
    assert "set `repeats = 3`" in noise_text(one_node)


def test_vertical_quotes_throughput_ratios_and_cores_busy(tmp_path):
    rows = [_point(1, 100, 100.0, 1000.0, machine_type="f1-micro", time_taken_s=10.0, server_cpu_s=2.0),
            _point(1, 100, 480.0, 208.0, machine_type="e2-standard-2", time_taken_s=10.0, server_cpu_s=10.0),
            _point(1, 100, 450.0, 222.0, machine_type="e2-medium", server="gunicorn", workers=2,
                   time_taken_s=10.0, server_cpu_s=9.5),
            _point(1, 100, 1600.0, 62.5, machine_type="e2-standard-2", server="gunicorn", workers=4,
                   time_taken_s=10.0, server_cpu_s=19.0)]
    text = vertical_text(_df(tmp_path, rows))
    assert "flask (1 worker) on f1-micro (0.2 vCPU), c=100: 100 rps, mean 1,000 ms, 0.20 cores busy of 0.2" \
        in text
    assert ("flask: f1-micro → e2-standard-2: vCPU ×10.0, throughput ×4.80 (100 → 480 rps): did not keep up"
            in text)
    assert "kept 1.00 of 2 cores busy — one process cannot use more than one" in text
    assert "gunicorn: e2-medium → e2-standard-2: vCPU ×2.0, throughput ×3.56" in text
    assert "Same machine (e2-standard-2): flask 480 rps vs gunicorn (4 workers) 1,600 rps" in text


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
