"""Compute Engine request bodies for the handout's resources, as pure functions.

Nothing here talks to the network or needs credentials: :func:`plan` shows
exactly what a gcp run would create (the JSON bodies of the Compute API calls,
with the API's own field names) and what it costs per hour, and
:mod:`labkit.backends.gcp` sends these same bodies. Every resource carries the
run id and an expiry (labels on instances and images; firewall rules have no
labels, so their name and description carry them) so that ``gc`` can delete
what a crashed run left behind.

Network exposure: the balancer gets the handout's ``http-server`` tag (port 80
open to the world, like "HTTP traffic enabled"); servers are tagged
``labkit-server`` and reachable on the service port only from machines tagged
``labkit-balancer`` or ``labkit-tester``; the tester accepts no HTTP at all
(the handout's "HTTP traffic disabled"). SSH (tcp:22) is open to
``ssh_source_ranges`` on the labkit-tagged machines.
"""

from __future__ import annotations

import re
import time
import uuid

from . import machine_types
from .errors import ConfigError

IMAGE_FAMILY = "projects/ubuntu-os-cloud/global/images/family/ubuntu-2404-lts-amd64"
IMAGE_NAME = "lab02-restserver"
DISK_GB = 10
DISK_TYPE = "pd-standard"
PD_STANDARD_PER_GB_MONTH = 0.04  # USD, us-central1, same date as machine_types.PRICES_AS_OF
HOURS_PER_MONTH = 730
LABEL_RUN, LABEL_EXPIRES = "labkit-run", "labkit-expires"
TAG_HTTP, TAG_SERVER, TAG_BALANCER, TAG_TESTER = "http-server", "labkit-server", "labkit-balancer", "labkit-tester"
_LABEL_RE = re.compile(r"^[a-z][a-z0-9-]{0,30}$")


def new_run_id() -> str:
    """A fresh run id usable in labels and resource names."""
    return "r" + uuid.uuid4().hex[:10]


def check_run_id(run_id: str) -> str:
    if not _LABEL_RE.match(run_id or ""):
        raise ConfigError(f"run id {run_id!r} must be 1-31 lowercase letters, digits or '-', starting with a letter")
    return run_id


def expires_at(now: float | None = None, ttl_hours: float = 4.0) -> str:
    """The expiry label value: epoch seconds, as a string (labels hold strings)."""
    return str(int((time.time() if now is None else now) + ttl_hours * 3600))


def labels(run_id: str, expires: str) -> dict[str, str]:
    return {LABEL_RUN: check_run_id(run_id), LABEL_EXPIRES: str(expires)}


def machine_type_url(zone: str, machine_type: str) -> str:
    machine_types.get(machine_type)  # refuse unknown types early, with the list of known ones
    return f"zones/{zone}/machineTypes/{machine_type}"


def role_tags(role: str) -> list[str]:
    """Network tags per role: see the module docstring for what each one opens."""
    return {"server": [TAG_SERVER], "balancer": [TAG_HTTP, TAG_BALANCER], "tester": [TAG_TESTER]}[role]


def instance_body(name: str, zone: str, machine_type: str, run_id: str, expires: str, role: str, *,
                  source_image: str = IMAGE_FAMILY, ssh_user: str = "labkit", ssh_public_key: str = "",
                  external_ip: bool = True, network: str = "global/networks/default") -> dict:
    """The ``instances.insert`` body for one machine (Compute API field names)."""
    body = {
        "name": name,
        "machineType": machine_type_url(zone, machine_type),
        "labels": labels(run_id, expires),
        "tags": {"items": role_tags(role)},
        "disks": [{
            "boot": True,
            "autoDelete": True,
            "initializeParams": {"sourceImage": source_image, "diskSizeGb": str(DISK_GB),
                                 "diskType": f"zones/{zone}/diskTypes/{DISK_TYPE}",
                                 "labels": labels(run_id, expires)},
        }],
        "networkInterfaces": [{
            "network": network,
            "accessConfigs": [{"name": "External NAT", "type": "ONE_TO_ONE_NAT"}] if external_ip else [],
        }],
        "metadata": {"items": [
            {"key": "ssh-keys", "value": f"{ssh_user}:{ssh_public_key.strip()} {ssh_user}" if ssh_public_key
             else f"{ssh_user}:<your public key>"},
            {"key": "enable-guest-attributes", "value": "TRUE"},
        ]},
    }
    return body


def image_body(zone: str, source_instance: str, run_id: str, expires: str, name: str = IMAGE_NAME) -> dict:
    """``images.insert`` body: the handout's image, made from a stopped server's boot disk."""
    return {"name": name, "sourceDisk": f"zones/{zone}/disks/{source_instance}",
            "description": "labkit: restserver with its virtualenv, from the handout's restserver-0",
            "labels": labels(run_id, expires)}


def firewall_description(run_id: str, expires: str) -> str:
    return f"labkit {LABEL_RUN}={run_id} {LABEL_EXPIRES}={expires}"


