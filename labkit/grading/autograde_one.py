"""``python -m labkit.grading.autograde_one COURSE ASSIGNMENT STUDENT``: nbgrader's autograde, then its
feedback, for one student, in one process.

:mod:`labkit.grading.grade` runs this once per submission in that submission's private
course (its kernels go to the bubblewrap sandbox the course's config names): one Python
start and one nbgrader import per student instead of two (``nbgrader autograde`` then
``nbgrader generate_feedback``). It uses nbgrader's own API (``NbGraderAPI``) with the
course's ``nbgrader_config.py``, and prints both steps' logs, which the grader reads
(:func:`labkit.grading.grade.autograde_errors`). Exit status 1 when autograding failed.
"""

from __future__ import annotations

import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    course, assignment, student = (argv if argv is not None else sys.argv[1:])
    from nbgrader.apps import NbGraderAPI
    from nbgrader.coursedir import CourseDirectory
    from traitlets.config.loader import PyFileConfigLoader

    root = Path(course).resolve()
    config = PyFileConfigLoader("nbgrader_config.py", path=str(root)).load_config()
    config.CourseDirectory.root = str(root)
    config.CourseDirectory.db_url = f"sqlite:///{root / 'gradebook.db'}"
    api = NbGraderAPI(CourseDirectory(config=config), config=config)
    graded = api.autograde(assignment, student, force=True)
    print("=== autograde", flush=True)
    print(graded.get("log", ""), graded.get("error", "") or "", flush=True)
    feedback = api.generate_feedback(assignment, student, force=True)
    print("=== generate_feedback", flush=True)
    print(feedback.get("log", ""), feedback.get("error", "") or "", flush=True)
    return 0 if graded.get("success") else 1


if __name__ == "__main__":
    sys.exit(main())
