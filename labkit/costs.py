"""What a cloud run of the lab would cost (notebook 00), estimated without contacting the cloud."""

from __future__ import annotations

from . import profiles


def cloud_cost(profile: str, machine_type: str = "f1-micro", rps_per_node: float = 100.0,
               setup_hours: float = 0.5, project: str = "my-project", zone: str = "us-central1-a") -> dict:
    """Estimated cost of running ``profile`` on Compute Engine (no cloud call is made).

    Hourly price from :func:`labkit.gcp_requests.plan` for the largest cluster
    the profile uses; duration = setup time + every point's requests at an
    assumed ``rps_per_node`` per server (an assumption, stated in the result,
    not a measurement). The cluster is billed at its largest size throughout,
    an upper bound.
    """
    from .gcp_requests import plan

    p = profiles.get(profile)
    top = max(p.nodes)
    hourly = plan(project=project, zone=zone, nodes=top, machine_type=machine_type)["cost"]["total_per_hour"]
    seconds = sum(p.requests * len(p.concurrency) / (rps_per_node * n) for n in p.nodes)
    hours = setup_hours + seconds / 3600
    return {"profile": p.name, "machine_type": machine_type, "largest cluster": f"{top} servers + balancer + tester",
            "per hour (USD)": round(hourly, 4), "assumed req/s per server": rps_per_node,
            "estimated hours": round(hours, 2), "estimated cost (USD)": round(hourly * hours, 2)}


def cost_table(machine_type: str = "f1-micro", **assumptions):
    """:func:`cloud_cost` for every profile, one row each (a DataFrame); ``assumptions`` as there."""
    import pandas as pd

    return pd.DataFrame([cloud_cost(name, machine_type, **assumptions) for name in profiles.PROFILES])
