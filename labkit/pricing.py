"""What a cloud run of the lab would cost (notebook 00), estimated without contacting the cloud."""

from __future__ import annotations

from labkit import profiles


def cloud_cost(profile: str, machine_type: str = "f1-micro", rps_per_node: float = 100.0,
               setup_hours: float = 0.5, project: str = "my-project", zone: str = "us-central1-a") -> dict:
    """Estimated cost of running ``profile`` on Compute Engine (no cloud call is made).

    Hourly price from :func:`labkit.backends.gcp.api_requests.plan` for the largest cluster
    the profile uses; duration = setup time + every point's requests at an
    assumed ``rps_per_node`` per server (an assumption, stated in the result,
    not a measurement). The cluster is billed at its largest size throughout,
    an upper bound.
    """
    from labkit.backends.gcp.api_requests import plan

    p = profiles.get(profile)
    top = max(p.nodes)
    cost = plan(project=project, zone=zone, nodes=top, machine_type=machine_type,
                ssh_source_ranges=["0.0.0.0/0"])["cost"]  # the rule's source does not change the price
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
    """:func:`cloud_cost` for every profile (or only ``profile``), one row each (a DataFrame).

    Priced from :func:`labkit.backends.gcp.api_requests.plan` (machines, disks and the external IPv4
    address every VM gets); no cloud call is made. ``assumptions`` as in :func:`cloud_cost`.
    """
    import pandas as pd

    names = [profile] if profile is not None else list(profiles.PROFILES)
    return pd.DataFrame([cloud_cost(name, machine_type, **assumptions) for name in names])
