"""``.labkit/``: what a run has started, so ``labkit down`` can stop it from any shell.

The state folder comes from the caller's :class:`~labkit.settings.Settings`
(``settings.state_folder()``: ``$LABKIT_STATE_DIR``, else the first
``.labkit/`` walking up from the current directory, else a new one here); this
module reads no environment. The backend's state is one JSON file, rewritten
atomically after every change, so a crash in the middle of ``up`` still leaves
a record of what was started.

Every function takes ``where`` first: a ``Settings`` or the folder itself (a
``Path``), so tests and tools can point at a folder without building settings.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Union

if TYPE_CHECKING:
    from .settings import Settings

log = logging.getLogger("labkit")

Where = Union["Settings", Path]


def folder(where: Where, create: bool = True) -> Path:
    """The state folder ``where`` names (a ``Settings`` or the folder ``Path`` itself)."""
    if isinstance(where, (str, os.PathLike)):
        path = Path(where)
        if create:
            path.mkdir(parents=True, exist_ok=True)
        return path
    return where.state_folder(create=create)


def load(where: Where, name: str) -> dict | None:
    """The saved state ``name`` (e.g. ``local``), or None when nothing is running."""
    path = folder(where, create=False) / f"{name}.json"
    if not path.exists():
        return None
    return json.loads(path.read_text())


def save(where: Where, name: str, data: dict) -> Path:
    """Write state ``name`` atomically (write to a temp file, then rename)."""
    path = folder(where) / f"{name}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str))
    os.replace(tmp, path)
    return path


def clear(where: Where, name: str) -> None:
    """Forget state ``name`` once everything it recorded is gone."""
    path = folder(where, create=False) / f"{name}.json"
    path.unlink(missing_ok=True)
