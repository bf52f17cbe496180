"""Student versions: built by nbgrader's real pipeline, and graded by their own test cells.

(Grading submissions with ``labkit grade`` is tests/test_grade.py.)

The source notebooks are run (tiny profile, real local lab) and must pass their
autograder cells; the student versions built by :func:`labkit.grading.release.build_release`
are then run on the same results CSV with errors allowed, and every error they
raise must be the ``NotImplementedError`` that stands in for a removed solution.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from papermill.iorw import load_notebook_node
from papermill.parameterize import parameterize_notebook

from labkit import state
from labkit.lab import NOTEBOOKS, NOTEBOOKS_DIR, kernel_environment, notebook_parameters
from labkit.grading.release import ReleaseError, build_release
from labkit.settings import Settings
from tests.support.local import session_net


def _cells(nb, kind):
    return [c for c in nb.cells if c.cell_type == "code" and c.metadata.get("nbgrader", {}).get(kind)]


@pytest.fixture
def student_dir(release_dir):
    """The session's release (tests/support/release.py: built once, by the CLI)."""
    return release_dir


def test_student_versions_replace_every_solution_and_hide_the_expected_answers(student_dir):
    solutions = {"code": 0, "markdown": 0}
    for name in NOTEBOOKS:
        source = nbformat.read(NOTEBOOKS_DIR / f"{name}.ipynb", as_version=4)
        student = nbformat.read(student_dir / f"{name}.ipynb", as_version=4)
        assert len(student.cells) == len(source.cells)
        assert "jupytext" not in student.metadata
        for src, stu in zip(source.cells, student.cells):
            text = stu.source
            assert "BEGIN SOLUTION" not in text and "END SOLUTION" not in text
            assert "HIDDEN TESTS" not in text and "check_part" not in text, "the expected answer is not in sight"
            meta = src.metadata.get("nbgrader", {})
            if meta.get("solution"):
                solutions[src.cell_type] += 1
                if src.cell_type == "code":
                    assert "raise NotImplementedError()" in text
                    kept = src.source.split("### BEGIN SOLUTION")[0]
                    assert text.startswith(kept), "lines outside the solution region are kept"
                    assert "max_concurrency(" not in text and "capacity[" not in text
                else:
                    assert text == "YOUR ANSWER HERE", "a manually graded answer starts empty"
            elif "### BEGIN HIDDEN TESTS" in src.source:
                assert meta.get("grade") and text == src.source.split("### BEGIN HIDDEN TESTS")[0].rstrip("\n")
            elif "parameters" in src.metadata.get("tags", []):
                if "\nresults_csv = " in "\n" + src.source:  # 00 and 03's parameters are their own (issue 22)
                    assert 'results_csv = "results.csv"' in text
                if "\ncharts_dir = " in "\n" + src.source:
                    assert 'charts_dir = "charts"' in text
                if "\nbalancer_csv = " in "\n" + src.source:  # 02: one node behind nginx, handed in too
                    assert 'balancer_csv = "balancer.csv"' in text
                assert "../runs" not in text, "the results live inside the assignment folder"
            else:
                assert text == src.source
            if stu.metadata.get("nbgrader", {}).get("grade"):
                assert stu.metadata["nbgrader"]["locked"] is (stu.cell_type == "code")
                assert "checksum" in stu.metadata["nbgrader"]
            if stu.cell_type == "code":
                assert stu.outputs == [] and stu.execution_count is None
            assert stu.metadata.get("tags", []) == src.metadata.get("tags", []), "the measure tags stay"
    assert solutions["code"] == 2, "part 1 and part 2"
    assert solutions["markdown"] >= 2, "at least one answer graded by hand in each of 02 and 03"


