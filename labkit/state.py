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

A state file that cannot be read raises :class:`~labkit.errors.StateError` naming
it (one line, never a traceback); :func:`salvage` is what ``labkit down`` does then:
it stops what it can still find and moves the file aside.

Every function takes ``where`` first: a ``Settings`` or the folder itself (a
``Path``), so tests and tools can point at a folder without building settings.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Union

from labkit.errors import LockError, StateError

if TYPE_CHECKING:
    from labkit.settings import Settings

log = logging.getLogger("labkit")

Where = Union["Settings", Path]

#: keys a backend's state must hold to be attached to (more are allowed)
REQUIRED = {
    "local": ("backend", "spec", "run_id", "net", "run_dir", "cgroups", "cgroup_dirs", "processes"),
    "ssh": ("backend", "spec", "servers", "balancer", "tester", "options", "running", "nginx"),
}
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


def load(where: Where, name: str) -> dict | None:
    """The saved state ``name`` (e.g. ``local``), or None when nothing is running.

    Raises :class:`StateError` naming the file when it is not a whole labkit state
    (cut short, corrupt, another backend's, keys missing).
    """
    path = folder(where, create=False) / f"{name}.json"
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
    missing = [k for k in REQUIRED.get(name, ()) if k not in data]
    if missing:
        raise StateError(path, f"keys missing: {', '.join(missing)}")
    return data


def save(where: Where, name: str, data: dict) -> Path:
    """Write state ``name`` atomically: a temp file of its own, fsync'ed, renamed over the old one."""
    directory = folder(where)
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


@contextlib.contextmanager
def exclusive(lock_path: Path, refusal, holder: str, *, remove: bool = False):
    """Hold an exclusive ``flock`` on ``lock_path`` for the duration, its text saying who holds it.

    Refused at once (no waiting): ``LockError(refusal(text))`` names whoever has it (the
    text its holder wrote, else "another process"). ``remove``: delete the lock file after
    a body that did not raise.
    """
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
        yield
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
    """
    directory = folder(where)

    def refusal(holder: str) -> str:
        return (f"another labkit command is using the lab in {directory} ({holder}); wait for it "
                f"to finish (or stop it) before `{command}`")

    with exclusive(directory / LOCK_NAME, refusal, f"pid {os.getpid()}: {command}"):
        yield


# -- down without a readable state ------------------------------------------------------------

_PROCESS = re.compile(r'(?:"role":\s*"(?P<role>[^"\\]{1,80})",\s*)?"pid":\s*(?P<pid>\d{1,9}),\s*'
                      r'"start_time":\s*(?P<start>\d{1,20})')
_RUN_ID = re.compile(r'"run_id":\s*"(?P<run>[A-Za-z0-9_.-]{1,80})"')


def salvage(settings: Settings, name: str) -> dict:
    """Stop what a lab whose state file cannot be read still has running; move the file aside.

    What can be found without the file: the processes it names with their start times
    (each checked, so a reused pid is never signalled), and for the local backend every
    cgroup and run folder made from this ``.labkit`` folder (their names carry its tag).
    Remote processes (ssh) and cloud resources (gcp) cannot be found this way: they are
    listed in ``left`` with what to do. Returns ``down``'s shape plus ``"moved_to"``.
    """
    from labkit import processes

    path = folder(settings, create=False) / f"{name}.json"
    try:
        text = path.read_bytes().decode(errors="replace")
    except OSError:
        text = ""
    stopped: list[str] = []
    left: list[str] = []
    for m in _PROCESS.finditer(text):
        record = processes.ProcessRecord(m["role"] or "process", int(m["pid"]), int(m["start"]), [])
        if record.alive() and processes.terminate(record):
            stopped.append(f"{record.role} (pid {record.pid})")
    if name == "local":
        stopped += _salvage_local(settings)
    else:
        runs = sorted({m["run"] for m in _RUN_ID.finditer(text)})
        what = "its remote servers and balancer" if name == "ssh" else \
            f"its cloud resources (labelled labkit-run={', '.join(runs) or '?'})"
        left.append(f"{what}: not recorded in a readable state; stop them by hand")
    moved = None
    if path.exists():
        moved = path.with_name(f"unreadable-{name}-{time.strftime('%Y%m%dT%H%M%S')}.json")
        os.replace(path, moved)
    return {"backend": name, "stopped": stopped, "left": left, "moved_to": str(moved) if moved else None}


def _salvage_local(settings: Settings) -> list[str]:
    """Kill what is left in this folder's labkit cgroups, remove them and the run folders."""
    import signal

    from labkit.backends.local import cgroups as cg
    from labkit.backends.local.backend import folder_tag

    where = folder(settings, create=False)
    tag = folder_tag(where)
    stopped = []
    try:
        groups = cg.detect(settings)
        bases = groups.bases_of()
    except Exception as e:  # noqa: BLE001 - no cgroups is fine: nothing to clean there
        log.debug("no cgroups to salvage: %s", e)
        bases = []
    found = []
    for base in bases:
        top = base / "labkit"
        if top.is_dir():
            for run in top.iterdir():
                if run.is_dir() and run.name.endswith(f"-{tag}"):
                    found += [str(run)] + [os.path.join(d, n) for d, dirs, _ in os.walk(run) for n in dirs]
    for group in found:  # only labkit puts processes into its groups
        try:
            pids = [int(p) for p in Path(group, "cgroup.procs").read_text().split()]
        except (OSError, ValueError):
            continue
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
                stopped.append(f"pid {pid} in {Path(group).name}")
    left = cg.remove(found) if found else []
    if left:
        log.warning("could not remove cgroups: %s", ", ".join(left))
    for run_dir in where.glob("local-*"):
        if run_dir.is_dir():
            shutil.rmtree(run_dir, ignore_errors=True)
    return stopped
