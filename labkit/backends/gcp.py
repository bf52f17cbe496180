"""The gcp backend: the handout's machines on Compute Engine, then deployed over SSH.

:class:`GcpBackend` grows the lab the handout's way, as far as the spec asks and no
further: the first ``up`` creates the firewall rules, restserver-0 and tester-0 (and
loadbalancer-0 when nodes > 1) in parallel; the balancer is created when nodes first
exceed 1; the first time a second server is needed, restserver-0 is prepared over SSH,
stopped, imaged (``lab02-restserver-<run id>``, steps 7-8) and started again, and
``restserver-N`` is cloned from that image when N is first needed (in parallel with
the balancer). Shrinking takes servers out of nginx's upstream list and leaves their
machines up until ``down``. Every machine's SSH host key is read from its guest
attributes and pinned; the machines are handed to
:class:`~labkit.backends.ssh.SshBackend` (one deploy path).

Clean-up never touches another run: every resource carries the run id (labels; a
firewall rule's description) and nothing whose ``labkit-run`` is not this run's is
deleted; a name whose insert failed is dropped from the state; a 409 ("already
exists") ends ``up`` with one line naming the run that has the name. Teardown is
guaranteed: ``down()``, the context manager, SIGINT/SIGTERM handlers (inserts in
flight are waited for, then deleted), ``.labkit/gcp.json`` (every resource is recorded
the moment its insert is sent), ``down`` also finds the run's resources by label when
the state lost track, and :func:`labkit.gcp_compute.gc` deletes whatever a crashed run
left behind once its expiry passed. ``name_prefix`` lets two runs share a project.

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
from ..gcp_compute import (Compute, ConflictError, check_zones, create_instances, delete_resource, get_instance,
                           host_keys, insert_firewall, insert_image, is_not_found, owner, run_resources,
                           start_instance, stop_instance, wait)
from ..hosts_file import HostSpec
from .base import AbRun, Backend, ClusterSpec
from .ssh import SshBackend

log = logging.getLogger("labkit")

DEFAULT_ZONES = ("us-central1-a", "us-central1-b", "us-central1-c", "us-central1-f")  # tried in order on stock-outs
ADJUSTABLE = ("timeout", "deploy", "max_nodes", "tester_machine_type")  # may change when attaching
SSH_OPTIONS = ("root", "python", "use_systemd", "system_nginx", "service_timeout", "nginx_workers")


def _generate_ssh_key(directory: str) -> tuple[str, str]:
    """A fresh ed25519 key pair for the run: (private key path, public key line).

    The folder (and the key folder above it) is private (0700): it holds the run's key.
    """
    path = os.path.join(directory, "id_ed25519")
    parent = os.path.dirname(directory)
    for d in (parent, directory):
        os.makedirs(d, mode=0o700, exist_ok=True)
        os.chmod(d, 0o700)
    if not os.path.exists(path):
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
    out of capacity. ``ssh_source_ranges`` (``--ssh-source``) narrows who may SSH in
    (default: this machine's public address when it has one, else the world with a
    warning). ``name_prefix`` is put before every name (default: the handout's names).
    ``ssh_options`` are :class:`SshBackend` options for the machines (``root``,
    ``python``...; the tests' stub machines share one file system). Nothing is
    created (or saved) until :meth:`up`.
    """

    name = "gcp"

    def __init__(self, settings=None, *, compute: Compute | None = None, **options):
        self._compute = compute
        super().__init__(settings, **options)

    def _new_state(self, project: str | None = None, zone=None, *, run_id: str | None = None,
                   key_dir: str | None = None, ssh_user: str = "labkit", ttl_hours: float = 4.0,
                   timeout: float = 300.0, max_nodes: int | None = None, tester_machine_type: str | None = None,
                   ssh_source_ranges: list[str] | str | None = None, deploy: bool = True, name_prefix: str = "",
                   ssh_options: dict | None = None) -> dict:
        project = project or self.settings.gcp_project
        if not project:
            raise ConfigError("the gcp backend needs a project: --project P (or $LABKIT_GCP_PROJECT)")
        unknown = set(ssh_options or {}) - set(SSH_OPTIONS)
        if unknown:
            raise ConfigError(f"unknown ssh option(s) for gcp machines: {', '.join(sorted(unknown))}")
        key_dir = key_dir or str(self.settings.state_folder(create=False) / "gcp")
        return {"project": project, "zones": _zones(zone or self.settings.gcp_zone),
                "run_id": req.check_run_id(run_id or req.new_run_id()),
                "expires": req.expires_at(None, ttl_hours), "name_prefix": req.check_prefix(name_prefix),
                "key_dir": os.path.abspath(key_dir),  # the state records key paths; any shell must find them
                "ssh_user": ssh_user, "ttl_hours": ttl_hours, "timeout": timeout, "max_nodes": max_nodes,
                "tester_machine_type": tester_machine_type,
                "ssh_source_ranges": req.ssh_source_ranges(ssh_source_ranges),
                "ssh_options": dict(ssh_options or {}), "deploy": deploy, "zones_checked": False,
                "created": {}, "images": [], "image": None, "firewalls": [], "ssh": None}

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
        self._inflight: set[str] = set()  # instance inserts sent whose outcome is not known yet
        self._inflight_done = threading.Condition()
        self._closing = False  # set by down(): no new insert may start

    # -- what the state says ----------------------------------------------------------
    project = _saved("project", "The Compute Engine project.")
    zones = _saved("zones", "Zones to try, in order, when one has no capacity.")
    run_id = _saved("run_id", "Names and labels every resource of this run.")
    expires = _saved("expires", "Unix time after which `labkit gc` may delete the run's resources.")
    key_dir = _saved("key_dir", "Where the run's SSH key pair is kept (key_dir/run_id).")
    ssh_user = _saved("ssh_user", "The login created on every machine with the run's key.")
    timeout = _saved("timeout", "Seconds to wait for one Compute operation.")
    max_nodes = _saved("max_nodes", "Servers to create up front (more are created when first needed anyway).")
    ssh_source_ranges = _saved("ssh_source_ranges", "Who may SSH in (--ssh-source).")
    deploy = _saved("deploy", "False: create the machines only (the tests against the Compute stub).")
    created = _saved("created", "Instance name -> zone, recorded when each insert is sent.")
    images = _saved("images", "Images this run made.")
    firewalls = _saved("firewalls", "Firewall rules this run made.")

    @property
    def name_prefix(self) -> str:
        return self._state.get("name_prefix", "")

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

    # -- recording inserts: before they are sent, and their outcome ---------------------
    def _on_insert(self, name: str, zone: str) -> None:
        if self._closing:
            raise CloudError(f"not creating {name}: run {self.run_id} is being deleted")
        with self._inflight_done:
            self._inflight.add(name)
        with self._save_lock:
            self._state["created"][name] = zone
            self._save()

    def _on_done(self, name: str, zone: str, created: bool | None) -> None:
        if created is False:  # the insert failed: the name is not ours to delete later
            with self._save_lock:
                if self._state["created"].get(name) == zone:
                    del self._state["created"][name]
                    self._save()
        with self._inflight_done:
            self._inflight.discard(name)
            self._inflight_done.notify_all()

    def _wait_inflight(self) -> None:
        """Wait (bounded by ``timeout``) until no instance insert is in flight."""
        deadline = time.monotonic() + self.timeout
        with self._inflight_done:
            while self._inflight and time.monotonic() < deadline:
                self._inflight_done.wait(0.2)
            if self._inflight:
                log.warning("inserts of %s still in flight after %g s", ", ".join(sorted(self._inflight)),
                            self.timeout)

    def _conflict(self, e: ConflictError, kind: str = "instance", zone: str | None = None) -> CloudError:
        """One line for a 409: who has the name and what to do."""
        try:
            other = owner(self.compute, self.project, kind, e.name, zone) if e.name else None
        except CloudError:
            other = None
        who = (f"labkit run {other}" if other else "something that is not a labkit run" if other == ""
               else "another run")
        return ConflictError(
            f"{kind} {e.name} already exists in project {self.project} and belongs to {who}, not to this run "
            f"({self.run_id}): bring that run down (`labkit down --backend gcp` in its folder, or `labkit gc` "
            "after its expiry), or give this run a name prefix (name_prefix=...)", e.name, other)

    # -- provisioning (tested against the stub) ---------------------------------------
    def _maker(self, name, role, machine_type, pub, source=req.IMAGE_FAMILY):
        return lambda zone: req.instance_body(name, zone, machine_type, self.run_id, self.expires, role,
                                              source_image=source, ssh_user=self.ssh_user, ssh_public_key=pub)

    def create_firewalls(self, service_port: int) -> None:
        """The run's three firewall rules (HTTP to the balancer, servers from inside, SSH), in parallel."""
        bodies = req.firewall_bodies(self.run_id, self.expires, service_port, self.ssh_source_ranges)
        for b in bodies:
            b["name"] = self.resource_name(b["name"])

        def insert(body):
            name = body["name"]
            with self._save_lock:
                self._state["firewalls"].append(name)
                self._save()
            try:
                wait(insert_firewall(self.compute, self.project, body), f"create firewall {name}", self.timeout)
            except CloudError as e:
                with self._save_lock:  # not created: never ours to delete
                    if name in self._state["firewalls"]:
                        self._state["firewalls"].remove(name)
                    self._save()
                if isinstance(e, ConflictError):
                    e.name = name
                    raise self._conflict(e, "firewall") from None
                raise

        with ThreadPoolExecutor(max_workers=len(bodies)) as pool:
            list(pool.map(insert, bodies))

    def create(self, makers: dict) -> dict:
        """Create instances (name -> body maker) in parallel; each is recorded when its insert is sent."""
        try:
            return create_instances(self.compute, self.project, self.zones, makers, self.timeout,
                                    on_insert=self._on_insert, on_done=self._on_done)
        except ConflictError as e:
            raise self._conflict(e, "instance", self.zones[0]) from None

    def _check_zones(self) -> None:
        """Before the first insert: drop unknown zones (one line if none is known; tells a disabled API)."""
        if not self._state.get("zones_checked"):
            self._state["zones"] = check_zones(self.compute, self.project, self.zones)
            self._state["zones_checked"] = True

    def make_image(self, source: str | None = None) -> str:
        """The handout's steps 7-8: stop the prepared server, image its disk, start it again."""
        source = source or self.server_name(0)
        zone = self.created[source]
        body = req.image_body(zone, source, self.run_id, self.expires,
                              name=req.image_name(self.run_id, self.name_prefix))
        wait(stop_instance(self.compute, self.project, zone, source), f"stop {source}", self.timeout, zone)
        with self._save_lock:
            self._state["images"].append(body["name"])
            self._save()
        try:
            wait(insert_image(self.compute, self.project, body), f"create image {body['name']}", self.timeout)
        except CloudError as e:
            with self._save_lock:
                self._state["images"].remove(body["name"])
                self._save()
            if isinstance(e, ConflictError):
                e.name = body["name"]
                raise self._conflict(e, "image") from None
            raise
        finally:
            wait(start_instance(self.compute, self.project, zone, source), f"start {source}", self.timeout, zone)
        url = f"projects/{self.project}/global/images/{body['name']}"
        with self._save_lock:
            self._state["image"] = url
            self._save()
        return url

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

    def _hosts(self, names: list[str], key_path: str) -> dict[str, HostSpec]:
        with ThreadPoolExecutor(max_workers=max(1, min(8, len(names)))) as pool:
            return dict(zip(names, pool.map(lambda n: self.host_spec(n, key_path), names)))

    def _key(self) -> tuple[str, str]:
        return _generate_ssh_key(os.path.join(self.key_dir, self.run_id))

    def _provision_first(self, spec: ClusterSpec, key_path: str, pub: str) -> None:
        """Firewall rules, restserver-0, tester-0 (and loadbalancer-0 when nodes > 1), all in parallel."""
        self._check_zones()
        s0, t0, lb = self.server_name(0), self.tester_name, self.balancer_name
        makers = {s0: self._maker(s0, "server", spec.machine_type, pub),
                  t0: self._maker(t0, "tester", self._state.get("tester_machine_type") or spec.machine_type, pub)}
        if max(spec.nodes, self.max_nodes or 1) > 1:
            makers[lb] = self._maker(lb, "balancer", spec.machine_type, pub)
        with ThreadPoolExecutor(max_workers=1) as pool:
            firewalls = pool.submit(self.create_firewalls, spec.port)
            try:
                self.create(makers)
            finally:
                firewalls.result()
        hosts = self._hosts(list(makers), key_path)
        options = dict(self._state.get("ssh_options", {}))
        if self._state.get("tester_machine_type"):
            options["tester_machine_type"] = self._state["tester_machine_type"]
        ssh = SshBackend(self.settings, persist=False, servers=[hosts[s0]], balancer=hosts.get(lb, hosts[s0]),
                         tester=hosts[t0], balancer_port=80, **options)
        with self._save_lock:
            self._state["ssh"] = ssh._state
            self._save()

    def _prepare_image(self, spec: ClusterSpec, key_path: str) -> str:
        """restserver-0 prepared (service + venv), stopped, imaged, started; its new address recorded."""
        ssh, s0 = self.ssh, self.server_name(0)
        if self.deploy:
            ssh._stop_server(0)  # the handout stops the VM; the service is started again below
            ssh.install(ssh.servers[0])
        ssh.close()
        image = self.make_image(s0)
        h = self.host_spec(s0, key_path)  # a new external IP after the restart
        with self._save_lock:
            ssh._state["servers"][0] = h.to_dict()
            if ssh._state["balancer"]["name"] == s0:
                ssh._state["balancer"] = h.to_dict()
            self._save()
        return image

    def _grow(self, spec: ClusterSpec) -> None:
        """Create what ``spec`` needs and does not exist yet, the handout's way (module docstring)."""
        key_path, pub = self._key()
        if self.ssh is None:
            self._provision_first(spec, key_path, pub)
        ssh = self.ssh
        want = max(spec.nodes, self.max_nodes or 1)
        have = len(ssh.servers)
        lb = self.balancer_name
        need_balancer = want > 1 and lb not in self.created
        if want <= have and not need_balancer:
            if want > 1 and ssh._state["balancer"]["name"] != lb:
                self._use_balancer(key_path)
            return
        with ThreadPoolExecutor(max_workers=1) as pool:
            balancer = pool.submit(self.create, {lb: self._maker(lb, "balancer", spec.machine_type, pub)}) \
                if need_balancer else None
            try:
                if want > have:
                    image = self._state.get("image") or self._prepare_image(spec, key_path)
                    names = [self.server_name(i) for i in range(have, want)]
                    self.create({n: self._maker(n, "server", spec.machine_type, pub, source=image) for n in names})
                    hosts = self._hosts(names, key_path)
                    with self._save_lock:
                        ssh._state["servers"] += [hosts[n].to_dict() for n in names]
                        self._save()
            finally:
                if balancer is not None:
                    balancer.result()
        if want > 1:
            self._use_balancer(key_path)

    def _use_balancer(self, key_path: str) -> None:
        ssh = self.ssh
        if ssh._state["balancer"]["name"] != self.balancer_name:
            h = self.host_spec(self.balancer_name, key_path)
            with self._save_lock:
                ssh._state["balancer"] = h.to_dict()
                self._save()

    # -- Backend ----------------------------------------------------------------------
    def _stop_servers(self) -> None:
        """Nothing here: the ssh backend restarts its servers itself when their configuration changed."""

    def _deploy(self, spec: ClusterSpec) -> None:
        self._install_signal_handlers()
        first = self.ssh is None
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
        return self._state.get("tester_machine_type") or (spec.machine_type if spec is not None else None)

    # settle(), warm_up(), cpu_seconds_by_role() and balancer_machine_type are the base's:
    # it delegates them to inner(), the ssh backend driving the machines.

    def run_ab(self, command, timeout: float, progress=None) -> AbRun:
        return self._ssh_up().run_ab(command, timeout, progress)

    def balancer_config(self) -> str:
        if self.ssh is None:
            return "(the gcp lab is not up: no balancer)"
        return self.ssh.balancer_config()

    def _down(self) -> tuple[list[str], list[str]]:
        """Delete every instance, image and firewall rule of this run (in parallel). Safe twice.

        Inserts still in flight are waited for first (an interrupted ``up``), and the
        run's resources are also found by label, so what the state lost is deleted too.
        Nothing whose ``labkit-run`` is another run's is deleted. The services are not
        stopped first: they go with their machines. What could not be deleted stays in
        the state (another ``down`` retries it) and carries an expiry for ``labkit gc``.
        """
        with self._down_lock:
            self._closing = True
            try:
                return self._delete_all()
            finally:
                self._closing = False

    def _delete_all(self) -> tuple[list[str], list[str]]:
        self._wait_inflight()
        if self.ssh is not None:
            self.ssh.close()
        s = self._state
        s["ssh"] = None
        s["image"] = None
        errors, deleted = [], []
        targets = {("instance", n): z for n, z in s["created"].items()}
        targets.update({("image", n): None for n in s["images"]})
        targets.update({("firewall", n): None for n in s["firewalls"]})
        labelled = set()
        if targets or s.get("spec") or s.get("zones_checked"):
            try:
                for kind, name, zone in run_resources(self.compute, self.project, self.run_id):
                    labelled.add((kind, name))
                    targets.setdefault((kind, name), zone)
            except CloudError as e:
                log.warning("could not list run %s's resources by label: %s", self.run_id, e)

        def delete(item) -> bool:
            (kind, name), zone = item
            try:
                if (kind, name) not in labelled:
                    who = owner(self.compute, self.project, kind, name, zone)
                    if who is None:
                        return True  # already gone
                    if who != self.run_id:
                        log.warning("not deleting %s %s: it belongs to %s, not to run %s", kind, name,
                                    f"run {who}" if who else "no labkit run", self.run_id)
                        return True  # never ours: forget it
                wait(delete_resource(self.compute, self.project, kind, name, zone),
                     f"delete {kind} {name}", self.timeout, zone)
            except Exception as e:  # noqa: BLE001 - keep deleting the rest; what failed stays recorded
                if isinstance(e, CloudError) and is_not_found(e):
                    return True
                errors.append(e)
                log.warning("could not delete %s %s: %s", kind, name, e)
                return False
            deleted.append(f"{kind} {name}")
            return True

        def stage(kind: str) -> list[str]:
            items = [(k, z) for k, z in targets.items() if k[0] == kind]
            if not items:
                return []
            with ThreadPoolExecutor(max_workers=min(8, len(items))) as pool:
                gone = list(pool.map(delete, items))
            return [k[1] for (k, _), ok in zip(items, gone) if not ok]

        left = stage("instance")  # disks go with them; then the image, then the rules
        with self._save_lock:
            s["created"] = {n: targets[("instance", n)] for n in left}
            self._save()
        s["images"] = stage("image")
        self._save()
        s["firewalls"] = stage("firewall")
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
