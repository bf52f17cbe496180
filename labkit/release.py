"""``labkit release``: the student versions of the notebooks, built by nbgrader.

The notebooks in ``notebooks/`` are nbgrader *source* notebooks: the report
answers sit between ``### BEGIN SOLUTION`` and ``### END SOLUTION`` and locked,
autograded test cells check them against the student's own results CSV.
nbgrader's real pipeline (``nbgrader generate_assignment`` in a throw-away
course folder) replaces each solution with ``raise NotImplementedError()``,
clears outputs, locks the test cells and records their checksums; the result
is copied to ``OUT/<assignment>/``, the layout nbgrader's own release folder
uses, so an instructor can hand it out or point nbgrader at it.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from .errors import LabkitError, MissingToolError

log = logging.getLogger("labkit")

ASSIGNMENT = "lab02"


class ReleaseError(LabkitError):
    """nbgrader could not build the student versions; the message carries nbgrader's own reason."""


def build_release(out="release", notebooks_dir=None, assignment: str = ASSIGNMENT) -> list[Path]:
    """Build the student notebooks into ``out/assignment/``; return their paths.

    ``out/assignment`` is replaced as a whole, so a removed notebook does not
    linger. The notebook-level jupytext pairing is dropped from the student
    copies (students get notebooks, not review scripts).
    """
    from .lab import NOTEBOOKS, NOTEBOOKS_DIR

    try:
        import nbgrader  # noqa: F401
    except ImportError:
        raise MissingToolError("nbgrader is not installed: pip install -e '.[notebooks]'") from None
    notebooks_dir = Path(notebooks_dir) if notebooks_dir else NOTEBOOKS_DIR
    sources = [notebooks_dir / f"{n}.ipynb" for n in NOTEBOOKS]
    missing = [str(p) for p in sources if not p.is_file()]
    if missing:
        raise ReleaseError(f"source notebooks missing: {', '.join(missing)}")
    target = Path(out) / assignment
    with tempfile.TemporaryDirectory(prefix="labkit-release-") as tmp:
        course = Path(tmp)
        src_dir = course / "source" / assignment
        src_dir.mkdir(parents=True)
        for p in sources:
            shutil.copy2(p, src_dir / p.name)
        argv = [sys.executable, "-m", "nbgrader", "generate_assignment", assignment, "--force",
                f"--CourseDirectory.root={course}", f"--CourseDirectory.db_url=sqlite:///{course / 'gradebook.db'}"]
        log.info("running nbgrader generate_assignment for %d notebooks", len(sources))
        # nbgrader creates its gradebook by running `alembic`, which lives beside this Python.
        env = {**os.environ, "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])}
        res = subprocess.run(argv, cwd=course, capture_output=True, text=True, env=env)
        built = sorted((course / "release" / assignment).glob("*.ipynb"))
        if res.returncode != 0 or len(built) != len(sources):
            tail = "\n".join((res.stderr or res.stdout).strip().splitlines()[-8:])
            raise ReleaseError(f"nbgrader generate_assignment failed (exit {res.returncode}): {tail}")
        if target.exists():
            shutil.rmtree(target)
        target.mkdir(parents=True)
        paths = []
        for nb_path in built:
            nb = json.loads(nb_path.read_text())
            nb.get("metadata", {}).pop("jupytext", None)
            dst = target / nb_path.name
            dst.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
            paths.append(dst)
    log.info("student notebooks in %s", target)
    return paths
