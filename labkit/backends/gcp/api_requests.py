"""Compute Engine request bodies for the handout's resources, as pure functions.

Nothing here talks to the network or needs credentials: :func:`plan` shows
exactly what a gcp run would create (the JSON bodies of the Compute API calls,
with the API's own field names) and what it costs per hour, and
:mod:`labkit.backends.gcp.backend` sends these same bodies. Every resource carries the
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

import fcntl
import ipaddress
import logging
import re
import socket
import struct
import time
import uuid

from labkit import machine_types
from labkit.errors import ConfigError
from labkit.pricing import (DISK_GB, EXTERNAL_IPV4_AS_OF, EXTERNAL_IPV4_PER_HOUR, HOURS_PER_MONTH,  # noqa: F401
                            PD_PRICES_AS_OF, PD_STANDARD_PER_GB_MONTH, hourly_cost)

IMAGE_FAMILY = "projects/ubuntu-os-cloud/global/images/family/ubuntu-2404-lts-amd64"
IMAGE_NAME = "lab02-restserver"  # the handout's; a run's image is image_name(run_id): lab02-restserver-<run id>
DISK_TYPE = "pd-standard"
LABEL_RUN, LABEL_EXPIRES = "labkit-run", "labkit-expires"
TAG_HTTP, TAG_SERVER, TAG_BALANCER, TAG_TESTER = "http-server", "labkit-server", "labkit-balancer", "labkit-tester"
log = logging.getLogger("labkit")
WORLD = "0.0.0.0/0"
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


def image_name(run_id: str, prefix: str = "") -> str:
    """The run's image: the handout's name plus the run id, so another run's image never collides."""
    return f"{prefix}{IMAGE_NAME}-{check_run_id(run_id)}"


def check_prefix(prefix: str) -> str:
    """An optional name prefix (two runs sharing a project): lowercase letters, digits, '-'."""
    if prefix and not re.fullmatch(r"[a-z][a-z0-9-]{0,20}", prefix):
        raise ConfigError(f"name prefix {prefix!r} must be up to 21 lowercase letters, digits or '-', "
                          "starting with a letter")
    return prefix or ""


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


