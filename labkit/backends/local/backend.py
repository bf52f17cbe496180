"""The local backend: the whole lab as processes on this machine.

Each "machine" gets its own loopback address and a cgroup with its machine
type's CPU quota and memory limit (see :mod:`labkit.backends.local.cgroups`):

==================  ===================  ======================================
role                address (net=127.0.1)  process
==================  ===================  ======================================
restserver-N        127.0.1.(10+N)         the Flask service (dev server or gunicorn)
loadbalancer-0      127.0.1.2              nginx from a generated, validated config
tester-0            127.0.1.3 (nominal)    ab, with its open-file limit raised
==================  ===================  ======================================

ab has no option to pick its source address, so the tester's address only
names it; its CPU limit is real. With one node the tester talks to the server
directly (the handout's first part); with more, or with ``balanced``, to the balancer.
How ab runs there (its cgroup, open-file limit, progress): :mod:`labkit.backends.local.ab_runner`.

Everything started is recorded in ``.labkit/local.json`` as soon as it is
started, so :meth:`LocalBackend.down` - from this object or from any other
shell via ``labkit down`` - stops every process, removes every cgroup and
deletes the run's folder.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from labkit.backends.local import bursting, cgroups as cg
from labkit import machine_types, processes
from labkit.backends.cpu_accounting import pending_connections, proc_tree_seconds
from labkit.backends.local import cpu_affinity
from labkit.errors import BackendError, ConfigError
from labkit.backends.local.nginx import LocalNginx
from labkit.service import get_status, service_command, wait_until_up
from labkit.backends.base import Backend, ClusterSpec
from labkit.backends.records import Record
from labkit.errors import StateError
from labkit.backends.local.ab_runner import LocalAbRunner
from labkit.backends.serving import SERVING_TIMEOUT, wait_round_robin

log = logging.getLogger("labkit")


def _check_scale(value) -> float:
    """``--calibrate``'s quota factor: a positive number (None: 1, no scaling)."""
    if value is None:
        return 1.0
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.05 <= float(value) <= 20:
        raise ConfigError(f"cpu_scale must be a number between 0.05 and 20, not {value!r}")
    return float(value)


def folder_tag(state_folder: Path) -> str:
    """Six hex digits naming the project folder, so a cgroup's name says whose lab it is."""
    return hashlib.sha1(str(Path(state_folder).resolve()).encode()).hexdigest()[:6]


#: a local run id (time + folder tag) and its run folder's name in the state folder
RUN_ID = re.compile(r"\d{8}T\d{6}-[0-9a-f]{6}")
RUN_DIR = re.compile(r"local-\d{8}T\d{6}-[0-9a-f]{6}")
_NET = re.compile(r"127\.(25[0-5]|2[0-4]\d|1?\d?\d)\.(25[0-5]|2[0-4]\d|1?\d?\d)")


