"""Benchmark — several load generators: k=1 vs k=2 ab processes, and hey as an independent cross-check.

One local lab stays up: one gunicorn server on an ``e2-standard-2`` (2 vCPU, its cgroup
quota; ``--workers`` sync workers) — a server one ab process should not be able to saturate
— and testers of ``n1-standard-1`` (one vCPU each, so each ab process has a core's quota).
In every round, in alternating order, the same total load (``-c C -n N``, the handout's POST)
is measured four ways against the same URL:

* ``ab k=1`` — one ab process (:func:`labkit.measure.measure`, testers=1);
* ``ab k=2`` — two ab processes, each C/2 users and N/2 requests, each pinned to its own
  core, merged exactly from their ``-g`` data (testers=2);
* ``hey, no keep-alive`` — Debian's ``hey`` (Go's HTTP/1.1 client) with
  ``-disable-keepalive``: a new connection per request, as ab without ``-k`` does;
* ``hey, keep-alive`` — ``hey``'s default;
* ``wrk`` — Debian's ``wrk``: a C event loop like ab's, but HTTP/1.1 with keep-alive, run for
  a fixed 2 s (it has no ``-n``): it tells the HTTP version apart from hey's Go runtime.

hey is pinned to the same core as ab k=1 (its Go runtime limited to one thread,
GOMAXPROCS=1) — and, as a fifth way, run on both cores with two threads — and its per-request times are read from ``-o csv``; its percentiles use the
same rule as ab's ``-e`` file (:func:`labkit.ab_merge.percentile`), so the columns mean the
same thing. Figures per way: medians over the rounds of rps, mean, p95, p99 and the client's
CPU ms per request; then the ratios k2/k1 and hey/ab of the medians.

    .venv/bin/python bench/bench_testers.py [--runs 5] [--concurrency 40] [--requests 4000]
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402


def run_hey(url: str, concurrency: int, requests: int, payload: bytes, keepalive: bool, cpus: set[int]) -> dict:
    """One hey run on ``cpus`` (GOMAXPROCS = their number): rps over its span, mean/p95/p99 of its
    per-request times, and the mean of each phase hey times (dial, write, server delay, read)."""
    from labkit.ab_merge import percentile

    hey = shutil.which("hey")
    if not hey:
        raise SystemExit("hey is not installed: apt-get install -y hey (the Makefile's bench target does)")
    with tempfile.NamedTemporaryFile(suffix=".json") as f:
        f.write(payload)
        f.flush()
        argv = [hey, "-n", str(requests), "-c", str(concurrency), "-m", "POST", "-T", "application/json",
                "-D", f.name, "-t", "10", "-o", "csv"]
        if not keepalive:
            argv.append("-disable-keepalive")
        argv.append(url)
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        res = subprocess.run(argv, capture_output=True, text=True, timeout=600,
                             env={**os.environ, "GOMAXPROCS": str(len(cpus))},
                             preexec_fn=lambda: os.sched_setaffinity(0, cpus))
        wall = time.perf_counter() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if res.returncode != 0:
        raise RuntimeError(f"hey failed ({res.returncode}): {res.stderr[-500:]}")
    rows = list(csv.DictReader(io.StringIO(res.stdout)))
    ok = [r for r in rows if r["status-code"].startswith("2")]
    times = sorted(float(r["response-time"]) * 1000 for r in rows)
    # hey's rps: requests / the span from the first request's offset to the last one's end
    span = max(float(r["offset"]) + float(r["response-time"]) for r in rows) if rows else wall
    cpu_s = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return {"rps": len(rows) / span, "mean": sum(times) / len(times), "p95": percentile(times, 95),
            "p99": percentile(times, 99), "max": times[-1], "complete": len(rows), "errors": len(rows) - len(ok),
            "cpu_ms": 1000 * cpu_s / max(1, len(rows)),
            **{name: sum(float(r[col]) for r in rows) / max(1, len(rows)) * 1000 for name, col in
               (("connect_ms", "DNS+dialup"), ("write_ms", "Request-write"), ("delay_ms", "Response-delay"),
                ("read_ms", "Response-read"))}}


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if not m:
        raise ValueError(f"wrk time {text!r}")
    return float(m.group(1)) * _UNITS[m.group(2)]


def run_wrk(url: str, concurrency: int, seconds: float, payload: bytes, cpu: int) -> dict:
    """One wrk run (a C event loop like ab, but HTTP/1.1 with keep-alive) on ``cpu`` for ``seconds``:
    rps, mean and p99 (wrk's --latency table has no p95)."""
    wrk = shutil.which("wrk")
    if not wrk:
        raise SystemExit("wrk is not installed: apt-get install -y wrk (the Makefile's bench target does)")
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as f:
        f.write(f'wrk.method = "POST"\nwrk.body = {json.dumps(payload.decode())}\n'
                'wrk.headers["Content-Type"] = "application/json"\n')
        f.flush()
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        res = subprocess.run([wrk, "-t1", f"-c{concurrency}", f"-d{max(1, round(seconds))}s", "--latency",
                              "-s", f.name, url], capture_output=True, text=True, timeout=600,
                             preexec_fn=lambda: os.sched_setaffinity(0, {cpu}))
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if res.returncode != 0:
        raise RuntimeError(f"wrk failed ({res.returncode}): {res.stderr[-500:]}")
    out = res.stdout
    done = int(re.search(r"(\d+) requests in", out).group(1))
    errors = int(m.group(1)) if (m := re.search(r"Non-2xx or 3xx responses: (\d+)", out)) else 0
    if m := re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out):
        errors += sum(int(x) for x in m.groups())
    return {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
            "mean": _ms(re.search(r"Latency\s+(\S+)", out).group(1)), "p95": None,
            "p99": _ms(re.search(r"99%\s+(\S+)", out).group(1)),
            "max": _ms(re.search(r"Latency\s+\S+\s+\S+\s+(\S+)", out).group(1)), "complete": done,
            "errors": errors, "connect_ms": None,
            "cpu_ms": 1000 * ((after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)) / max(1, done)}


