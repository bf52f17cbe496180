"""The release, built once per run with the real CLI (``labkit release --out DIR``).

``release`` is ``{"out": DIR, "stdout": ..., "stderr": ..., "returncode": ...}`` of that one
run; ``release_dir`` is ``DIR/lab02``, the student notebooks (with ``DIR/course`` and
``DIR/lab02-rubric.md`` beside it). Building runs nbgrader over the five notebooks (10-20 s
on a busy 2-core machine), so it is built once per ``make test`` (:mod:`tests.support.once`,
also across xdist workers) and the release tests, the grading tests and anything else that
needs student versions share it. Treat it as read-only: copy what you change.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.support.once import once_per_run


@pytest.fixture(scope="session")
def release(tmp_path_factory):
    return once_per_run(tmp_path_factory, "release", lambda: _build(tmp_path_factory))


def _build(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("release") / "rel"
    res = subprocess.run([sys.executable, "-m", "labkit.cli", "release", "--out", str(out)],
                         capture_output=True, text=True)
    return {"out": out, "stdout": res.stdout, "stderr": res.stderr, "returncode": res.returncode}


@pytest.fixture(scope="session")
def release_dir(release):
    assert release["returncode"] == 0, release["stderr"][-3000:]
    return release["out"] / "lab02"
