"""The one pricing module: what machines, disks, addresses and a cloud run cost (USD, dated).

Every price labkit quotes comes from here: a machine's hourly price (from
:mod:`labkit.machine_types`), its boot disk, its external IPv4 address, Compute
Engine's managed load balancing, the hourly cost of a cluster
(:func:`hourly_cost`, what :func:`labkit.backends.gcp.api_requests.plan` shows), of a
capacity plan (:func:`plan_cost`) and of running a profile (:func:`cloud_cost`). No
cloud call is made.
"""

from __future__ import annotations

from labkit import machine_types, profiles

#: Boot disk of every VM labkit creates (pd-standard).
DISK_GB = 10
PD_STANDARD_PER_GB_MONTH = 0.04  # USD, us-central1
PD_PRICES_AS_OF = "2026-11-01"  # the same list as machine_types.PRICES_AS_OF
EXTERNAL_IPV4_PER_HOUR = 0.005  # USD per in-use external IPv4 address (every VM here gets one)
EXTERNAL_IPV4_AS_OF = "2024-02-01"  # when Google started charging in-use external IPv4 at this rate
HOURS_PER_MONTH = 730
#: Compute Engine's managed (external Application) load balancing: a forwarding rule per hour;
#: its data processing (USD per GB) is left out: the lab's requests and answers are a few hundred bytes.
MANAGED_LB_RULE_PER_HOUR = 0.025
MANAGED_LB_PER_GB = 0.008
MANAGED_LB_AS_OF = "2026-11-01"


def disk_per_hour() -> float:
    """One boot disk's price per hour."""
    return DISK_GB * PD_STANDARD_PER_GB_MONTH / HOURS_PER_MONTH


def machine_hourly(machine_type: str) -> dict:
    """Price per hour of one machine of ``machine_type``: ``instance``, its ``disk``, its ``ipv4`` address, ``total``."""
    price = machine_types.get(machine_type).price_per_hour
    disk = disk_per_hour()
    return {"instance": price, "disk": disk, "ipv4": EXTERNAL_IPV4_PER_HOUR,
            "total": price + disk + EXTERNAL_IPV4_PER_HOUR}


def prices_as_of() -> dict:
    """When each list price was read."""
    return {"machine types": machine_types.PRICES_AS_OF, "pd-standard disks": PD_PRICES_AS_OF,
            "external IPv4": EXTERNAL_IPV4_AS_OF, "managed load balancing": MANAGED_LB_AS_OF}


def hourly_cost(machine_type: str, servers: int, balancer: bool, tester_machine_type: str | None = None,
                testers: int = 1) -> dict:
    """USD per hour of ``servers`` + the balancer (same type) + the ``testers`` tester machines: machines,
    boot disks, external IPv4s."""
    mt, tt = machine_types.get(machine_type), machine_types.get(tester_machine_type or machine_type)
    count = servers + (1 if balancer else 0)
    instances_cost = count * mt.price_per_hour + testers * tt.price_per_hour
    disks_cost = (count + testers) * disk_per_hour()
    ipv4_cost = (count + testers) * EXTERNAL_IPV4_PER_HOUR
    return {"currency": "USD",
            "prices_as_of": {k: v for k, v in prices_as_of().items() if k != "managed load balancing"},
            "instances_per_hour": round(instances_cost, 6), "disks_per_hour": round(disks_cost, 6),
            "external_ipv4_per_hour": round(ipv4_cost, 6),
            "total_per_hour": round(instances_cost + disks_cost + ipv4_cost, 6)}


def plan_cost(machines: list[tuple[str, str, int]], managed_lb: bool = False) -> dict:
    """``cost_per_hour`` (USD) of ``machines`` — (role, machine type, count) — each with its boot disk and
    external IPv4 address, plus a managed load balancer's forwarding rule when ``managed_lb``; and the breakdown."""
    items, total = [], 0.0
    for role, mt, count in machines:
        if count <= 0:
            continue
        h = machine_hourly(mt)
        items.append({"role": role, "machine_type": mt, "count": int(count), "per_machine": round(h["total"], 5),
                      "of_which_ipv4": round(h["ipv4"], 5), "subtotal": round(count * h["total"], 5)})
        total += count * h["total"]
    if managed_lb:
        items.append({"role": "managed load balancing", "machine_type": None, "count": 1,
                      "per_machine": MANAGED_LB_RULE_PER_HOUR, "of_which_ipv4": 0.0,
                      "subtotal": MANAGED_LB_RULE_PER_HOUR,
                      "note": f"forwarding rule; data processing ${MANAGED_LB_PER_GB}/GB not included"})
        total += MANAGED_LB_RULE_PER_HOUR
    return {"cost_per_hour": round(total, 4), "machines": items, "currency": "USD", "prices_as_of": prices_as_of()}


def cloud_cost(profile: str, machine_type: str = "f1-micro", rps_per_node: float = 100.0,
               setup_hours: float = 0.5, project: str = "my-project", zone: str = "us-central1-a") -> dict:
    """Estimated cost of running ``profile`` on Compute Engine (no cloud call is made).

    Hourly price from :func:`hourly_cost` for the largest cluster the profile uses; duration =
    setup time + every point's requests at an assumed ``rps_per_node`` per server (an
    assumption, stated in the result, not a measurement). The cluster is billed at its
    largest size throughout, an upper bound. ``project`` and ``zone`` do not change the price.
    """
    p = profiles.get(profile)
    top = max(p.nodes)
    cost = hourly_cost(machine_type, top, top > 1)
    hourly = cost["total_per_hour"]
    seconds = sum(max(p.requests, p.requests_per_user * c) / (rps_per_node * n) for n in p.nodes for c in p.levels_at(n))
    hours = setup_hours + seconds / 3600
    return {"profile": p.name, "machine_type": machine_type, "largest cluster": f"{top} servers + balancer + tester",
            "machines per hour": cost["instances_per_hour"], "disks per hour": cost["disks_per_hour"],
            "external IPv4 per hour": cost["external_ipv4_per_hour"],
            "per hour (USD)": round(hourly, 4), "assumed req/s per server": rps_per_node,
            "estimated hours": round(hours, 2), "estimated cost (USD)": round(hourly * hours, 2),
            "prices as of": ", ".join(f"{k} {v}" for k, v in cost["prices_as_of"].items())}


def cost_table(machine_type: str = "f1-micro", profile: str | None = None, **assumptions):
    """:func:`cloud_cost` for every profile (or only ``profile``), one row each (a DataFrame)."""
    import pandas as pd

    names = [profile] if profile is not None else list(profiles.PROFILES)
    return pd.DataFrame([cloud_cost(name, machine_type, **assumptions) for name in names])
