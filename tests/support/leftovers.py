"""The suite checks itself: after the last test, nothing it started may be left behind.

At session start, :func:`_leftover_baseline` (session-scoped, autouse) records the
pytest process, the processes and labkit cgroups that already exist, and marks this
session's environment with a unique token (``LABKIT_TEST_SESSION``) that every
process the suite starts inherits. At session end (``pytest_sessionfinish``, after
every fixture has been torn down) it looks for:

* **processes** started by this session and still running: descendants of the
  pytest process, or processes whose environment carries this session's token, or
  whose cwd / command line lies under this session's temp folder (``basetemp``).
  Nothing else is looked at, so other people's nginx, Flask or pytest runs on the
  same machine can never make this check fail;
* **labkit cgroups** (``labkit/<run>/<role>``) that are new since the start and
  belong to a run this session started (its run id was saved in-process, or is
  named in a state file or log under ``basetemp``);
* **run folders**: a ``.labkit/local.json`` or ``.labkit/local-*`` folder anywhere
  under ``basetemp`` (``down()`` removes both).

Anything found fails the session (exit status 1) with a list of what was left;
leftover processes are then stopped by PID so they cannot outlive the run. Under
pytest-xdist each worker checks what it started and writes what it found to the run's
temp folder, and the controller fails the run with those lists (a worker's own exit
status does not become the run's).
"""

from __future__ import annotations

import os
import re
import signal
import time
import uuid
from pathlib import Path

import pytest

_TOKEN_VAR = "LABKIT_TEST_SESSION"
# Helpers that live exactly as long as the interpreter that started them.
_BENIGN = ("multiprocessing.resource_tracker", "multiprocessing.forkserver", "multiprocessing.semaphore_tracker")
_RUN_ID = re.compile(r"\d{8}T\d{6}-[0-9a-f]{6}")

_baseline: dict | None = None
_run_ids: set[str] = set()


def _stat(pid: int) -> tuple[str, int, int] | None:
    """(state, ppid, start time) of ``pid``, or None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()
    return fields[0], int(fields[1]), int(fields[19])


def _pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def _read(path: str, binary: bool = False):
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError:
        return b"" if binary else ""
    return data if binary else data.decode(errors="replace")


def _cmdline(pid: int) -> str:
    return _read(f"/proc/{pid}/cmdline", binary=True).replace(b"\0", b" ").decode(errors="replace").strip()


def _ours(pid: int, me: int, token: str, basetemp: str) -> str | None:
    """Why ``pid`` belongs to this session (None when it does not)."""
    seen, p = set(), pid
    while p > 1 and p not in seen:
        seen.add(p)
        st = _stat(p)
        if st is None:
            break
        if st[1] == me:
            return "a descendant of the pytest process"
        p = st[1]
    if f"{_TOKEN_VAR}={token}".encode() in _read(f"/proc/{pid}/environ", binary=True):
        return "started by this test session (its environment carries the session token)"
    try:
        cwd = os.readlink(f"/proc/{pid}/cwd")
    except OSError:
        cwd = ""
    if basetemp and (cwd.startswith(basetemp) or basetemp in _cmdline(pid)):
        return f"runs in the suite's temp folder {basetemp}"
    return None


def labkit_cgroup_dirs() -> list[str]:
    """Every labkit cgroup directory below this process's cgroups (v1 or v2)."""
    from tests.support.local import labkit_cgroups

    return labkit_cgroups()


def _record_run_ids() -> None:
    """Remember the run id of every local lab this process saves state for."""
    from labkit import state

    original = state.save
    if getattr(original, "_leftovers_wrapped", False):
        return

    def save(where, name, data):
        if isinstance(data, dict) and isinstance(data.get("run_id"), str):
            _run_ids.add(data["run_id"])
        return original(where, name, data)

    save._leftovers_wrapped = True
    state.save = save


@pytest.fixture(scope="session", autouse=True)
def _leftover_baseline(tmp_path_factory):
    """Snapshot what exists before the suite starts anything (see the module docstring)."""
    global _baseline
    token = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
    os.environ[_TOKEN_VAR] = token
    _record_run_ids()
    _baseline = {
        "me": os.getpid(),
        "token": token,
        "basetemp": str(tmp_path_factory.getbasetemp().resolve()),
        "processes": {(p, st[2]) for p in _pids() if (st := _stat(p))},
        "cgroups": set(labkit_cgroup_dirs()),
    }
    yield


def find_leftovers(wait: float = 5.0) -> dict[str, list]:
    """What this session left behind; processes get ``wait`` seconds to finish exiting."""
    if _baseline is None:
        return {}
    b = _baseline
    deadline = time.monotonic() + wait
    while True:
        procs = []
        for pid in _pids():
            st = _stat(pid)
            if st is None or st[0] == "Z" or pid == b["me"] or (pid, st[2]) in b["processes"]:
                continue
            cmd = _cmdline(pid)
            if not cmd or any(m in cmd for m in _BENIGN):
                continue  # kernel threads, and helpers that die with the interpreter
            why = _ours(pid, b["me"], b["token"], b["basetemp"])
            if why:
                procs.append((pid, st[2], cmd[:200], why))
        if not procs or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    base = Path(b["basetemp"])
    folders = sorted(str(p) for p in base.rglob(".labkit/local*")) if base.is_dir() else []
    ids = set(_run_ids)
    for p in (base.rglob(".labkit/**/*") if base.is_dir() else []):
        if p.is_file() and p.stat().st_size < 1_000_000:
            ids.update(_RUN_ID.findall(_read(str(p))))
    groups = [g for g in labkit_cgroup_dirs() if g not in b["cgroups"]
              and any(f"/labkit/{rid}" in g for rid in ids)]
    return {"processes": procs, "cgroups": groups, "folders": folders}


def _stop(pid: int, start: int) -> None:
    st = _stat(pid)
    if st and st[2] == start:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


_REPORT = "leftovers-{worker}.txt"


def pytest_sessionfinish(session, exitstatus):
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if _baseline is None:
        if worker is None:  # the xdist controller (it runs no test): the workers' reports, once they are done
            _fail_with(session, _workers_reports(session))
        return
    left = find_leftovers()
    if not any(left.values()):
        return
    lines = ["labkit leftovers check: the test suite left these behind:"]
    lines += [f"  process {pid} ({why}): {cmd}" for pid, _, cmd, why in left["processes"]]
    lines += [f"  cgroup {g}" for g in left["cgroups"]]
    lines += [f"  run folder or state {f}" for f in left["folders"]]
    for pid, start, _, _ in left["processes"]:
        _stop(pid, start)
    if worker is not None:  # a worker's exit status does not reach the run's: the controller reports it
        root = Path(_baseline["basetemp"]).parent
        (root / _REPORT.format(worker=worker)).write_text("\n".join(lines) + "\n")
    _fail_with(session, lines)


def _workers_reports(session) -> list[str]:
    factory = getattr(session.config, "_tmp_path_factory", None)
    if factory is None:
        return []
    lines: list[str] = []
    for report in sorted(factory.getbasetemp().glob(_REPORT.format(worker="*"))):
        lines += report.read_text().splitlines()
    return lines


def _fail_with(session, lines: list[str]) -> None:
    if not lines:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line("")
        for line in lines:
            reporter.write_line(line, red=True)
    else:
        print("\n".join(lines))
    session.exitstatus = pytest.ExitCode.TESTS_FAILED
