"""``labkit grade DIR``: nbgrader's real autograde and feedback over submitted Lab 02 folders (design §13).

``DIR`` is laid out as nbgrader's ``submitted/`` folder: ``DIR/<student>/lab02/``
holding the notebooks and the student's ``results.csv``. Grading builds an
nbgrader course in ``out`` (default ``grading/``) with :mod:`labkit.grading.release`'s
functions: the course config (autograding never measures: see
:mod:`labkit.nbgrader_hooks`), the source notebooks that carry graded cells,
``nbgrader generate_assignment`` (the gradebook and the cells' checksums), a copy
of each submission, then ``nbgrader autograde`` per student and
``nbgrader generate_feedback``. Scores come from the gradebook.

Per student: ``score`` and ``max_score`` (the autograded points), ``manual_max_score``
(the points left to the instructor in formgrader, see the rubric), ``failed``
(autograded cells that lost their points) and ``flags``: lines for the instructor,
not failures — a missing or unreadable CSV, the authenticity checks of
:func:`labkit.grading.checks.authenticity_flags`, a deleted test cell or an edited locked
one (nbgrader's checksums), a missing notebook, nbgrader's own error. One bad
submission never stops the others.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from labkit.errors import LabkitError
from labkit.grading.release import (ASSIGNMENT, RESULTS_NAME, generate_assignment, has_grade_cells, nbgrader_env, rubric,
                      source_notebooks, write_course)
from labkit.grading.sandbox import (LIMITS, Limits, bwrap, limit_preexec, nbgrader_config, unsafe_entries,
                                    write_kernelspec)

log = logging.getLogger("labkit")

#: Marks a folder as labkit's grading course, so a re-run may replace it (and nothing else).
MARKER = ".labkit-grading"
IGNORE = (".ipynb_checkpoints", "__pycache__", "feedback", "*.pyc")


class GradeError(LabkitError):
    """Grading could not start (no submissions, an output folder that is not labkit's...)."""


def graded_notebooks(notebooks_dir=None) -> list[str]:
    """Names of the source notebooks that hold graded cells (the others have nothing to grade)."""
    return [p.stem for p in source_notebooks(notebooks_dir) if has_grade_cells(json.loads(p.read_text()))]


def _fresh_course(out: Path) -> Path:
    out = out.resolve()
    if out.exists() and any(out.iterdir()) and not (out / MARKER).exists():
        raise GradeError(f"{out} exists and is not a labkit grading folder: choose another --out")
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    (out / MARKER).write_text("labkit grade replaces this folder on every run\n")
    return out


def _students(submitted: Path) -> list[str]:
    if not submitted.is_dir():
        raise GradeError(f"{submitted} is not a folder of submissions (expected {submitted}/<student>/{ASSIGNMENT}/*.ipynb)")
    names = sorted(p.name for p in submitted.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not names:
        raise GradeError(f"no submissions in {submitted}: expected {submitted}/<student>/{ASSIGNMENT}/*.ipynb "
                         "and the student's results.csv (nbgrader's submitted/ layout)")
    return names


# -- checks before nbgrader runs -------------------------------------------------------------------------
def csv_flags(folder: Path) -> list[str]:
    """Flags for the results CSV of one submission folder: missing, unreadable, or not looking measured."""
    from labkit.grading.checks import authenticity_flags
    from labkit.results import load_results

    csv = folder / RESULTS_NAME
    if not csv.is_file():
        return [f"csv-missing: no {RESULTS_NAME} in the submission: the answers cannot be checked against "
                "the student's results"]
    try:
        df = load_results(csv)
    except (LabkitError, OSError, ValueError) as exc:
        return [f"csv-unreadable: {RESULTS_NAME} does not load: {str(exc).replace(str(csv) + ', ', '')}"]
    if df.empty:
        return [f"csv-unreadable: {RESULTS_NAME} has no rows"]
    return authenticity_flags(df)


def _read_notebook(path: Path):
    import nbformat

    return nbformat.read(str(path), as_version=4)


def cell_flags(released: Path, submitted: Path) -> list[str]:
    """Deleted graded cells, edited locked cells (nbgrader's checksums), measuring cells that lost their
    tag, notebooks missing or unreadable."""
    from nbgrader.utils import compute_checksum, is_grade, is_locked

    from labkit.grading.checks import MEASURE_TAG

    flags = []
    for ref_path in sorted(released.glob("*.ipynb")):
        name = ref_path.stem
        path = submitted / ref_path.name
        if not path.is_file():
            flags.append(f"missing-notebook: {ref_path.name} was not submitted (its graded cells score 0)")
            continue
        try:
            nb = _read_notebook(path)
        except Exception as exc:  # nbformat raises several kinds for a broken file
            flags.append(f"broken-notebook: {ref_path.name} does not read as a notebook: {str(exc).splitlines()[0]}")
            continue
        ref = _read_notebook(ref_path)
        tagged = [sum(MEASURE_TAG in c.metadata.get("tags", []) for c in n.cells) for n in (ref, nb)]
        if tagged[1] < tagged[0]:
            flags.append(f"measure-tag-removed: {name} has {tagged[0] - tagged[1]} measuring cell(s) without "
                         f"the '{MEASURE_TAG}' tag: autograding ran them")
        mine = {c.metadata.get("nbgrader", {}).get("grade_id"): c for c in nb.cells if "nbgrader" in c.metadata}
        for cell in ref.cells:
            meta = cell.metadata.get("nbgrader", {})
            grade_id = meta.get("grade_id")
            if not grade_id or not (is_grade(cell) or is_locked(cell)):
                continue
            theirs = mine.get(grade_id)
            if theirs is None:
                what = f"a graded cell worth {meta.get('points', 0):g} points" if is_grade(cell) else "a locked cell"
                flags.append(f"deleted-cell: {name} {grade_id} ({what}) was deleted")
            elif is_locked(cell) and not meta.get("solution"):
                try:
                    same = compute_checksum(theirs) == meta.get("checksum")
                except (KeyError, ValueError, TypeError, AttributeError):
                    same = False
                if not same:
                    flags.append(f"edited-locked-cell: {name} {grade_id} was changed (nbgrader graded the original)")
    return flags


# -- nbgrader --------------------------------------------------------------------------------------------
def _nbgrader(course: Path, *args: str, env: dict | None = None, timeout: float | None = None,
              preexec=None) -> subprocess.CompletedProcess:
    """``nbgrader ARGS`` run in ``course``, as an instructor would: it reads the course's nbgrader_config.py.

    On ``timeout`` the whole process group (nbgrader and its sandboxed kernel) is killed."""
    argv = [sys.executable, "-m", "nbgrader", *args, f"--CourseDirectory.root={course}",
            f"--CourseDirectory.db_url=sqlite:///{course / 'gradebook.db'}"]
    log.info("running nbgrader %s", " ".join(args[:3]))
    proc = subprocess.Popen(argv, cwd=course, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env or nbgrader_env(), preexec_fn=preexec)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL) if preexec else proc.kill()
        proc.communicate()
        raise
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)


