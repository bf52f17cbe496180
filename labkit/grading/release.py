"""``labkit release``: the student versions of the notebooks, built by nbgrader, and the course around them.

The notebooks in ``notebooks/`` are nbgrader *source* notebooks: the report
answers sit between ``### BEGIN SOLUTION`` and ``### END SOLUTION``, locked
autograded test cells check them against the student's own results CSV (the
expected answer is computed inside ``### BEGIN HIDDEN TESTS`` blocks, which the
student versions do not contain), and markdown answer cells are graded by hand.
nbgrader's real pipeline (``nbgrader generate_assignment`` in a course folder)
replaces each solution with ``raise NotImplementedError()`` (markdown ones with
"YOUR ANSWER HERE"), drops the hidden tests, clears outputs, locks the test
cells and records their checksums.

``build_release(out)`` writes:

- ``out/lab02/``: the student notebooks, the layout of nbgrader's own release
  folder. Their ``results_csv`` is ``results.csv`` (and ``charts_dir`` is
  ``charts``, ``balancer_csv`` ``balancer.csv``) *inside* that folder, relative to the notebooks, so the
  student's sweeps write there and ``nbgrader submit``/``collect`` carry it;
- ``out/course/``: an nbgrader course an instructor can adopt
  (``nbgrader_config.py`` and ``source/lab02/``): see :data:`NBGRADER_CONFIG`;
- ``out/lab02-rubric.md``: every graded cell with its points, and for each one
  graded by hand the question and what a full answer contains (outside the
  assignment folder: students do not get it).

:mod:`labkit.grading.grade` builds its grading course with the same functions.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from labkit.errors import LabkitError, MissingToolError

log = logging.getLogger("labkit")

ASSIGNMENT = "lab02"
#: Where the student's results and charts go, relative to the notebooks in the assignment folder.
RESULTS_NAME = "results.csv"
#: Notebook 02's rows of one node behind nginx (the balancer's cost), kept apart from the results.
BALANCER_NAME = "balancer.csv"
CHARTS_NAME = "charts"
RUBRIC_NAME = f"{ASSIGNMENT}-rubric.md"
#: Marks a folder ``labkit release`` wrote, so a re-run may replace its lab02/ and course/ (and nothing else).
RELEASE_MARKER = ".labkit-release"

#: The course's ``nbgrader_config.py``. Autograding never measures: nbgrader runs
#: :class:`labkit.nbgrader_hooks.SkipMeasuring` before executing a notebook, which
#: turns the cells tagged ``measure`` into comments (the cells after them read the
#: submitted ``results.csv``); a notebook without graded cells is not run at all.
NBGRADER_CONFIG = '''\
"""nbgrader configuration for labkit's Lab 02 (written by `labkit release` / `labkit grade`).

Grading never measures: before nbgrader autograde executes a notebook,
labkit.nbgrader_hooks.SkipMeasuring turns the cells tagged "measure" (deploying,
ab runs, sweeps) into comments, so the cells after them read the student's own
results.csv, submitted in the assignment folder. No nginx, ab or cloud is needed
to grade; labkit must be importable by nbgrader and by the grading kernel.
"""
from nbgrader.converters import Autograde

c = get_config()  # noqa: F821 (nbgrader provides it)

c.CourseDirectory.course_id = "lab02"
c.Autograde.autograde_preprocessors = [
    "labkit.nbgrader_hooks.SkipMeasuring",
    *Autograde.class_traits()["autograde_preprocessors"].default(),
]
# A grading kernel only reads a CSV and draws a few charts.
c.Execute.timeout = 180
'''


class ReleaseError(LabkitError):
    """nbgrader could not build the student versions; the message carries nbgrader's own reason."""


def _require_nbgrader() -> None:
    try:
        import nbgrader  # noqa: F401
    except ImportError:
        raise MissingToolError("nbgrader is not installed: pip install -e '.[notebooks]'") from None


def source_notebooks(notebooks_dir=None, names=None) -> list[Path]:
    """The source notebooks (default: all of :data:`labkit.lab.NOTEBOOKS`); raise when one is missing."""
    from labkit.lab import NOTEBOOKS, NOTEBOOKS_DIR

    notebooks_dir = Path(notebooks_dir) if notebooks_dir else NOTEBOOKS_DIR
    sources = [notebooks_dir / f"{n}.ipynb" for n in (names or NOTEBOOKS)]
    missing = [str(p) for p in sources if not p.is_file()]
    if missing:
        raise ReleaseError(f"source notebooks missing: {', '.join(missing)}")
    return sources


