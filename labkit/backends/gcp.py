"""The gcp backend: the handout's machines on Compute Engine, then deployed over SSH.

:class:`GcpBackend` creates restserver-0, loadbalancer-0 and tester-0 (in parallel,
through :mod:`labkit.gcp_compute`), prepares restserver-0 over SSH, stops it and makes
the ``lab02-restserver`` image from its disk, clones the other servers from it, pins
every machine's SSH host key read from its guest attributes, and hands the machines
to :class:`~labkit.backends.ssh.SshBackend` (one deploy path). Teardown is
guaranteed: ``down()``, the context manager, SIGINT/SIGTERM handlers,
``.labkit/gcp.json`` (every resource is recorded the moment its insert is sent, so
``labkit down --backend gcp`` from any shell deletes it), and
:func:`labkit.gcp_compute.gc` for anything a crashed run left behind (every resource
carries an expiry).

Project, zones and the API endpoint come from :class:`~labkit.settings.Settings`
(``gcp_project``, ``gcp_zone``, ``gcp_api_endpoint``) unless given as options.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from .. import gcp_requests as req
from ..errors import BackendError, CloudError, ConfigError
from ..gcp_compute import (Compute, create_instances, delete_resource, get_instance, host_keys, insert_firewall,
                           insert_image, start_instance, stop_instance, wait)
from ..hosts_file import HostSpec
from ..remote_service import RemoteService
from .base import AbRun, Backend, ClusterSpec
from .ssh import SshBackend

log = logging.getLogger("labkit")

DEFAULT_ZONES = ("us-central1-a", "us-central1-b", "us-central1-c", "us-central1-f")  # tried in order on stock-outs
ADJUSTABLE = ("timeout", "deploy", "max_nodes", "tester_machine_type")  # may change when attaching


def _generate_ssh_key(directory: str) -> tuple[str, str]:
    """A fresh ed25519 key pair for the run: (private key path, public key line)."""
    path = os.path.join(directory, "id_ed25519")
    if not os.path.exists(path):
        os.makedirs(directory, exist_ok=True)
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "labkit", "-f", path],
                       check=True, capture_output=True)
    with open(path + ".pub") as f:
        return path, " ".join(f.read().split()[:2])


def _saved(key: str, doc: str) -> property:
    return property(lambda self: self._state[key], doc=doc)


def _zones(zone) -> list[str]:
    zones = [z.strip() for z in zone.split(",") if z.strip()] if isinstance(zone, str) else list(zone or [])
    return zones or list(DEFAULT_ZONES)


class GcpBackend(Backend):
    """Compute Engine machines for the lab, deployed and driven by SshBackend.

    ``compute`` injects the API clients (tests pass ones pointed at a local stub).
    ``zone`` (a list, or a comma-separated string) is tried in order when a zone is
    out of capacity. Nothing is created (or saved) until :meth:`up`.
    """

    name = "gcp"

    def __init__(self, settings=None, *, compute: Compute | None = None, **options):
        self._compute = compute
        super().__init__(settings, **options)

    def _new_state(self, project: str | None = None, zone=None, *, run_id: str | None = None,
                   key_dir: str | None = None, ssh_user: str = "labkit", ttl_hours: float = 4.0,
                   timeout: float = 300.0, max_nodes: int | None = None, tester_machine_type: str | None = None,
                   ssh_source_ranges: list[str] | None = None, deploy: bool = True) -> dict:
        project = project or self.settings.gcp_project
        if not project:
            raise ConfigError("the gcp backend needs a project: --project P (or $LABKIT_GCP_PROJECT)")
        key_dir = key_dir or str(self.settings.state_folder(create=False) / "gcp")
        return {"project": project, "zones": _zones(zone or self.settings.gcp_zone),
                "run_id": req.check_run_id(run_id or req.new_run_id()),
                "expires": req.expires_at(None, ttl_hours),
                "key_dir": os.path.abspath(key_dir),  # the state records key paths; any shell must find them
                "ssh_user": ssh_user, "ttl_hours": ttl_hours, "timeout": timeout, "max_nodes": max_nodes,
                "tester_machine_type": tester_machine_type, "ssh_source_ranges": ssh_source_ranges,
                "deploy": deploy, "created": {}, "images": [], "firewalls": [], "ssh": None}

    def _resumes(self, saved: dict, options: dict) -> bool:
        project = options.get("project") or self.settings.gcp_project
        if project and project != saved["project"]:
            raise ConfigError(f"run {saved['run_id']} in project {saved['project']} is up; run "
                              f"`labkit down --backend gcp` before using project {project}")
        return True

    def _attached(self, project: str | None = None, zone=None, **options) -> None:
        for key in [k for k in options if k in ADJUSTABLE]:
            self._state[key] = options.pop(key)
        super()._attached(**options)

    def _runtime(self) -> None:
        self._ssh: SshBackend | None = None
        self._old_handlers: dict = {}
        self._down_lock = threading.RLock()  # a signal may arrive during down()

    # -- what the state says ----------------------------------------------------------
    project = _saved("project", "The Compute Engine project.")
    zones = _saved("zones", "Zones to try, in order, when one has no capacity.")
    run_id = _saved("run_id", "Names and labels every resource of this run.")
    expires = _saved("expires", "Unix time after which `labkit gc` may delete the run's resources.")
    key_dir = _saved("key_dir", "Where the run's SSH key pair is kept (key_dir/run_id).")
    ssh_user = _saved("ssh_user", "The login created on every machine with the run's key.")
    timeout = _saved("timeout", "Seconds to wait for one Compute operation.")
    max_nodes = _saved("max_nodes", "Servers to create up front (scale up to this without re-provisioning).")
    tester_machine_type = _saved("tester_machine_type", "The tester's machine type (default: the servers').")
    ssh_source_ranges = _saved("ssh_source_ranges", "Who may SSH in (default: anywhere, 0.0.0.0/0).")
    deploy = _saved("deploy", "False: create the machines only (the tests against the Compute stub).")
    created = _saved("created", "Instance name -> zone, recorded when each insert is sent.")
    images = _saved("images", "Images this run made.")
    firewalls = _saved("firewalls", "Firewall rules this run made.")

    @property
    def ssh(self) -> SshBackend | None:
        """The ssh backend driving this run's machines (sharing this backend's state)."""
        saved = self._state["ssh"]
        if saved is None:
            self._ssh = None
        elif self._ssh is None or self._ssh._state is not saved:
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
        return bool(s["created"] or s["images"] or s["firewalls"] or s["ssh"] or s["spec"])

    def _record_instance(self, name: str, zone: str) -> None:
        with self._save_lock:
            self._state["created"][name] = zone
            self._save()

    # -- provisioning (tested against the stub) ---------------------------------------
    def _maker(self, name, role, machine_type, pub, source=req.IMAGE_FAMILY):
        return lambda zone: req.instance_body(name, zone, machine_type, self.run_id, self.expires, role,
                                              source_image=source, ssh_user=self.ssh_user, ssh_public_key=pub)

    def create_firewalls(self, service_port: int) -> None:
        """The run's three firewall rules (HTTP to the balancer, servers from inside, SSH), in parallel."""
        bodies = req.firewall_bodies(self.run_id, self.expires, service_port, self.ssh_source_ranges)

        def insert(body):
            with self._save_lock:
                self._state["firewalls"].append(body["name"])
                self._save()
            return body["name"], insert_firewall(self.compute, self.project, body)

        with ThreadPoolExecutor(max_workers=len(bodies)) as pool:
            ops = list(pool.map(insert, bodies))
        for name, op in ops:
            wait(op, f"create firewall {name}", self.timeout)

    def create(self, makers: dict) -> dict:
        """Create instances (name -> body maker) in parallel; each is recorded when its insert is sent."""
        try:
            zones = create_instances(self.compute, self.project, self.zones, makers, self.timeout,
                                     on_insert=self._record_instance)
        except CloudError as e:
            with self._save_lock:
                self._state["created"].update(getattr(e, "created", {}))
                self._save()
            raise
        with self._save_lock:
            self._state["created"].update(zones)
            self._save()
        return zones

    def make_image(self, source: str = "restserver-0") -> str:
        """The handout's steps 7-8: stop the prepared server, image its disk, start it again."""
        zone = self.created[source]
        wait(stop_instance(self.compute, self.project, zone, source), f"stop {source}", self.timeout, zone)
        body = req.image_body(zone, source, self.run_id, self.expires)
        with self._save_lock:
            self._state["images"].append(body["name"])
            self._save()
        wait(insert_image(self.compute, self.project, body), f"create image {body['name']}", self.timeout)
        wait(start_instance(self.compute, self.project, zone, source), f"start {source}", self.timeout, zone)
        return f"projects/{self.project}/global/images/{body['name']}"

    def host_spec(self, name: str, key_path: str) -> HostSpec:
        """SSH to the external IP, pinning the host keys from guest attributes; others use the internal IP."""
        zone = self.created[name]
        inst = get_instance(self.compute, self.project, zone, name)
        nic = inst.network_interfaces[0]
        external = nic.access_configs[0].nat_i_p if nic.access_configs else nic.network_i_p
        keys = []
        deadline = time.monotonic() + self.timeout
        while not keys:  # the guest agent publishes them a little after boot
            keys = host_keys(self.compute, self.project, zone, name)
            if not keys:
                if time.monotonic() > deadline:
                    raise BackendError(f"{name}: no SSH host keys in guest attributes; refusing to trust blindly")
                time.sleep(2)
        return HostSpec(external, user=self.ssh_user, key_filename=key_path, host_key=tuple(keys),
                        address=nic.network_i_p, name=name)

    def _provision(self, spec: ClusterSpec) -> None:
        """Create the run's machines (the image way for more than one server) and hand them to ssh."""
        nodes = max(spec.nodes, self.max_nodes or spec.nodes)
        key_path, pub = _generate_ssh_key(os.path.join(self.key_dir, self.run_id))
        self.create_firewalls(spec.port)
        first = {"restserver-0": self._maker("restserver-0", "server", spec.machine_type, pub),
                 "tester-0": self._maker("tester-0", "tester", self.tester_machine_type or spec.machine_type, pub)}
        if nodes > 1:
            first["loadbalancer-0"] = self._maker("loadbalancer-0", "balancer", spec.machine_type, pub)
        self.create(first)
        hosts = {n: self.host_spec(n, key_path) for n in self.created}
        servers = [hosts["restserver-0"]]
        if nodes > 1:
            if self.deploy:  # prepare restserver-0 (service + venv) so the image carries it
                with hosts["restserver-0"].connect() as conn:
                    RemoteService(conn, "restserver-0").install()
            image = self.make_image()
            hosts["restserver-0"] = self.host_spec("restserver-0", key_path)  # new external IP after restart
            self.create({f"restserver-{i}": self._maker(f"restserver-{i}", "server", spec.machine_type, pub,
                                                        source=image) for i in range(1, nodes)})
            servers = [hosts["restserver-0"]] + [self.host_spec(f"restserver-{i}", key_path)
                                                 for i in range(1, nodes)]
        ssh = SshBackend(self.settings, persist=False, servers=servers,
                         balancer=hosts.get("loadbalancer-0", servers[0]), tester=hosts["tester-0"], balancer_port=80)
        with self._save_lock:
            self._state["ssh"] = ssh._state
            self._save()

    # -- Backend ----------------------------------------------------------------------
    def _check(self, spec: ClusterSpec) -> None:
        ssh = self.ssh
        if ssh is not None and spec.nodes > len(ssh.servers):
            raise ConfigError(f"this run has {len(ssh.servers)} servers; bring it down and up again "
                              "with max_nodes to create more")

    def _stop_servers(self) -> None:
        """Nothing here: the ssh backend restarts its servers itself when their configuration changed."""

    def _deploy(self, spec: ClusterSpec) -> None:
        if self.ssh is None:
            self._install_signal_handlers()
            try:
                self._provision(spec)
            except BaseException:
                log.error("provisioning failed; deleting what run %s created", self.run_id)
                self.down()
                raise
        if self.deploy:
            self.ssh.up(spec)

    def status(self) -> dict:
        out = {"backend": self.name, "project": self.project, "run_id": self.run_id, "expires": self.expires,
               "instances": dict(self.created), "images": list(self.images), "firewalls": list(self.firewalls)}
        if self.ssh is not None and self.spec is not None:
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

    def run_ab(self, command, timeout: float, progress=None) -> AbRun:
        return self._ssh_up().run_ab(command, timeout, progress)

    def balancer_config(self) -> str:
        if self.ssh is None:
            return "(the gcp lab is not up: no balancer)"
        return self.ssh.balancer_config()

    def _down(self) -> tuple[list[str], list[str]]:
        """Delete every instance, image and firewall rule of this run (in parallel). Safe twice.

        The services are not stopped first: they go with their machines. What
        could not be deleted stays in the state (another ``down`` retries it) and
        carries an expiry for ``labkit gc``.
        """
        with self._down_lock:
            if self.ssh is not None:
                self.ssh.close()
            self._state["ssh"] = None
            errors, deleted = [], []

            def delete(kind, name, zone=None) -> bool:
                try:
                    wait(delete_resource(self.compute, self.project, kind, name, zone),
                         f"delete {kind} {name}", self.timeout, zone)
                except Exception as e:  # noqa: BLE001 - keep deleting the rest; what failed stays recorded
                    if isinstance(e, CloudError) and ("404" in str(e) or "was not found" in str(e)):
                        return True  # already gone
                    errors.append(e)
                    log.warning("could not delete %s %s: %s", kind, name, e)
                    return False
                deleted.append(f"{kind} {name}")
                return True

            s = self._state
            with ThreadPoolExecutor(max_workers=8) as pool:
                gone = list(pool.map(lambda j: delete("instance", *j), list(s["created"].items())))
            with self._save_lock:
                s["created"] = {n: z for (n, z), ok in zip(list(s["created"].items()), gone) if not ok}
                self._save()
            s["images"] = [n for n in list(s["images"]) if not delete("image", n)]
            self._save()
            with ThreadPoolExecutor(max_workers=4) as pool:
                gone = list(pool.map(lambda n: delete("firewall", n), list(s["firewalls"])))
            s["firewalls"] = [n for n, ok in zip(list(s["firewalls"]), gone) if not ok]
            s["spec"] = None
            self._save()
            self._restore_signal_handlers()
            if errors:
                raise CloudError(f"could not delete everything of run {self.run_id} ({errors[0]}); "
                                 f"`labkit down --backend gcp` retries, `labkit gc` deletes it after {self.expires}")
            shutil.rmtree(os.path.join(self.key_dir, self.run_id), ignore_errors=True)  # the run's SSH key
            return sorted(deleted), []

    def _install_signal_handlers(self) -> None:
        if threading.current_thread() is not threading.main_thread() or self._old_handlers:
            return

        def handler(signum, frame):
            log.warning("signal %d: deleting run %s before exiting", signum, self.run_id)
            old = self._old_handlers.get(signum)
            self.down()
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
            if callable(old):
                old(signum, frame)
            raise SystemExit(128 + signum)

        for sig in (signal.SIGINT, signal.SIGTERM):
            self._old_handlers[sig] = signal.signal(sig, handler)

    def _restore_signal_handlers(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for sig, old in self._old_handlers.items():
            signal.signal(sig, old if old is not None else signal.SIG_DFL)
        self._old_handlers = {}


__all__ = ["DEFAULT_ZONES", "GcpBackend"]
