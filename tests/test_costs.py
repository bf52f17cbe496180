"""labkit.pricing: the cloud-cost estimate notebook 00 shows, computed without a cloud call."""

from __future__ import annotations

from labkit import profiles
from labkit import pricing as costs
from labkit.backends.gcp.api_requests import plan


def test_cloud_cost_prices_the_largest_cluster_for_the_estimated_time():
    c = costs.cloud_cost("full", "f1-micro", rps_per_node=100.0)
    hourly = plan(project="my-project", zone="us-central1-a", nodes=5, machine_type="f1-micro")["cost"]["total_per_hour"]
    seconds = sum(10000 * 13 / (100.0 * n) for n in (1, 2, 3, 4, 5))  # 13 levels x 10,000 requests per node count
    assert c["per hour (USD)"] == round(hourly, 4)
    assert c["estimated hours"] == round(0.5 + seconds / 3600, 2)
    assert c["estimated cost (USD)"] == round(hourly * (0.5 + seconds / 3600), 2)


def test_cost_table_has_one_row_per_profile():
    t = costs.cost_table("e2-small", rps_per_node=50.0)
    assert list(t["profile"]) == list(profiles.PROFILES)
    assert t.iloc[0].to_dict() == costs.cloud_cost(t.iloc[0]["profile"], "e2-small", rps_per_node=50.0)