def test_every_graded_notebook_has_a_manually_graded_cell_with_points_in_the_rubric(student_dir):
    from labkit.grading.release import graded_cells

    rubric = (student_dir.parent / "lab02-rubric.md").read_text()
    for name in ("01_single_server", "02_load_balancer", "03_vertical_scaling"):
        cells = graded_cells(json.loads((NOTEBOOKS_DIR / f"{name}.ipynb").read_text()))
        manual = [c for c in cells if c["manual"]]
        assert manual or name == "01_single_server", f"{name} has an answer graded by hand"
        assert all(c["grade_id"].startswith(f"interpret_{name[:2]}_") and c["points"] > 0 for c in manual)
        for c in manual:
            assert f"### {name} · `{c['grade_id']}` ({c['points']:g} points)" in rubric
            assert c["answer"].splitlines()[0] in rubric
    assert not (student_dir / "lab02-rubric.md").exists(), "students do not get the rubric"


def test_release_ships_an_nbgrader_course_that_never_measures(student_dir):
    course = student_dir.parent / "course"
    config = (course / "nbgrader_config.py").read_text()
    assert "labkit.nbgrader_hooks.SkipMeasuring" in config
    assert sorted(p.name for p in (course / "source" / "lab02").glob("*.ipynb")) == [f"{n}.ipynb" for n in NOTEBOOKS]
    src = nbformat.read(course / "source" / "lab02" / "02_load_balancer.ipynb", as_version=4)
    assert any("### BEGIN HIDDEN TESTS" in c.source for c in src.cells), "the course keeps the hidden tests"


def test_skip_measuring_comments_out_the_measuring_cells_only():
    from labkit.nbgrader_hooks import SkipMeasuring

    nb = nbformat.read(NOTEBOOKS_DIR / "02_load_balancer.ipynb", as_version=4)
    before = [c.source for c in nb.cells]
    nb, _ = SkipMeasuring().preprocess(nb, {})
    for old, cell in zip(before, nb.cells):
        if "measure" in cell.metadata.get("tags", []):
            assert cell.source.startswith("# Not run when graded: this cell measures.")
            assert all(line.startswith("#") for line in cell.source.splitlines())
        else:
            assert cell.source == old
    ungraded = nbformat.read(NOTEBOOKS_DIR / "00_setup.ipynb", as_version=4)
    ungraded, _ = SkipMeasuring().preprocess(ungraded, {})
    assert all(line.startswith("#") for c in ungraded.cells if c.cell_type == "code" for line in c.source.splitlines())


def test_release_via_cli_writes_into_out_lab02(release, release_dir):
    assert release["returncode"] == 0, release["stderr"]
    listed = [Path(line).name for line in release["stdout"].split()]
    assert listed == [f"{n}.ipynb" for n in NOTEBOOKS]
    assert [Path(line).parent for line in release["stdout"].split()] == [release_dir] * len(NOTEBOOKS)
    assert sorted(p.name for p in release_dir.iterdir()) == listed
    assert sorted(p.name for p in release["out"].iterdir()) == [".labkit-release", "course", "lab02",
                                                                "lab02-rubric.md"]  # the marker: see item 8


def test_release_names_missing_source_notebooks(tmp_path):
    shutil.copy(NOTEBOOKS_DIR / "00_setup.ipynb", tmp_path)
    with pytest.raises(ReleaseError, match="01_single_server.ipynb"):
        build_release(tmp_path / "out", notebooks_dir=tmp_path)