def has_grade_cells(nb: dict) -> bool:
    """Does the notebook (JSON dict) hold any nbgrader grade cell (autograded test or graded by hand)?"""
    return any(c.get("metadata", {}).get("nbgrader", {}).get("grade") for c in nb.get("cells", []))


def _parameter_line(name: str, value: str, comment: str) -> str:
    return f"{name} = {json.dumps(value)}  # {comment}"


def assignment_notebook(nb: dict) -> dict:
    """A source notebook as it goes into the course: results and charts inside the assignment folder.

    In the cell tagged ``parameters``, ``results_csv`` becomes
    :data:`RESULTS_NAME`, ``balancer_csv`` :data:`BALANCER_NAME` and ``charts_dir`` :data:`CHARTS_NAME` (relative to the
    notebook, i.e. the assignment folder); the jupytext pairing is dropped
    (students get notebooks, not review scripts). Returns a new dict.
    """
    nb = json.loads(json.dumps(nb))
    nb.get("metadata", {}).pop("jupytext", None)
    for cell in nb["cells"]:
        if "parameters" not in cell.get("metadata", {}).get("tags", []):
            continue
        src = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        src = re.sub(r"(?m)^results_csv\s*=.*$", lambda _: _parameter_line(
            "results_csv", RESULTS_NAME, "your results, in this folder: nbgrader submit hands them in"), src)
        src = re.sub(r"(?m)^balancer_csv\s*=.*$", lambda _: _parameter_line(
            "balancer_csv", BALANCER_NAME, "one node behind nginx, in this folder: handed in with the results"),
            src)
        src = re.sub(r"(?m)^charts_dir\s*=.*$", lambda _: _parameter_line(
            "charts_dir", CHARTS_NAME, "where the PNG charts are saved"), src)
        cell["source"] = src
    return nb


def write_course(course, notebooks_dir=None, names=None, assignment: str = ASSIGNMENT) -> list[Path]:
    """Write an nbgrader course into ``course``: ``nbgrader_config.py`` and ``source/<assignment>/``.

    ``names`` picks notebooks (default: all five). Returns the source notebooks written.
    """
    course = Path(course)
    src_dir = course / "source" / assignment
    src_dir.mkdir(parents=True, exist_ok=True)
    (course / "nbgrader_config.py").write_text(NBGRADER_CONFIG)
    written = []
    for path in source_notebooks(notebooks_dir, names):
        nb = assignment_notebook(json.loads(path.read_text()))
        dst = src_dir / path.name
        dst.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
        written.append(dst)
    return written