@dataclasses.dataclass
class LocalState(Record):
    """The local lab's record (``.labkit/local.json``): what runs where, so any shell can stop it."""

    run_id: str
    net: str  # the loopback /24 prefix, e.g. 127.0.1
    run_dir: str  # <state folder>/local-<run id>: logs, nginx config, ab's files
    cgroups: str | None  # the cgroup version in use, "unlimited", or None before the first start
    cgroup_dirs: list[str]  # every cgroup folder made (removed by down)
    processes: dict[str, processes.ProcessRecord]  # role -> the process running it
    spec: ClusterSpec | None
    balancer_machine_type: str = "f1-micro"
    tester_machine_type: str = "f1-micro"
    burst: bool = True  # shared-core bursting emulated for the machine types that burst
    cpu_scale: float = 1.0  # this host's speed against the reference's (quotas scaled by it)
    calibrated: dict[str, Any] | None = None  # how cpu_scale was calibrated (kept for the provenance)
    burst_on: dict[str, bool] = dataclasses.field(default_factory=dict)  # role -> bursting now
    backend: str = "local"

    def check(self) -> None:
        if not RUN_ID.fullmatch(self.run_id):
            raise ValueError(f"run_id {self.run_id!r} is not a local run id")
        if not _NET.fullmatch(self.net):
            raise ValueError(f"net {self.net!r} is not a loopback /24 prefix")
        for role, rec in self.processes.items():
            if role != rec.role:
                raise ValueError(f"processes.{role} records role {rec.role!r}")
        for mt in (self.balancer_machine_type, self.tester_machine_type):
            machine_types.get(mt)

    def check_folder(self, folder) -> None:
        """``run_dir`` (deleted by ``down``) must be ``<this folder>/local-<run id>``."""
        want = Path(folder).resolve() / f"local-{self.run_id}"
        if Path(self.run_dir).resolve() != want or Path(self.run_dir).is_symlink():
            raise StateError(Path(folder) / "local.json",
                             f"run_dir {self.run_dir!r} is not this folder's local-{self.run_id}")
        for d in self.cgroup_dirs:  # only labkit's own groups (of this run, or the labkit/ above them)
            parts = Path(d).parts
            after = parts[len(parts) - parts[::-1].index("labkit"):] if "labkit" in parts else None
            if after is None or ".." in parts \
                    or (after and after[0] != self.run_id):
                raise StateError(Path(folder) / "local.json", f"cgroup_dirs: {d!r} is not a group of this run")