_FAILED = re.compile(r"There was an error processing assignment '[^']*' for student '([^']*)'")
_PROCESSING = re.compile(r"There was an error processing assignment: (.*)")
_EXCEPTION = re.compile(r"^\s*(?:\[[^\]]*\]\s*)?([A-Za-z_.]*(?:Error|Exception)\b.*)$")


def autograde_errors(output: str, course: Path, assignment: str) -> dict[str, str]:
    """Student -> the last exception line nbgrader logged for them, from ``nbgrader autograde``'s log."""
    failed = {m.group(1): "no detail in nbgrader's log" for m in _FAILED.finditer(output)}
    current = None
    for line in output.splitlines():
        m = _PROCESSING.search(line)
        if m:
            parts = Path(m.group(1).strip()).parts
            current = parts[-2] if len(parts) >= 2 and parts[-1] == assignment else None
            continue
        m = _EXCEPTION.match(line)
        if current in failed and m and "error processing" not in line:
            failed[current] = m.group(1).strip()[:300]
    return failed


def _scores(course: Path, assignment: str, student: str) -> dict:
    from nbgrader.api import Gradebook, MissingEntry

    out = {"score": 0.0, "max_score": 0.0, "manual_max_score": 0.0, "failed": []}
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        try:
            submission = gb.find_submission(assignment, student)
        except MissingEntry:
            return out
        for nb in submission.notebooks:
            manual_ids = {c.name for c in gb.find_notebook(nb.name, assignment).solution_cells}
            for g in nb.grades:
                if g.name in manual_ids:  # a solution cell that is graded: by hand
                    out["manual_max_score"] += g.max_score
                    continue
                score = g.score or 0.0
                out["max_score"] += g.max_score
                out["score"] += score
                if score < g.max_score:
                    out["failed"].append(f"{nb.name}:{g.name}")
    return out


