"""The gcp backend: the handout's machines on Compute Engine, then deployed over SSH.

One typed function per Compute operation (``insert_instance``, ``stop_instance``,
``insert_image``...) and one wait helper, :func:`wait`, which turns quota and
stock-out failures into :class:`~labkit.errors.QuotaError` /
:class:`~labkit.errors.StockoutError` with plain advice. Request bodies come from
:mod:`labkit.gcp_requests` (what ``labkit plan`` prints). Instances are created
in parallel; a stock-out moves the instance to the next zone in ``zones``.

:class:`GcpBackend` creates restserver-0, loadbalancer-0 and tester-0, prepares
restserver-0 over SSH, stops it and makes the ``lab02-restserver`` image from its
disk, clones the other servers from it, pins every machine's SSH host key read
from its guest attributes, and hands the machines to
:class:`~labkit.backends.ssh.SshBackend` (one deploy path). Teardown is
guaranteed: ``down()``, the context manager, SIGINT/SIGTERM handlers,
``.labkit/gcp.json`` (every resource is recorded the moment its insert is sent,
so ``labkit down --backend gcp`` from any shell deletes it), and :func:`gc` for
anything a crashed run left behind (every resource carries an expiry).

``$LABKIT_GCP_API_ENDPOINT`` points the clients at another Compute endpoint;
a plain-``http://`` one must be on loopback (an emulator or the tests' stub)
and gets anonymous credentials, so no token is ever sent in clear text.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import logging
import os
import shutil
import signal
import subprocess
import threading
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor

from .. import gcp_requests as req
from .. import state
from ..errors import BackendError, CloudError, ConfigError, MissingToolError, QuotaError, StockoutError
from .base import AbRun, Backend, ClusterSpec

log = logging.getLogger("labkit")

POLL_MAX = 1.0  # seconds between operation polls, at most
SCOPES = ["https://www.googleapis.com/auth/cloud-platform"]
QUOTA_MARKERS = ("QUOTA_EXCEEDED", "quotaExceeded", "Quota '", "quota exceeded")
STOCKOUT_MARKERS = ("ZONE_RESOURCE_POOL_EXHAUSTED", "RESOURCE_POOL_EXHAUSTED", "does not have enough resources")
STATE_NAME = "gcp"
PROJECT_ENV, ZONE_ENV, ENDPOINT_ENV = "LABKIT_GCP_PROJECT", "LABKIT_GCP_ZONE", "LABKIT_GCP_API_ENDPOINT"
DEFAULT_ZONES = ("us-central1-a", "us-central1-b", "us-central1-c", "us-central1-f")  # tried in order on stock-outs


def _compute_v1():
    try:
        from google.cloud import compute_v1
    except ImportError:
        raise MissingToolError("google-cloud-compute is missing: pip install 'labkit[gcp]'") from None
    return compute_v1


class Compute:
    """The Compute API clients one run uses, built from Application Default Credentials
    unless ``credentials`` (and, for tests, ``client_options``) are given."""

    def __init__(self, credentials=None, client_options=None, transport: str = "rest"):
        compute_v1 = _compute_v1()
        endpoint = os.environ.get(ENDPOINT_ENV)
        if client_options is None and endpoint:
            client_options = {"api_endpoint": endpoint}
            if credentials is None and endpoint.startswith("http://"):
                _check_loopback(endpoint)
                from google.auth.credentials import AnonymousCredentials

                credentials = AnonymousCredentials()
        if credentials is None:
            import google.auth

            try:
                credentials, _ = google.auth.default(scopes=SCOPES)
            except google.auth.exceptions.DefaultCredentialsError as e:
                raise CloudError(f"no Google Cloud credentials: run `gcloud auth application-default login` ({e})") from None
        kw = {"credentials": credentials, "transport": transport}
        if client_options is not None:
            kw["client_options"] = client_options
        self.instances = compute_v1.InstancesClient(**kw)
        self.images = compute_v1.ImagesClient(**kw)
        self.firewalls = compute_v1.FirewallsClient(**kw)
        # The clients poll their operations through operations clients they build themselves,
        # without our client_options (so a stub endpoint would be bypassed). Hand them ones
        # built like the others; with default options this changes nothing.
        ops = {"zone_operations": compute_v1.ZoneOperationsClient(**kw),
               "global_operations": compute_v1.GlobalOperationsClient(**kw)}
        for client in (self.instances, self.images, self.firewalls):
            services = getattr(client._transport, "_extended_operations_services", None)
            if isinstance(services, dict):
                services.update(ops)


def _check_loopback(endpoint: str) -> None:
    host = urllib.parse.urlsplit(endpoint).hostname or ""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ConfigError(f"${ENDPOINT_ENV}={endpoint}: a plain-http endpoint must be on loopback; use https://")


# -- errors and waiting -------------------------------------------------------------


def _error_text(exc: BaseException) -> str:
    parts = [str(exc)]
    for e in getattr(exc, "errors", None) or []:
        parts.append(str(e))
    resp = getattr(exc, "response", None)
    err = getattr(resp, "error", None)
    for e in getattr(err, "errors", None) or []:
        parts.append(f"{getattr(e, 'code', '')} {getattr(e, 'message', '')}")
    return " ".join(parts)


def translate(exc: BaseException, what: str, zone: str | None = None) -> CloudError:
    """Map a Compute API failure to an error whose message says what to do."""
    text = _error_text(exc)
    if any(m in text for m in QUOTA_MARKERS):
        return QuotaError(f"{what}: the project's quota is exhausted ({text.strip()[:300]}). Delete unused VMs "
                          "(`labkit gc`), use a smaller machine type or fewer nodes, or request more quota at "
                          "https://console.cloud.google.com/iam-admin/quotas")
    if any(m in text for m in STOCKOUT_MARKERS):
        return StockoutError(f"{what}: zone {zone or '?'} has no capacity for this machine type right now "
                             f"({text.strip()[:200]}). Try another zone (--zone) or machine type, or retry later.")
    return CloudError(f"{what}: {text.strip()[:500]}")


def wait(operation, what: str, timeout: float = 300.0, zone: str | None = None):
    """Wait for a Compute operation with ``operation.result(timeout=...)``; raise CloudError subclasses."""
    from google.api_core import exceptions as gexc
    from google.api_core.future import polling

    # poll at most POLL_MAX apart (the default backs off to 20 s, with jitter)
    fast = polling.DEFAULT_POLLING.with_delay(initial=0.25, maximum=POLL_MAX, multiplier=1.5).with_timeout(timeout)
    try:
        return operation.result(timeout=timeout, polling=fast)
    except (gexc.GoogleAPICallError, gexc.RetryError) as e:
        raise translate(e, what, zone) from e
    except TimeoutError:
        raise CloudError(f"{what}: not done after {timeout:g} s") from None


def _call(fn, what: str, where: str | None = None, /, **kw):
    from google.api_core import exceptions as gexc

    try:
        return fn(**kw)
    except gexc.GoogleAPICallError as e:
        raise translate(e, what, where) from e


# -- one function per operation -------------------------------------------------------


def insert_instance(c: Compute, project: str, zone: str, body: dict):
    res = _compute_v1().Instance.from_json(json.dumps(body))
    return _call(c.instances.insert, f"create {body['name']}", zone, project=project, zone=zone,
                 instance_resource=res)


def get_instance(c: Compute, project: str, zone: str, name: str):
    return _call(c.instances.get, f"get {name}", zone, project=project, zone=zone, instance=name)


def stop_instance(c: Compute, project: str, zone: str, name: str):
    return _call(c.instances.stop, f"stop {name}", zone, project=project, zone=zone, instance=name)


def start_instance(c: Compute, project: str, zone: str, name: str):
    return _call(c.instances.start, f"start {name}", zone, project=project, zone=zone, instance=name)


def delete_instance(c: Compute, project: str, zone: str, name: str):
    return _call(c.instances.delete, f"delete {name}", zone, project=project, zone=zone, instance=name)


def list_labkit_instances(c: Compute, project: str) -> list[tuple[str, object]]:
    """(zone, instance) for every instance with a labkit-run label, in all zones."""
    request = _compute_v1().AggregatedListInstancesRequest(project=project, filter=f"labels.{req.LABEL_RUN}:*")
    pager = _call(c.instances.aggregated_list, "list instances", request=request)
    out = []
    for scope, scoped in pager:
        for inst in scoped.instances:
            if req.LABEL_RUN in inst.labels:
                out.append((scope.rsplit("/", 1)[-1], inst))
    return out


def host_keys(c: Compute, project: str, zone: str, name: str) -> list[str]:
    """The instance's SSH host keys (``"TYPE BASE64"``) from its guest attributes."""
    request = _compute_v1().GetGuestAttributesInstanceRequest(project=project, zone=zone, instance=name,
                                                              query_path="hostkeys/")
    attrs = _call(c.instances.get_guest_attributes, f"read host keys of {name}", zone, request=request)
    return [f"{i.key} {i.value}" for i in attrs.query_value.items if i.namespace == "hostkeys"]


