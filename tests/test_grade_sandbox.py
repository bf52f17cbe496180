"""``labkit grade`` runs students' code in a sandbox and does not trust the kernel's verdict (issue 21 items 1, 2).

One small class (notebook 01 only, to keep it short), graded with ``--jobs 2``:

- alice: honest;
- mallory: a hostile answer cell that reads a planted secret from ``$HOME``, writes the course
  gradebook (the main one and the private one beside its copy), writes into alice's
  submission, connects to a socket on the grading machine's loopback, and leaves a
  process running;
- eve: answers 123456, replaces ``labkit.check_part1`` so the hidden test passes, and hands
  in alice's results.csv;
- sym: a submission holding a symbolic link to ``/``.

Then the same class graded one at a time gives the same grades.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from labkit.grading.grade import grade
from tests.support import grading_data as gd

pytestmark = pytest.mark.kernel  # nbgrader autograde runs kernels (bubblewrap: `make setup-test` installs it)

SECRET = "SECRET-KEY-d41d8cd98f00"
SLEEP_MARK = "98765.4321"
HOSTILE = '''
import glob, os, pathlib, socket, subprocess
print("HOSTILE-RAN")
try:
    print("STOLEN:", pathlib.Path({secret_path!r}).read_text())
except OSError as e:
    print("NO-SECRET", type(e).__name__)
print("HOME-HOLDS", sorted(os.listdir(os.path.expanduser("~"))))
for target in [{main_db!r}, *glob.glob({work_glob!r}), {alice_csv!r}]:
    try:
        with open(target, "w") as f:
            f.write("pwned")
        print("WROTE", target)
    except OSError as e:
        print("NO-WRITE", type(e).__name__)
try:
    socket.create_connection(("127.0.0.1", {port}), timeout=2)
    print("NET-OPEN")
except OSError as e:
    print("NET-BLOCKED", type(e).__name__)
subprocess.Popen(["sleep", {sleep!r}], start_new_session=True)
print("LEFT-A-PROCESS")
'''
BYPASS = '''
import labkit, labkit.grading.checks
labkit.check_part1 = labkit.grading.checks.check_part1 = lambda *a, **k: None
part1_max_users = 123456
part1_why = "One server meets the SLA at every tested level up to 123456 users, trust me on this one."
'''


def _add_to_answer(folder: Path, code: str) -> None:
    path = folder / "01_single_server.ipynb"
    nb = nbformat.read(str(path), as_version=4)
    cell = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "part1_answer")
    cell.source += "\n" + code
    nbformat.write(nb, str(path))


def _sleepers() -> list[int]:
    out = subprocess.run(["pgrep", "-f", f"sleep {SLEEP_MARK}"], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


@pytest.fixture(scope="module")
def klass(release_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sandbox")
    release = release_dir
    only01 = tmp / "rel01"
    only01.mkdir()
    shutil.copy(release / "01_single_server.ipynb", only01)
    home = tmp / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "id_ed25519").write_text(SECRET)
    sub = tmp / "submitted"
    out = tmp / "grading"
    alice_rows = gd.student_rows(1.1, tag="a11c")
    answers = gd.right_answers(alice_rows, tmp / "a.csv")
    alice = gd.submission(sub, "alice", only01, alice_rows, *answers)
    mallory = gd.submission(sub, "mallory", only01, gd.student_rows(0.7, tag="ma11"),
                            *gd.right_answers(gd.student_rows(0.7, tag="ma11"), tmp / "m.csv"))
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    _add_to_answer(mallory, HOSTILE.format(
        secret_path=str(home / ".ssh" / "id_ed25519"), main_db=str(out / "gradebook.db"),
        work_glob=str(out / "work" / "*" / "gradebook.db"), alice_csv=str(alice / "results.csv"),
        port=listener.getsockname()[1], sleep=SLEEP_MARK))
    eve = gd.submission(sub, "eve", only01, None, *answers)
    shutil.copy(alice / "results.csv", eve / "results.csv")
    _add_to_answer(eve, BYPASS)
    sym = gd.submission(sub, "sym", only01, alice_rows, *answers)
    (sym / "everything").symlink_to("/")
    alice_csv = (alice / "results.csv").read_bytes()
    old_home = os.environ["HOME"]
    os.environ["HOME"] = str(home)  # the instructor's home, where the planted key is
    try:
        grades = grade(sub, out, jobs=2)
    finally:
        os.environ["HOME"] = old_home
        listener.close()
    leftover = _sleepers()
    for pid in leftover:  # never leave one behind, even when the test fails
        os.kill(pid, 9)
    return {"grades": grades, "out": out, "sub": sub, "alice_csv": alice_csv, "leftover": leftover,
            "answers": answers}


def _outputs(out: Path, student: str) -> str:
    nb = json.loads((out / "autograded" / student / "lab02" / "01_single_server.ipynb").read_text())
    return "".join("".join(o.get("text", "")) for c in nb["cells"] if c["cell_type"] == "code" for o in c["outputs"])


def test_a_hostile_notebook_reaches_nothing_outside_its_copy(klass):
    out = klass["out"]
    said = _outputs(out, "mallory")
    assert "HOSTILE-RAN" in said and "LEFT-A-PROCESS" in said, "the hostile cell ran (in the sandbox)"
    assert "NO-SECRET FileNotFoundError" in said and ".ssh" not in said.split("HOME-HOLDS")[1].split("\n")[0]
    assert "WROTE " + str(klass["sub"]) not in said and "NO-WRITE" in said, said  # alice's CSV: not even there
    # what it "wrote" at the gradebook's path went into its own throw-away /tmp: the real one is intact
    assert (out / "gradebook.db").read_bytes()[:16] == b"SQLite format 3\x00"
    assert "NET-BLOCKED" in said and "NET-OPEN" not in said
    for path in out.rglob("*"):  # neither the autograded notebook nor the feedback carries the key
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path
    assert klass["leftover"] == [], "a process the notebook started outlived its grading"
    assert (klass["sub"] / "alice" / "lab02" / "results.csv").read_bytes() == klass["alice_csv"]


def test_the_others_grades_are_intact(klass):
    from nbgrader.api import Gradebook

    g = klass["grades"]
    assert (g["alice"]["score"], g["alice"]["max_score"]) == (3.0, 6.0), g["alice"]
    assert g["mallory"]["score"] == 3.0, "her own answers are right: the hostile code earns nothing, loses nothing"
    with Gradebook(f"sqlite:///{klass['out'] / 'gradebook.db'}") as gb:
        assert gb.find_submission("lab02", "alice").score == 3.0
        assert {s.student_id for s in gb.find_assignment("lab02").submissions} == {"alice", "mallory", "eve"}


def test_a_replaced_check_and_a_copied_csv_are_caught(klass):
    """Item 2: the hidden test passed in eve's kernel; the grader's fresh-process check on her literal
    results.csv does not, and her CSV is alice's."""
    g = klass["grades"]["eve"]
    assert "01_single_server:part1_answer_check" in g["failed"] and g["score"] == 1.0, g
    assert any(f.startswith("check-bypassed: 01_single_server part1_answer_check") for f in g["flags"]), g["flags"]
    assert any(f.startswith("copied-from:") and "alice's submission" in f for f in g["flags"]), g["flags"]
    assert any(f.startswith("copied-from:") and "eve's submission" in f for f in klass["grades"]["alice"]["flags"])
    assert not [f for f in klass["grades"]["mallory"]["flags"] if f.startswith("copied-from")]


def test_a_symlink_is_refused_before_copying(klass):
    g = klass["grades"]["sym"]
    assert g["score"] == 0 and g["flags"][0].startswith("unsafe-submission: everything is a symbolic link")
    assert not (klass["out"] / "submitted" / "sym").exists()


def test_serial_grading_gives_the_same_grades(klass, tmp_path):
    """Issue 23 item 3: --jobs 2 above, one at a time here: the same grades."""
    sub = tmp_path / "submitted"
    for student in ("alice", "eve", "sym"):  # mallory's planted paths point at the first run's folders
        shutil.copytree(klass["sub"] / student, sub / student, symlinks=True)
    serial = grade(sub, tmp_path / "grading", jobs=1)

    def same(g):
        return (g["score"], g["max_score"], sorted(g["failed"]), sorted(f.split(":")[0] for f in g["flags"]))

    assert {s: same(g) for s, g in serial.items()} == {s: same(klass["grades"][s]) for s in serial}
