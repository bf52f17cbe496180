"""CPU and memory limits for local "machines", with cgroups v2 or v1.

The local backend emulates a cloud machine type by putting each process tree
(a server, the balancer, the tester) in a cgroup of its own that holds the
type's CPU quota and memory limit. That is what makes five ``f1-micro``
servers on a 2-core laptop behave like five small machines instead of five
processes sharing the whole CPU.

Groups are created *below the cgroup this process already lives in* (so a
sandbox's own limits keep applying) under ``labkit/<run>/<role>``. Where no
cgroup hierarchy can be written, :func:`detect` returns an ``unlimited``
manager: it says so once in the log, runs the processes without limits, and
the backend records ``cpu_limited = False`` in the results.

Shared-core bursting (:mod:`labkit.backends.local.bursting`) is the kernel's CFS burst,
written with the quota (``set_cpu(..., burst=True)``); where the kernel has no burst
file it says so once and ``set_cpu`` returns False, so the results record ``burst=false``.

Nothing is read at import time: where the hierarchy is mounted, the CFS period
and whether to use cgroups at all come from the caller's
:class:`~labkit.settings.Settings` (``detect(settings)``).
"""

from __future__ import annotations

import dataclasses
import errno
import logging
import os
import time
from pathlib import Path

from labkit.backends.local import bursting
from labkit.settings import Settings, resolve

log = logging.getLogger("labkit")

# The CFS period (``Settings.cfs_period_us``, 10 ms by default): the kernel default
# (100 ms) lets an 0.2-vCPU group run 20 ms and then stall 80 ms, which would
# dominate the latencies we measure; 10 ms keeps the same share with stalls of at
# most 8 ms.

V1_CONTROLLERS = ("cpu", "cpuacct", "memory")


@dataclasses.dataclass(frozen=True)
class Limits:
    """What one emulated machine may use: ``vcpu`` cores' worth of CPU time, ``memory_bytes``."""

    vcpu: float
    memory_bytes: int
    burst: bool = False  # model shared-core bursting with CFS burst (see bursting.py)


class Cgroups:
    """Base class: the ``unlimited`` manager, used where cgroups cannot be written."""

    version = "unlimited"
    period_us: int | None = None  # the CFS period quotas are written with (None: no quotas)

    def create(self, relpath: str, limits: Limits) -> list[str]:
        """Create the group ``relpath`` with ``limits``; return the directories made."""
        return []

    def procs_files(self, relpath: str) -> list[Path]:
        """The ``cgroup.procs`` files a process must be written to, to join ``relpath``."""
        return []

    def set_cpu(self, relpath: str, vcpu: float | None, burst: bool = False) -> bool:
        """Set the group's CPU quota to ``vcpu`` cores, or lift it (``None``): see ``LocalBackend.up``.

        With ``burst`` the group may also carry unused quota over (CFS burst, as much as the
        kernel allows: one period's quota). Returns whether burst is on for the group.
        """
        return False

    def cpu_seconds(self, relpath: str) -> float | None:
        """CPU time used so far by the group's processes, or None when unknown."""
        return None

    def bases_of(self) -> list[Path]:
        """The hierarchy roots labkit's groups live under (one for v2, one per controller for v1)."""
        return []

    def tree(self, relpath: str) -> list[str]:
        """Every existing group directory at or below ``relpath``, in every hierarchy.

        ``down`` removes these as well as the ones recorded in the state, so a
        group whose record was lost (a crash between mkdir and saving, two
        objects attached to one lab) is still cleaned up.
        """
        found = []
        for base in self.bases_of():
            top = base / relpath
            if top.is_dir():
                found.append(str(top))
                found += [os.path.join(d, n) for d, dirs, _ in os.walk(top) for n in dirs]
        return found

    def join_preexec(self, relpath: str):
        """A ``preexec_fn`` that moves the new child into the group before it execs."""
        files = [str(p) for p in self.procs_files(relpath)]

        def _join():
            pid = str(os.getpid()).encode()
            for f in files:
                fd = os.open(f, os.O_WRONLY)
                try:
                    os.write(fd, pid)
                finally:
                    os.close(fd)

        return _join


class CgroupsV2(Cgroups):
    """Unified hierarchy: ``cpu.max`` and ``memory.max`` in one tree."""

    version = "v2"

    def __init__(self, base: Path, period_us: int = Settings.cfs_period_us):
        self.base = base
        self.period_us = int(period_us)

    def _enable(self, directory: Path) -> None:
        control = directory / "cgroup.subtree_control"
        have = control.read_text().split()
        for ctl in ("cpu", "memory"):
            if ctl not in have:
                control.write_text(f"+{ctl}")

    def create(self, relpath: str, limits: Limits) -> list[str]:
        made = []
        path = self.base
        for part in Path(relpath).parts:
            self._enable(path)
            path = path / part
            if not path.exists():
                path.mkdir()
                made.append(str(path))
        self.set_cpu(relpath, limits.vcpu, limits.burst)
        (path / "memory.max").write_text(str(limits.memory_bytes))
        return made

    def set_cpu(self, relpath: str, vcpu: float | None, burst: bool = False) -> bool:
        quota = None if vcpu is None else max(1000, int(vcpu * self.period_us))
        return _write_quota(self.base / relpath / "cpu.max.burst", quota, burst, lambda: (
            self.base / relpath / "cpu.max").write_text(f"{'max' if quota is None else quota} {self.period_us}"))

    def procs_files(self, relpath: str) -> list[Path]:
        return [self.base / relpath / "cgroup.procs"]

    def bases_of(self) -> list[Path]:
        return [self.base]

    def cpu_seconds(self, relpath: str) -> float | None:
        for line in (self.base / relpath / "cpu.stat").read_text().splitlines():
            key, _, value = line.partition(" ")
            if key == "usage_usec":
                return int(value) / 1e6
        return None


