"""Benchmark — host speed and bursting: the calibration figure, --calibrate reference, CFS burst.

Three parts (``--part``, default all):

* ``calibration``: :func:`labkit.calibration.measure_host` ``--runs`` times at c=10 (labkit's) and
  at c=1, alternating (the service on one unconstrained core, the handout's payload): CPU ms per
  request, its ratio to the reference's 1.05 ms, the steal, the wall time of one calibration.
* ``part1``: the quick profile's one-node part-1 sweep (its levels and requests, the boundary
  refined), ``labkit sweep --profile quick --nodes 1``, without and then with
  ``--calibrate reference``; each one's part-1 answer (``labkit report``) beside
  ``data/reference.csv``'s, with the server CPU per request each measured at c=10.
* ``burst``: one f1-micro (1 node, the Flask dev server, its 0.2-vCPU quota) and ab at c=1
  for ``--seconds`` seconds (ab -t), with CFS burst and with ``--no-burst``; requests/s per
  5-second bin from ab's -g file and the server's CPU over the run from its cgroup.

    .venv/bin/python bench/bench_hostspeed.py [--part calibration|part1|burst] [--runs 5] [--seconds 60]
"""

from __future__ import annotations

import collections
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

PART1 = "max<=1500 mean<200 p98<=300"


def calibration_part(runs: int) -> tuple[str, dict]:
    """The calibration at c=10 (what labkit uses) and at c=1 (the issue's first idea), alternating."""
    from labkit.calibration import measure_host

    cals = {10: [], 1: []}
    for _ in range(runs):
        for conc in (10, 1):
            cals[conc].append(measure_host(concurrency=conc))
    rows = []
    for conc, runs_ in cals.items():
        ms = [c.cpu_ms_per_request for c in runs_]
        rows.append([f"c={conc}" + (" (labkit's)" if conc == 10 else ""), f"{C.fmt(C.median(ms))} ({C.spread(ms)})",
                     C.fmt(C.median(ms) / runs_[0].reference_cpu_ms_per_request),
                     C.fmt(C.median([c.steal_pct for c in runs_])), C.fmt(C.median([c.wall_s for c in runs_])),
                     runs_[0].cpu_source])
    ref = cals[10][0].reference_cpu_ms_per_request
    body = (f"**Calibration** ({runs} runs each, alternating; {cals[10][0].requests} requests after "
            f"{40} unmeasured, the service on one unconstrained core): CPU ms per request, × the reference's "
            f"{ref} ms, steal, wall time of one calibration.\n\n"
            + C.table(["ab concurrency", "CPU ms/request (min–max)", "× reference", "steal %", "wall s", "CPU from"],
                      rows))
    return body, {f"c{k}": [c.cpu_ms_per_request for c in v] for k, v in cals.items()}


