"""Benchmark — how long ``labkit grade`` takes over a class: N submissions, the real nbgrader autograde.

Builds the student release once, then N submissions in nbgrader's submitted/ layout, each
with its own results CSV (tests/support/grading_data.py: data/reference.csv re-timed, latencies
scaled per student, Little's law kept) and its own right answers typed into the
notebooks. Each run is a fresh ``labkit grade SUBMITTED --json`` (course, gradebook,
``nbgrader autograde``, ``nbgrader generate_feedback``) with nginx and ab removed from
PATH, timed end to end; every student must get full autograded marks.

Serial (``--jobs 1``) and parallel (``--jobs 2``) runs alternate, side by side, each
submission's kernel in its bubblewrap sandbox (labkit/grading/sandbox.py).

    .venv/bin/python bench/bench_grade.py [--submissions 30] [--runs 3] [--jobs 1,2]
"""

from __future__ import annotations

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
    ap = C.parser(__doc__, "grade", runs=3, submissions=30)
    ap.add_argument("--jobs", default="1,2", help="comma-separated --jobs values, alternated within each run")
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
    jobs = [int(j) for j in args.jobs.split(",")]
    times: dict[int, list[float]] = {j: [] for j in jobs}
    full: list[int] = []
    scores: dict[int, dict] = {}
    for r in range(args.runs):
        for j in jobs:
            t0 = time.perf_counter()
            res = subprocess.run([C.LABKIT, "grade", str(sub), "--out", str(work / "grading"), "--json",
                                  "--jobs", str(j)], capture_output=True, text=True, env=env, cwd=work)
            times[j].append(time.perf_counter() - t0)
            if res.returncode != 0:
                sys.exit(f"labkit grade failed: {res.stderr[-2000:]}")
            grades = json.loads(res.stdout)
            scores[j] = {s: (g["score"], g["max_score"], tuple(g["failed"])) for s, g in grades.items()}
            full.append(sum(1 for g in grades.values() if g["score"] == g["max_score"]))
            print(f"run {r + 1} --jobs {j}: {times[j][-1]:.0f} s, {full[-1]}/{len(grades)} full marks", flush=True)
    same = len({json.dumps(v, sort_keys=True) for v in scores.values()}) == 1
    n = args.submissions
    distinct = len(set(answers.values()))
    rows = []
    for j in jobs:
        rows += [[f"grade {n} submissions, --jobs {j} (s)", C.median(times[j]), C.spread(times[j]), len(times[j])],
                 [f"per submission, --jobs {j} (s)", C.median(times[j]) / n, C.spread([t / n for t in times[j]]),
                  len(times[j])]]
    if len(jobs) > 1:
        ratio = [a / b for a, b in zip(times[jobs[0]], times[jobs[-1]])]
        rows.append([f"--jobs {jobs[0]} time / --jobs {jobs[-1]} time (same run)", C.median(ratio), C.spread(ratio),
                     len(ratio)])
    rows += [["students with full marks", f"{min(full)}/{n}", "-", len(full)],
             ["same scores for every --jobs", "yes" if same else "NO", "-", len(scores)],
             ["`labkit release` once (s)", t_release.s, "-", 1]]
    body = "\n".join([
        "## Grading a class: `labkit grade` over N submissions, serial and `--jobs 2` (sandboxed kernels)",
        "",
        f"`{C.command_line()}`. {n} submissions in nbgrader's `submitted/` layout, each with its own "
        f"results CSV (data/reference.csv re-timed with latencies scaled 0.75–1.25×: {distinct} distinct "
        "(part 1, part 2) answer pairs) and its own right answers; nginx and ab removed from PATH. "
        "One run = a fresh grading course, `nbgrader generate_assignment` (gradebook), then per submission a "
        "private course (a copy of the gradebook) where `nbgrader autograde` and `generate_feedback` run with "
        "the kernel in bubblewrap, the answers re-checked in a fresh process, and the rows merged back into the "
        "course gradebook. The `--jobs` values alternate within each run, on the same submissions.",
        "",
        C.table(["what", "median", "min–max", "runs"], rows),
        "",
        "Per submission the time is three sandboxed notebook kernels (start, `import labkit`/pandas, the report "
        "and four PNG charts) plus nbgrader's start-up twice; `--jobs` grades that many submissions at once.",
    ])
    C.write_section(args.section, body)


if __name__ == "__main__":
    main()
