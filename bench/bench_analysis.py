"""Benchmark 5 — analysis speed: load + SLA report + all charts for 100, 1,000 and 10,000 rows.

Synthetic results CSVs with every ``labkit.results.COLUMNS`` column (written
with the real ``append_row`` writer's cell format): node counts 1–5 × the
handout's 13 concurrency levels, repeated until the row count is reached (so
a 10,000-row file is ~154 repeats of the full grid, as an instructor's
merged class results would be), with plausible latencies that cross the SLA.

Timed in-process (``load_results``, ``build_report``, ``plots.save_all``, each
stage separately, in a fresh interpreter per run so import and font-cache
costs are paid as a user pays them) and via the CLI
(``labkit report CSV --sla ... --users 2000 --json --charts DIR``).
Target: under 2 s for 10,000 rows.

    .venv/bin/python bench/bench_analysis.py [--runs 3] [--sizes 100,1000,10000]
"""

from __future__ import annotations

import csv
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

SLA = "max<=1000 mean<300 p98<400"
LEVELS = (10, 20, 50, 100, 200, 500, 700, 1000, 1200, 1500, 2000, 2500, 3000)

CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
from labkit.results import load_results
from labkit.analysis.report import build_report
from labkit.analysis.plots import save_all
from labkit.analysis.sla import Sla
t1 = time.perf_counter()
df = load_results(sys.argv[1]); t2 = time.perf_counter()
rep = build_report(df, Sla.parse(sys.argv[3]), 2000); t3 = time.perf_counter()
save_all(df, Sla.parse(sys.argv[3]), sys.argv[2]); t4 = time.perf_counter()
print(json.dumps({"import": t1 - t0, "load": t2 - t1, "report": t3 - t2, "charts": t4 - t3,
                  "total": t4 - t1, "rows": len(df)}))
"""


def make_csv(path: Path, rows: int, seed: int = 7) -> Path:
    from labkit.record import ALL_COLUMNS, PERCENTILES, Measurement

    rnd = random.Random(seed)
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=ALL_COLUMNS)
        w.writeheader()
        i = 0
        while i < rows:
            for n in range(1, 6):
                for c in LEVELS:
                    if i >= rows:
                        break
                    i += 1
                    aborted = c >= 2500 and rnd.random() < 0.2
                    cap = 290.0 * n * rnd.uniform(0.9, 1.1)
                    mean = max(5.0, 1000.0 * c / cap) * rnd.uniform(0.9, 1.1)
                    req = 10000
                    row = {"run_id": f"r{i // 65}", "started_at": "2026-11-28T12:00:00+00:00",
                           "backend": "local", "machine_type": "f1-micro", "server": "flask", "workers": 1,
                           "nodes": n, "concurrency": c, "requests": req,
                           "complete": req // 3 if aborted else req, "failed": 0, "non_2xx": 0,
                           "aborted": aborted, "attempts": 3 if aborted else 1,
                           "cpu_limited": True, "abort_reason": "apr_pollset_poll (70007)" if aborted else None}
                    if not aborted:
                        t = req / cap
                        row.update(time_taken_s=t, rps=cap, mean_ms=mean, ab_mean_ms=c * t / req * 1000,
                                   max_ms=mean * 3, connect_mean_ms=1.0)
                        for p in PERCENTILES:
                            row[f"p{p}_ms"] = mean * (0.8 + 0.9 * (p - 50) / 49)
                    w.writerow(Measurement(**row).to_cells())
    return path


def in_process(csv_path: Path, outdir: Path, tree: Path | None = None) -> dict:
    res = subprocess.run([C.PYTHON, "-c", C.prelude(tree) + CHILD, str(csv_path), str(outdir), SLA],
                         capture_output=True, text=True, check=True, env={**C.setup_env(), "MPLBACKEND": "Agg"})
    return json.loads(res.stdout.strip().splitlines()[-1])


def via_cli(csv_path: Path, outdir: Path, tree: Path | None = None) -> float:
    t0 = time.perf_counter()
    subprocess.run([*C.labkit_argv(tree), "report", str(csv_path), "--sla", SLA, "--users", "2000", "--json",
                    "--charts", str(outdir)], capture_output=True, check=True, env={**C.setup_env(), "MPLBACKEND": "Agg"})
    return time.perf_counter() - t0


def main() -> None:
    ap = C.parser(__doc__, "analysis", runs=3)
    ap.add_argument("--sizes", default="100,1000,10000")
    ap.add_argument("--baseline", default=None, metavar="REV",
                    help="also run labkit as of git revision REV, interleaved (before/after a fix)")
    args = ap.parse_args()
    C.setup_env()
    sizes = [int(s) for s in args.sizes.split(",")]
    tmp = Path(tempfile.mkdtemp(prefix="labkit-bench-analysis-"))
    trees = {"now": None}
    if args.baseline:
        trees = {f"at {args.baseline}": C.export_revision(args.baseline), "now": None}
    results = {}
    for size in sizes:
        path = make_csv(tmp / f"rows{size}.csv", size)
        for label, tree in trees.items():
            results[(size, label)] = []
        for r in range(args.runs):  # interleave: in-process and CLI, baseline and current
            for label, tree in trees.items():
                stages = in_process(path, tmp / f"charts-{size}-{r}-{len(label)}-a", tree)
                stages["cli"] = via_cli(path, tmp / f"charts-{size}-{r}-{len(label)}-b", tree)
                results[(size, label)].append(stages)
                print(f"rows={size} {label} run {r + 1}: " +
                      " ".join(f"{k}={v:.3f}" for k, v in stages.items() if k != "rows"), flush=True)
    keys = ["import", "load", "report", "charts", "total", "cli"]
    rows = []
    for (size, label), runs in results.items():
        row = [f"{size:,}"] + ([label] if args.baseline else [])
        for k in keys:
            vals = [r[k] for r in runs]
            cell = f"{C.fmt(C.median(vals))} ({C.spread(vals)})"
            row.append(f"**{cell}**" if k == "cli" else cell)
        rows.append(row)
    body = "\n".join([
        "## 5. Analysis speed (load + SLA report + all charts)", "",
        f"Seconds, median of {args.runs} runs (min–max). *load* = `load_results`, *report* = "
        "`build_report(df, sla, users=2000)` (SLA table, both USL fits, extrapolation), *charts* = "
        "`plots.save_all` (4 PNGs); *total* = the three, in-process, after imports; *import* = importing "
        "them in a fresh interpreter; *CLI* = the whole `labkit report CSV --sla ... --users 2000 --json "
        "--charts DIR` process (Python start-up + imports + the work). Synthetic CSVs: nodes 1–5 × the "
        "handout's 13 levels, repeated to the row count, ~10 % of the ≥2500 levels aborted. "
        "Target: under 2 s for 10,000 rows.", "",
        C.table(["rows"] + (["labkit"] if args.baseline else []) +
                ["import", "load", "report", "charts", "total (in-process)", "CLI wall"], rows), "",
    ])
    C.publish(args.section, body)


if __name__ == "__main__":
    main()