def image_body(zone: str, source_instance: str, run_id: str, expires: str, name: str | None = None) -> dict:
    """``images.insert`` body: the handout's image (named for the run), made from a stopped server's boot disk."""
    return {"name": name or image_name(run_id), "sourceDisk": f"zones/{zone}/disks/{source_instance}",
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


def check_testers(testers) -> int:
    """``testers`` (tester machines, one ab process each) as a positive integer, or a ConfigError."""
    if isinstance(testers, bool) or not isinstance(testers, int) or not 1 <= testers <= 16:
        raise ConfigError(f"testers must be an integer between 1 and 16, not {testers!r}")
    return testers


def instance_names(nodes: int, prefix: str = "", testers: int = 1, balanced: bool = False) -> dict[str, list[str]]:
    """restserver-0..N-1, loadbalancer-0 (only with more than one server, or ``balanced``: one server
    behind nginx) and tester-0 (the handout's names; tester-0..k-1 when a point is measured by k
    tester machines)."""
    return {"server": [f"{prefix}restserver-{i}" for i in range(nodes)],
            "balancer": [f"{prefix}loadbalancer-0"] if nodes > 1 or balanced else [],
            "tester": [f"{prefix}tester-{i}" for i in range(check_testers(testers))]}


def plan(project: str, zone: str, nodes: int, machine_type: str = "f1-micro", run_id: str | None = None, *,
         now: float | None = None, ttl_hours: float = 4.0, ssh_user: str = "labkit", ssh_public_key: str = "",
         service_port: int = 80, tester_machine_type: str | None = None, name_prefix: str = "",
         ssh_source_ranges: list[str] | None = None, testers: int = 1, balanced: bool = False) -> dict:
    """What a gcp run would create, in order, and its estimated hourly cost. No network, no credentials.

    ``testers`` > 1: tester-0..k-1, one ab process each, for points measured by several
    load generators (design §6; their rows are merged exactly). ``balanced``: loadbalancer-0 even
    for one server (the point that separates the balancer's cost; no image is needed for it).

    The order is the handout's: firewall rules, restserver-0 / loadbalancer-0 / tester-0
    (in parallel), then -- for more than one server -- restserver-0 stopped, imaged
    (``lab02-restserver-<run id>``) and started, and the other servers cloned from the image.
    """
    if not project or not zone:
        raise ConfigError("plan needs a project and a zone")
    if not 1 <= nodes <= 16:
        raise ConfigError(f"nodes must be between 1 and 16, not {nodes}")
    run_id = check_run_id(run_id or new_run_id())
    expires = expires_at(now, ttl_hours)
    prefix = check_prefix(name_prefix)
    names = instance_names(nodes, prefix, testers, balanced)
    tester_type = tester_machine_type or machine_type
    kw = dict(ssh_user=ssh_user, ssh_public_key=ssh_public_key)
    image_id = image_name(run_id, prefix)
    image = f"projects/{project}/global/images/{image_id}"
    requests = [{"method": "firewalls.insert", "project": project, "body": b}
                for b in firewall_bodies(run_id, expires, service_port, ssh_source_ranges)]

    def inst(name, role, mt, source=IMAGE_FAMILY):
        return {"method": "instances.insert", "project": project, "zone": zone,
                "body": instance_body(name, zone, mt, run_id, expires, role, source_image=source, **kw)}

    first = names["server"][0]
    requests.append(inst(first, "server", machine_type))
    requests += [inst(n, "balancer", machine_type) for n in names["balancer"]]
    requests += [inst(n, "tester", tester_type) for n in names["tester"]]
    if nodes > 1:
        requests.append({"method": "instances.stop", "project": project, "zone": zone, "instance": first})
        requests.append({"method": "images.insert", "project": project,
                         "body": image_body(zone, first, run_id, expires, name=image_id)})
        requests.append({"method": "instances.start", "project": project, "zone": zone, "instance": first})
        requests += [inst(n, "server", machine_type, source=image) for n in names["server"][1:]]
    return {
        "project": project, "zone": zone, "run_id": run_id, "expires": expires, "nodes": nodes,
        "machine_type": machine_type, "testers": len(names["tester"]),
        "instances": names["server"] + names["balancer"] + names["tester"],
        "image": image_id if nodes > 1 else None,
        "firewalls": [r["body"]["name"] for r in requests if r["method"] == "firewalls.insert"],
        "requests": requests,
        "ssh_source_ranges": list(ssh_source_ranges or ["0.0.0.0/0"]),
        "cost": hourly_cost(machine_type, len(names["server"]), bool(names["balancer"]), tester_type,
                            len(names["tester"])),
    }


def _interface_ipv4s() -> list[str]:
    """This machine's own IPv4 addresses, read from its interfaces (no packet is sent)."""
    out = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for _, name in socket.if_nameindex():
            try:
                packed = fcntl.ioctl(s.fileno(), 0x8915, struct.pack("256s", name.encode()[:15]))  # SIOCGIFADDR
            except OSError:
                continue
            out.append(socket.inet_ntoa(packed[20:24]))
    return out


def ssh_source_ranges(explicit: list[str] | str | None = None, addresses: list[str] | None = None) -> list[str]:
    """Who may SSH to the run's machines (issue 15 item 9).

    ``explicit`` (``--ssh-source``, comma-separated or a list of CIDRs) wins. Otherwise the
    caller's public address, when this machine has one on an interface (``/32``); it is
    found without leaving the machine -- no "what is my IP" service is asked, so ``plan``
    and the tests stay on loopback. Behind NAT there is none: the world, with a warning.
    """
    if explicit:
        items = [x.strip() for x in (explicit.split(",") if isinstance(explicit, str) else explicit) if x.strip()]
        try:
            return [str(ipaddress.ip_network(x, strict=False)) for x in items]
        except ValueError as e:
            raise ConfigError(f"--ssh-source: {e} (give CIDRs such as 203.0.113.7/32)") from None
    for a in (_interface_ipv4s() if addresses is None else addresses):
        try:
            if ipaddress.ip_address(a).is_global:
                return [f"{a}/32"]
        except ValueError:
            continue
    log.warning("SSH to the lab's VMs is open to the world (%s): this machine has no public address of its own "
                "(it is behind NAT); pass --ssh-source YOUR.PUBLIC.IP/32 to narrow it", WORLD)
    return [WORLD]
