"""The class view ``labkit grade`` writes (labkit.grading.class_report), opened in headless Chromium.

Submissions are made directly in a grading folder's ``submitted/`` layout (notebooks holding
only the answer cells, CSVs from tests/grading_data.py), so no nbgrader run is needed: the
page, its PNGs and what it says are checked on a class of eight, then Debian's Chromium
opens it and every chart must have loaded. The screenshot is copied to
``$LABKIT_CLASS_SCREENSHOT`` when that is set.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import nbformat
import pytest

from tests.support import grading_data as gd
from labkit.grading.class_report import far_from_class, notebook_answers, write_class_report

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def _notebook(folder: Path, part1, part2, balancer) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    nb = nbformat.v4.new_notebook()
    for grade_id, source in (("part1_answer", f"part1_max_users = {part1!r}\npart1_why = 'because'"),
                             ("part2_answer", f"part2_nodes = {part2!r}\npart2_balancer = {balancer!r}")):
        cell = nbformat.v4.new_code_cell(source)
        cell.metadata["nbgrader"] = {"grade_id": grade_id, "solution": True, "grade": False, "locked": False}
        nb.cells.append(cell)
    nb.cells.append(nbformat.v4.new_code_cell("part1_max_users = 999  # not a solution cell: ignored"))
    nbformat.write(nb, str(folder / "01_single_server.ipynb"))


def _part1(rows, path) -> int | None:
    """Part 1 as the student's own data gives it (the autograder's rule)."""
    from labkit.grading.checks import expected_part1
    from labkit.handout import handout_rows
    from labkit.results import load_results

    return expected_part1(handout_rows(load_results(gd.write_csv(path, rows)), "f1-micro"))


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    course = tmp_path_factory.mktemp("grading")
    grades = {}
    alice_rows = gd.student_rows(1.0, tag="a11c")
    answers = (_part1(alice_rows, course / "alice.csv"), 27, "e2-standard-2")  # part 2 as alice would answer
    scales = {"alice": 1.0, "bob": 0.95, "carl": 1.05, "dina": 0.9, "ed": 1.1, "fast": 0.2}
    for i, (name, scale) in enumerate(scales.items()):
        folder = course / "submitted" / name / "lab02"
        rows = alice_rows if name == "alice" else gd.student_rows(scale, tag=f"{i:04x}")
        _notebook(folder, _part1(rows, course / f"{name}-answers.csv"), *answers[1:])
        gd.write_csv(folder / "results.csv", rows)
        grades[name] = {"score": 6.0, "max_score": 6.0, "flags": [], "failed": []}
    # copy: alice's file byte for byte; rows: alice's measured rows under a run of his own
    folder = course / "submitted" / "copy" / "lab02"
    _notebook(folder, *answers)
    shutil.copy(course / "submitted" / "alice" / "lab02" / "results.csv", folder / "results.csv")
    grades["copy"] = {"score": 6.0, "max_score": 6.0, "flags": [], "failed": []}
    folder = course / "submitted" / "rows" / "lab02"
    _notebook(folder, answers[0] + 30, 3, None)
    gd.write_csv(folder / "results.csv", [{**r, "run_id": "20261122T100000Z-beef"} for r in alice_rows])
    grades["rows"] = {"score": 2.0, "max_score": 6.0, "failed": ["01_single_server:part1_answer_check"],
                      "flags": ["timestamps: 3 row(s) of run 20261122T100000Z-beef start before the run did",
                                "littles-law: rps × mean / concurrency far from 1 on 1 row(s)"]}
    grades["nobody"] = {"score": 0.0, "max_score": 6.0, "failed": [],
                        "flags": ["no-submission: no lab02/ folder in x (found: nothing)"]}
    page = write_class_report(grades, course)
    return {"course": course, "page": page, "grades": grades, "answers": answers}


def test_answers_are_read_from_solution_cells_without_running_them(tmp_path):
    _notebook(tmp_path, 20, 27, "e2-standard-2")
    assert notebook_answers(tmp_path) == {"part1_max_users": 20, "part2_nodes": 27, "part2_balancer": "e2-standard-2"}
    nb = nbformat.read(str(tmp_path / "01_single_server.ipynb"), as_version=4)
    nb.cells[1].source = "import os\npart2_nodes = len(os.listdir('/'))"
    nbformat.write(nb, str(tmp_path / "01_single_server.ipynb"))
    assert notebook_answers(tmp_path)["part2_nodes"] == "len(os.listdir('/'))"  # shown, never run


def test_far_from_class_names_the_value_and_the_median():
    why = far_from_class({"a": 100, "b": 105, "c": 95, "d": 102, "e": 98, "f": 500, "g": None}, "per-server rps")
    assert list(why) == ["f"] and "per-server rps 500 is" in why["f"] and "76.9 robust SDs above the class median 101" in why["f"]
    same = far_from_class({"a": 20, "b": 20, "c": 20, "d": 50}, "part-1 limit")
    assert same == {"d": "part-1 limit 50 is 150% above the class median 20 (most of the class has exactly 20)"}
    assert far_from_class({"a": 1, "b": 100}, "x") == {}  # too few to call anyone far


def test_the_class_data(course):
    data = json.loads((course["course"] / "class-report.json").read_text())  # what the page was made from
    st = data["students"]
    assert st["alice"]["part1_max_users"] == course["answers"][0] and st["alice"]["part2_nodes"] == course["answers"][1]
    assert st["nobody"]["per_server_rps"] is None and st["nobody"]["part1_max_users"] is None
    # a machine five times as fast: five times the per-server rps, far from the class
    assert st["fast"]["per_server_rps"] == pytest.approx(5 * st["alice"]["per_server_rps"], rel=0.01)
    assert any(w.startswith("per-server rps") for w in data["far"]["fast"])
    assert "part-1 answer" in " ".join(data["far"]["rows"]) and "alice" not in data["far"]
    pairs = {(tuple(c["students"]), c["kind"]) for c in data["copies"]}
    assert (("alice", "copy"), "identical file") in pairs
    assert (("alice", "rows"), "shared rows") in pairs and (("copy", "rows"), "shared rows") in pairs
    assert not any("bob" in c["students"] for c in data["copies"])
    assert data["flag_kinds"] == ["littles-law", "no-submission", "timestamps"]


@pytest.mark.browser
def test_the_page_opens_in_chromium_with_its_charts(course, tmp_path):
    assert Path(CHROMIUM).exists(), "Debian's chromium is required: apt-get install -y chromium (make test does)"
    from playwright.sync_api import sync_playwright

    folder = course["course"]
    pngs = sorted(p.name for p in folder.glob("class-*.png"))
    assert pngs == ["class-answers.png", "class-flags.png", "class-part1-limit.png", "class-per-server-rps.png"]
    assert all((folder / p).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1250, "height": 1400})
            page.goto(course["page"].as_uri(), timeout=60_000)
            loaded = page.evaluate("Array.from(document.images).map(i => [i.id, i.complete && i.naturalWidth > 0])")
            assert sorted(loaded) == [["chart-answers", True], ["chart-flags", True], ["chart-part1-limit", True],
                                      ["chart-per-server-rps", True]]
            assert "9 submission(s)" in page.inner_text("body")
            far = page.inner_text("#far-table")
            assert "fast" in far and "robust SDs above the class median" in far
            copies = page.inner_text("#copies-table")
            assert "alice & copy" in copies and "identical file" in copies and "shared rows" in copies
            students = page.inner_text("#students-table")
            assert "no-submission" in students and "timestamps:" in students
            far_students = json.loads((folder / "class-report.json").read_text())["far"]
            assert page.locator("#students-table tr.far").count() == len(far_students) >= 2
            shot = tmp_path / "class_report.png"
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    assert shot.stat().st_size > 20_000
    if os.environ.get("LABKIT_CLASS_SCREENSHOT"):
        shutil.copy(shot, os.environ["LABKIT_CLASS_SCREENSHOT"])