class CgroupsV1(Cgroups):
    """Legacy hierarchies: one tree per controller (cpu, cpuacct, memory)."""

    version = "v1"

    def __init__(self, bases: dict[str, Path], period_us: int = Settings.cfs_period_us):
        self.bases = bases
        self.period_us = int(period_us)

    def create(self, relpath: str, limits: Limits) -> list[str]:
        made = []
        for base in self.bases.values():
            path = base
            for part in Path(relpath).parts:
                path = path / part
                if not path.exists():
                    path.mkdir()
                    made.append(str(path))
        (self.bases["cpu"] / relpath / "cpu.cfs_period_us").write_text(str(self.period_us))
        self.set_cpu(relpath, limits.vcpu, limits.burst)
        (self.bases["memory"] / relpath / "memory.limit_in_bytes").write_text(str(limits.memory_bytes))
        return made

    def set_cpu(self, relpath: str, vcpu: float | None, burst: bool = False) -> bool:
        quota = None if vcpu is None else max(1000, int(vcpu * self.period_us))
        return _write_quota(self.bases["cpu"] / relpath / "cpu.cfs_burst_us", quota, burst, lambda: (
            self.bases["cpu"] / relpath / "cpu.cfs_quota_us").write_text(str(-1 if quota is None else quota)))

    def procs_files(self, relpath: str) -> list[Path]:
        return [base / relpath / "cgroup.procs" for base in self.bases.values()]

    def bases_of(self) -> list[Path]:
        return list(self.bases.values())

    def cpu_seconds(self, relpath: str) -> float | None:
        usage = self.bases["cpuacct"] / relpath / "cpuacct.usage"
        return int(usage.read_text()) / 1e9 if usage.exists() else None


_warned_burst = False


def _write_quota(burst_file: Path, quota: int | None, burst: bool, write_quota) -> bool:
    """Write a group's quota (``write_quota()``) and its CFS burst; return whether burst is on.

    The kernel refuses a burst above the quota (EINVAL), both when the burst is written
    and when a quota below the current burst is, so the burst is cleared first, then the
    quota written, then the burst (:func:`~labkit.backends.local.bursting.burst_us`).
    Without a burst file (a kernel before 5.14, or one built without it) a requested
    burst is reported once in the log and the group runs at its plain quota.
    """
    global _warned_burst
    has_burst = burst_file.exists()
    if has_burst:
        burst_file.write_text("0")
    write_quota()
    if not burst or quota is None:
        return False
    if not has_burst:
        if not _warned_burst:
            log.warning("this kernel has no CFS burst (%s is missing): shared-core machine types run at their "
                        "plain vCPU share, without bursting (recorded as burst=false)", burst_file.name)
            _warned_burst = True
        return False
    burst_file.write_text(str(bursting.burst_us(quota)))
    return True


def _own_path(controller: str | None) -> str:
    """This process's cgroup path for ``controller`` (None: the v2 entry ``0::``)."""
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, ctls, path = line.split(":", 2)
        if (controller is None and ctls == "") or (controller and controller in ctls.split(",")):
            return path.lstrip("/")
    return ""


def _writable(directory: Path) -> bool:
    probe = directory / f"labkit-probe-{os.getpid()}"
    try:
        probe.mkdir()
    except OSError:
        return False
    probe.rmdir()
    return True


_warned = False


def detect(settings: Settings | None = None) -> Cgroups:
    """The best cgroup manager this machine allows: v2, v1, or unlimited (with one warning).

    ``settings`` (None: :func:`labkit.settings.resolve`, i.e. the environment's) gives the hierarchy's mount point
    (``cgroup_root``), the CFS period and ``cgroups="off"`` to never use them.
    """
    global _warned
    settings = resolve(settings)
    if settings.cgroups == "off":
        return Cgroups()
    root, period = settings.cgroup_root, settings.cfs_period_us
    try:
        if (root / "cgroup.controllers").exists():
            base = root / _own_path(None)
            controllers = (base / "cgroup.controllers").read_text().split()
            if {"cpu", "memory"} <= set(controllers) and _writable(base):
                return CgroupsV2(base, period)
        elif (root / "cpu" / "cpu.cfs_quota_us").exists():
            bases = {c: root / c / _own_path(c) for c in V1_CONTROLLERS}
            if all(b.exists() and _writable(b) for b in bases.values()):
                return CgroupsV1(bases, period)
    except OSError as exc:
        log.debug("cgroup detection failed: %s", exc)
    if not _warned:
        log.warning(
            "cgroups cannot be written here: machines run WITHOUT CPU/memory limits "
            "(results are recorded as unlimited)"
        )
        _warned = True
    return Cgroups()


def remove(directories: list[str], timeout: float = 5.0) -> list[str]:
    """Remove cgroup directories deepest first; return those that could not be removed.

    A group can only be removed once its processes are gone, which may lag a
    killed process by a few milliseconds, so EBUSY is retried until ``timeout``.
    """
    left = []
    for d in sorted(set(directories), key=lambda p: p.count("/"), reverse=True):
        deadline = time.monotonic() + timeout
        while True:
            try:
                os.rmdir(d)
                break
            except FileNotFoundError:
                break
            except OSError as exc:
                if any(Path(d, e).is_dir() for e in os.listdir(d)):
                    log.debug("cgroup %s still holds other groups; kept", d)
                    break
                if exc.errno == errno.EBUSY and time.monotonic() < deadline:
                    time.sleep(0.05)
                    continue
                log.warning("could not remove cgroup %s: %s", d, exc)
                left.append(d)
                break
    return left