def parse_firewall_description(text: str) -> dict[str, str]:
    """Read back the run id and expiry :func:`firewall_description` wrote ({} if not labkit's)."""
    if not (text or "").startswith("labkit "):
        return {}
    return dict(part.split("=", 1) for part in text.split()[1:] if "=" in part)


def firewall_bodies(run_id: str, expires: str, service_port: int = 80,
                    ssh_source_ranges: list[str] | None = None, network: str = "global/networks/default") -> list[dict]:
    """The run's three firewall rules: HTTP to the balancer, service port from balancer/tester, SSH."""
    check_run_id(run_id)
    desc = firewall_description(run_id, expires)
    common = {"network": network, "direction": "INGRESS", "description": desc}
    return [
        {**common, "name": f"labkit-{run_id}-http", "priority": 1000,
         "allowed": [{"IPProtocol": "tcp", "ports": ["80"]}],
         "sourceRanges": ["0.0.0.0/0"], "targetTags": [TAG_HTTP]},
        {**common, "name": f"labkit-{run_id}-servers", "priority": 1000,
         "allowed": [{"IPProtocol": "tcp", "ports": [str(service_port)]}],
         "sourceTags": [TAG_BALANCER, TAG_TESTER], "targetTags": [TAG_SERVER]},
        {**common, "name": f"labkit-{run_id}-ssh", "priority": 1000,
         "allowed": [{"IPProtocol": "tcp", "ports": ["22"]}],
         "sourceRanges": list(ssh_source_ranges or ["0.0.0.0/0"]),
         "targetTags": [TAG_SERVER, TAG_BALANCER, TAG_TESTER]},
    ]


def instance_names(nodes: int) -> dict[str, list[str]]:
    """restserver-0..N-1, loadbalancer-0 (only with more than one server) and tester-0."""
    return {"server": [f"restserver-{i}" for i in range(nodes)],
            "balancer": ["loadbalancer-0"] if nodes > 1 else [], "tester": ["tester-0"]}


def plan(project: str, zone: str, nodes: int, machine_type: str = "f1-micro", run_id: str | None = None, *,
         now: float | None = None, ttl_hours: float = 4.0, ssh_user: str = "labkit", ssh_public_key: str = "",
         service_port: int = 80, tester_machine_type: str | None = None) -> dict:
    """What a gcp run would create, in order, and its estimated hourly cost. No network, no credentials."""
    if not project or not zone:
        raise ConfigError("plan needs a project and a zone")
    if not 1 <= nodes <= 16:
        raise ConfigError(f"nodes must be between 1 and 16, not {nodes}")
    run_id = check_run_id(run_id or new_run_id())
    expires = expires_at(now, ttl_hours)
    names = instance_names(nodes)
    tester_type = tester_machine_type or machine_type
    kw = dict(ssh_user=ssh_user, ssh_public_key=ssh_public_key)
    image = f"projects/{project}/global/images/{IMAGE_NAME}"
    requests = [{"method": "firewalls.insert", "project": project, "body": b}
                for b in firewall_bodies(run_id, expires, service_port)]

    def inst(name, role, mt, source=IMAGE_FAMILY):
        return {"method": "instances.insert", "project": project, "zone": zone,
                "body": instance_body(name, zone, mt, run_id, expires, role, source_image=source, **kw)}

    requests.append(inst("restserver-0", "server", machine_type))
    requests += [inst(n, "balancer", machine_type) for n in names["balancer"]]
    requests += [inst(n, "tester", tester_type) for n in names["tester"]]
    if nodes > 1:
        requests.append({"method": "instances.stop", "project": project, "zone": zone, "instance": "restserver-0"})
        requests.append({"method": "images.insert", "project": project,
                         "body": image_body(zone, "restserver-0", run_id, expires)})
        requests.append({"method": "instances.start", "project": project, "zone": zone, "instance": "restserver-0"})
        requests += [inst(n, "server", machine_type, source=image) for n in names["server"][1:]]
    mt, tt = machine_types.get(machine_type), machine_types.get(tester_type)
    count = len(names["server"]) + len(names["balancer"])
    per_disk = DISK_GB * PD_STANDARD_PER_GB_MONTH / HOURS_PER_MONTH
    instances_cost = count * mt.price_per_hour + tt.price_per_hour
    disks_cost = (count + 1) * per_disk
    return {
        "project": project, "zone": zone, "run_id": run_id, "expires": expires, "nodes": nodes,
        "machine_type": machine_type,
        "instances": names["server"] + names["balancer"] + names["tester"],
        "image": IMAGE_NAME if nodes > 1 else None,
        "firewalls": [r["body"]["name"] for r in requests if r["method"] == "firewalls.insert"],
        "requests": requests,
        "cost": {"currency": "USD", "prices_as_of": machine_types.PRICES_AS_OF,
                 "instances_per_hour": round(instances_cost, 6), "disks_per_hour": round(disks_cost, 6),
                 "total_per_hour": round(instances_cost + disks_cost, 6)},
    }