def _private_course(course: Path, work: Path, student: str, folder: Path, assignment: str) -> Path:
    """``work``: a course of one student (config, sources, a copy of the gradebook made by
    generate_assignment, the submission copied without following links)."""
    work.mkdir(parents=True)
    shutil.copyfile(course / "nbgrader_config.py", work / "nbgrader_config.py")
    shutil.copytree(course / "source", work / "source")
    shutil.copyfile(course / "gradebook.db", work / "gradebook.db")
    dest = work / "submitted" / student / assignment
    shutil.copytree(folder, dest, symlinks=True, ignore=shutil.ignore_patterns(*IGNORE))
    (work / "autograded" / student).mkdir(parents=True)
    return dest


def _autograde_one(course: Path, work: Path, student: str, assignment: str, limits: Limits) -> list[str]:
    """nbgrader autograde + generate_feedback of one student in ``work`` (their private course), the
    kernel in the sandbox (:mod:`labkit.grading.sandbox`). Returns flags (nbgrader's errors, a timeout)."""
    runtime = work / "runtime"
    runtime.mkdir(mode=0o700)
    write_kernelspec(work / "jupyter", [work / "autograded" / student, runtime], limits)
    with open(work / "nbgrader_config.py", "a") as f:
        f.write(nbgrader_config(runtime, limits))
    env = {**nbgrader_env(), "JUPYTER_PATH": str(work / "jupyter"), "JUPYTER_RUNTIME_DIR": str(runtime),
           "JUPYTER_PLATFORM_DIRS": "1"}
    argv = [sys.executable, "-m", "labkit.grading.autograde_one", str(work), assignment, student]
    log.info("autograding %s (sandboxed)", student)
    proc = subprocess.Popen(argv, cwd=work, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                            preexec_fn=limit_preexec(limits))
    try:
        out, _ = proc.communicate(timeout=limits.wall_seconds)
    except subprocess.TimeoutExpired:  # nbgrader and the sandboxed kernels are one process group
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        (work / "autograde.log").write_text(out)
        return [f"autograde-error: grading took longer than {limits.wall_seconds} s and was stopped"]
    graded, _, feedback = out.partition("=== generate_feedback")
    (work / "autograde.log").write_text(graded)
    (work / "generate_feedback.log").write_text(feedback)
    why = autograde_errors(graded, work, assignment).get(student)
    if why is None and proc.returncode != 0:
        lines = [m.group(1) for m in map(_EXCEPTION.match, graded.splitlines()) if m]
        why = lines[-1][:300] if lines else f"exit {proc.returncode}"
    if why is not None:
        return [f"autograde-error: nbgrader could not autograde this submission: {why} "
                f"(log: {course / 'autograde.log'})"]
    return []