def insert_image(c: Compute, project: str, body: dict):
    res = _compute_v1().Image.from_json(json.dumps(body))
    return _call(c.images.insert, f"create image {body['name']}", project=project, image_resource=res)


def delete_image(c: Compute, project: str, name: str):
    return _call(c.images.delete, f"delete image {name}", project=project, image=name)


def list_labkit_images(c: Compute, project: str):
    request = _compute_v1().ListImagesRequest(project=project, filter=f"labels.{req.LABEL_RUN}:*")
    return [i for i in _call(c.images.list, "list images", request=request)
            if req.LABEL_RUN in i.labels]


def insert_firewall(c: Compute, project: str, body: dict):
    res = _compute_v1().Firewall.from_json(json.dumps(body))
    return _call(c.firewalls.insert, f"create firewall {body['name']}", project=project, firewall_resource=res)


def delete_firewall(c: Compute, project: str, name: str):
    return _call(c.firewalls.delete, f"delete firewall {name}", project=project, firewall=name)


def list_labkit_firewalls(c: Compute, project: str):
    return [f for f in _call(c.firewalls.list, "list firewalls", project=project)
            if req.parse_firewall_description(f.description)]


# -- composite steps ------------------------------------------------------------------


def create_instance(c: Compute, project: str, zones: list[str], make_body, timeout: float = 300.0,
                    on_insert=None) -> str:
    """Create one instance, moving to the next zone on a stock-out; return the zone used.

    ``on_insert(name, zone)`` is called just before each insert is sent, so the
    caller can record the instance before it exists (and delete it if interrupted).
    """
    last = None
    for zone in zones:
        body = make_body(zone)
        if on_insert is not None:
            on_insert(body["name"], zone)
        try:
            wait(insert_instance(c, project, zone, body), f"create {body['name']}", timeout, zone)
            log.info("created %s in %s", body["name"], zone)
            return zone
        except StockoutError as e:
            log.warning("%s; trying the next zone", e)
            last = e
    raise StockoutError(f"no capacity in any of {', '.join(zones)}: {last}")


