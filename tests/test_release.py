"""Student versions: built by nbgrader's real pipeline, and graded by their own test cells.

The source notebooks are run (tiny profile, real local lab) and must pass their
autograder cells; the student versions built by :func:`labkit.release.build_release`
are then run on the same results CSV with errors allowed, and every error they
raise must be the ``NotImplementedError`` that stands in for a removed solution.
"""

from __future__ import annotations

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
from labkit.backends import get_backend
from labkit.lab import NOTEBOOKS, NOTEBOOKS_DIR, kernel_environment, notebook_parameters, run_lab
from labkit.release import ReleaseError, build_release
from labkit.settings import Settings


def _cells(nb, kind):
    return [c for c in nb.cells if c.cell_type == "code" and c.metadata.get("nbgrader", {}).get(kind)]


@pytest.fixture(scope="module")
def student_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("release")
    paths = build_release(out)
    assert [p.name for p in paths] == [f"{n}.ipynb" for n in NOTEBOOKS]
    return out / "lab02"


def test_student_versions_replace_every_solution_with_not_implemented(student_dir):
    solutions = 0
    for name in NOTEBOOKS:
        source = nbformat.read(NOTEBOOKS_DIR / f"{name}.ipynb", as_version=4)
        student = nbformat.read(student_dir / f"{name}.ipynb", as_version=4)
        assert len(student.cells) == len(source.cells)
        assert "jupytext" not in student.metadata
        for src, stu in zip(source.cells, student.cells):
            text = stu.source
            assert "BEGIN SOLUTION" not in text and "END SOLUTION" not in text
            if src.metadata.get("nbgrader", {}).get("solution"):
                solutions += 1
                assert "raise NotImplementedError()" in text
                kept = src.source.split("### BEGIN SOLUTION")[0]
                assert text.startswith(kept), "lines outside the solution region are kept"
                assert "max_concurrency(" not in text and "part2_from_report" not in text
            else:
                assert text == src.source
            if stu.metadata.get("nbgrader", {}).get("grade"):
                assert stu.metadata["nbgrader"]["locked"] is True and "checksum" in stu.metadata["nbgrader"]
            if stu.cell_type == "code":
                assert stu.outputs == [] and stu.execution_count is None
    assert solutions == 2


def test_release_via_cli_writes_into_out_lab02(tmp_path):
    res = subprocess.run([sys.executable, "-m", "labkit.cli", "release", "--out", str(tmp_path / "rel")],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    listed = [Path(line).name for line in res.stdout.split()]
    assert listed == [f"{n}.ipynb" for n in NOTEBOOKS]
    assert sorted(p.name for p in (tmp_path / "rel" / "lab02").iterdir()) == listed


def test_release_names_missing_source_notebooks(tmp_path):
    shutil.copy(NOTEBOOKS_DIR / "00_setup.ipynb", tmp_path)
    with pytest.raises(ReleaseError, match="01_single_server.ipynb"):
        build_release(tmp_path / "out", notebooks_dir=tmp_path)


def test_source_pass_and_student_versions_fail_only_with_not_implemented(student_dir, tmp_path, monkeypatch):
    settings = Settings.from_env().replace(state_dir=tmp_path / ".labkit", local_net="127.0.202")
    monkeypatch.chdir(tmp_path)
    # The source notebooks, run for real: their own autograder cells pass.
    report = run_lab("tiny", out_root=tmp_path / "reports", settings=settings)
    for name in NOTEBOOKS:
        nb = nbformat.read(report / f"{name}.ipynb", as_version=4)
        for cell in _cells(nb, "grade"):
            assert cell.execution_count is not None
            assert [o for o in cell.outputs if o["output_type"] == "error"] == []

    # The student versions, on a copy of that run's results (so nothing is measured again).
    work = tmp_path / "student"
    work.mkdir()
    shutil.copy(report / "results.csv", work / "results.csv")
    errors: dict[str, list[tuple[str, str]]] = {}
    try:
        for name in NOTEBOOKS:
            nb = load_notebook_node(str(student_dir / f"{name}.ipynb"))
            params = notebook_parameters(name, work, "tiny", "local", "f1-micro")
            nb = parameterize_notebook(nb, params)
            NotebookClient(nb, allow_errors=True, timeout=300, kernel_name="python3",
                           resources={"metadata": {"path": str(student_dir)}}).execute(
                               env=kernel_environment(settings))
            errors[name] = [(c.metadata.get("nbgrader", {}).get("grade_id", ""), o["ename"])
                            for c in nb.cells if c.cell_type == "code"
                            for o in c.outputs if o["output_type"] == "error"]
    finally:
        if state.load(settings, "local"):
            get_backend("local", settings).down()
    assert errors["00_setup"] == [] and errors["03_vertical_scaling"] == [] and errors["04_reanalysis"] == []
    assert errors["01_single_server"] == [("part1_answer", "NotImplementedError"),
                                          ("part1_answer_check", "NotImplementedError"),
                                          ("part1_why_check", "NotImplementedError")]
    assert errors["02_load_balancer"] == [("part2_answer", "NotImplementedError"),
                                          ("part2_answer_check", "NotImplementedError"),
                                          ("part2_why_check", "NotImplementedError")]
    assert (work / "results.csv").read_text() == (report / "results.csv").read_text(), "nothing re-measured"