def merge_gradebook(course: Path, work: Path) -> None:
    """Copy one student's rows from ``work``'s private gradebook into the course's, in one transaction.

    Both start from the same generate_assignment copy, so the assignment's rows (same ids)
    are already there and only the student's submission, grades and comments are added.
    """
    import sqlite3

    db = sqlite3.connect(course / "gradebook.db", timeout=60, isolation_level=None)
    try:
        db.execute("ATTACH DATABASE ? AS private", (str(work / "gradebook.db"),))
        tables = [r[0] for r in db.execute("SELECT name FROM private.sqlite_master WHERE type='table' "
                                           "AND name NOT LIKE 'sqlite_%' AND name != 'alembic_version'")]
        db.execute("BEGIN IMMEDIATE")
        try:
            for _ in range(3):  # foreign keys: parents first; a few passes cover any table order
                for t in tables:
                    db.execute(f'INSERT OR IGNORE INTO main."{t}" SELECT * FROM private."{t}"')
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("DETACH DATABASE private")
    finally:
        db.close()


def _grade_student(course: Path, submitted: Path, student: str, released: Path, assignment: str,
                   limits: Limits) -> tuple[list[str], Path | None]:
    """Checks, then the sandboxed autograde of one student; (flags, their private course or None)."""
    folder = submitted / student / assignment
    if (submitted / student).is_symlink() or folder.is_symlink():
        return [f"unsafe-submission: {folder} is a symbolic link: not graded"], None
    if not folder.is_dir():
        found = sorted(p.name for p in (submitted / student).iterdir())
        return [f"no-submission: no {assignment}/ folder in {submitted / student} "
                f"(found: {', '.join(found) or 'nothing'})"], None
    unsafe = unsafe_entries(folder, limits)
    if unsafe:
        return [f"unsafe-submission: {'; '.join(unsafe[:3])}: not graded"], None
    if not any(folder.glob("*.ipynb")):
        return [f"no-submission: no notebooks in {folder}"] + csv_flags(folder), None
    work = course / "work" / student
    dest = _private_course(course, work, student, folder, assignment)
    flags = csv_flags(dest) + cell_flags(released, dest)
    flags += _autograde_one(course, work, student, assignment, limits)
    return flags, work


