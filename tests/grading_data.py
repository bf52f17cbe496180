"""Submissions for the grading tests and bench: students' results CSVs and filled-in notebooks.

A student's CSV is ``data/reference.csv`` re-timed (a run id and start times of the
student's own) with every latency scaled by ``scale`` and every rate by ``1/scale``,
so Little's law and ab's own arithmetic still hold: a different machine, measured.
A few rows of other machine types are appended for notebook 03. The notebooks are
the released student versions with the solution stubs replaced by what a student
types: numbers and sentences, no call to the checker.
"""

from __future__ import annotations

import csv
import datetime as dt
from pathlib import Path

import nbformat

REFERENCE = Path(__file__).resolve().parent.parent / "data" / "reference.csv"
LATENCIES = ("mean_ms", "ab_mean_ms", "p50_ms", "p66_ms", "p75_ms", "p80_ms", "p90_ms", "p95_ms", "p98_ms",
             "p99_ms", "max_ms", "connect_mean_ms")
STUB = "# YOUR CODE HERE\nraise NotImplementedError()"


def student_rows(scale: float = 1.0, start: dt.datetime | None = None, tag: str = "a1b2") -> list[dict]:
    """Reference rows re-measured on a machine ``1/scale`` times as fast, in a run of the student's own."""
    start = start or dt.datetime(2026, 11, 20, 9, 0, 0, tzinfo=dt.timezone.utc)
    run_id = start.strftime("%Y%m%dT%H%M%SZ") + "-" + tag
    with REFERENCE.open() as f:
        rows = list(csv.DictReader(f))
    t = start + dt.timedelta(seconds=1)
    out = []
    for r in rows:
        r = dict(r)
        for col in LATENCIES:
            if r[col]:
                r[col] = f"{float(r[col]) * scale:.3f}"
        if r["rps"]:
            r["rps"] = f"{float(r['rps']) / scale:.2f}"
        if r["time_taken_s"]:
            r["time_taken_s"] = f"{float(r['time_taken_s']) * scale:.3f}"
        r["run_id"], r["started_at"] = run_id, t.isoformat(timespec="seconds")
        t += dt.timedelta(seconds=float(r["time_taken_s"] or 1) + 2)
        out.append(r)
    # notebook 03's configurations: one node, concurrency 10 and 100 (the quick profile's)
    for machine_type, server, workers, speed in (("e2-medium", "flask", 1, 4.5), ("e2-standard-2", "gunicorn", 3, 11.0)):
        for base in (x for x in out[:4] if x["concurrency"] in ("10", "100")):
            r = {**base, "machine_type": machine_type, "server": server, "workers": str(workers),
                 "started_at": t.isoformat(timespec="seconds")}
            for col in LATENCIES:
                if r[col]:
                    r[col] = f"{float(r[col]) / speed:.3f}"
            r["rps"] = f"{float(r['rps']) * speed:.2f}"
            r["time_taken_s"] = f"{float(r['time_taken_s']) / speed:.3f}"
            t += dt.timedelta(seconds=float(r["time_taken_s"]) + 2)
            out.append(r)
    return out


def write_csv(path: Path, rows: list[dict]) -> Path:
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return path


ANSWERS = {
    "part1_answer": "part1_max_users = {part1!r}\npart1_why = \"One server meets the SLA at every tested level up to {part1} users and fails above that.\"",
    "part2_answer": "part2_nodes = {part2!r}\npart2_why = \"No tested node count meets the SLA, so by the capacity answer I need {part2} nodes.\"",
}
PROSE = "Throughput grew from one node to five, about 300 req/s per server, until errors appeared at 1000 users."


def fill_notebooks(release: Path, dest: Path, part1, part2) -> Path:
    """The released notebooks with the student's answers typed in, into ``dest`` (created)."""
    dest.mkdir(parents=True, exist_ok=True)
    for src in sorted(release.glob("*.ipynb")):
        nb = nbformat.read(str(src), as_version=4)
        for cell in nb.cells:
            meta = cell.metadata.get("nbgrader", {})
            if not meta.get("solution"):
                continue
            if cell.cell_type == "markdown":
                cell.source = PROSE
            else:
                assert STUB in cell.source, (src.name, cell.source)
                answer = ANSWERS[meta["grade_id"]].format(part1=part1, part2=part2)
                cell.source = cell.source.replace(STUB, answer)
        nbformat.write(nb, str(dest / src.name))
    return dest


def submission(root: Path, student: str, release: Path, rows: list[dict] | None, part1, part2) -> Path:
    """``root/<student>/lab02/``: the filled notebooks and ``results.csv`` (none when ``rows`` is None)."""
    folder = fill_notebooks(release, root / student / "lab02", part1, part2)
    if rows is not None:
        write_csv(folder / "results.csv", rows)
    return folder
