"""``.labkit/``: what a run has started, so ``labkit down`` can stop it from any shell.

The state folder comes from the caller's :class:`~labkit.settings.Settings`
(``settings.state_folder()``: ``$LABKIT_STATE_DIR``, else the first
``.labkit/`` walking up from the current directory, else a new one here); this
module reads no environment. The backend's state is one JSON file, rewritten
atomically after every change (a temp file of its own, fsync'ed, then renamed),
so a crash in the middle of ``up`` still leaves a record of what was started.

Every command that changes the lab holds the folder's lock (:func:`lab_locked`,
the same lock a sweep holds for its whole run), so ``labkit scale`` in one shell
cannot change a lab a sweep in another is measuring, and one save never drops
what another process just recorded.

This module does files and locks only: which record a file holds and whether its
fields are right is the backend's (:class:`labkit.backends.records.Record`); what
``labkit down`` does with a file it cannot read is :mod:`labkit.backends.salvage`. A
state file that cannot be read raises :class:`~labkit.errors.StateError` naming it (one
line, never a traceback). A state folder the user does not own, or that others may
write, is refused: its file decides what ``down`` deletes and kills.

Every function takes ``where`` first: a ``Settings`` or the folder itself (a
``Path``), so tests and tools can point at a folder without building settings.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Union

from labkit.errors import LockError, StateError

if TYPE_CHECKING:
    from labkit.settings import Settings

log = logging.getLogger("labkit")

Where = Union["Settings", Path]

#: the lock file every command that changes the lab holds (the sweep's folder lock, labkit.sweep)
LOCK_NAME = ".sweep.lock"


def folder(where: Where, create: bool = True) -> Path:
    """The state folder ``where`` names (a ``Settings`` or the folder ``Path`` itself)."""
    if isinstance(where, (str, os.PathLike)):
        path = Path(where)
        if create:
            path.mkdir(parents=True, exist_ok=True)
        return path
    return where.state_folder(create=create)


def check_trusted(directory: Path) -> None:
    """Refuse (StateError) a state folder this user does not own or that others may write.

    Its files say which folders ``down`` deletes and which processes it stops, so a
    folder somebody else planted (``shared/.labkit``) must not be obeyed.
    """
    try:
        st = directory.stat()
    except FileNotFoundError:
        return
    if st.st_uid != os.geteuid():
        raise StateError(directory, f"the folder belongs to uid {st.st_uid}, not to you; labkit only obeys "
                         "its own state folders (set LABKIT_STATE_DIR to one of yours)")
    if st.st_mode & 0o022:
        raise StateError(directory, f"others may write the folder (mode {st.st_mode & 0o777:o}); "
                         f"run `chmod go-w {directory}` if it is yours")


def load(where: Where, name: str) -> dict | None:
    """The saved state ``name`` (e.g. ``local``) as parsed JSON, or None when nothing is running.

    Raises :class:`StateError` naming the file when it is not a JSON object of that
    backend (cut short, corrupt, another backend's) or lies in an untrusted folder
    (:func:`check_trusted`). Its fields are checked by the backend's record.
    """
    directory = folder(where, create=False)
    path = directory / f"{name}.json"
    if path.exists():
        check_trusted(directory)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise StateError(path, f"cannot read it: {e.strerror or e}") from None
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError) as e:  # bad JSON, bad UTF-8, cut short
        raise StateError(path, f"not valid JSON: {str(e)[:80]}") from None
    if not isinstance(data, dict):
        raise StateError(path, "not a JSON object")
    if data.get("backend", name) != name:
        raise StateError(path, f"it is the state of backend {data.get('backend')!r}, not {name!r}")
    return data


def read_text(where: Where, name: str) -> str:
    """The raw text of state ``name`` ('' when missing or unreadable): what salvage searches."""
    try:
        return (folder(where, create=False) / f"{name}.json").read_bytes().decode(errors="replace")
    except OSError:
        return ""


def move_aside(where: Where, name: str) -> Path | None:
    """Rename an unreadable state ``name`` to ``unreadable-<name>-<time>.json``; the new path."""
    path = folder(where, create=False) / f"{name}.json"
    if not path.exists():
        return None
    moved = path.with_name(f"unreadable-{name}-{time.strftime('%Y%m%dT%H%M%S')}.json")
    os.replace(path, moved)
    return moved


def save(where: Where, name: str, data: dict) -> Path:
    """Write state ``name`` atomically: a temp file of its own, fsync'ed, renamed over the old one."""
    directory = folder(where)
    check_trusted(directory)
    path = directory / f"{name}.json"
    text = json.dumps(data, indent=2, default=str)
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".json.tmp", dir=directory)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(directory)
    return path


def _fsync_dir(directory: Path) -> None:
    """Make a rename in ``directory`` durable (best effort: some file systems refuse)."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def clear(where: Where, name: str) -> None:
    """Forget state ``name`` once everything it recorded is gone."""
    path = folder(where, create=False) / f"{name}.json"
    path.unlink(missing_ok=True)


_held: dict[str, int] = {}  # lock files this process holds -> how many holders (see exclusive)
_held_lock = threading.Lock()


@contextlib.contextmanager
def exclusive(lock_path: Path, refusal, holder: str, *, remove: bool = False, reentrant: bool = False):
    """Hold an exclusive ``flock`` on ``lock_path`` for the duration, its text saying who holds it.

    Refused at once (no waiting): ``LockError(refusal(text))`` names whoever has it (the
    text its holder wrote, else "another process"). ``remove``: delete the lock file after
    a body that did not raise. ``reentrant``: when this process already holds the lock
    (a CLI command, a sweep, a save inside an ``up``), go ahead without taking it again;
    otherwise a second holder in the same process is refused like any other.
    """
    key = os.path.abspath(lock_path)
    if reentrant:
        with _held_lock:
            inside = _held.get(key, 0) > 0
            if inside:
                _held[key] += 1
        if inside:
            try:
                yield
            finally:
                with _held_lock:
                    _held[key] -= 1
            return
    fh = open(lock_path, "a+")
    try:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            raise LockError(refusal(fh.read().strip() or "another process")) from None
        fh.seek(0)
        fh.truncate()
        fh.write(holder)
        fh.flush()
        with _held_lock:
            _held[key] = _held.get(key, 0) + 1
        try:
            yield
        finally:
            with _held_lock:
                _held[key] -= 1
                if not _held[key]:
                    del _held[key]
        if remove:
            lock_path.unlink(missing_ok=True)
    finally:
        fh.close()


@contextlib.contextmanager
def lab_locked(where: Where, command: str):
    """Hold the lab folder's lock while ``command`` (e.g. ``"labkit scale"``) changes the lab.

    The lock is the one a sweep holds for its whole run (``.labkit/.sweep.lock``), so
    a second command is refused at once with one line naming the holder, instead of
    changing a lab somebody else is measuring, or saving over a state it just wrote.
    Every backend save takes it too (re-entrant within the process holding it), so a
    notebook's ``up`` or a ``labkit bench`` never writes under a sweep in another shell.
    """
    directory = folder(where)

    def refusal(holder: str) -> str:
        return (f"another labkit command is using the lab in {directory} ({holder}); wait for it "
                f"to finish (or stop it) before `{command}`")

    with exclusive(directory / LOCK_NAME, refusal, f"pid {os.getpid()}: {command}", reentrant=True):
        yield
