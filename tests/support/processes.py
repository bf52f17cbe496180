"""Processes a test started: is one still running, and stopping one by its own PID."""

from __future__ import annotations

import subprocess


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie has stopped: it only waits for its parent to reap it)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def stop_process(proc: subprocess.Popen, grace: float = 10.0) -> None:
    """SIGTERM the process we started (gunicorn's master stops its workers), SIGKILL if stuck."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(grace)
