"""Refining the SLA boundary (design §8): the pure bisection, then real sweeps against a service
whose limit the test controls (one request at a time: the mean grows with the users)."""

from __future__ import annotations

import csv
import dataclasses
import http.server
import threading
import time

import pytest

from labkit import refine, results
from labkit.backends.base import ClusterSpec
from labkit.analysis.report import build_report, format_report
from labkit.analysis.sla import max_concurrency
from labkit.sweep import Grid, run_sweep
from tests.data.capture import SubprocessAb, _Quiet
from tests.support.backend_doubles import NoMachinesBackend


# -- the search itself ------------------------------------------------------------------------

def test_bisect_converges_on_a_predicate_within_the_tolerance():
    seen = []

    def meets(c):
        seen.append(c)
        return c <= 45  # one f1-micro server's limit, by Little's law (0.2 s x ~225 rps)

    lo, hi, probes = refine.bisect(20, 50, meets)
    assert (lo, hi) == (42, 46)  # 4 users apart: within 10 % of 42
    assert probes == [(35, True), (42, True), (46, False)]
    assert seen == [c for c, _ in probes]
    assert refine.converged(lo, hi) and hi - lo <= 0.1 * lo
    # small limits go down to 2 users (a 5-user bracket at 20 users is 25 %)
    lo, hi, probes = refine.bisect(10, 20, lambda c: c <= 17)
    assert (lo, hi) == (17, 18) and probes == [(15, True), (17, True), (18, False)]
    # large levels stop at 10 % of the lower end, not 5 users
    lo, hi, probes = refine.bisect(1000, 2000, lambda c: c <= 1333)
    assert (lo, hi) == (1250, 1375) and len(probes) == 3  # 125 users: 10 % of 1250
    # an already narrow bracket measures nothing
    assert refine.bisect(20, 22, meets) == (20, 22, [])
    with pytest.raises(ValueError):
        refine.bisect(50, 20, meets)


@pytest.mark.parametrize("limit", [1, 7, 19, 20, 21, 33, 49])
def test_bisect_brackets_every_limit(limit):
    lo, hi, _ = refine.bisect(1, 50, lambda c: c <= limit)
    assert lo <= limit < hi and refine.converged(lo, hi)


def test_bracket_from_tested_levels():
    assert refine.bracket([(10, True), (20, True), (50, False), (100, False)]) == (20, 50)
    assert refine.bracket([(20, True), (10, True), (50, False), (100, True)]) == (20, 50)  # stops at the first fail
    assert refine.bracket([(10, False), (20, True)]) is None  # nothing met: no lower end
    assert refine.bracket([(10, True), (20, True)]) is None  # nothing failed: no upper end


# -- real sweeps against a service whose limit the test sets -----------------------------------

class OneAtATime(_Quiet):
    """Serves one request at a time, ``SERVICE_MS`` each: a closed loop of C users then waits about
    C x ``SERVICE_MS`` per request (Little's law), so the SLA ``mean<160`` holds up to about 40 users
    (4 ms: long enough that a busy machine's scheduling noise is small beside it)."""

    SERVICE_MS = 4.0
    lock = threading.Lock()

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        with OneAtATime.lock:
            time.sleep(self.SERVICE_MS / 1000.0)
        body = b'{"fibonacci_number": 20, "value": 6765}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024  # no SYN drops at c=100: the queue is the lock's, not the kernel's


class Direct(NoMachinesBackend):
    """A backend without machines whose tester runs the real ab against ``url``."""

    name = "direct"

    def __init__(self, url):
        super().__init__()
        self._url, self.ab = url, SubprocessAb()

    @property
    def url(self):
        return self._url

    def run_ab(self, command, timeout, progress=None):
        return self.ab.run_ab(command, timeout, progress)


@pytest.fixture
def crowded():
    server = _Server(("127.0.0.1", 0), OneAtATime)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield Direct(f"http://127.0.0.1:{server.server_address[1]}")
    server.shutdown()
    server.server_close()


def _rows(path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.mark.ab
@pytest.mark.serial  # its service's limit (about 40 users) is a speed: another test's load moves it
def test_refine_converges_on_a_real_service_and_resume_reuses_its_probes(crowded, tmp_path):
    out = tmp_path / "refined.csv"
    grid = Grid(ClusterSpec(), nodes=(1,), concurrency=(10, 100), requests=150, retries=0, refine="mean<160")
    run_sweep(crowded, grid, out, progress=False)
    rows = _rows(out)
    assert [(r["concurrency"], r["repeat"]) for r in rows[:2]] == [("10", "0"), ("100", "0")]
    probes: dict[int, list[dict]] = {}
    for r in rows[2:]:
        probes.setdefault(int(r["concurrency"]), []).append(r)
    assert 3 <= len(probes) <= 6, sorted(probes)
    for c, runs in probes.items():
        assert [int(r["repeat"]) for r in runs] == list(range(len(runs))), c
        good = [r["aborted"] == "false" and r["failed"] == "0" and float(r["mean_ms"]) < 160 for r in runs]
        # a probe meets in all 3 repeats, or stops at its first failing one
        assert good == [True, True, True] or (good[-1] is False and all(good[:-1])), (c, good)
    df = results.load_results(out)
    answer = max_concurrency(df, "mean<160")[1]
    higher = sorted(c for c in df["concurrency"].unique() if c > answer)[0]
    assert refine.converged(answer, higher), (answer, higher)
    assert 25 <= answer <= 45, answer  # the service's limit is about 40 users (mean ≈ 4 ms per user)
    report = build_report(df, "mean<160")
    assert report["max_concurrency"] == {1: answer}
    assert report["max_concurrency_handout_levels"] == {1: 10} and report["refined"] == [1]
    assert f"{answer}  (refined; on the handout's levels: 10)" in format_report(report)
    # resuming re-walks the same bisection over the rows it already has: nothing new to measure
    run_sweep(crowded, grid, out, resume=True, progress=False)
    assert _rows(out) == rows


@pytest.mark.ab
def test_repeats_and_resume_with_repeats(crowded, tmp_path):
    out = tmp_path / "repeats.csv"
    grid = Grid(ClusterSpec(), nodes=(1,), concurrency=(5, 10), requests=40, repeats=2)
    run_sweep(crowded, grid, out, progress=False)
    assert [(r["concurrency"], r["repeat"]) for r in _rows(out)] == [("5", "0"), ("5", "1"), ("10", "0"), ("10", "1")]
    # three repeats now: only the third of each level is measured
    run_sweep(crowded, dataclasses.replace(grid, repeats=3), out, resume=True, progress=False)
    rows = _rows(out)
    assert [(r["concurrency"], r["repeat"]) for r in rows[4:]] == [("5", "2"), ("10", "2")]
    assert len(crowded.ab.runs) == 6
    # a CSV from before repeats (the column empty) holds repeat 0 of each point
    old = tmp_path / "old.csv"
    with open(old, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows([{**r, "repeat": ""} for r in rows if r["repeat"] == "0"])
    run_sweep(crowded, dataclasses.replace(grid, repeats=2), old, resume=True, progress=False)
    assert [(r["concurrency"], r["repeat"]) for r in _rows(old)] == [("5", ""), ("10", ""), ("5", "1"), ("10", "1")]
    df = results.load_results(old)
    assert df.groupby("concurrency").size().tolist() == [2, 2]
