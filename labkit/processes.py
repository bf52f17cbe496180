"""Starting and stopping the processes a local run owns, by PID.

Every process is started in a session of its own (so its whole tree - e.g.
gunicorn's workers - can be signalled as a group) and recorded with its
kernel start time. Before labkit signals a recorded PID it checks that the
start time still matches, so a PID the kernel has since handed to someone
else's process is never touched.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

log = logging.getLogger("labkit")


@dataclasses.dataclass
class ProcessRecord:
    """A process labkit started: enough to find and stop it from another shell."""

    role: str
    pid: int
    start_time: int
    argv: list[str]
    log_path: str | None = None

    def alive(self) -> bool:
        """True while the recorded process (the same one, not a reused PID) runs."""
        return start_time_of(self.pid) == self.start_time


def start_time_of(pid: int) -> int | None:
    """The kernel start time (clock ticks since boot) of ``pid``, or None if it is gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] == "Z":
        return None
    return int(fields[19])


def spawn(role: str, argv: list[str], *, env: dict | None = None, log_path: Path | None = None,
          preexec=None, cwd: str | None = None) -> tuple[subprocess.Popen, ProcessRecord]:
    """Start ``argv`` in a new session, output to ``log_path``; return the Popen and its record."""
    out = open(log_path, "ab") if log_path else subprocess.DEVNULL
    try:
        proc = subprocess.Popen(
            argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True, preexec_fn=preexec,
        )
    finally:
        if log_path:
            out.close()
    record = ProcessRecord(role, proc.pid, start_time_of(proc.pid) or 0, list(argv),
                           str(log_path) if log_path else None)
    log.debug("started %s pid %d: %s", role, proc.pid, " ".join(argv))
    return proc, record


def terminate(record: ProcessRecord, grace: float = 5.0) -> bool:
    """Stop the process group of ``record``: SIGTERM, then SIGKILL after ``grace`` s.

    Returns True when something was stopped, False when it had already gone.
    Only the recorded process (checked by start time) and its session are signalled.
    """
    if not record.alive():
        _reap(record.pid)
        return False
    _signal_group(record.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        _reap(record.pid)
        if not record.alive() and not _group_alive(record.pid):
            return True
        time.sleep(0.05)
    log.warning("%s (pid %d) ignored SIGTERM for %.0f s; killing it", record.role, record.pid, grace)
    _signal_group(record.pid, signal.SIGKILL)
    for _ in range(100):
        _reap(record.pid)
        if not record.alive() and not _group_alive(record.pid):
            break
        time.sleep(0.02)
    return True


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)  # the process leads its own session, so pgid == pid
    except ProcessLookupError:
        pass


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    # Members may be zombies waiting for a parent that is this process.
    _reap(pgid)
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rindex(")") + 2 :].split()
            if int(fields[2]) == pgid and fields[0] != "Z":
                return True
    return False


def _reap(pid: int) -> None:
    """Collect ``pid`` if it is our exited child, so it does not linger as a zombie."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def sigterm_as_interrupt() -> None:
    """Make SIGTERM end the main thread like Ctrl-C: ``KeyboardInterrupt``, so every ``finally``
    (a sweep's teardown, ``down`` of the lab a command brought up) runs before the process exits.

    Only the main thread may set signal handlers; elsewhere this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, interrupt)
