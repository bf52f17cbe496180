"""``labkit down`` without a readable state file: stop what can still be found, move the file aside.

What can be found without the record: the processes the file's text still names with
their start times (each checked, so a reused pid is never signalled); for the local
backend every cgroup and run folder made from this ``.labkit`` folder (their names
carry its tag, :func:`~labkit.backends.local.backend.folder_tag`); for gcp the run's
resources found *by label* (``labkit-run=<run id>``) when the text still names the
project and the run id. Remote processes (ssh) cannot be found this way and are listed
in ``left`` with what to do. This lives with the backends, not in :mod:`labkit.state`
(which does files and locks only), so state never imports a backend.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import signal
from pathlib import Path

from labkit import processes, state
from labkit.settings import Settings

log = logging.getLogger("labkit")

_PROCESS = re.compile(r'(?:"role":\s*"(?P<role>[^"\\]{1,80})",\s*)?"pid":\s*(?P<pid>\d{1,9}),\s*'
                      r'"start_time":\s*(?P<start>\d{1,20})')
_RUN_ID = re.compile(r'"run_id":\s*"(?P<run>[A-Za-z0-9_.-]{1,80})"')
_PROJECT = re.compile(r'"project":\s*"(?P<project>[a-z][a-z0-9-]{4,61}[a-z0-9])"')


def salvage(settings: Settings, name: str, *, compute=None) -> dict:
    """Stop what a lab whose state file ``name`` cannot be read still has running; move the file aside.

    Returns ``down``'s shape plus ``"moved_to"``. ``compute`` (gcp) injects the API clients.
    """
    text = state.read_text(settings, name)
    stopped: list[str] = []
    left: list[str] = []
    for m in _PROCESS.finditer(text):
        record = processes.ProcessRecord(m["role"] or "process", int(m["pid"]), int(m["start"]), [])
        if record.alive() and processes.terminate(record):
            stopped.append(f"{record.role} (pid {record.pid})")
    if name == "local":
        stopped += _salvage_local(settings)
    elif name == "gcp":
        deleted, gcp_left = _salvage_gcp(settings, text, compute)
        stopped += deleted
        left += gcp_left
    else:
        left.append("its remote servers and balancer: not recorded in a readable state; stop them by hand")
    moved = state.move_aside(settings, name)
    return {"backend": name, "stopped": stopped, "left": left, "moved_to": str(moved) if moved else None}


def _salvage_gcp(settings: Settings, text: str, compute) -> tuple[list[str], list[str]]:
    """Delete the run's resources by label (never another run's); what could not be, in ``left``."""
    from labkit.backends.gcp.api_requests import check_run_id
    from labkit.backends.gcp.client import Compute
    from labkit.backends.gcp.compute import delete_resource, run_resources, wait
    from labkit.errors import CloudError, ConfigError

    runs = sorted({m["run"] for m in _RUN_ID.finditer(text)})
    projects = sorted({m["project"] for m in _PROJECT.finditer(text)})
    project = settings.gcp_project or (projects[0] if len(projects) == 1 else None)
    what = f"its cloud resources (labelled labkit-run={', '.join(runs) or '?'})"
    if len(runs) != 1 or project is None:
        return [], [f"{what}: not recorded in a readable state; `labkit gc` deletes them after their expiry"]
    try:
        run_id = check_run_id(runs[0])
    except ConfigError:
        return [], [f"{what}: the run id is not one labkit makes; delete them by hand"]
    compute = compute or Compute(endpoint=settings.gcp_api_endpoint)
    deleted, left = [], []
    try:
        found = run_resources(compute, project, run_id)  # only resources labelled with this run
    except CloudError as e:
        return [], [f"{what}: could not list them ({e}); `labkit gc` deletes them after their expiry"]
    order = {"instance": 0, "image": 1, "firewall": 2}
    for kind, rname, zone in sorted(found, key=lambda r: order.get(r[0], 3)):
        try:
            wait(delete_resource(compute, project, kind, rname, zone), f"delete {kind} {rname}", 300.0, zone)
            deleted.append(f"{kind} {rname}")
        except CloudError as e:
            log.warning("could not delete %s %s: %s", kind, rname, e)
            left.append(f"{kind} {rname}: {e}")
    return deleted, left


def _salvage_local(settings: Settings) -> list[str]:
    """Kill what is left in this folder's labkit cgroups, remove them and the run folders."""
    from labkit.backends.local import cgroups as cg
    from labkit.backends.local.backend import RUN_DIR, folder_tag

    where = state.folder(settings, create=False)
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
        if run_dir.is_dir() and not run_dir.is_symlink() and RUN_DIR.fullmatch(run_dir.name):
            shutil.rmtree(run_dir, ignore_errors=True)
    return stopped
