"""The gcp backend: the handout's machines on Compute Engine, then deployed over SSH.

:class:`GcpBackend` is the run's record and the Backend API; its two halves live beside
it: how the lab grows (machines, firewall rules, the server image, host keys) in
:mod:`labkit.backends.gcp.provision`, and how the run is deleted (by state and by label,
on ``down``, on SIGINT/SIGTERM, never another run's resources) in
:mod:`labkit.backends.gcp.teardown`. The machines are then driven by
:class:`~labkit.backends.ssh.backend.SshBackend` (one deploy path): ``up`` re-deploys through it,
and settling, warming up and the CPU counters are its (``inner()``).
``name_prefix`` lets two runs share a project.

Project, zones and the API endpoint come from :class:`~labkit.settings.Settings`
(``gcp_project``, ``gcp_zone``, ``gcp_api_endpoint``) unless given as options.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
from pathlib import Path
from typing import Any

from labkit.backends.gcp import api_requests as req
from labkit.errors import BackendError, ConfigError
from labkit.backends.gcp.client import Compute
from labkit.backends.base import AbRun, Backend, ClusterSpec, state_field
from labkit.backends.gcp.provision import GcpProvisioning
from labkit.backends.gcp.teardown import GcpTeardown
from labkit.backends.ssh.backend import SshBackend, SshState
from labkit.backends.records import Record
from labkit.errors import StateError

log = logging.getLogger("labkit")

DEFAULT_ZONES = ("us-central1-a", "us-central1-b", "us-central1-c", "us-central1-f")  # tried in order on stock-outs
ADJUSTABLE = ("timeout", "deploy", "max_nodes", "tester_machine_type", "testers")  # may change when attaching
SSH_OPTIONS = ("root", "python", "use_systemd", "system_nginx", "service_timeout", "nginx_workers")


def _zones(zone) -> list[str]:
    zones = [z.strip() for z in zone.split(",") if z.strip()] if isinstance(zone, str) else list(zone or [])
    return zones or list(DEFAULT_ZONES)


@dataclasses.dataclass
class GcpState(Record):
    """The gcp run's record (``.labkit/gcp.json``): what it created, recorded as each insert is sent."""

    project: str
    zones: list[str]
    run_id: str  # names and labels every resource
    expires: str  # epoch seconds (a label value)
    key_dir: str  # the run's SSH key is key_dir/run_id (inside the state folder)
    created: dict[str, str]  # instance name -> zone
    images: list[str]
    firewalls: list[str]
    spec: ClusterSpec | None = None
    name_prefix: str = ""
    ssh_user: str = "labkit"
    ttl_hours: float = 4.0
    timeout: float = 300.0
    max_nodes: int | None = None
    tester_machine_type: str | None = None
    testers: int = 1  # tester machines (one per ab process of a point)
    ssh_source_ranges: list[str] = dataclasses.field(default_factory=list)
    ssh_options: dict[str, Any] = dataclasses.field(default_factory=dict)
    deploy: bool = True
    zones_checked: bool = False
    image: str | None = None
    ssh: SshState | None = None  # the machines, once created, as the ssh backend drives them
    backend: str = "gcp"

    def check(self) -> None:
        req.check_run_id(self.run_id)
        req.check_prefix(self.name_prefix)
        if not self.zones:
            raise ValueError("zones: the list is empty")

    def check_folder(self, folder) -> None:
        """``key_dir`` (its run folder is deleted by ``down``) must be inside this state folder."""
        where, key_dir = Path(folder).resolve(), Path(self.key_dir).resolve()
        if key_dir != where and where not in key_dir.parents:
            raise StateError(Path(folder) / "gcp.json", f"key_dir {self.key_dir!r} is not inside {folder}")


