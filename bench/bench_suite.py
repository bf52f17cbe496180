"""How long the test suite takes: `make test` and `make test-fast`, wall and pytest's own time.

Runs each target ``--runs`` times (default 3) in this checkout, interleaved (full, fast,
full, fast, ...) so a burst of load from other work on the machine hits both, with
``PYTEST_ADDOPTS=--durations=25`` so pytest prints its 25 slowest steps. Prints, and writes
as the ``suite`` section of bench/RESULTS.md: the median wall time of each target (the
``make`` process, so it includes make's own set-up check), the median of pytest's
"N passed in X s" (summed over ``make test``'s two pytest runs: the parallel part, then the
tests marked serial), the pass/fail counts of every run, and the slowest steps of the run
closest to the median. ``--baseline FILE``: a saved ``pytest -q --durations=25`` output of an
earlier revision (e.g. ``/tmp/base/pytest.txt``) to show as "before".

    .venv/bin/python bench/bench_suite.py [--runs 3] [--full-runs N] [--only fast|full] [--baseline FILE]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

TARGETS = {"full": "test", "fast": "test-fast"}
_SUMMARY = re.compile(r"^=*\s*(?P<counts>(?:\d+ \w+(?:, )?)+) in (?P<secs>[\d.]+)s", re.M)
_DURATION = re.compile(r"^\s*(\d+\.\d+)s (setup|call|teardown)\s+(\S+)", re.M)


def run_target(target: str) -> dict:
    """``make TARGET`` once: wall seconds, pytest's seconds and counts, the slowest-steps lines."""
    env = {**os.environ, "PYTEST_ADDOPTS": "--durations=25"}
    started = time.monotonic()
    res = subprocess.run(["make", "-s", TARGETS[target]], cwd=C.ROOT, env=env, capture_output=True, text=True)
    wall = time.monotonic() - started
    found = _SUMMARY.findall(res.stdout)
    # `make test` runs pytest twice (the parallel part, then the tests marked serial): add both up
    counts = " + ".join(c for c, _ in found) if found else "no summary"
    secs = sum(float(x) for _, x in found) if found else float("nan")
    slowest = [f"{s}s {when} {node}" for s, when, node in _DURATION.findall(res.stdout)]
    return {"target": target, "wall": wall, "pytest": secs, "counts": counts, "rc": res.returncode,
            "slowest": slowest, "tail": res.stdout[-2000:] + res.stderr[-2000:]}


def baseline_lines(path: Path) -> tuple[str, list[str]]:
    """(summary, slowest-steps lines) of a saved ``pytest --durations`` output."""
    text = path.read_text(errors="replace")
    found = _SUMMARY.findall(text)
    summary = f"{found[-1][0]} in {found[-1][1]} s of pytest" if found else "no summary line"
    wall = re.search(r"^([\d.]+) s wall", text, re.M)
    if wall:
        summary += f", {float(wall.group(1)):.0f} s wall"
    return summary, [f"{s}s {when} {node}" for s, when, node in _DURATION.findall(text)]


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--full-runs", type=int, help="runs of `make test` (default --runs); the rest are fast only")
    ap.add_argument("--only", choices=sorted(TARGETS))
    ap.add_argument("--baseline", type=Path, help="a saved `pytest -q --durations=25` output of an earlier revision")
    args = ap.parse_args(argv)
    targets = [args.only] if args.only else ["full", "fast"]
    runs: dict[str, list[dict]] = {t: [] for t in targets}
    full_runs = args.runs if args.full_runs is None else args.full_runs
    for i in range(args.runs):
        for t in targets:
            if t == "full" and i >= full_runs:
                continue
            r = run_target(t)
            runs[t].append(r)
            print(f"run {i + 1}/{args.runs} make {TARGETS[t]}: {r['wall']:.0f} s wall, {r['pytest']:.0f} s of pytest, "
                  f"{r['counts']} (exit {r['rc']})", flush=True)
            if r["rc"]:
                print(r["tail"], file=sys.stderr)
    rows, slowest = [], []
    for t in targets:
        rs = runs[t]
        med = C.median([r["pytest"] for r in rs])
        rows.append([f"`make {TARGETS[t]}`", len(rs), f"{C.median([r['wall'] for r in rs]):.0f}",
                     C.spread([round(r["wall"]) for r in rs]), f"{med:.0f}", C.spread([round(r["pytest"]) for r in rs]),
                     "; ".join(r["counts"] for r in rs)])
        typical = min(rs, key=lambda r: abs(r["pytest"] - med))
        slowest += [f"**`make {TARGETS[t]}`** (the run of {typical['pytest']:.0f} s), top 10:", "", "```",
                    *typical["slowest"][:10], "```", ""]
    body = ["## Test suite time (`make test`, `make test-fast`)", "",
            f"`{C.command_line()}`: in this checkout, the targets interleaved. "
            "Wall is the `make` process; \"pytest\" is pytest's own \"in X s\".", "",
            C.table(["target", "runs", "wall s (median)", "wall min–max", "pytest s (median)", "pytest min–max",
                     "results"], rows), "", *slowest]
    if args.baseline:
        summary, lines = baseline_lines(args.baseline)
        body += [f"**Before** (`{args.baseline}`: {summary}), top 10:", "", "```", *lines[:10], "```", ""]
    text = "\n".join(body)
    print(text)
    C.write_section("suite", text)
    return 0 if all(r["rc"] == 0 for rs in runs.values() for r in rs) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
