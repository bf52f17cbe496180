"""Compute Engine, one typed function per operation (the Compute samples' style).

``insert_instance``, ``stop_instance``, ``insert_image``... each wrap one API call;
:func:`wait` is the one wait helper (``operation.result(timeout=...)``), turning
quota and stock-out failures into :class:`~labkit.errors.QuotaError` /
:class:`~labkit.errors.StockoutError` with plain advice. :func:`create_instances`
creates in parallel, moving an instance to the next zone on a stock-out, and
:func:`gc` deletes every labelled resource whose expiry has passed. Request bodies
come from :mod:`labkit.backends.gcp.api_requests` (what ``labkit plan`` prints).

:class:`~labkit.backends.gcp.client.Compute` (from :mod:`labkit.backends.gcp.client`, which also decides
which endpoint may get credentials) holds the clients of one run; every function here
takes one.
"""

from __future__ import annotations

import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor

from labkit.backends.gcp import api_requests as req
from labkit.errors import CloudError, ConfigError, QuotaError, StockoutError
from labkit.backends.gcp.client import Compute, compute_api  # Compute: every function takes one (callers import it here too)

log = logging.getLogger("labkit")

POLL_MAX = 1.0  # seconds between operation polls, at most
QUOTA_MARKERS = ("QUOTA_EXCEEDED", "quotaExceeded", "Quota '", "quota exceeded")
STOCKOUT_MARKERS = ("ZONE_RESOURCE_POOL_EXHAUSTED", "RESOURCE_POOL_EXHAUSTED", "does not have enough resources")


class ConflictError(CloudError):
    """An insert answered 409: the name is taken (``owner`` is the labkit run that has it, if any)."""

    def __init__(self, message: str, name: str = "", owner: str | None = None):
        super().__init__(message)
        self.name, self.owner = name, owner


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


SERVICE_DISABLED_MARKERS = ("SERVICE_DISABLED", "accessNotConfigured", "has not been used in project")


def translate(exc: BaseException, what: str, zone: str | None = None, project: str | None = None) -> CloudError:
    """Map a Compute API failure to an error whose message says what to do."""
    text = _error_text(exc) + " " + " ".join(str(d) for d in (getattr(exc, "details", None) or []))
    if any(m in text for m in SERVICE_DISABLED_MARKERS):
        p = project or "PROJECT"
        return CloudError(f"{what}: the Compute Engine API is not enabled in project {p}: run "
                          f"`gcloud services enable compute.googleapis.com --project {p}` (or enable it at "
                          "https://console.cloud.google.com/apis/library/compute.googleapis.com), then retry")
    if getattr(exc, "code", None) == 409 or "alreadyExists" in text or "already exists" in text:
        return ConflictError(f"{what}: the name is already taken in this project ({text.strip()[:200]})")
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
        project = kw.get("project") or getattr(kw.get("request"), "project", None)
        raise translate(e, what, where, project) from e


def is_not_found(exc: BaseException) -> bool:
    """Whether a CloudError says the resource does not exist (404)."""
    cause = exc.__cause__
    return getattr(cause, "code", None) == 404 or "was not found" in str(exc)


def get_zone(c: Compute, project: str, zone: str):
    """The zone ``zone`` of ``project`` (404 when there is no such zone; 403 when the API is off)."""
    return _call(c.zones.get, f"zone {zone}", zone, project=project, zone=zone)


def check_zones(c: Compute, project: str, zones: list[str]) -> list[str]:
    """The zones of ``zones`` that exist (one read each, before anything is created).

    Unknown ones are dropped with a warning; none known is one line of advice.
    The first call also tells a project without the Compute API (one line, from translate).
    """
    known = []
    for zone in zones:
        try:
            get_zone(c, project, zone)
            known.append(zone)
        except CloudError as e:
            if not is_not_found(e):
                raise
            log.warning("zone %s does not exist in project %s; skipping it", zone, project)
    if not known:
        raise ConfigError(f"none of the zones {', '.join(zones)} exists: pick one from `gcloud compute zones "
                          "list` (e.g. --zone us-central1-a,us-central1-b)")
    return known


def run_of(resource) -> str | None:
    """The labkit run an instance, image or firewall rule belongs to (None: not labkit's)."""
    labels = getattr(resource, "labels", None)
    if labels is not None and LABEL_RUN_KEY in labels:
        return labels[LABEL_RUN_KEY]
    description = getattr(resource, "description", None)
    if description:
        return req.parse_firewall_description(description).get(LABEL_RUN_KEY)
    return None


LABEL_RUN_KEY = req.LABEL_RUN


def get_resource(c: Compute, project: str, kind: str, name: str, zone: str | None = None):
    """The instance, image or firewall rule ``name``."""
    if kind == "instance":
        return get_instance(c, project, zone, name)
    if kind == "image":
        return _call(c.images.get, f"get image {name}", project=project, image=name)
    return _call(c.firewalls.get, f"get firewall {name}", project=project, firewall=name)