class GcpBackend(GcpProvisioning, GcpTeardown, Backend):
    """Compute Engine machines for the lab, deployed and driven by SshBackend.

    ``compute`` injects the API clients (tests pass ones pointed at a local stub).
    ``zone`` (a list, or a comma-separated string) is tried in order when a zone is
    out of capacity. ``ssh_source_ranges`` (``--ssh-source``) narrows who may SSH in
    (default: this machine's public address when it has one, else the world with a
    warning). ``name_prefix`` is put before every name (default: the handout's names).
    ``ssh_options`` are :class:`SshBackend` options for the machines (``root``,
    ``python``...; the tests' stub machines share one file system). Nothing is
    created (or saved) until :meth:`up`.
    """

    name = "gcp"
    record_class = GcpState
    _state: GcpState

    def __init__(self, settings=None, *, compute: Compute | None = None, **options):
        self._compute = compute
        super().__init__(settings, **options)

    def _new_state(self, project: str | None = None, zone=None, *, run_id: str | None = None,
                   key_dir: str | None = None, ssh_user: str = "labkit", ttl_hours: float = 4.0,
                   timeout: float = 300.0, max_nodes: int | None = None, tester_machine_type: str | None = None,
                   ssh_source_ranges: list[str] | str | None = None, deploy: bool = True, name_prefix: str = "",
                   ssh_options: dict | None = None, testers: int = 1) -> GcpState:
        project = project or self.settings.gcp_project
        if not project:
            raise ConfigError("the gcp backend needs a project: --project P (or $LABKIT_GCP_PROJECT)")
        unknown = set(ssh_options or {}) - set(SSH_OPTIONS)
        if unknown:
            raise ConfigError(f"unknown ssh option(s) for gcp machines: {', '.join(sorted(unknown))}")
        key_dir = key_dir or str(self.settings.state_folder(create=False) / "gcp")
        return GcpState(project=project, zones=_zones(zone or self.settings.gcp_zone),
                        run_id=req.check_run_id(run_id or req.new_run_id()),
                        expires=req.expires_at(None, ttl_hours), name_prefix=req.check_prefix(name_prefix),
                        key_dir=os.path.abspath(key_dir),  # the state records key paths; any shell must find them
                        ssh_user=ssh_user, ttl_hours=ttl_hours, timeout=timeout, max_nodes=max_nodes,
                        tester_machine_type=tester_machine_type, testers=req.check_testers(testers),
                        ssh_source_ranges=req.ssh_source_ranges(ssh_source_ranges),
                        ssh_options=dict(ssh_options or {}), deploy=deploy, created={}, images=[], firewalls=[])

    def _resumes(self, saved: GcpState, options: dict) -> bool:
        project = options.get("project") or self.settings.gcp_project
        if project and project != saved.project:
            raise ConfigError(f"run {saved.run_id} in project {saved.project} is up; run "
                              f"`labkit down --backend gcp` before using project {project}")
        return True

    def _attached(self, project: str | None = None, zone=None, **options) -> None:
        for key in [k for k in options if k in ADJUSTABLE]:
            setattr(self._state, key, options.pop(key))
        super()._attached(**options)

    def _runtime(self) -> None:
        self._ssh: SshBackend | None = None
        self._old_handlers: dict = {}
        self._down_lock = threading.RLock()  # a signal may arrive during down()
        self._inflight: set[str] = set()  # instance inserts sent whose outcome is not known yet
        self._inflight_done = threading.Condition()
        self._closing = False  # set by down(): no new insert may start

    # -- what the state says (the records of what it creates: gcp_provision, gcp_teardown) --
    project = state_field("project", "The Compute Engine project.")
    run_id = state_field("run_id", "Names and labels every resource of this run.")
    expires = state_field("expires", "Unix time after which `labkit gc` may delete the run's resources.")
    timeout = state_field("timeout", "Seconds to wait for one Compute operation.")
    deploy = state_field("deploy", "False: create the machines only (the tests against the Compute stub).")

    @property
    def name_prefix(self) -> str:
        return self._state.name_prefix

    def resource_name(self, base: str) -> str:
        """The name of the handout's ``base`` (restserver-0, loadbalancer-0...) in this run."""
        return f"{self.name_prefix}{base}"

    def server_name(self, i: int) -> str:
        return self.resource_name(f"restserver-{i}")

    @property
    def balancer_name(self) -> str:
        return self.resource_name("loadbalancer-0")

    @property
    def tester_name(self) -> str:
        return self.resource_name("tester-0")

    def tester_names(self) -> list[str]:
        """tester-0..k-1: one tester machine per ab process of a point (``testers``, default 1)."""
        return [self.resource_name(f"tester-{i}") for i in range(self._state.testers)]

    def max_testers(self) -> int:
        return self._state.testers

    def ensure_testers(self, k: int) -> None:
        """Have ``k`` tester machines: record it, and create the missing ones now when the lab is up."""
        k = req.check_testers(k)
        if k > self.max_testers():
            with self._save_lock:
                self._state.testers = k
                self._save()
            if self.ssh is not None:
                key_path, pub = self._key()
                self._grow_testers(self._require_spec(), key_path, pub)

    @property
    def ssh(self) -> SshBackend | None:
        """The ssh backend driving this run's machines (sharing this backend's state)."""
        saved = self._state.ssh
        if saved is None:
            self._ssh = None
        elif self._ssh is None or self._ssh.record is not saved:
            self._ssh = SshBackend(self.settings, persist=False, saved=saved)
            self._ssh.on_change = self._save
        return self._ssh

    @property
    def compute(self) -> Compute:
        if self._compute is None:
            self._compute = Compute(endpoint=self.settings.gcp_api_endpoint)
        return self._compute

    def _keep_state(self) -> bool:
        s = self._state
        return bool(s.created or s.images or s.firewalls or s.ssh or s.spec)

    # -- Backend ----------------------------------------------------------------------
    def _stop_servers(self) -> None:
        """Nothing here: the ssh backend restarts its servers itself when their configuration changed."""

    def _deploy(self, spec: ClusterSpec) -> None:
        """Grow the run as ``spec`` needs, then deploy through the ssh backend.

        The first provisioning (nothing up yet) is torn down when it fails or is interrupted
        (SIGINT/SIGTERM handlers installed for that span only, restored in ``finally``); a
        later growth that fails leaves what was up, recorded, for ``down``.
        """
        first = self.ssh is None
        if first:
            self._install_signal_handlers()
        try:
            try:
                self._grow(spec)
            except BaseException:
                if first:
                    log.error("provisioning failed; deleting what run %s created", self.run_id)
                    try:
                        self.down()
                    except Exception as e:  # noqa: BLE001 - the first error is the one to report
                        log.error("%s", e)
                raise
        finally:
            if first:
                self._restore_signal_handlers()
        if self.deploy:
            self.ssh.up(spec)

    def status(self) -> dict:
        out = {"backend": self.name, "project": self.project, "run_id": self.run_id, "expires": self.expires,
               "instances": dict(self.created), "images": list(self.images), "firewalls": list(self.firewalls),
               "ssh_source_ranges": list(self.ssh_source_ranges)}
        if self.ssh is not None and self.spec is not None and self.deploy:
            out["ssh"] = self.ssh.status()
        return out

    def _ssh_up(self) -> SshBackend:
        if self.ssh is None:
            raise BackendError("the gcp lab is not up: run `labkit up --backend gcp` first")
        return self.ssh

    @property
    def url(self) -> str:
        return self._ssh_up().url

    @property
    def cpu_limited(self) -> bool:
        return True

    @property
    def tester_machine_type(self) -> str | None:
        """The tester's machine type: ``tester_machine_type`` when given, else the servers'."""
        spec = self.spec
        return self._state.tester_machine_type or (spec.machine_type if spec is not None else None)

    # settle(), warm_up(), cpu_seconds_by_role() and balancer_machine_type are the base's:
    # it delegates them to inner(), the ssh backend driving the machines.

    def run_ab(self, command, timeout: float, progress=None) -> AbRun:
        return self._ssh_up().run_ab(command, timeout, progress)

    def _run_ab_together(self, commands, timeout: float, progress=None) -> list[tuple[AbRun, float]]:
        return self._ssh_up().run_ab_together(commands, timeout, progress)

    def balancer_config(self) -> str:
        if self.ssh is None:
            return "(the gcp lab is not up: no balancer)"
        return self.ssh.balancer_config()



__all__ = ["DEFAULT_ZONES", "GcpBackend"]
