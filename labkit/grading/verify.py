"""The answer checks the grader re-runs itself: a fresh process, the literal submitted CSV.

The hidden tests (``check_part1``/``check_part2`` in :mod:`labkit.grading.checks`) run in
the student's kernel, so the student's code can replace them (``labkit.check_part1 =
lambda *a, **k: None``) or point ``results_csv`` at ``data/reference.csv``. Their
verdict is therefore not trusted: each check *announces* the answer it was given
(one ``labkit-answer: {...}`` line in the cell's output, :func:`labkit.grading.checks.announce`), and after
autograding the grader (:func:`enforce`, in the parent process) re-checks every
announced answer with ``python -I -m labkit.grading.verify``: a fresh interpreter
that reads the submission's own ``results.csv`` as it was handed in (not the copy the
kernel could write). An answer cell that lost its points there, or announced nothing
(its check was replaced), scores 0 and is flagged ``check-bypassed``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from labkit.grading.checks import ANSWER_PREFIX as PREFIX

#: graded cell -> (notebook, which check)
CELLS = {"part1_answer_check": ("01_single_server", "part1"), "part2_answer_check": ("02_load_balancer", "part2")}


def announced(notebook: Path, grade_id: str) -> dict | None:
    """The last answer announced in the output of cell ``grade_id`` of ``notebook`` (autograded), or None."""
    try:
        nb = json.loads(Path(notebook).read_text())
    except (OSError, ValueError):
        return None
    found = None
    for cell in nb.get("cells", []):
        if cell.get("metadata", {}).get("nbgrader", {}).get("grade_id") != grade_id:
            continue
        for out in cell.get("outputs", []):
            text = out.get("text", "")
            for line in ("".join(text) if isinstance(text, list) else str(text)).splitlines():
                if line.startswith(PREFIX):
                    try:
                        found = json.loads(line[len(PREFIX):])
                    except ValueError:
                        found = None
    return found if isinstance(found, dict) else None


def check(csv: Path, answers: list[dict]) -> list[str | None]:
    """Each answer checked against ``csv``: None when accepted, else why not (in this process)."""
    from labkit.grading.checks import check_part1, check_part2
    from labkit.machine_types import get as machine_type

    verdicts: list[str | None] = []
    for a in answers:
        try:
            machine_type(str(a.get("machine_type")))
            if a.get("part") == "part1":
                check_part1(a.get("answer"), csv, a["machine_type"], announce_answer=False)
            elif a.get("part") == "part2":
                check_part2(a.get("answer"), csv, a["machine_type"], a.get("balancer"), announce_answer=False)
            else:
                raise AssertionError(f"unknown part {a.get('part')!r}")
            verdicts.append(None)
        except Exception as exc:  # noqa: BLE001 - any failure is a verdict, reported per answer
            verdicts.append(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    return verdicts


def check_in_fresh_process(csv: Path, answers: list[dict], timeout: float = 120.0) -> list[str | None]:
    """:func:`check` in a new ``python -I`` process: nothing the student's kernel did reaches it."""
    res = subprocess.run([sys.executable, "-I", "-m", "labkit.grading.verify", str(csv)], input=json.dumps(answers),
                         capture_output=True, text=True, timeout=timeout)
    if res.returncode != 0:
        return [f"the check did not run: {res.stderr.strip().splitlines()[-1:] or res.returncode}"] * len(answers)
    return json.loads(res.stdout)


def enforce(course: Path, assignment: str, student: str, csv: Path, scores: dict) -> list[str]:
    """Re-check ``student``'s announced answers against their submitted ``csv``; zero the cells that fail.

    ``scores`` (``_scores``' dict) and the course's gradebook (a manual score of 0, so
    formgrader shows the same) are updated; returns flags.
    """
    from nbgrader.api import Gradebook, MissingEntry

    folder = Path(course) / "autograded" / student / assignment
    todo, wanted = [], []
    for grade_id, (nb_name, part) in CELLS.items():
        path = folder / f"{nb_name}.ipynb"
        if not path.exists():
            continue
        got = announced(path, grade_id)
        wanted.append((grade_id, nb_name))
        todo.append(got if got is not None and got.get("part") == part else {"part": part, "missing": True})
    checkable = [a for a in todo if not a.get("missing")]
    verdicts = iter(check_in_fresh_process(csv, checkable) if checkable and Path(csv).is_file() else
                    ["no results.csv was submitted"] * len(checkable))
    flags = []
    with Gradebook(f"sqlite:///{Path(course) / 'gradebook.db'}") as gb:
        for (grade_id, nb_name), answer in zip(wanted, todo):
            why = "its check announced no answer (was it replaced?)" if answer.get("missing") else next(verdicts)
            if why is None:
                continue
            try:
                g = gb.find_grade(grade_id, nb_name, assignment, student)
            except MissingEntry:
                continue
            if (g.score or 0) > 0:  # the kernel said it passed; the grader's own check says no
                scores["score"] -= g.score
                scores["failed"].append(f"{nb_name}:{grade_id}")
                g.manual_score = 0.0
                gb.db.commit()
                flags.append(f"check-bypassed: {nb_name} {grade_id} passed in the notebook but not when the "
                             f"grader re-checked the submitted results.csv ({why}): 0 points")
    return flags


def main() -> None:
    """``python -I -m labkit.grading.verify CSV`` with the answers as JSON on stdin: verdicts as JSON."""
    answers = json.loads(sys.stdin.read())
    print(json.dumps(check(Path(sys.argv[1]), answers)))


if __name__ == "__main__":
    main()
