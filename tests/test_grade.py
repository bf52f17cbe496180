"""``labkit grade``: the real nbgrader autograde and feedback over a submitted/ layout, never measuring.

One grading run (module fixture) over students whose results CSVs are derived from
``data/reference.csv`` (tests/support/grading_data.py: re-timed, latencies scaled, Little's
law kept), and whose notebooks are the released student versions with the answers
typed in: two students with different data and their own right answers, one with
wrong answers, one who copied the reference data, and the bad inputs (no CSV, a CSV
that does not load, a deleted test cell, an edited locked cell, no lab02 folder).
The run strips nginx and ab from PATH: grading must not need them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from tests.support import grading_data as gd
from labkit.grading.grade import GradeError, autograde_errors, grade
from labkit.grading.checks import authenticity_flags, part2_rule
from labkit.handout import handout_rows
from labkit.lab import NOTEBOOKS_DIR
from labkit.grading.release import graded_cells
from labkit.results import load_results

FULL = 6.0  # autograded points: part 1 answer 2 + why 1, part 2 answer 2 + why 1
#: The cells graded by hand ("Interpret your results") in the graded notebooks: (notebook, grade_id) -> points.
MANUAL_CELLS = {(name, c["grade_id"]): c["points"] for name in ("01_single_server", "02_load_balancer",
                                                                 "03_vertical_scaling")
                for c in graded_cells(json.loads((NOTEBOOKS_DIR / f"{name}.ipynb").read_text())) if c["manual"]}
MANUAL = sum(MANUAL_CELLS.values())


@pytest.fixture(scope="module")
def graded(release_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("grade")
    sub = tmp / "submitted"
    alice = gd.student_rows(1.1, tag="a11c")
    bob = gd.student_rows(0.5, start=gd.dt.datetime(2026, 11, 21, 14, 0, tzinfo=gd.dt.timezone.utc), tag="b0b0")
    answers = {"alice": gd.right_answers(alice, tmp / "a.csv"), "bob": gd.right_answers(bob, tmp / "b.csv")}
    gd.submission(sub, "alice", release_dir, alice, *answers["alice"])
    gd.submission(sub, "bob", release_dir, bob, *answers["bob"])
    # erin and carol hand in the two notebooks with autograded answers (01, 02), to keep the run short
    autograded = tmp / "rel0102"
    autograded.mkdir()
    for name in ("01_single_server", "02_load_balancer"):
        shutil.copy(release_dir / f"{name}.ipynb", autograded)
    # erin: data of her own (a copy would be flagged), wrong numbers (quoted in her sentences, so only the
    # answer cells fail)
    gd.submission(sub, "erin", autograded, gd.student_rows(1.2, tag="e1e1"), answers["alice"][0] + 30, 3,
                  answers["alice"][2])
    # carol: data/reference.csv handed in as hers, with the right answers for it
    ref = gd.REFERENCE.read_text()
    carol = gd.submission(sub, "carol", autograded, None, 20, 25, "e2-standard-2")
    (carol / "results.csv").write_text(ref)
    # the bad inputs: only notebook 01 each, to keep the run short
    only01 = tmp / "rel01"
    only01.mkdir()
    shutil.copy(release_dir / "01_single_server.ipynb", only01)
    gd.submission(sub, "frank", only01, None, *answers["alice"])  # no results.csv
    gina = gd.submission(sub, "gina", only01, None, *answers["alice"])
    (gina / "results.csv").write_text("this is not,a results file\n1,2\n")
    hank = gd.submission(sub, "hank", only01, gd.student_rows(1.3, tag="4a4c"), *answers["alice"])
    nb = nbformat.read(str(hank / "01_single_server.ipynb"), as_version=4)
    nb.cells = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") != "part1_answer_check"]
    for c in nb.cells:  # and an edited locked cell, in the same notebook
        if c.metadata.get("nbgrader", {}).get("grade_id") == "part1_why_check":
            c.source = "pass  # nothing to check here"
    nbformat.write(nb, str(hank / "01_single_server.ipynb"))
    (sub / "judy").mkdir()
    (sub / "judy" / "notes.txt").write_text("forgot the notebooks")

    env = {**os.environ, "PATH": os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep)
                                                  if not (Path(p) / "nginx").exists() and not (Path(p) / "ab").exists())}
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env["PATH"]])
    started = time.monotonic()
    res = subprocess.run([sys.executable, "-m", "labkit.cli", "grade", str(sub), "--out", str(tmp / "grading"), "--json"],
                         capture_output=True, text=True, env=env, cwd=tmp)
    elapsed = time.monotonic() - started
    assert res.returncode == 0, res.stderr[-3000:]
    print(f"labkit grade over {len(list(sub.iterdir()))} submissions: {elapsed:.0f} s\n{res.stdout}")
    return {"grades": json.loads(res.stdout), "course": tmp / "grading", "answers": answers, "sub": sub}


def test_two_students_with_different_data_both_get_full_marks(graded):
    a, b = graded["answers"]["alice"], graded["answers"]["bob"]
    assert a != b and a == (20, 24, "e2-standard-2") and b == (50, 13, "e2-medium"), \
        "different data, different right answers"
    for student in ("alice", "bob"):
        g = graded["grades"][student]
        assert (g["score"], g["max_score"], g["failed"], g["flags"]) == (FULL, FULL, [], []), (student, g)
        assert g["manual_max_score"] == MANUAL


def test_wrong_answers_lose_exactly_their_cells_points(graded):
    g = graded["grades"]["erin"]
    assert g["score"] == FULL - 4 and g["max_score"] == FULL
    assert sorted(g["failed"]) == ["01_single_server:part1_answer_check", "02_load_balancer:part2_answer_check"]


def test_copied_reference_data_is_flagged_not_failed(graded):
    g = graded["grades"]["carol"]
    assert g["score"] == FULL, "a flag is not a failure: her answers follow from the CSV she handed in"
    assert [f for f in g["flags"] if f.startswith("reference-copy:")], g["flags"]


def test_grading_never_measured(graded):
    course = graded["course"]
    for student in ("alice", "bob"):
        folder = course / "autograded" / student / "lab02"
        assert not (folder / ".labkit").exists(), "no backend was brought up"
        assert (folder / "results.csv").read_bytes() == (graded["sub"] / student / "lab02" / "results.csv").read_bytes()
        nb = nbformat.read(str(folder / "02_load_balancer.ipynb"), as_version=4)
        measuring = [c for c in nb.cells if "measure" in c.metadata.get("tags", [])] or \
            [c for c in nb.cells if c.cell_type == "code" and c.source.startswith("# Not run when graded")]
        source = nbformat.read(str(NOTEBOOKS_DIR / "02_load_balancer.ipynb"), as_version=4)
        tagged = [c for c in source.cells if "measure" in c.metadata.get("tags", [])]
        assert len(tagged) >= 5 and len(measuring) == len(tagged)
        assert all(c.source.startswith("# Not run when graded") for c in measuring)
        errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
        assert errors == []


def test_feedback_and_manual_cells_reach_formgrader(graded):
    from nbgrader.api import Gradebook

    course = graded["course"]
    assert sorted(p.name for p in (course / "feedback" / "alice" / "lab02").glob("*.html")) == [
        "01_single_server.html", "02_load_balancer.html", "03_vertical_scaling.html"]
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        manual = {(nb.name, g.name): (g.max_score, g.needs_manual_grade)
                  for nb in gb.find_submission("lab02", "alice").notebooks for g in nb.grades
                  if g.name.startswith("interpret_")}
    assert manual == {key: (points, True) for key, points in MANUAL_CELLS.items()}
    assert {("02_load_balancer", "interpret_02_scaling"), ("03_vertical_scaling", "interpret_03_vertical")} <= set(manual)
    rubric = (course / "rubric.md").read_text()
    assert "A full answer contains" in rubric
    for (name, grade_id), points in MANUAL_CELLS.items():
        assert f"### {name} · `{grade_id}` ({points:g} points)" in rubric


def test_bad_inputs_are_lines_for_that_student_and_grading_goes_on(graded):
    g = graded["grades"]
    assert [f.split(":")[0] for f in g["frank"]["flags"]][:1] == ["csv-missing"]
    assert g["frank"]["score"] == 1.0, "only the sentence check passes without a CSV"
    assert "01_single_server:part1_answer_check" in g["frank"]["failed"]
    assert g["gina"]["flags"][0].startswith("csv-unreadable:") and g["gina"]["score"] == 1.0
    assert any(f.startswith("deleted-cell: 01_single_server part1_answer_check") for f in g["hank"]["flags"])
    assert "01_single_server:part1_answer_check" in g["hank"]["failed"], "a deleted test cell scores 0"
    assert any(f.startswith("edited-locked-cell: 01_single_server part1_why_check") for f in g["hank"]["flags"])
    assert "01_single_server:part1_why_check" not in g["hank"]["failed"], "nbgrader graded the original cell"
    for student in ("frank", "gina", "hank"):
        assert any(f.startswith("missing-notebook: 02_load_balancer.ipynb") for f in g[student]["flags"])
    assert g["judy"]["flags"][0].startswith("no-submission:") and g["judy"]["score"] == 0
    assert g["judy"]["max_score"] == FULL and len(g["judy"]["failed"]) == 4
    assert g["alice"]["score"] == FULL, "the others were graded all the same"


def test_empty_folder_is_one_clear_line(tmp_path):
    (tmp_path / "submitted").mkdir()
    with pytest.raises(GradeError, match="no submissions in"):
        grade(tmp_path / "submitted", tmp_path / "grading")
    res = subprocess.run([sys.executable, "-m", "labkit.cli", "grade", str(tmp_path / "submitted"),
                          "--out", str(tmp_path / "grading")], capture_output=True, text=True)
    assert res.returncode != 0 and "no submissions in" in res.stderr and "Traceback" not in res.stderr


def test_grade_refuses_to_replace_a_folder_it_did_not_make(tmp_path):
    (tmp_path / "submitted" / "alice" / "lab02").mkdir(parents=True)
    (tmp_path / "course").mkdir()
    (tmp_path / "course" / "gradebook.db").write_text("the instructor's")
    with pytest.raises(GradeError, match="not a labkit grading folder"):
        grade(tmp_path / "submitted", tmp_path / "course")
    assert (tmp_path / "course" / "gradebook.db").read_text() == "the instructor's"


def test_autograde_errors_are_attributed_to_their_student(tmp_path):
    log = ("[AutogradeApp | ERROR] There was an error processing assignment: /c/submitted/zoe/lab02\n"
           "[AutogradeApp | ERROR] Traceback (most recent call last):\n"
           "  File \"x.py\", line 1, in <module>\n"
           "nbformat.reader.NotJSONError: Notebook does not appear to be JSON: 'oops'\n"
           "[AutogradeApp | ERROR] There was an error processing assignment 'lab02' for student 'zoe'\n")
    assert autograde_errors(log, tmp_path, "lab02") == {
        "zoe": "nbformat.reader.NotJSONError: Notebook does not appear to be JSON: 'oops'"}


# -- the authenticity flags, without nbgrader ----------------------------------------------------------
def _frame(tmp_path, rows):
    return load_results(gd.write_csv(tmp_path / "x.csv", rows))


def test_a_measured_looking_csv_has_no_flags(tmp_path):
    assert authenticity_flags(_frame(tmp_path, gd.student_rows(0.9))) == []


def test_fabricated_numbers_are_flagged(tmp_path):
    rows = gd.student_rows(1.05)
    rows[3]["mean_ms"] = "150.0"  # 1 node, c=100: mean lowered to pass the SLA, rps left as measured
    rows[2]["rps"] = str(2 * float(rows[2]["rps"]))  # 1 node, c=50: throughput doubled, ab's times left
    rows[13]["p99_ms"] = "5.0"  # percentiles out of order
    rows[20]["started_at"] = rows[19]["started_at"]  # two ab runs at once
    rows[26]["run_id"] = "mine"
    kinds = [f.split(":")[0] for f in authenticity_flags(_frame(tmp_path, rows))]
    assert kinds == ["littles-law", "littles-law", "percentiles", "run-id", "timestamps"]


def test_rows_copied_from_the_reference_are_flagged(tmp_path):
    rows = gd.student_rows(1.0)
    flags = authenticity_flags(_frame(tmp_path, rows))
    assert [f for f in flags if f.startswith("reference-copy: 56 row(s)")], "scale 1.0 keeps the measured numbers"


# -- the answers the hidden tests accept (design §8), without nbgrader -----------------------------------
def test_part2_is_the_measured_count_when_one_exists_else_within_the_models_range(tmp_path):
    import numpy as np

    from labkit.grading.checks import check_part1, check_part2

    fast = gd.student_rows(0.1)  # 4 and 5 nodes carry 2000 users within the SLA; 3 nodes do not
    for r in fast:
        if r["nodes"] in ("4", "5") and r["rps"]:
            r["failed"] = r["non_2xx"] = "0"
            for col in gd.LATENCIES:
                r[col] = str(min(float(r[col] or 0), 250.0))
    measured = gd.write_csv(tmp_path / "measured.csv", fast)
    assert part2_rule(handout_rows(load_results(measured), "f1-micro")) == (4, None)
    check_part2(4, measured, "f1-micro")
    for wrong in (3, 5, 24, None):
        with pytest.raises(AssertionError):
            check_part2(wrong, measured, "f1-micro")

    modelled = gd.write_csv(tmp_path / "modelled.csv", gd.student_rows(1.1))
    # no tested count carries 2000 users: a count from servers_min (24, Little's law) to the model plan's,
    # naming a balancer at least as big as the plan's (e2-standard-2: one f1-micro cannot carry the need)
    from labkit.analysis.capacity import capacity_answer

    rows = handout_rows(load_results(modelled), "f1-micro")
    assert part2_rule(rows) == (None, 24)
    plan = capacity_answer(rows, "max<=1000 mean<300 p98<400", 2000, validate=False)["plan"]
    top = plan["servers"]
    assert top > 24 and plan["balancer"]["machine_type"] == "e2-standard-2"
    for right in (24, 30, np.int64(top)):
        check_part2(right, modelled, "f1-micro", "e2-standard-2")
    for wrong in (23, top + 1, 5, None, 27.5, True):
        with pytest.raises(AssertionError):
            check_part2(wrong, modelled, "f1-micro", "e2-standard-2")
    for balancer in (None, "f1-micro", "e2-medium"):  # nodes alone, or a balancer too small for the need
        with pytest.raises(AssertionError, match="balancer"):
            check_part2(27, modelled, "f1-micro", balancer)

    check_part1(20, modelled, "f1-micro")
    check_part1(np.int64(20), modelled, "f1-micro")
    for wrong in (50, None, "20"):
        with pytest.raises(AssertionError):
            check_part1(wrong, modelled, "f1-micro")
    with pytest.raises(AssertionError, match="cannot be graded"):
        check_part1(20, tmp_path / "missing.csv", "f1-micro")


def test_a_measuring_cell_that_lost_its_tag_is_flagged(release_dir, tmp_path):
    from labkit.grading.grade import cell_flags

    mine = tmp_path / "lab02"
    shutil.copytree(release_dir, mine)
    assert cell_flags(release_dir, mine) == []
    nb = nbformat.read(str(mine / "02_load_balancer.ipynb"), as_version=4)
    next(c for c in nb.cells if "measure" in c.metadata.get("tags", [])).metadata["tags"] = []
    nbformat.write(nb, str(mine / "02_load_balancer.ipynb"))
    assert cell_flags(release_dir, mine) == [
        "measure-tag-removed: 02_load_balancer has 1 measuring cell(s) without the 'measure' tag: autograding ran them"]


def test_grading_writes_the_class_view_beside_the_grades(graded):
    """The hook only: the page itself is tested in tests/test_class_report.py (Chromium)."""
    course = graded["course"]
    assert (course / "class-report.html").is_file()
    assert sorted(p.name for p in course.glob("class-*.png")) == [
        "class-answers.png", "class-flags.png", "class-part1-limit.png", "class-per-server-rps.png"]
    data = json.loads((course / "class-report.json").read_text())
    assert sorted(data["students"]) == sorted(graded["grades"])
    assert data["students"]["alice"]["part1_max_users"] == graded["answers"]["alice"][0]
    assert data["students"]["carol"]["flags"] == graded["grades"]["carol"]["flags"]
    assert "reference-copy" in data["flag_kinds"]
