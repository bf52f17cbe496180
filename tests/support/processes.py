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


def descendants(pid: int) -> list[tuple[int, int]]:
    """(pid, start time) of every process below ``pid`` now, found through /proc's parent links."""
    from tests.support.leftovers import _pids, _stat

    children: dict[int, list[tuple[int, int]]] = {}
    for p in _pids():
        st = _stat(p)
        if st is not None:
            children.setdefault(st[1], []).append((p, st[2]))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child[0])
    return out


def stop_group_and_descendants(proc: subprocess.Popen, grace: float = 15.0) -> None:
    """Stop a process we started in its own session (``start_new_session=True``) with its group, and
    then every process that was below it, by PID: Jupyter starts each kernel in a session of its
    own, so a kernel Voilà had not shut down yet would outlive the group signal (and, reparented to
    a subreaper other than PID 1, its parent poller never notices)."""
    import os
    import signal

    from tests.support.leftovers import _stat

    below = descendants(proc.pid)
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    for pid, start in below:
        st = _stat(pid)
        if st is not None and st[2] == start and st[0] != "Z":
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