def main() -> None:
    ap = C.parser(__doc__, "testers", runs=5, concurrency=40, requests=4000, workers=4)
    ap.add_argument("--fib", type=int, default=20, help="the payload's fibonacci_number (the handout's is 20)")
    args = ap.parse_args()
    C.setup_env()
    from labkit.ab import AbCommand
    from labkit.backends.base import ClusterSpec
    from labkit.backends.local import cpu_affinity
    from labkit.backends.local.backend import LocalBackend
    from labkit.measure import measure
    from labkit.settings import Settings

    payload = f'{{"fibonacci_number": {args.fib}}}\n'.encode()
    ways = ["ab k=1", "ab k=2", "hey, no keep-alive", "hey, keep-alive", "hey, no keep-alive, 2 cores",
            "wrk (HTTP/1.1, keep-alive)"]
    got: dict[str, list[dict]] = {w: [] for w in ways}
    skews: list[float] = []
    class Skews(logging.Handler):  # measure() logs each merge's start skew
        def emit(self, record):
            m = re.search(r"start skew ([\d.]+) ms", record.getMessage())
            if m:
                skews.append(float(m.group(1)))

    logging.getLogger("labkit").addHandler(Skews())
    logging.getLogger("labkit").setLevel(logging.INFO)
    b = LocalBackend(Settings.from_env(), tester_machine_type="n1-standard-1")
    cpus = cpu_affinity.available()
    try:
        b.up(ClusterSpec(nodes=1, machine_type="e2-standard-2", server="gunicorn", workers=args.workers))
        command = AbCommand(b.url, args.concurrency, args.requests, payload=payload)
        url = command.target
        for r in range(args.runs):
            for way in (ways if r % 2 == 0 else list(reversed(ways))):
                if way.startswith("ab"):
                    k = int(way[-1])
                    row = measure(b, command, retries=0, testers=k)
                    if row.aborted:
                        print(f"round {r + 1} {way}: aborted ({row.abort_reason})", flush=True)
                        continue
                    fig = {"rps": row.rps, "mean": row.mean_ms, "p95": row.p95_ms, "p99": row.p99_ms,
                           "max": row.max_ms, "complete": row.complete, "errors": row.failed + row.non_2xx,
                           "cpu_ms": 1000 * row.tester_cpu_s / row.complete if row.tester_cpu_s else None,
                           "connect_ms": row.connect_mean_ms,
                           "server_ms": 1000 * row.server_cpu_s / row.complete if row.server_cpu_s else None,
                           "server_util": row.server_cpu_s / (row.time_taken_s * 2.0) if row.server_cpu_s else None}
                else:
                    b.settle(30)
                    s0 = b.cpu_seconds_by_role()["server"]
                    fig = run_wrk(url, args.concurrency, 1.5, payload, cpus[-1]) if way.startswith("wrk") else run_hey(url, args.concurrency, args.requests, payload, "no keep" not in way,
                                  set(cpus) if "2 cores" in way else {cpus[-1]})
                    s1 = b.cpu_seconds_by_role()["server"]
                    fig["server_ms"] = 1000 * (s1 - s0) / fig["complete"] if s0 is not None and s1 is not None else None
                got[way].append(fig)
                print(f"round {r + 1} {way:20} rps={fig['rps']:.0f} mean={fig['mean']:.2f} p95={fig['p95']} "
                      f"p99={fig['p99']:.1f} errors={fig['errors']} client_cpu_ms/req={fig['cpu_ms']}", flush=True)
    finally:
        b.down()

    med = {w: {k: C.median([x.get(k) for x in got[w]]) for k in
               ("rps", "mean", "p95", "p99", "max", "cpu_ms", "server_ms", "connect_ms", "server_util", "errors")} for w in ways}
    rows = [[w, f"**{C.fmt(med[w]['rps'])}** ({C.spread([x['rps'] for x in got[w]])})", C.fmt(med[w]["mean"]),
             C.fmt(med[w]["p95"]), C.fmt(med[w]["p99"]), C.fmt(med[w]["max"]), C.fmt(med[w]["connect_ms"]),
             C.fmt(med[w]["cpu_ms"]), C.fmt(med[w]["server_ms"]), C.fmt(med[w]["errors"]), str(len(got[w]))]
            for w in ways]

    def ratio(a, b_, key):
        x, y = med[a][key], med[b_][key]
        return f"{x / y:.2f}" if x == x and y == y and y else "-"

    def paired(a, b_):  # the ratio within each round (the two ran minutes apart at most), then its median
        pairs = [x["rps"] / y["rps"] for x, y in zip(got[a], got[b_])]
        return f"{C.median(pairs):.2f} ({C.spread(pairs)})" if pairs else "-"

    pairs = (("ab k=2", "ab k=1"), ("hey, no keep-alive", "ab k=1"), ("hey, keep-alive", "ab k=1"),
             ("hey, keep-alive", "hey, no keep-alive"), ("hey, no keep-alive, 2 cores", "hey, no keep-alive"),
             ("wrk (HTTP/1.1, keep-alive)", "ab k=1"))
    ratios = [[f"{a} / {b_}", *(ratio(a, b_, k) for k in ("rps", "mean", "p95", "p99")), paired(a, b_)]
              for a, b_ in pairs]
    phases = [[w, *(C.fmt(C.median([x.get(k) for x in got[w]])) for k in
                    ("connect_ms", "write_ms", "delay_ms", "read_ms"))] for w in ways if w.startswith("hey")]
    body = "\n".join([
        "## Several load generators: k=1 vs k=2 ab processes, hey as a cross-check (local backend)", "",
        f"1 × gunicorn ({args.workers} sync workers) on an e2-standard-2 (2-vCPU quota), testers n1-standard-1 "
        f"(one core each); the same load `-c {args.concurrency} -n {args.requests}`, POST "
        f"`{payload.decode().strip()}`, {args.runs} rounds alternating the ways; median (min–max). "
        "Client CPU = ab's testers' cgroups (hey: its rusage) per request; connect = ab's Connection Times "
        "mean (hey: DNS+dial-up).", "",
        C.table(["client", "req/s", "mean ms", "p95 ms", "p99 ms", "max ms", "connect ms", "client CPU ms/req",
                 "server CPU ms/req", "errors", "runs"], rows), "",
        "Ratios of the medians:", "",
        C.table(["ratio", "req/s", "mean", "p95", "p99", "req/s, paired by round: median (min–max)"], ratios), "",
        "hey's own phases, median of the per-run means (ms): dial = DNS+dial-up, write = request write, "
        "delay = request written → first response byte, read = response read:", "",
        C.table(["hey", "dial", "write", "delay", "read"], phases), "",
        f"Server utilisation during ab (server CPU / (time × 2 vCPU)), median: k=1 "
        f"{C.fmt(med['ab k=1']['server_util'])}, k=2 {C.fmt(med['ab k=2']['server_util'])}. Start skew between "
        f"the two ab processes: median {C.fmt(C.median(skews))} ms (max {C.fmt(max(skews) if skews else None)}).", "",
    ])
    C.publish(args.section, body)


if __name__ == "__main__":
    main()