def nbgrader_env() -> dict[str, str]:
    """This process's environment with this Python's folder first on PATH.

    nbgrader creates its gradebook by running ``alembic``, which lives beside this Python.
    """
    return {**os.environ, "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])}


def generate_assignment(course, assignment: str = ASSIGNMENT) -> list[Path]:
    """Run ``nbgrader generate_assignment`` in ``course``; return the built ``release/<assignment>`` notebooks.

    Also creates the course's gradebook (``gradebook.db``) with every graded cell and its checksum.
    """
    _require_nbgrader()
    course = Path(course).resolve()
    expected = sorted(p.name for p in (course / "source" / assignment).glob("*.ipynb"))
    argv = [sys.executable, "-m", "nbgrader", "generate_assignment", assignment, "--force",
            f"--CourseDirectory.root={course}", f"--CourseDirectory.db_url=sqlite:///{course / 'gradebook.db'}"]
    log.info("running nbgrader generate_assignment for %d notebooks", len(expected))
    res = subprocess.run(argv, cwd=course, capture_output=True, text=True, env=nbgrader_env())
    built = sorted((course / "release" / assignment).glob("*.ipynb"))
    if res.returncode != 0 or [p.name for p in built] != expected:
        tail = "\n".join((res.stderr or res.stdout).strip().splitlines()[-8:])
        raise ReleaseError(f"nbgrader generate_assignment failed (exit {res.returncode}): {tail}")
    return built


# -- the rubric ------------------------------------------------------------------------------------------
def _text(cell: dict) -> str:
    src = cell.get("source", "")
    return ("".join(src) if isinstance(src, list) else src).strip()


def graded_cells(nb: dict) -> list[dict]:
    """The grade cells of a source notebook: grade_id, points, ``manual`` (graded by hand), question, answer.

    A cell graded by hand is a markdown (or code) cell that is both ``solution``
    and ``grade``; its source in the *source* notebook is what a full answer
    contains, and the markdown cell just before it is its question. An
    autograded test cell's ``what`` is its first comment line.
    """
    out, cells = [], nb.get("cells", [])
    for i, cell in enumerate(cells):
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if not meta.get("grade"):
            continue
        manual = bool(meta.get("solution"))
        question = ""
        if manual:
            prev = [c for c in cells[:i] if c.get("cell_type") == "markdown"]
            question = _text(prev[-1]) if prev else ""
        comments = [ln.lstrip("# ").strip() for ln in _text(cell).splitlines() if ln.startswith("# ")]
        out.append({"grade_id": meta["grade_id"], "points": float(meta.get("points", 0)), "manual": manual,
                    "cell_type": cell.get("cell_type"), "question": question,
                    "answer": _text(cell) if manual else "", "what": comments[0] if comments else ""})
    return out


def _pts(v: float) -> str:
    return f"{v:g}"


def rubric(notebooks, assignment: str = ASSIGNMENT) -> str:
    """The instructors' rubric (markdown) for the source ``notebooks`` (paths): see :func:`graded_cells`."""
    rows, manual_sections, auto_total, manual_total = [], [], 0.0, 0.0
    for path in notebooks:
        path = Path(path)
        for g in graded_cells(json.loads(path.read_text())):
            how, what = ("by hand (formgrader)", "see below") if g["manual"] else ("autograded", g["what"])
            rows.append(f"| {path.stem} | `{g['grade_id']}` | {_pts(g['points'])} | {how} | {what} |")
            if g["manual"]:
                manual_total += g["points"]
                quoted = "\n".join("> " + ln if ln else ">" for ln in g["question"].splitlines())
                manual_sections.append(
                    f"### {path.stem} · `{g['grade_id']}` ({_pts(g['points'])} points)\n\n"
                    f"**Question** (the cell before the answer):\n\n{quoted}\n\n"
                    f"**A full answer contains:**\n\n{g['answer']}\n")
            else:
                auto_total += g["points"]
    head = (f"# {assignment} rubric (for instructors; not part of the student release)\n\n"
            f"Generated by `labkit release` from the source notebooks' nbgrader cell metadata.\n"
            f"Total {_pts(auto_total + manual_total)} points: {_pts(auto_total)} autograded "
            f"(`labkit grade`, `nbgrader autograde`), {_pts(manual_total)} graded by hand in formgrader.\n"
            f"Autograded answers are checked against the student's own `results.csv` (design §8): "
            f"different data, different right answers.\n\n"
            f"| notebook | cell | points | graded | what |\n|---|---|---|---|---|\n")
    body = "\n".join(rows) + "\n"
    if manual_sections:
        body += "\n## Graded by hand\n\n" + "\n".join(manual_sections)
    return head + body


# -- the release -----------------------------------------------------------------------------------------
def build_release(out="release", notebooks_dir=None, assignment: str = ASSIGNMENT) -> list[Path]:
    """Build the student notebooks into ``out/assignment/``; return their paths.

    Also writes ``out/course/`` (the nbgrader course: config and sources) and
    ``out/<assignment>-rubric.md``. ``out/assignment`` and ``out/course`` are
    replaced as a whole, so a removed notebook does not linger.
    """
    _require_nbgrader()
    sources = source_notebooks(notebooks_dir)
    out = Path(out)
    target = out / assignment
    marker = out / RELEASE_MARKER
    theirs = [str(f) for f in (target, out / "course") if f.exists() and (f.is_symlink() or not marker.exists())]
    if theirs:  # the same rule as `labkit grade --out`: only replace what labkit made
        raise ReleaseError(f"{', '.join(theirs)} exist(s) and {out} is not a labkit release folder (no "
                           f"{RELEASE_MARKER}): choose another --out, or remove them yourself")
    with tempfile.TemporaryDirectory(prefix="labkit-release-") as tmp:
        course = Path(tmp)
        write_course(course, notebooks_dir, [p.stem for p in sources], assignment)
        built = generate_assignment(course, assignment)
        for folder in (target, out / "course"):
            if folder.exists():
                shutil.rmtree(folder)
        target.mkdir(parents=True)
        paths = []
        for nb_path in built:
            dst = target / nb_path.name
            shutil.copyfile(nb_path, dst)
            paths.append(dst)
        (out / "course" / "source").mkdir(parents=True)
        shutil.copyfile(course / "nbgrader_config.py", out / "course" / "nbgrader_config.py")
        shutil.copytree(course / "source" / assignment, out / "course" / "source" / assignment)
    marker.write_text("labkit release replaces lab02/ and course/ in this folder on every run\n")
    (out / f"{assignment}-rubric.md").write_text(rubric(sources, assignment))
    log.info("student notebooks in %s; nbgrader course in %s; rubric %s", target, out / "course",
             out / f"{assignment}-rubric.md")
    return paths