class LocalBackend(LocalAbRunner, Backend):
    """Servers, balancer and tester as cgroup-limited processes on loopback addresses."""

    name = "local"
    record_class = LocalState
    warms_up = True
    _state: LocalState

    def _new_state(self, net: str | None = None, balancer_machine_type: str | None = None,
                   tester_machine_type: str | None = None, burst: bool | None = None,
                   cpu_scale: float | None = None, calibrated: dict | None = None) -> LocalState:
        """A new lab: its run id, loopback /24 (``settings.local_net`` by default) and folder.

        The balancer and tester default to ``f1-micro``, as in the handout. ``burst``
        (default True) models shared-core bursting for the types that burst
        (:mod:`~labkit.backends.local.bursting`); ``cpu_scale`` (default 1) multiplies every
        role's CPU quota (``--calibrate reference``: :func:`labkit.calibration.match_reference`, whose
        record ``calibrated`` is kept for the provenance).
        """
        net = net or self.settings.local_net
        parts = net.split(".")
        if len(parts) != 3 or parts[0] != "127" or not all(p.isdigit() and int(p) < 256 for p in parts):
            raise ConfigError(f"local network must be a loopback /24 prefix like 127.0.1, not {net!r}")
        balancer_machine_type = machine_types.get(balancer_machine_type or "f1-micro").name
        tester_machine_type = machine_types.get(tester_machine_type or "f1-micro").name
        folder = self.settings.state_folder()
        run_id = time.strftime("%Y%m%dT%H%M%S") + "-" + folder_tag(folder)
        return LocalState(run_id=run_id, net=net, run_dir=str(folder / f"local-{run_id}"), cgroups=None,
                          cgroup_dirs=[], processes={}, spec=None, balancer_machine_type=balancer_machine_type,
                          tester_machine_type=tester_machine_type, burst=True if burst is None else bool(burst),
                          cpu_scale=_check_scale(cpu_scale), calibrated=calibrated, burst_on={})

    def _attached(self, net: str | None = None, balancer_machine_type: str | None = None,
                  tester_machine_type: str | None = None, burst: bool | None = None,
                  cpu_scale: float | None = None, calibrated: dict | None = None) -> None:
        """The tester only exists while ab runs, so ``tester_machine_type`` may resize the
        tester of a running lab (e.g. so that it is not the limit when measuring big
        servers); the network and the balancer's type are fixed once the lab runs.
        ``burst`` and ``cpu_scale``, when given, change the running machines' quotas at once."""
        if tester_machine_type and tester_machine_type != self._state.tester_machine_type:
            self._state.tester_machine_type = machine_types.get(tester_machine_type).name
            self._save()
        changed = False
        if burst is not None and bool(burst) != self._state.burst:
            self._state.burst = bool(burst)
            changed = True
        if cpu_scale is not None and _check_scale(cpu_scale) != self._state.cpu_scale:
            self._state.cpu_scale = _check_scale(cpu_scale)
            changed = True
        if calibrated is not None:
            self._state.calibrated = calibrated
            changed = True
        if changed:
            self._apply_quotas()
            self._save()

    def _runtime(self) -> None:
        self._cgroups: cg.Cgroups | None = None
        self._popen: dict[str, subprocess.Popen] = {}
        self._ab_cpu = 0.0  # ab's CPU seconds from its rusage, where the tester has no cgroup
        self._capped: set[str] = set()  # roles whose scaled quota was capped (warned once each)

    # -- addresses and bookkeeping -------------------------------------------------
    @property
    def run_id(self) -> str:
        return self._state.run_id

    @property
    def run_dir(self) -> Path:
        return Path(self._state.run_dir)

    def address(self, role: str) -> str:
        net = self._state.net
        if role.startswith("restserver-"):
            return f"{net}.{10 + int(role.split('-')[1])}"
        if role.startswith("tester-"):  # tester-0 .3, further testers (several ab processes) .4, .5 ...
            return f"{net}.{3 + int(role.split('-')[1])}"
        return {"loadbalancer-0": f"{net}.2"}[role]

    @property
    def url(self) -> str:
        spec = self._require_spec()
        role = "loadbalancer-0" if spec.behind_balancer else "restserver-0"
        return f"http://{self.address(role)}:{spec.port}"

    @property
    def cpu_limited(self) -> bool:
        return self._state.cgroups not in (None, "unlimited")

    def _groups(self) -> cg.Cgroups:
        if self._cgroups is None:
            self._cgroups = cg.detect(self.settings)
            self._state.cgroups = self._cgroups.version
        return self._cgroups

    # -- CPU quotas: the type's share, times --calibrate's scale, with or without burst ----------
    @property
    def cpu_scale(self) -> float:
        """The factor every role's CPU quota is multiplied by (1: the machine type's share)."""
        return float(self._state.cpu_scale)

    @property
    def calibrated(self) -> dict | None:
        """How ``--calibrate reference`` found :attr:`cpu_scale` (:func:`labkit.calibration.match_reference`)."""
        return self._state.calibrated

    def _quota_vcpu(self, role: str, machine_type: str) -> float:
        """``machine_type``'s vCPU share times :attr:`cpu_scale`, at most the CPUs ``role`` is pinned to."""
        vcpu = machine_types.get(machine_type).vcpu
        pinned = len(cpu_affinity.cpus_for(vcpu, cpu_affinity.slot_of(role)))
        scaled = vcpu * self.cpu_scale
        if scaled > pinned:
            if role not in self._capped:
                self._capped.add(role)
                log.warning("%s: %s scaled by %.2f would need %.2f vCPU, more than its %d pinned core(s); "
                            "capped at %d", role, machine_type, self.cpu_scale, scaled, pinned, pinned)
            return float(pinned)
        return scaled

    def _wants_burst(self, machine_type: str) -> bool:
        return bool(self._state.burst) and bursting.bursts(machine_type)

    def _set_quota(self, role: str, machine_type: str) -> None:
        """Write ``role``'s quota (and CFS burst when its type bursts); remember whether burst is on."""
        on = self._groups().set_cpu(f"labkit/{self.run_id}/{role}", self._quota_vcpu(role, machine_type),
                                    burst=self._wants_burst(machine_type))
        self._state.burst_on[role] = bool(on)

    def _role_type(self, role: str) -> str | None:
        spec = self.spec
        if role.startswith("restserver-"):
            return spec.machine_type if spec else None
        return self._state.balancer_machine_type if role.startswith("loadbalancer") else \
            self._state.tester_machine_type

    def _apply_quotas(self) -> None:
        """Re-write the quota of every running role (after ``burst`` or ``cpu_scale`` changed)."""
        if not self.cpu_limited:
            return
        for role in self._state.processes:
            mtype = self._role_type(role)
            if mtype and (self._groups().bases_of()[0] / f"labkit/{self.run_id}/{role}").is_dir():
                self._set_quota(role, mtype)

    @property
    def burst(self) -> bool | None:
        """Whether shared-core bursting is emulated for the servers (None when nothing is up)."""
        spec = self.spec
        if spec is None:
            return None
        on = self._state.burst_on
        return all(on.get(f"restserver-{i}", False) for i in range(spec.nodes))

    def _group(self, role: str, machine_type: str) -> str:
        rel = f"labkit/{self.run_id}/{role}"
        mt = machine_types.get(machine_type)
        made = self._groups().create(rel, cg.Limits(self._quota_vcpu(role, machine_type), mt.memory_bytes))
        self._set_quota(role, machine_type)
        self._state.cgroup_dirs = sorted(set(self._state.cgroup_dirs) | set(made))
        return rel

    def _machine(self, role: str, machine_type: str, cpus: set[int] | None = None):
        """``role``'s machine: (its cgroup, made if missing; a ``preexec_fn`` that puts the child in
        that cgroup and on its ceil(vCPU) host CPUs, or on ``cpus`` when given)."""
        rel = self._group(role, machine_type)
        join = self._groups().join_preexec(rel)
        if cpus is None:
            cpus = cpu_affinity.cpus_for(machine_types.get(machine_type).vcpu, cpu_affinity.slot_of(role))
        pin = cpu_affinity.pin_preexec(cpus)
        log.debug("%s (%s) runs on CPU %s", role, machine_type, ",".join(map(str, sorted(cpus))))

        def _enter():
            join()
            pin()

        return rel, _enter

    def _start(self, role: str, argv: list[str], env: dict, machine_type: str, boot_unlimited: bool = False) -> None:
        rel, enter = self._machine(role, machine_type)
        if boot_unlimited:  # see up(): the quota is applied once the service answers
            self._groups().set_cpu(rel, None)
        logs = self.run_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        proc, record = processes.spawn(role, argv, env=env, log_path=logs / f"{role}.log",
                                       preexec=enter)
        self._popen[role] = proc
        self._state.processes[role] = record
        self._save()

    def _stop(self, role: str) -> None:
        rec = self._state.processes.pop(role, None)
        if rec:
            processes.terminate(rec)
            self._popen.pop(role, None)
            self._save()

    def _record(self, role: str) -> processes.ProcessRecord | None:
        return self._state.processes.get(role)

    # -- the Backend API ---------------------------------------------------------
    def _check(self, spec: ClusterSpec) -> None:
        machine_types.get(spec.machine_type)

    def _stop_servers(self) -> None:
        for role in [r for r in self._state.processes if r.startswith("restserver-")]:
            self._stop(role)

    def _deploy(self, spec: ClusterSpec) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        booting: list[str] = []
        for i in range(spec.nodes):
            role = f"restserver-{i}"
            rec = self._record(role)
            if rec and rec.alive():
                continue
            host = self.address(role)
            argv, env = service_command(spec.server, host, spec.port, spec.workers, python=sys.executable)
            env = {**os.environ, **env, "LABKIT_NODE": role, "LABKIT_FIB_MAX": str(spec.fib_max)}  # the service's env
            # Servers boot without their CPU quota: importing Flask/gunicorn takes ~0.15 CPU-s,
            # i.e. ~0.8 s of wall time per start at 0.2 vCPU, which a real VM's boot does not
            # charge to the benchmark either. The quota is set as soon as the server answers,
            # before anything is measured (bench/RESULTS.md, section 6).
            self._start(role, argv, env, spec.machine_type, boot_unlimited=True)
            booting.append(role)
        for role in [r for r in list(self._state.processes) if r.startswith("restserver-")]:
            if int(role.split("-")[1]) >= spec.nodes:
                self._stop(role)
        try:
            for role in booting:  # the ones already running are waited for in _wait_servers
                try:
                    wait_until_up(f"http://{self.address(role)}:{spec.port}", timeout=30)
                except Exception as exc:
                    raise BackendError(f"{role} did not start: {exc}; {self._log_tail(role)}") from exc
        finally:
            for role in booting:
                self._set_quota(role, spec.machine_type)
        self._configure_balancer(spec)
        if not spec.behind_balancer:  # the tester talks to the server: it must be idle and answering
            self._wait_servers(spec, time.monotonic() + SERVING_TIMEOUT)
        log.info("local lab up: %d x %s (%s, %d workers) at %s, cgroups %s", spec.nodes,
                 spec.machine_type, spec.server, spec.workers, self.url, self._state.cgroups)

    def _configure_balancer(self, spec: ClusterSpec) -> None:
        role = "loadbalancer-0"
        if not spec.behind_balancer:
            self._stop(role)
            return
        # one nginx worker per vCPU of the emulated balancer (f1-micro: one, so round robin alternates
        # strictly, as on the real machine), not one per core of this machine
        vcpu = machine_types.get(self._state.balancer_machine_type).vcpu
        nginx = LocalNginx(self.run_dir / "nginx", self.address(role), spec.port, workers=max(1, int(vcpu)))
        upstreams = [(self.address(f"restserver-{i}"), spec.port) for i in range(spec.nodes)]
        changed = nginx.apply(upstreams)
        rec = self._record(role)
        if rec and rec.alive():
            if changed:
                nginx.reload(rec.pid)
        else:
            self._start(role, nginx.argv(), dict(os.environ), self._state.balancer_machine_type)
            nginx.wait_listening()
        deadline = time.monotonic() + SERVING_TIMEOUT
        self._wait_servers(spec, deadline)
        self._wait_round_robin(spec, deadline)

    def _wait_servers(self, spec: ClusterSpec, deadline: float) -> None:
        """Wait until the machines are idle (a point before may have left a backlog) and every
        server answers ``/status`` directly; a one-line BackendError naming the one that does not."""
        self.settle(timeout=max(1.0, min(30.0, deadline - time.monotonic())))
        for i in range(spec.nodes):
            role = f"restserver-{i}"
            url = f"http://{self.address(role)}:{spec.port}"
            try:
                wait_until_up(url, timeout=max(1.0, deadline - time.monotonic()))
            except BackendError as exc:
                alive = "running" if (rec := self._record(role)) and rec.alive() else "not running"
                raise BackendError(f"{role} ({alive}) does not answer at {url}: {exc}") from None

    def _wait_round_robin(self, spec: ClusterSpec, deadline: float) -> None:
        """Wait until the balancer answers from exactly the expected nodes (:func:`.serving.wait_round_robin`)."""
        wait_round_robin(self.url, [f"restserver-{i}" for i in range(spec.nodes)], deadline,
                         balancer="loadbalancer-0", waited=SERVING_TIMEOUT,
                         advice="; `labkit status` shows each server, `labkit down` then `labkit up` starts afresh")

    def _log_tail(self, role: str) -> str:
        path = self.run_dir / "logs" / f"{role}.log"
        return path.read_text()[-400:].strip() if path.exists() else "(no log)"

    def balancer_config(self) -> str:
        """The nginx.conf the local balancer runs (generated in the run folder)."""
        conf = LocalNginx.conf_path(self.run_dir / "nginx")
        if self.spec is None or not self.spec.behind_balancer or not conf.exists():
            return "(no balancer is running: with one node the tester talks to the server directly)"
        return conf.read_text()

    def status(self) -> dict:
        spec = self.spec
        machines = []
        for role, record in sorted(self._state.processes.items()):
            mtype = (spec.machine_type if role.startswith("restserver-") and spec else
                     self._state.balancer_machine_type if role.startswith("loadbalancer") else
                     self._state.tester_machine_type)
            entry = {"role": role, "address": self.address(role), "pid": record.pid,
                     "alive": record.alive(), "machine_type": mtype}
            if self.cpu_limited:
                try:
                    entry["cpu_seconds"] = self._groups().cpu_seconds(f"labkit/{self.run_id}/{role}")
                except OSError as exc:
                    entry["cpu_seconds"] = None
                    log.debug("no cpu accounting for %s: %s", role, exc)
            if role.startswith("restserver-") and entry["alive"] and spec:
                try:
                    entry["service"] = get_status(f"http://{entry['address']}:{spec.port}")
                except OSError as exc:
                    entry["service"] = {"error": str(exc)}
            machines.append(entry)
        return {"backend": self.name, "run_id": self.run_id, "up": spec is not None,
                "spec": dataclasses.asdict(spec) if spec else None,
                "url": self.url if spec else None, "cgroups": self._state.cgroups,
                "burst": self.burst, "cpu_scale": self.cpu_scale, "machines": machines}

    # -- measurement hygiene (base.Backend.settle / cpu_seconds_by_role) ----------------
    def _machine_cpu(self, role: str) -> float | None:
        """``role``'s cumulative CPU seconds: its cgroup, or its process tree without cgroups."""
        if self.cpu_limited:
            try:
                return self._groups().cpu_seconds(f"labkit/{self.run_id}/{role}")
            except FileNotFoundError:
                return None
        rec = self._record(role)
        return proc_tree_seconds(rec.pid) if rec else None

    def _cpu_sample(self):
        spec = self.spec
        if spec is None:
            return None
        vcpu = machine_types.get(spec.machine_type).vcpu
        sample = {f"server:restserver-{i}": (self._machine_cpu(f"restserver-{i}"), vcpu) for i in range(spec.nodes)}
        if spec.behind_balancer:
            sample["balancer:loadbalancer-0"] = (self._machine_cpu("loadbalancer-0"),
                                                 machine_types.get(self._state.balancer_machine_type).vcpu)
        return sample

    def _pending(self) -> dict[str, int] | None:
        spec = self.spec
        if spec is None:
            return None
        return pending_connections(
            {f"restserver-{i}": (self.address(f"restserver-{i}"), spec.port) for i in range(spec.nodes)})

    def _status_probes(self) -> dict:
        spec = self._require_spec()

        def probe(url):
            def run(timeout: float) -> float:
                t0 = time.monotonic()
                get_status(url, timeout=timeout)
                return time.monotonic() - t0
            return run

        return {f"restserver-{i}": probe(f"http://{self.address(f'restserver-{i}')}:{spec.port}")
                for i in range(spec.nodes)}

    def _balancer_probe(self):
        spec = self.spec
        if spec is None or not spec.behind_balancer:
            return None
        url = self.url
        return lambda timeout: get_status(url, timeout=timeout)

    def _balancer_type(self, spec: ClusterSpec) -> str:
        return self._state.balancer_machine_type

    @property
    def tester_machine_type(self) -> str:
        return self._state.tester_machine_type

    def cpu_seconds(self, role: str) -> float | None:
        """CPU time used by ``role``'s cgroup (None when unlimited): for efficiency benchmarks."""
        if not self.cpu_limited:
            return None
        return self._groups().cpu_seconds(f"labkit/{self.run_id}/{role}")

    def _down(self) -> tuple[list[str], list[str]]:
        """Stop every recorded process, remove the cgroups and the run folder."""
        stopped = []
        for role in list(self._state.processes):
            if processes.terminate(self._state.processes[role]):
                stopped.append(role)
            self._state.processes.pop(role)
            self._popen.pop(role, None)
        recorded = self._state.cgroup_dirs
        found = self._groups().tree(f"labkit/{self.run_id}") if self.cpu_limited else []
        left = cg.remove(sorted(set(recorded) | set(found)))
        shutil.rmtree(self.run_dir, ignore_errors=True)
        self._state.cgroup_dirs = left
        if left:
            self._save()
            raise BackendError(f"could not remove cgroups: {', '.join(left)}")
        return stopped, []