def create_instances(c: Compute, project: str, zones: list[str], makers: dict, timeout: float = 300.0,
                     on_insert=None) -> dict:
    """Create several instances in parallel: ``makers`` maps name -> ``make_body(zone)``; returns name -> zone."""
    if not makers:
        return {}
    with ThreadPoolExecutor(max_workers=min(16, len(makers))) as pool:
        futures = {name: pool.submit(create_instance, c, project, zones, mk, timeout, on_insert)
                   for name, mk in makers.items()}
        out, errors = {}, []
        for name, f in futures.items():
            try:
                out[name] = f.result()
            except CloudError as e:
                errors.append(e)
    if errors:
        quota = [e for e in errors if isinstance(e, QuotaError)]
        err = (quota or errors)[0]
        err.created = out  # what did get created, so the caller can delete it
        raise err
    return out


def gc(project: str, now: float | None = None, compute: Compute | None = None, timeout: float = 300.0,
       dry_run: bool = False) -> list[str]:
    """Delete every labkit-labelled instance, image and firewall rule whose expiry has passed.

    Returns what was deleted (``"instance NAME"``, ``"image NAME"``, ``"firewall NAME"``);
    with ``dry_run`` only lists what would be, deleting nothing.
    """
    now = time.time() if now is None else now
    c = compute or Compute()

    def expired(value) -> bool:
        try:
            return int(value) < now
        except (TypeError, ValueError):
            return False

    deleted, ops = [], []
    if dry_run:
        found = [f"instance {i.name}" for _, i in list_labkit_instances(c, project)
                 if expired(i.labels.get(req.LABEL_EXPIRES))]
        found += [f"image {i.name}" for i in list_labkit_images(c, project) if expired(i.labels.get(req.LABEL_EXPIRES))]
        found += [f"firewall {f.name}" for f in list_labkit_firewalls(c, project)
                  if expired(req.parse_firewall_description(f.description).get(req.LABEL_EXPIRES))]
        return found
    for zone, inst in list_labkit_instances(c, project):
        if expired(inst.labels.get(req.LABEL_EXPIRES)):
            ops.append((delete_instance(c, project, zone, inst.name), f"instance {inst.name}", zone))
    for r, what, zone in ops:
        wait(r, f"delete {what}", timeout, zone)
        deleted.append(what)
    for img in list_labkit_images(c, project):
        if expired(img.labels.get(req.LABEL_EXPIRES)):
            wait(delete_image(c, project, img.name), f"delete image {img.name}", timeout)
            deleted.append(f"image {img.name}")
    for fw in list_labkit_firewalls(c, project):
        if expired(req.parse_firewall_description(fw.description).get(req.LABEL_EXPIRES)):
            wait(delete_firewall(c, project, fw.name), f"delete firewall {fw.name}", timeout)
            deleted.append(f"firewall {fw.name}")
    for d in deleted:
        log.info("gc deleted %s", d)
    return deleted