def owner(c: Compute, project: str, kind: str, name: str, zone: str | None = None) -> str | None:
    """The run that owns ``name`` ("" when it exists without a labkit label; None when it does not exist)."""
    try:
        return run_of(get_resource(c, project, kind, name, zone)) or ""
    except CloudError as e:
        if is_not_found(e):
            return None
        raise


# -- one function per operation -------------------------------------------------------


def insert_instance(c: Compute, project: str, zone: str, body: dict):
    """Send the insert of the instance ``body`` (from ``gcp_requests.instance_body``); return its operation."""
    res = compute_api().Instance.from_json(json.dumps(body))
    return _call(c.instances.insert, f"create {body['name']}", zone, project=project, zone=zone,
                 instance_resource=res)


def get_instance(c: Compute, project: str, zone: str, name: str):
    """The instance ``name`` (its network interfaces give the internal and external IPs)."""
    return _call(c.instances.get, f"get {name}", zone, project=project, zone=zone, instance=name)


def stop_instance(c: Compute, project: str, zone: str, name: str):
    """Send the stop of ``name`` (its disk can then be imaged); return the operation."""
    return _call(c.instances.stop, f"stop {name}", zone, project=project, zone=zone, instance=name)


def start_instance(c: Compute, project: str, zone: str, name: str):
    """Send the start of a stopped ``name``; return the operation."""
    return _call(c.instances.start, f"start {name}", zone, project=project, zone=zone, instance=name)


def delete_instance(c: Compute, project: str, zone: str, name: str):
    """Send the delete of ``name`` (its boot disk goes with it); return the operation."""
    return _call(c.instances.delete, f"delete {name}", zone, project=project, zone=zone, instance=name)


def run_resources(c: Compute, project: str, run_id: str) -> list[tuple[str, str, str | None]]:
    """``(kind, name, zone)`` of everything labelled with ``run_id`` (what `labkit down` finds by label)."""
    found = [("instance", i.name, zone) for zone, i in list_labkit_instances(c, project)
             if i.labels.get(req.LABEL_RUN) == run_id]
    found += [("image", i.name, None) for i in list_labkit_images(c, project) if i.labels.get(req.LABEL_RUN) == run_id]
    found += [("firewall", f.name, None) for f in list_labkit_firewalls(c, project)
              if req.parse_firewall_description(f.description).get(req.LABEL_RUN) == run_id]
    return found


def list_labkit_instances(c: Compute, project: str) -> list[tuple[str, object]]:
    """(zone, instance) for every instance with a labkit-run label, in all zones."""
    request = compute_api().AggregatedListInstancesRequest(project=project, filter=f"labels.{req.LABEL_RUN}:*")
    pager = _call(c.instances.aggregated_list, "list instances", request=request)
    out = []
    for scope, scoped in pager:
        for inst in scoped.instances:
            if req.LABEL_RUN in inst.labels:
                out.append((scope.rsplit("/", 1)[-1], inst))
    return out


def host_keys(c: Compute, project: str, zone: str, name: str) -> list[str]:
    """The instance's SSH host keys (``"TYPE BASE64"``) from its guest attributes."""
    request = compute_api().GetGuestAttributesInstanceRequest(project=project, zone=zone, instance=name,
                                                              query_path="hostkeys/")
    attrs = _call(c.instances.get_guest_attributes, f"read host keys of {name}", zone, request=request)
    return [f"{i.key} {i.value}" for i in attrs.query_value.items if i.namespace == "hostkeys"]


def insert_image(c: Compute, project: str, body: dict):
    """Send the insert of the image ``body`` (from a stopped server's disk); return the operation."""
    res = compute_api().Image.from_json(json.dumps(body))
    return _call(c.images.insert, f"create image {body['name']}", project=project, image_resource=res)


def delete_image(c: Compute, project: str, name: str):
    """Send the delete of the image ``name``; return the operation."""
    return _call(c.images.delete, f"delete image {name}", project=project, image=name)


def list_labkit_images(c: Compute, project: str):
    """Every image in ``project`` carrying a labkit run label."""
    request = compute_api().ListImagesRequest(project=project, filter=f"labels.{req.LABEL_RUN}:*")
    return [i for i in _call(c.images.list, "list images", request=request)
            if req.LABEL_RUN in i.labels]


def list_labkit_firewalls(c: Compute, project: str):
    """Every firewall rule in ``project`` whose description names a labkit run (rules have no labels)."""
    return [f for f in _call(c.firewalls.list, "list firewalls", project=project)
            if req.parse_firewall_description(f.description)]


def delete_firewall(c: Compute, project: str, name: str):
    """Send the delete of the firewall rule ``name``; return the operation."""
    return _call(c.firewalls.delete, f"delete firewall {name}", project=project, firewall=name)


def insert_firewall(c: Compute, project: str, body: dict):
    """Send the insert of the firewall rule ``body``; return the operation."""
    res = compute_api().Firewall.from_json(json.dumps(body))
    return _call(c.firewalls.insert, f"create firewall {body['name']}", project=project, firewall_resource=res)


