"""``.labkit/``: what a run has started, so ``labkit down`` can stop it from any shell.

The state folder is found by walking up from the current directory to the
first ``.labkit/`` (so a shell in a sub-folder of the project finds it), or
is ``$LABKIT_STATE_DIR``; a new one is made in the current directory. The
backend's state is one JSON file, rewritten atomically after every change, so
a crash in the middle of ``up`` still leaves a record of what was started.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

log = logging.getLogger("labkit")


def state_dir(create: bool = True) -> Path:
    """The ``.labkit`` folder for this shell (see module docstring)."""
    env = os.environ.get("LABKIT_STATE_DIR")
    if env:
        path = Path(env)
    else:
        cwd = Path.cwd()
        path = next((p / ".labkit" for p in (cwd, *cwd.parents) if (p / ".labkit").is_dir()),
                    cwd / ".labkit")
    if create:
        path.mkdir(parents=True, exist_ok=True)
    return path


def load(name: str) -> dict | None:
    """The saved state ``name`` (e.g. ``local``), or None when nothing is running."""
    path = state_dir(create=False) / f"{name}.json"
    if not path.exists():
        return None
    return json.loads(path.read_text())


def save(name: str, data: dict) -> Path:
    """Write state ``name`` atomically (write to a temp file, then rename)."""
    path = state_dir() / f"{name}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str))
    os.replace(tmp, path)
    return path


def clear(name: str) -> None:
    """Forget state ``name`` once everything it recorded is gone."""
    path = state_dir(create=False) / f"{name}.json"
    path.unlink(missing_ok=True)