def _labkit(*args, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([C.LABKIT, *args], capture_output=True, text=True, env=env)


def part1_part(folder: Path, env: dict) -> tuple[str, dict]:
    import pandas as pd

    rows, found = [], {}
    ref = json.loads(_labkit("report", str(C.ROOT / "data/reference.csv"), "--sla", PART1, "--json").stdout)
    df = pd.read_csv(C.ROOT / "data/reference.csv")
    ref_c10 = df[(df.nodes == 1) & (df.concurrency == 10)]
    rows.append(["data/reference.csv (2026-11-29)", "-", "-", ref["max_concurrency"]["1"],
                 C.fmt(1000 * float(ref_c10.server_cpu_s.iloc[0] / ref_c10.complete.iloc[0])),
                 C.fmt(float(ref_c10.rps.iloc[0]))])
    for label, extra in (("this host", []), ("this host, --calibrate reference", ["--calibrate", "reference"])):
        out = folder / f"part1-{len(found)}.csv"
        t0 = time.monotonic()
        res = _labkit("sweep", "--profile", "quick", "--nodes", "1", "--out", str(out), *extra, env=env)
        if res.returncode != 0:
            raise SystemExit(f"sweep failed: {res.stderr[-2000:]}")
        wall = time.monotonic() - t0
        rep = json.loads(_labkit("report", str(out), "--sla", PART1, "--json").stdout)
        d = pd.read_csv(out)
        c10 = d[(d.concurrency == 10)].iloc[0]
        found[label] = {"part1": rep["max_concurrency"]["1"], "host_ms": float(d.host_cpu_ms_per_request.iloc[0]),
                        "cpu_scale": float(d.cpu_scale.iloc[0]), "wall_s": wall,
                        "c10_server_ms": 1000 * float(c10.server_cpu_s / c10.complete), "c10_rps": float(c10.rps)}
        f = found[label]
        rows.append([label, C.fmt(f["host_ms"]), C.fmt(f["cpu_scale"]), f["part1"], C.fmt(f["c10_server_ms"]),
                     C.fmt(f["c10_rps"])])
    from labkit import profiles

    quick = profiles.get("quick")
    body = (f"**Part 1 at one node** (quick profile: levels {', '.join(map(str, quick.concurrency))}, "
            f"at least {quick.requests} requests each; part 1's boundary refined), "
            f"`labkit sweep --profile quick --nodes 1` without and with `--calibrate reference`:\n\n"
            + C.table(["results", "host CPU ms/request", "quota ×", "part 1 (users)", "server CPU ms/request at c=10",
                       "req/s at c=10"], rows))
    return body, found


def _run_ab_for(url: str, seconds: int, folder: Path, cpu: int) -> list[float]:
    """ab -c 1 -t ``seconds`` on ``cpu``; the start time (s since the first) of every request."""
    from labkit.ab import DEFAULT_PAYLOAD
    from labkit.backends.local import cpu_affinity

    payload, g = folder / "payload.json", folder / "g.tsv"
    payload.write_bytes(DEFAULT_PAYLOAD)
    subprocess.run(["ab", "-p", str(payload), "-T", "application/json", "-m", "POST", "-c", "1",
                    "-t", str(seconds), "-n", "10000000", "-s", "10", "-r", "-g", str(g), url + "/fibonacci"],
                   capture_output=True, check=True, preexec_fn=cpu_affinity.pin_preexec({cpu}))
    starts = []
    for line in g.read_text().splitlines()[1:]:
        parts = line.split("\t")
        if len(parts) >= 2:
            starts.append(float(parts[1]))
    # ab's "seconds" column is whole seconds; the order of the lines is not time order
    t0 = min(starts)
    return sorted(s - t0 for s in starts)


def burst_part(seconds: int, rounds: int) -> tuple[str, dict]:
    from labkit.backends.base import ClusterSpec
    from labkit.backends.local import cpu_affinity
    from labkit.backends.local.backend import LocalBackend
    from labkit.settings import Settings

    results: dict[str, list] = {"burst": [], "no burst": []}
    for _ in range(rounds):
        for label, burst in (("burst", True), ("no burst", False)):
            b = LocalBackend(Settings.from_env(), burst=burst)
            try:
                b.up(ClusterSpec(nodes=1, machine_type="f1-micro"))
                time.sleep(3)  # idle: the group's burst store fills
                cpu0 = b.cpu_seconds("restserver-0")
                with tempfile.TemporaryDirectory() as d:
                    starts = _run_ab_for(b.url, seconds, Path(d), cpu_affinity.available()[-1])
                cpu1 = b.cpu_seconds("restserver-0")
                results[label].append({"burst_on": b.burst, "starts": starts,
                                       "cpu_util": None if cpu0 is None else (cpu1 - cpu0) / seconds})
            finally:
                b.down()
    bins = list(range(0, seconds, 5))
    rows = []
    for label, runs in results.items():
        per_bin = [[sum(1 for s in r["starts"] if lo <= s < lo + 5) / 5 for r in runs] for lo in bins]
        whole = [len(r["starts"]) / seconds for r in runs]
        rows.append([f"{label} (burst={runs[0]['burst_on']})", *(C.fmt(C.median(v), 2) for v in per_bin),
                     f"{C.fmt(C.median(whole), 3)} ({C.spread(whole)})",
                     C.fmt(C.median([r["cpu_util"] for r in runs]))])
    body = (f"**One f1-micro at c=1 for {seconds} s** (ab -t, median of {rounds} round(s), burst and no burst "
            "alternating): requests/s per 5-second bin, the whole run's requests/s, and the server's CPU "
            "over the run in vCPU (its quota is 0.2):\n\n"
            + C.table(["mode", *(f"{lo}–{lo + 5} s" for lo in bins), "whole run", "server vCPU used"], rows))
    return body, {k: [{"n": len(r["starts"]), "cpu_util": r["cpu_util"]} for r in v] for k, v in results.items()}


def main() -> None:
    ap = C.parser(__doc__, "hostspeed", runs=5, seconds=60, rounds=1)
    ap.add_argument("--part", choices=["calibration", "part1", "burst", "all"], default="all")
    args = ap.parse_args()
    env = C.setup_env()
    parts = ["calibration", "part1", "burst"] if args.part == "all" else [args.part]
    bodies, figures = [], {}
    with tempfile.TemporaryDirectory(prefix="labkit-hostspeed-") as folder:
        for part in parts:
            if part == "calibration":
                body, fig = calibration_part(args.runs)
            elif part == "part1":
                body, fig = part1_part(Path(folder), env)
            else:
                body, fig = burst_part(args.seconds, args.rounds)
            bodies.append(body)
            figures[part] = fig
            print(body, flush=True)
    print(json.dumps(figures, default=str)[:4000])
    shared = ("Measured while six other helpers shared this 2-core machine (their test runs and benchmarks): "
              "absolute figures are depressed and noisy; the calibration's figure moves with that load.")
    C.write_section(f"{args.section}-{args.part}", f"## Host speed and bursting ({args.part})\n\n{shared}\n\n"
                    + "\n\n".join(bodies))


if __name__ == "__main__":
    main()