# -- composite steps ------------------------------------------------------------------


def create_instance(c: Compute, project: str, zones: list[str], make_body, timeout: float = 300.0,
                    on_insert=None, on_done=None) -> str:
    """Create one instance, moving to the next zone on a stock-out; return the zone used.

    ``on_insert(name, zone)`` is called just before each insert is sent, so the
    caller can record the instance before it exists (and delete it if interrupted);
    ``on_done(name, zone, created)`` when that insert's outcome is known: ``created``
    False means the instance does not exist (a failed insert: forget it), None that
    the outcome is unknown (a wait that timed out: keep it recorded).
    """
    last = None
    for zone in zones:
        body = make_body(zone)
        name = body["name"]
        if on_insert is not None:
            on_insert(name, zone)
        outcome = None
        try:
            try:
                op = insert_instance(c, project, zone, body)
            except CloudError:
                outcome = False  # the insert was refused: nothing was created
                raise
            try:
                wait(op, f"create {name}", timeout, zone)
                outcome = True
            except CloudError as e:
                outcome = False if "not done after" not in str(e) else None
                raise
            log.info("created %s in %s", name, zone)
            return zone
        except ConflictError as e:
            e.name = name
            raise
        except StockoutError as e:
            log.warning("%s; trying the next zone", e)
            last = e
        finally:
            if on_done is not None:
                on_done(name, zone, outcome)
    raise StockoutError(f"no capacity in any of {', '.join(zones)}: {last}")


def create_instances(c: Compute, project: str, zones: list[str], makers: dict, timeout: float = 300.0,
                     on_insert=None, on_done=None) -> dict:
    """Create several instances in parallel: ``makers`` maps name -> ``make_body(zone)``; returns name -> zone."""
    if not makers:
        return {}
    with ThreadPoolExecutor(max_workers=min(16, len(makers))) as pool:
        futures = {name: pool.submit(create_instance, c, project, zones, mk, timeout, on_insert, on_done)
                   for name, mk in makers.items()}
        out, errors = {}, []
        for name, f in futures.items():
            try:
                out[name] = f.result()
            except CloudError as e:
                errors.append(e)
    if errors:
        first = [e for e in errors if isinstance(e, (ConflictError, QuotaError))]
        err = (first or errors)[0]
        err.created = out  # what did get created, so the caller can delete it
        raise err
    return out


def expired_resources(c: Compute, project: str, now: float | None = None) -> list[tuple[str, str, str | None]]:
    """``(kind, name, zone)`` of every labkit-labelled resource whose expiry has passed.

    Instances first, then images, then firewall rules: the order they are deleted in.
    """
    now = time.time() if now is None else now

    def expired(value) -> bool:
        try:
            return int(value) < now
        except (TypeError, ValueError):
            return False

    found = [("instance", i.name, zone) for zone, i in list_labkit_instances(c, project)
             if expired(i.labels.get(req.LABEL_EXPIRES))]
    found += [("image", i.name, None) for i in list_labkit_images(c, project)
              if expired(i.labels.get(req.LABEL_EXPIRES))]
    found += [("firewall", f.name, None) for f in list_labkit_firewalls(c, project)
              if expired(req.parse_firewall_description(f.description).get(req.LABEL_EXPIRES))]
    return found


def delete_resource(c: Compute, project: str, kind: str, name: str, zone: str | None = None):
    """Send the delete of one instance, image or firewall rule; return its operation."""
    if kind == "instance":
        return delete_instance(c, project, zone, name)
    if kind == "image":
        return delete_image(c, project, name)
    return delete_firewall(c, project, name)


def gc(project: str, now: float | None = None, compute: Compute | None = None, timeout: float = 300.0,
       dry_run: bool = False, endpoint: str | None = None) -> list[str]:
    """Delete every labkit-labelled instance, image and firewall rule whose expiry has passed.

    Returns what was deleted (``"instance NAME"``, ``"image NAME"``, ``"firewall NAME"``);
    with ``dry_run`` only lists what would be, deleting nothing. ``endpoint`` is
    ``settings.gcp_api_endpoint`` when no ``compute`` is given.
    """
    c = compute or Compute(endpoint=endpoint)
    found = expired_resources(c, project, now)
    if dry_run:
        return [f"{kind} {name}" for kind, name, _ in found]
    deleted = []
    instances = [(delete_resource(c, project, *r), r) for r in found if r[0] == "instance"]  # sent together
    for op, (kind, name, zone) in instances:
        wait(op, f"delete {kind} {name}", timeout, zone)
        deleted.append(f"{kind} {name}")
    for kind, name, zone in (r for r in found if r[0] != "instance"):
        wait(delete_resource(c, project, kind, name, zone), f"delete {kind} {name}", timeout, zone)
        deleted.append(f"{kind} {name}")
    for d in deleted:
        log.info("gc deleted %s", d)
    return deleted