@pytest.mark.kernel
def test_source_pass_and_student_versions_fail_only_with_not_implemented(student_dir, lab_report, tmp_path,
                                                                         monkeypatch):
    """The student versions of 01 and 02 (the notebooks with solution cells), run on the session lab's
    results with their measuring cells skipped as grading skips them: every error is the stub's.

    The other cells are the source's, unchanged (test_student_versions_replace_every_solution...),
    and the source notebooks ran them all for real in the session's tiny lab; 00, 03 and 04 hold no
    solution code, so running their student versions again would check nothing new.
    """
    from labkit.nbgrader_hooks import SkipMeasuring

    settings = Settings.from_env().replace(state_dir=tmp_path / ".labkit", local_net=session_net(202))
    monkeypatch.chdir(tmp_path)
    # The source notebooks, run for real (the session's tiny lab): their own autograder cells pass.
    report = lab_report["dir"]
    for name in NOTEBOOKS:
        nb = nbformat.read(report / f"{name}.ipynb", as_version=4)
        for cell in _cells(nb, "grade"):
            assert cell.execution_count is not None
            assert [o for o in cell.outputs if o["output_type"] == "error"] == []

    work = tmp_path / "student"
    work.mkdir()
    shutil.copy(report / "results.csv", work / "results.csv")
    errors: dict[str, list[tuple[str, str]]] = {}
    with_solutions = [n for n in NOTEBOOKS if _cells(nbformat.read(NOTEBOOKS_DIR / f"{n}.ipynb", as_version=4),
                                                      "solution")]
    assert with_solutions == ["01_single_server", "02_load_balancer"]
    for name in with_solutions:
        nb = load_notebook_node(str(student_dir / f"{name}.ipynb"))
        nb, _ = SkipMeasuring().preprocess(nb, {})
        nb = parameterize_notebook(nb, notebook_parameters(name, work, "tiny", "local", "f1-micro"))
        NotebookClient(nb, allow_errors=True, timeout=300, kernel_name="python3",
                       resources={"metadata": {"path": str(student_dir)}}).execute(env=kernel_environment(settings))
        errors[name] = [(c.metadata.get("nbgrader", {}).get("grade_id", ""), o["ename"])
                        for c in nb.cells if c.cell_type == "code"
                        for o in c.outputs if o["output_type"] == "error"]
    assert errors["01_single_server"] == [("part1_answer", "NotImplementedError"),
                                          ("part1_answer_check", "NotImplementedError"),
                                          ("part1_why_check", "NotImplementedError")]
    assert errors["02_load_balancer"] == [("part2_answer", "NotImplementedError"),
                                          ("part2_answer_check", "NotImplementedError"),
                                          ("part2_why_check", "NotImplementedError")]
    assert (work / "results.csv").read_text() == (report / "results.csv").read_text(), "nothing re-measured"
    assert state.load(settings, "local") is None, "nothing was brought up"


@pytest.mark.kernel
def test_submit_and_collect_carry_the_results_csv(student_dir, tmp_path):
    """nbgrader's own exchange: release, fetch, the student's sweeps write results.csv, submit, collect."""
    from labkit.grading.release import generate_assignment, nbgrader_env

    course = tmp_path / "course"
    shutil.copytree(student_dir.parent / "course", course)
    generate_assignment(course)
    exchange, home = tmp_path / "exchange", tmp_path / "home"
    exchange.mkdir()
    home.mkdir()
    common = [f"--Exchange.root={exchange}", "--CourseDirectory.course_id=lab02"]

    def nbgrader(cwd, *args):
        res = subprocess.run([sys.executable, "-m", "nbgrader", *args, *common], cwd=cwd, capture_output=True,
                             text=True, env=nbgrader_env())
        assert res.returncode == 0, res.stderr[-2000:]

    nbgrader(course, "release_assignment", "lab02", f"--CourseDirectory.root={course}")
    nbgrader(home, "fetch_assignment", "lab02")
    (home / "lab02" / "results.csv").write_text((NOTEBOOKS_DIR.parent / "data" / "reference.csv").read_text())
    nbgrader(home, "submit", "lab02")
    nbgrader(course, "collect", "lab02", f"--CourseDirectory.root={course}")
    collected = list((course / "submitted").glob("*/lab02/results.csv"))
    assert len(collected) == 1 and collected[0].read_text() == (home / "lab02" / "results.csv").read_text()
    assert (collected[0].parent / "02_load_balancer.ipynb").is_file()
