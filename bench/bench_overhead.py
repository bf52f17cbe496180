"""Benchmark 1 — harness overhead: labkit vs a plain shell loop of the same ab commands.

One local lab (1 x f1-micro, Flask dev server — the handout's first part) stays
up for the whole benchmark. The same concurrency levels are then run, interleaved
round after round, by:

* ``shell``       — a bash loop of exactly labkit's ab argv (same payload, -e/-g files,
                    ``ulimit -n 10000``, and ab put in the same tester cgroup, pinned to
                    the same core), i.e. what
                    the tool itself costs;
* ``labkit bench``— one ``labkit bench -c C -n N`` process per level (Python start-up,
                    imports, state load, ab, parsing, JSON out);
* ``run_sweep``   — ``labkit.sweep.run_sweep`` in-process over the same levels (the
                    notebooks' path: one import, rows appended to a CSV);
* ``labkit sweep``— one ``labkit sweep --concurrency ... --out`` CLI process for all levels.

Figures: wall time of each mode per round, the ratio to the shell loop measured
in the same round (goal <= 1.05), and ab's own "Time taken for tests" summed
over the levels (the floor no harness can beat).

    .venv/bin/python bench/bench_overhead.py [--runs 3] [--levels 10,50,100,200,400] [--requests 400]
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

MODES = ("shell", "labkit bench", "run_sweep", "labkit sweep")


def sh(argv, **kw):
    return subprocess.run(argv, capture_output=True, text=True, check=True, env=C.setup_env(), **kw)


def shell_loop(backend, levels, n, tmp: Path) -> tuple[float, float]:
    """The plain loop; returns (wall, sum of ab's 'Time taken for tests')."""
    from labkit.ab import AbCommand

    procs = " ".join(str(p) for p in backend._groups().procs_files(f"labkit/{backend.run_id}/tester-0"))
    payload = tmp / "payload.json"
    payload.write_bytes(AbCommand(backend.url, 1, 1).payload)
    from labkit import machine_types
    from labkit.backends.local import cpu_affinity

    lines = ["set -e"]
    ab = shutil.which("ab") or "ab"
    # the tester's cores, as labkit pins it (labkit/backends/local/cpu_affinity.py)
    cores = cpu_affinity.cpus_for(machine_types.get(backend.tester_machine_type).vcpu, cpu_affinity.slot_of("tester-0"))
    pin = f"taskset -c {','.join(map(str, sorted(cores)))}"
    for c in levels:
        argv = AbCommand(backend.url, c, n).argv(payload=str(payload), percentiles=str(tmp / "pct.csv"),
                                                 gnuplot=str(tmp / "g.tsv"), ab=ab)
        join = "; ".join(f"echo $BASHPID > {p}" for p in procs.split()) or ":"
        lines.append(f"( {join}; ulimit -n 10000; exec {pin} {shlex.join(argv)} ) >> {tmp}/ab.out 2>/dev/null")
    script = "\n".join(lines)
    (tmp / "ab.out").write_text("")
    t0 = time.perf_counter()
    subprocess.run(["bash", "-c", script], check=True)
    wall = time.perf_counter() - t0
    taken = sum(float(x) for x in re.findall(r"Time taken for tests:\s+([\d.]+)", (tmp / "ab.out").read_text()))
    return wall, taken


def cli_bench(levels, n, tree: Path | None = None) -> tuple[float, float]:
    lines = [f"{shlex.join(C.labkit_argv(tree))} bench -c {c} -n {n}" for c in levels]
    t0 = time.perf_counter()
    out = sh(["bash", "-c", "set -e\n" + "\n".join(lines)]).stdout
    wall = time.perf_counter() - t0
    taken = sum(float(x) for x in re.findall(r'"time_taken_s":\s*([\d.]+)', out))
    return wall, taken


def in_process_sweep(backend, levels, n, out: Path) -> tuple[float, float]:
    from labkit.results import load_results
    from labkit.sweep import Grid, run_sweep

    grid = Grid(spec=backend.spec, nodes=(1,), concurrency=tuple(levels), requests=n)
    t0 = time.perf_counter()
    run_sweep(backend, grid, out, progress=False)
    wall = time.perf_counter() - t0
    return wall, float(load_results(out)["time_taken_s"].sum())


def cli_sweep(levels, n, out: Path) -> tuple[float, float]:
    from labkit.results import load_results

    t0 = time.perf_counter()
    sh([C.LABKIT, "sweep", "--nodes", "1", "--concurrency", ",".join(map(str, levels)), "--requests", str(n),
        "--out", str(out)])
    wall = time.perf_counter() - t0
    return wall, float(load_results(out)["time_taken_s"].sum())


def main() -> None:
    ap = C.parser(__doc__, "overhead", runs=3, machine_type="f1-micro")
    ap.add_argument("--levels", default="10,50,100,200,400", help="the quick profile's levels")
    ap.add_argument("--requests", type=int, default=400, help="ab -n per level (quick profile: 400)")
    ap.add_argument("--baseline", default=None, metavar="REV",
                    help="also run `labkit bench` as of git revision REV, interleaved (before/after a fix)")
    args = ap.parse_args()
    C.setup_env()
    levels = [int(x) for x in args.levels.split(",")]
    modes = MODES
    if args.baseline:
        tree = C.export_revision(args.baseline)
        base_mode = f"labkit bench @{args.baseline}"
        modes = MODES[:2] + (base_mode,) + MODES[2:]
    tmp = Path(tempfile.mkdtemp(prefix="labkit-bench-overhead-"))
    sh([C.LABKIT, "up", "--nodes", "1", "--machine-type", args.machine_type])
    try:
        from labkit.backends.local.backend import LocalBackend

        backend = LocalBackend()  # attaches to the lab just started
        sh([C.LABKIT, "bench", "-c", "10", "-n", "100"])  # warm-up; creates the tester cgroup
        runs: dict[str, list[tuple[float, float]]] = {m: [] for m in modes}
        for r in range(args.runs):
            order = modes[r % len(modes):] + modes[:r % len(modes)]  # rotate who goes first
            for mode in order:
                if mode == "shell":
                    res = shell_loop(backend, levels, args.requests, tmp)
                elif mode == "labkit bench":
                    res = cli_bench(levels, args.requests)
                elif mode.startswith("labkit bench @"):
                    res = cli_bench(levels, args.requests, tree)
                elif mode == "run_sweep":
                    res = in_process_sweep(backend, levels, args.requests, tmp / f"sweep-{r}.csv")
                else:
                    res = cli_sweep(levels, args.requests, tmp / f"clisweep-{r}.csv")
                runs[mode].append(res)
                print(f"round {r + 1} {mode:13} wall={res[0]:.2f}s ab_taken={res[1]:.2f}s", flush=True)
    finally:
        sh([C.LABKIT, "down"])
    shell_walls = [w for w, _ in runs["shell"]]
    rows = []
    for mode in modes:
        walls = [w for w, _ in runs[mode]]
        takens = [t for _, t in runs[mode]]
        ratios = [w / s for w, s in zip(walls, shell_walls)]
        # the same ratio with ab's (noisy) measuring time taken as equal to the shell loop's in that round
        norm = [(st + (w - t)) / sw for (w, t), (sw, st) in zip(runs[mode], runs["shell"])]
        per_level = [(w - t) / len(levels) for w, t in runs[mode]]
        rows.append([f"`{mode}`", f"{C.fmt(C.median(walls))} ({C.spread(walls)})", C.median(takens),
                     f"{C.fmt(C.median(per_level) * 1000)}",
                     f"{C.median(ratios):.3f} ({C.spread(ratios)})",
                     f"**{C.median(norm):.3f}** ({C.spread(norm)})"])
    body = "\n".join([
        "## 1. Harness overhead (labkit vs a plain shell loop of the same ab commands)", "",
        f"One lab up (1 × {args.machine_type}, Flask dev server) for the whole run; levels "
        f"{', '.join(map(str, levels))} with `-n {args.requests}` each, run by each mode in turn, "
        f"{args.runs} rounds, the mode order rotated every round. *ratio* = the mode's wall time over the shell "
        "loop's in the same round (goal ≤ 1.05). *ab time* = the sum of ab's own `Time taken for tests`; "
        "*overhead/level* = (wall − ab time) / levels, i.e. everything that is not ab measuring. ab's own time "
        "varies by ±15 % from run to run on this shared machine (a 0.2-vCPU server competing for 2 cores), "
        "more than the harness costs, so the last column is the robust figure: *ratio, same ab time* = "
        "(shell's ab time + the mode's overhead) / shell's wall, per round.", "",
        C.table(["mode", "wall s (min–max)", "ab time s", "overhead/level ms", "raw wall ratio to shell",
                 "ratio, same ab time"], rows), "",
    ])
    C.publish(args.section, body)


if __name__ == "__main__":
    main()
