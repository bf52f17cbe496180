"""Benchmark — how long ``labkit grade`` takes over a class: N submissions, the real nbgrader autograde.

Builds the student release once, then N submissions in nbgrader's submitted/ layout, each
with its own results CSV (tests/support/grading_data.py: data/reference.csv re-timed, latencies
scaled per student, Little's law kept) and its own right answers typed into the
notebooks. Each run is a fresh ``labkit grade SUBMITTED --json`` (course, gradebook,
``nbgrader autograde``, ``nbgrader generate_feedback``) with nginx and ab removed from
PATH, timed end to end; every student must get full autograded marks.

    .venv/bin/python bench/bench_grade.py [--submissions 30] [--runs 3]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

sys.path.insert(0, str(C.ROOT))
from tests.support import grading_data as gd  # noqa: E402


def submissions(root: Path, release: Path, n: int) -> dict[str, tuple]:
    answers = {}
    for i in range(n):
        student = f"student{i:02d}"
        scale = 0.75 + 0.5 * i / max(n - 1, 1)  # machines from 1.33x faster to 1.25x slower than the reference
        rows = gd.student_rows(scale, start=dt.datetime(2026, 11, 1, tzinfo=dt.timezone.utc) + dt.timedelta(hours=i),
                               tag=f"{i:04x}")
        answers[student] = gd.right_answers(rows, root.parent / "tmp.csv")
        gd.submission(root, student, release, rows, *answers[student])
    return answers


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--submissions", type=int, default=30)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--section", default="grade")
    args = ap.parse_args()
    env = C.setup_env()
    from labkit.grading.release import build_release

    work = Path(tempfile.mkdtemp(prefix="labkit-bench-grade-"))
    with C.Timer() as t_release:
        release = build_release(work / "release")[0].parent
    sub = work / "submitted"
    answers = submissions(sub, release, args.submissions)
    path = [p for p in env["PATH"].split(os.pathsep) if not (Path(p) / "nginx").exists() and not (Path(p) / "ab").exists()]
    env = {**env, "PATH": os.pathsep.join([str(Path(sys.executable).parent), *path])}
    times, full = [], []
    for r in range(args.runs):
        t0 = time.perf_counter()
        res = subprocess.run([C.LABKIT, "grade", str(sub), "--out", str(work / "grading"), "--json"],
                             capture_output=True, text=True, env=env, cwd=work)
        times.append(time.perf_counter() - t0)
        if res.returncode != 0:
            sys.exit(f"labkit grade failed: {res.stderr[-2000:]}")
        grades = json.loads(res.stdout)
        full.append(sum(1 for g in grades.values() if g["score"] == g["max_score"] and not g["flags"]))
        print(f"run {r + 1}: {times[-1]:.0f} s, {full[-1]}/{len(grades)} full marks without flags", flush=True)
    n = args.submissions
    distinct = len(set(answers.values()))
    body = "\n".join([
        "## Grading a class: `labkit grade` over N submissions (real `nbgrader autograde` + `generate_feedback`)",
        "",
        f"`{C.command_line()}`. {n} submissions in nbgrader's `submitted/` layout, each with its own "
        f"results CSV (data/reference.csv re-timed with latencies scaled 0.75–1.25×: {distinct} distinct "
        "(part 1, part 2) answer pairs) and its own right answers; nginx and ab removed from PATH. "
        "One run = a fresh grading course, `nbgrader generate_assignment` (gradebook), one `nbgrader autograde` "
        "over every submission (notebooks 01–03 each: the measuring cells commented out, the rest "
        "executed: CSV loading, report, charts), `nbgrader generate_feedback`, scores read from the gradebook.",
        "",
        C.table(["what", "median", "min–max", "runs"], [
            [f"grade {n} submissions (s)", C.median(times), C.spread(times), len(times)],
            ["per submission (s)", C.median(times) / n, C.spread([t / n for t in times]), len(times)],
            ["students with full marks and no flags", f"{min(full)}/{n}", "-", len(full)],
            ["`labkit release` once (s)", t_release.s, "-", 1],
        ]),
        "",
        "Per submission the time is three notebook kernels (start, `import labkit`/pandas, the report "
        "and four PNG charts); nbgrader runs them one after another, so the time grows linearly with the class.",
    ])
    C.write_section(args.section, body)


if __name__ == "__main__":
    main()
