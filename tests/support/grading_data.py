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

REFERENCE = Path(__file__).resolve().parents[2] / "data" / "reference.csv"
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


def right_answers(rows: list[dict], tmp: Path) -> tuple:
    """What a student reads off ``rows`` (design §8): (part 1, part 2 nodes, the balancer part 2 names).

    Part 2 is the measured node count when one meets the SLA, else the capacity answer's
    ``servers_min`` (the lower end of the accepted range), with the model plan's balancer type
    (None when they do not measure one, or a measured count answers). ``tmp``: a CSV path to use.
    """
    from labkit.analysis.capacity import capacity_answer
    from labkit.grading.checks import PART2_SLA, PART2_USERS, expected_part1, part2_rule
    from labkit.handout import handout_rows
    from labkit.results import load_results

    df = handout_rows(load_results(write_csv(tmp, rows)), "f1-micro")
    measured, least = part2_rule(df)
    if measured is not None:
        return expected_part1(df), measured, None
    return expected_part1(df), least, capacity_answer(df, PART2_SLA, PART2_USERS, validate=False)["balancer_needed"]


def write_csv(path: Path, rows: list[dict]) -> Path:
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return path


ANSWERS = {
    "part1_answer": "part1_max_users = {part1!r}\npart1_why = \"One server meets the SLA at every tested level up to {part1} users and fails above that.\"",
    "part2_answer": "part2_nodes = {part2!r}\npart2_balancer = {balancer!r}\npart2_why = \"No tested node count meets the SLA, so by the capacity answer I need {part2} nodes.\"",
}
PROSE = "Throughput grew from one node to five, about 300 req/s per server, until errors appeared at 1000 users."


def fill_notebooks(release: Path, dest: Path, part1, part2, balancer=None) -> Path:
    """The released notebooks with the student's answers typed in, into ``dest`` (created).

    ``balancer``: the balancer machine type the part-2 answer names (design §8: needed when
    the CSV's CPU columns show one f1-micro balancer cannot carry the users), or None."""
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
                answer = ANSWERS[meta["grade_id"]].format(part1=part1, part2=part2, balancer=balancer)
                cell.source = cell.source.replace(STUB, answer)
        nbformat.write(nb, str(dest / src.name))
    return dest


def submission(root: Path, student: str, release: Path, rows: list[dict] | None, part1, part2,
               balancer=None) -> Path:
    """``root/<student>/lab02/``: the filled notebooks and ``results.csv`` (none when ``rows`` is None)."""
    folder = fill_notebooks(release, root / student / "lab02", part1, part2, balancer)
    if rows is not None:
        write_csv(folder / "results.csv", rows)
    return folder
