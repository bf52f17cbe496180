"""Session fixtures that run once per ``make test``, even with several pytest-xdist workers.

``make test`` runs the suite on a few xdist workers (each its own pytest session). The
slowest session fixtures -- the tiny lab run through the five notebooks, the release built
by nbgrader -- would otherwise run once per worker. :func:`once_per_run` makes the first
worker that needs one build it under an exclusive lock in the run's shared temp folder and
leaves the pickled result there; the others wait on the lock and read it (the pattern
pytest-xdist documents for "session-scoped fixtures executed only once"). Without xdist it is
an ordinary call.
"""

from __future__ import annotations

import fcntl
import os
import pickle
from pathlib import Path


def run_root(tmp_path_factory) -> Path:
    """The temp folder every worker of this run shares (the session's own without xdist)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


def once_per_run(tmp_path_factory, name: str, make):
    """``make()``'s result, computed by one worker of the run and shared with the others.

    A ``make()`` that raises leaves nothing behind, so the next worker tries again (and
    reports its own failure).
    """
    root = run_root(tmp_path_factory)
    data = root / f"{name}.pickle"
    with open(root / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if data.exists():
            return pickle.loads(data.read_bytes())
        value = make()
        tmp = data.with_suffix(".partial")
        tmp.write_bytes(pickle.dumps(value))
        tmp.replace(data)
        return value