def grade(submitted, out="grading", notebooks_dir=None, assignment: str = ASSIGNMENT, jobs: int | None = None,
          limits: Limits = LIMITS) -> dict[str, dict]:
    """Autograde every submission in ``submitted`` (nbgrader's submitted/ layout); return grades by student.

    Each value: ``score``, ``max_score`` (autograded points), ``manual_max_score``,
    ``failed`` (``"<notebook>:<grade_id>"`` of autograded cells below full marks) and
    ``flags``. Also writes ``out/grades.json``, ``out/rubric.md``, the class view (``out/class-report.html`` and its
    PNGs, :mod:`labkit.grading.class_report`) and nbgrader's
    feedback (``out/feedback/<student>/<assignment>/*.html``). Raises
    :class:`GradeError` when there is nothing to grade.

    Each submission is graded in a private course of its own (``out/work/<student>``: a
    copy of the gradebook, the submission copied without following links) with its
    kernel in a bubblewrap sandbox (:mod:`labkit.grading.sandbox`); ``jobs`` of them at
    once (default: the cores), with the same scores as one at a time. The parent then
    re-checks the answers in a fresh process on the literal submitted CSV
    (:mod:`labkit.grading.verify`), flags CSVs copied between students, and merges each
    student's rows into ``out/gradebook.db`` in one transaction.
    """
    from labkit.grading.checks import copied_between
    from labkit.grading.verify import enforce

    bwrap()  # one line now, not one per student later
    submitted = Path(submitted)
    students = _students(submitted)
    jobs = max(1, int(jobs or os.cpu_count() or 1))
    course = _fresh_course(Path(out))
    names = graded_notebooks(notebooks_dir)
    sources = write_course(course, notebooks_dir, names, assignment)
    released = generate_assignment(course, assignment)[0].parent
    (course / "rubric.md").write_text(rubric(source_notebooks(notebooks_dir), assignment))

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        done = dict(zip(students, pool.map(
            lambda st: _grade_student(course, submitted, st, released, assignment, limits), students)))
    flags = {st: f for st, (f, _) in done.items()}
    works = {st: w for st, (_, w) in done.items() if w is not None}

    logs = {"autograde": [], "generate_feedback": []}
    for student, work in works.items():  # in the parent, one student at a time
        for step in logs:
            if (work / f"{step}.log").exists():
                logs[step].append(f"=== {student}\n" + (work / f"{step}.log").read_text())
        merge_gradebook(course, work)
        for part in ("submitted", "autograded", "feedback"):
            if (work / part / student).exists():
                shutil.copytree(work / part / student, course / part / student, symlinks=True)
    (course / "autograde.log").write_text("\n".join(logs["autograde"]))
    (course / "feedback.log").write_text("\n".join(logs["generate_feedback"]))

    csvs = {st: submitted / st / assignment / RESULTS_NAME for st in works}
    for student, others in copied_between(csvs).items():
        flags[student] += [f"copied-from: {rows} measured row(s) of results.csv identical to {other}'s "
                           "submission" for other, rows in others.items()]

    grades: dict[str, dict] = {}
    # A student nbgrader never graded scores 0 of the assignment's maximum, every autograded cell lost.
    full = _assignment_points(sources)
    for student in students:
        s = _scores(course, assignment, student) if student in works else None
        if s is None or s["max_score"] + s["manual_max_score"] == 0:
            s = {"score": 0.0, "max_score": full["max_score"], "manual_max_score": full["manual_max_score"],
                 "failed": list(full["cells"])}
        elif student in works:  # the kernel's verdict on the answers is not trusted: re-checked here
            flags[student] += enforce(course, assignment, student, csvs[student], s)
        grades[student] = {"score": s["score"], "max_score": s["max_score"], "flags": flags[student],
                           "failed": s["failed"], "manual_max_score": s["manual_max_score"]}
    if not os.environ.get("LABKIT_KEEP_GRADING_WORK"):
        shutil.rmtree(course / "work", ignore_errors=True)
    (course / "grades.json").write_text(json.dumps(grades, indent=2) + "\n")
    from labkit.grading.class_report import write_class_report

    write_class_report(grades, course, submitted, assignment)  # class-report.html + PNGs beside the grades
    return grades


def _assignment_points(sources) -> dict:
    """The assignment's autograded ``max_score``, ``manual_max_score`` and autograded ``cells``."""
    from labkit.grading.release import graded_cells

    out = {"max_score": 0.0, "manual_max_score": 0.0, "cells": []}
    for p in sources:
        for g in graded_cells(json.loads(Path(p).read_text())):
            if g["manual"]:
                out["manual_max_score"] += g["points"]
            else:
                out["max_score"] += g["points"]
                out["cells"].append(f"{Path(p).stem}:{g['grade_id']}")
    return out


def format_grades(grades: dict[str, dict], course: Path | None = None) -> str:
    """One line per student (score / max, the cells that lost points, points left to grade by hand),
    then that student's flags indented."""
    lines = []
    width = max((len(s) for s in grades), default=0)
    for student, g in grades.items():
        line = f"{student:<{width}}  {g['score']:g} / {g['max_score']:g} autograded"
        if g.get("manual_max_score"):
            line += f", {g['manual_max_score']:g} to grade by hand"
        if g.get("failed"):
            line += f"; lost: {', '.join(g['failed'])}"
        lines.append(line)
        lines += [f"{'':<{width}}  flag: {f}" for f in g["flags"]]
    if course is not None:
        lines.append(f"feedback in {course / 'feedback'}; rubric {course / 'rubric.md'}; "
                     f"formgrader: cd {course} && nbgrader formgrader")
    from labkit.grading.checks import printable

    return "\n".join(printable(line) for line in lines) + "\n"