def _generate_ssh_key(directory: str) -> tuple[str, str]:
    """A fresh ed25519 key pair for the run: (private key path, public key line)."""
    path = os.path.join(directory, "id_ed25519")
    if not os.path.exists(path):
        os.makedirs(directory, exist_ok=True)
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "labkit", "-f", path],
                       check=True, capture_output=True)
    with open(path + ".pub") as f:
        return path, " ".join(f.read().split()[:2])


class GcpBackend(Backend):
    """Compute Engine machines for the lab, deployed and driven by SshBackend.

    ``compute`` injects the API clients (tests pass ones pointed at a local stub).
    ``zones`` are tried in order when a zone is out of capacity. With
    ``state_name`` (as :meth:`from_state_or_config` sets it), every resource is
    recorded in ``.labkit/<state_name>.json`` the moment its insert is sent.
    """

    name = "gcp"

    def __init__(self, project: str, zones: list[str] | str, *, run_id: str | None = None,
                 compute: Compute | None = None, key_dir: str = ".labkit/gcp", ssh_user: str = "labkit",
                 ttl_hours: float = 4.0, timeout: float = 300.0, max_nodes: int | None = None,
                 tester_machine_type: str | None = None, ssh_source_ranges: list[str] | None = None,
                 deploy: bool = True, state_name: str | None = None):
        if not project:
            raise ConfigError("the gcp backend needs a project (--project or LABKIT_GCP_PROJECT)")
        self.project = project
        self.zones = [zones] if isinstance(zones, str) else list(zones)
        self.run_id = req.check_run_id(run_id or req.new_run_id())
        self._compute = compute
        self.key_dir = os.path.abspath(key_dir)  # the state records key paths; any shell must find them
        self.ssh_user, self.ttl_hours, self.timeout = ssh_user, ttl_hours, timeout
        self.max_nodes, self.tester_machine_type = max_nodes, tester_machine_type
        self.ssh_source_ranges, self.deploy = ssh_source_ranges, deploy
        self.expires = req.expires_at(None, ttl_hours)
        self.created: dict[str, str] = {}  # instance name -> zone
        self.images: list[str] = []
        self.firewalls: list[str] = []
        self.ssh = None
        self._spec = None
        self._old_handlers: dict = {}
        self._down_lock = threading.RLock()  # a signal may arrive during down()
        self.state_name = state_name
        self._save_lock = threading.RLock()  # re-entrant: a signal handler may save while saving

    # -- state: what exists, so `labkit down` works from another shell ------------------

    def to_state(self) -> dict:
        return {
            "backend": "gcp", "project": self.project, "zones": list(self.zones), "run_id": self.run_id,
            "expires": self.expires, "key_dir": self.key_dir, "ssh_user": self.ssh_user,
            "ttl_hours": self.ttl_hours, "timeout": self.timeout, "max_nodes": self.max_nodes,
            "tester_machine_type": self.tester_machine_type, "ssh_source_ranges": self.ssh_source_ranges,
            "deploy": self.deploy, "created": dict(self.created), "images": list(self.images),
            "firewalls": list(self.firewalls),
            "spec": dataclasses.asdict(self._spec) if self._spec else None,
            "ssh": self.ssh.to_state() if self.ssh is not None else None,
        }

    @classmethod
    def from_state(cls, saved: dict, *, compute: Compute | None = None, **overrides) -> GcpBackend:
        """A backend attached to the run ``saved`` (from :meth:`to_state`) describes."""
        from .ssh import SshBackend

        keys = ("key_dir", "ssh_user", "ttl_hours", "timeout", "max_nodes", "tester_machine_type",
                "ssh_source_ranges", "deploy")
        kw = {**{k: saved[k] for k in keys if k in saved}, **overrides}
        b = cls(saved["project"], saved["zones"], run_id=saved["run_id"], compute=compute, **kw)
        b.expires = saved["expires"]
        b.created = dict(saved.get("created", {}))
        b.images = list(saved.get("images", []))
        b.firewalls = list(saved.get("firewalls", []))
        b._spec = ClusterSpec(**saved["spec"]) if saved.get("spec") else None
        if saved.get("ssh"):
            b.ssh = SshBackend.from_state(saved["ssh"])
            b.ssh.on_change = b._save
        return b

    @classmethod
    def from_state_or_config(cls, project: str | None = None, zone=None, **kw) -> GcpBackend:
        """Attach to the run in ``.labkit/gcp.json``, or prepare a new one in ``project``.

        ``project`` and ``zone`` default to ``$LABKIT_GCP_PROJECT`` / ``$LABKIT_GCP_ZONE``;
        ``zone`` may be a comma-separated list, tried in order on stock-outs (default:
        the us-central1 zones). Nothing is created (or saved) until ``up()``.
        """
        project = project or os.environ.get(PROJECT_ENV) or None
        zone = zone or os.environ.get(ZONE_ENV) or None
        saved = state.load(STATE_NAME)
        if saved:
            if project and project != saved["project"]:
                raise ConfigError(f"run {saved['run_id']} in project {saved['project']} is up; run "
                                  f"`labkit down --backend gcp` before using project {project}")
            return cls.from_state(saved, state_name=STATE_NAME, **kw)
        if not project:
            raise ConfigError(f"the gcp backend needs a project: --project P (or ${PROJECT_ENV})")
        zones = [z.strip() for z in zone.split(",") if z.strip()] if isinstance(zone, str) else list(zone or [])
        if not zones:
            zones = list(DEFAULT_ZONES)
        kw.setdefault("key_dir", str(state.state_dir(create=False) / "gcp"))
        return cls(project, zones, state_name=STATE_NAME, **kw)

    def _has_resources(self) -> bool:
        return bool(self.created or self.images or self.firewalls or self.ssh is not None)

    def _save(self) -> None:
        """Record what exists now (called the moment anything is created or deleted)."""
        if not self.state_name:
            return
        with self._save_lock:
            if self._has_resources() or self._spec is not None:
                state.save(self.state_name, self.to_state())
            else:
                state.clear(self.state_name)

    def _record_instance(self, name: str, zone: str) -> None:
        with self._save_lock:
            self.created[name] = zone
            self._save()

    @property
    def compute(self) -> Compute:
        if self._compute is None:
            self._compute = Compute()
        return self._compute

    # -- provisioning (tested against the stub) ---------------------------------------

    def _maker(self, name, role, machine_type, pub, source=req.IMAGE_FAMILY):
        return lambda zone: req.instance_body(name, zone, machine_type, self.run_id, self.expires, role,
                                              source_image=source, ssh_user=self.ssh_user, ssh_public_key=pub)

    def create_firewalls(self, service_port: int) -> None:
        bodies = req.firewall_bodies(self.run_id, self.expires, service_port, self.ssh_source_ranges)

        def insert(body):
            with self._save_lock:
                self.firewalls.append(body["name"])
                self._save()
            return body["name"], insert_firewall(self.compute, self.project, body)

        with ThreadPoolExecutor(max_workers=len(bodies)) as pool:
            ops = list(pool.map(insert, bodies))
        for name, op in ops:
            wait(op, f"create firewall {name}", self.timeout)

    def create(self, makers: dict) -> dict:
        try:
            zones = create_instances(self.compute, self.project, self.zones, makers, self.timeout,
                                     on_insert=self._record_instance)
        except CloudError as e:
            self.created.update(getattr(e, "created", {}))
            self._save()
            raise
        self.created.update(zones)
        self._save()
        return zones

    def make_image(self, source: str = "restserver-0") -> str:
        """The handout's steps 7-8: stop the prepared server, image its disk, start it again."""
        zone = self.created[source]
        wait(stop_instance(self.compute, self.project, zone, source), f"stop {source}", self.timeout, zone)
        body = req.image_body(zone, source, self.run_id, self.expires)
        self.images.append(body["name"])
        self._save()
        wait(insert_image(self.compute, self.project, body), f"create image {body['name']}", self.timeout)
        wait(start_instance(self.compute, self.project, zone, source), f"start {source}", self.timeout, zone)
        return f"projects/{self.project}/global/images/{body['name']}"

    def host_spec(self, name: str, key_path: str):
        """SSH to the external IP, pinning the host keys from guest attributes; others use the internal IP."""
        from .ssh import HostSpec

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

    # -- Backend ----------------------------------------------------------------------

    def up(self, spec: ClusterSpec) -> None:
        from .ssh import SshBackend

        if self.ssh is not None:
            self.ssh.up(spec)
            self._spec = spec
            self._save()
            return
        self._install_signal_handlers()
        nodes = max(spec.nodes, self.max_nodes or spec.nodes)
        key_path, pub = _generate_ssh_key(os.path.join(self.key_dir, self.run_id))
        try:
            self.create_firewalls(spec.port)
            first = {"restserver-0": self._maker("restserver-0", "server", spec.machine_type, pub),
                     "tester-0": self._maker("tester-0", "tester", self.tester_machine_type or spec.machine_type, pub)}
            if nodes > 1:
                first["loadbalancer-0"] = self._maker("loadbalancer-0", "balancer", spec.machine_type, pub)
            self.create(first)
            specs = {n: self.host_spec(n, key_path) for n in self.created}
            servers = [specs["restserver-0"]]
            if nodes > 1:
                if self.deploy:  # prepare restserver-0 (service + venv) so the image carries it
                    SshBackend([servers[0]], servers[0], specs["tester-0"])._deploy_host(servers[0])
                image = self.make_image()
                specs["restserver-0"] = self.host_spec("restserver-0", key_path)  # new external IP after restart
                self.create({f"restserver-{i}": self._maker(f"restserver-{i}", "server", spec.machine_type, pub,
                                                            source=image) for i in range(1, nodes)})
                servers = [specs["restserver-0"]] + [self.host_spec(f"restserver-{i}", key_path)
                                                     for i in range(1, nodes)]
            balancer = specs.get("loadbalancer-0", servers[0])
            self.ssh = SshBackend(servers, balancer, specs["tester-0"], balancer_port=80)
            self.ssh.on_change = self._save
            self._save()
            if self.deploy:
                self.ssh.up(spec)
            self._spec = spec
            self._save()
        except BaseException:
            log.error("provisioning failed; deleting what run %s created", self.run_id)
            self.down()
            raise

    def scale(self, nodes: int) -> None:
        if self.ssh is None:
            raise BackendError("scale() before up()")
        if nodes > len(self.ssh.servers):
            raise ConfigError(f"this run has {len(self.ssh.servers)} servers; pass max_nodes to up() to create more")
        self.ssh.scale(nodes)
        self._spec = self.ssh._spec
        self._save()

    def status(self) -> dict:
        out = {"backend": self.name, "project": self.project, "run_id": self.run_id, "expires": self.expires,
               "instances": dict(self.created), "images": list(self.images), "firewalls": list(self.firewalls)}
        if self.ssh is not None and self._spec is not None:
            out["ssh"] = self.ssh.status()
        return out

    @property
    def url(self) -> str:
        if self.ssh is None:
            raise BackendError("the cluster is not up")
        return self.ssh.url

    @property
    def cpu_limited(self) -> bool:
        return True

    def run_ab(self, argv: list[str], payload: bytes, timeout: float, progress=None) -> AbRun:
        if self.ssh is None:
            raise BackendError("the cluster is not up")
        return self.ssh.run_ab(argv, payload, timeout)

    def down(self) -> dict:
        """Delete every instance, image and firewall rule of this run (in parallel). Safe twice.

        The services are not stopped first: they go with their machines. What
        could not be deleted stays in the state (another ``down`` retries it) and
        carries an expiry for ``labkit gc``.
        """
        with self._down_lock:
            if self.ssh is not None:
                self.ssh.close()
                self.ssh = None
            errors, deleted = [], []

            def delete(kind, name, zone=None) -> bool:
                try:
                    if kind == "instance":
                        op = delete_instance(self.compute, self.project, zone, name)
                    elif kind == "image":
                        op = delete_image(self.compute, self.project, name)
                    else:
                        op = delete_firewall(self.compute, self.project, name)
                    wait(op, f"delete {kind} {name}", self.timeout, zone)
                except Exception as e:  # noqa: BLE001 - keep deleting the rest; what failed stays recorded
                    if isinstance(e, CloudError) and ("404" in str(e) or "was not found" in str(e)):
                        return True  # already gone
                    errors.append(e)
                    log.warning("could not delete %s %s: %s", kind, name, e)
                    return False
                deleted.append(f"{kind} {name}")
                return True

            with ThreadPoolExecutor(max_workers=8) as pool:
                gone = list(pool.map(lambda j: delete("instance", *j), list(self.created.items())))
            with self._save_lock:
                self.created = {n: z for (n, z), ok in zip(list(self.created.items()), gone) if not ok}
                self._save()
            self.images = [n for n in list(self.images) if not delete("image", n)]
            self._save()
            with ThreadPoolExecutor(max_workers=4) as pool:
                gone = list(pool.map(lambda n: delete("firewall", n), list(self.firewalls)))
            self.firewalls = [n for n, ok in zip(list(self.firewalls), gone) if not ok]
            self._spec = None
            self._save()
            self._restore_signal_handlers()
            if errors:
                raise CloudError(f"could not delete everything of run {self.run_id} ({errors[0]}); "
                                 f"`labkit down --backend gcp` retries, `labkit gc` deletes it after {self.expires}")
            shutil.rmtree(os.path.join(self.key_dir, self.run_id), ignore_errors=True)  # the run's SSH key
            return {"backend": self.name, "run_id": self.run_id, "deleted": sorted(deleted)}

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
