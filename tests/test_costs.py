"""labkit.pricing: the cloud-cost estimate notebook 00 shows, computed without a cloud call.

The expected figures are worked out by hand from the handout's grid and the published
prices (f1-micro $0.0076/h, e2-small $0.01675/h, an in-use external IPv4 address $0.005/h),
not by re-running the module's formula.
"""

from __future__ import annotations

import pytest

from labkit import pricing, profiles
from labkit.errors import ConfigError


def test_estimated_hours_are_setup_plus_the_handout_grid_at_the_assumed_rate():
    # full: 13 levels x 10,000 requests at each of 1..5 nodes, n nodes serving n x 100 req/s:
    # 130,000 s x (1 + 1/2 + 1/3 + 1/4 + 1/5) / 100 = 2,968.3 s = 0.8245 h, plus half an hour of setup.
    assert pricing.cloud_cost("full", "f1-micro", rps_per_node=100.0)["estimated hours"] == 1.32
    # twice the rate halves the measuring time; no setup leaves only it: 1,484.2 s = 0.41 h
    assert pricing.cloud_cost("full", "f1-micro", rps_per_node=200.0, setup_hours=0)["estimated hours"] == 0.41
    # tiny: 2 levels x 100 requests at 1 and 2 nodes = 3 s, nothing next to the setup
    assert pricing.cloud_cost("tiny", "f1-micro")["estimated hours"] == 0.5


def test_the_largest_cluster_is_billed_per_machine_with_one_address_each():
    full, tiny = pricing.cloud_cost("full", "f1-micro"), pricing.cloud_cost("tiny", "f1-micro")
    assert full["largest cluster"] == "5 servers + balancer + tester"  # 7 machines
    assert tiny["largest cluster"] == "2 servers + balancer + tester"  # 4 machines
    assert full["machines per hour"] == pytest.approx(7 * 0.0076)
    assert tiny["machines per hour"] == pytest.approx(4 * 0.0076)
    assert full["external IPv4 per hour"] == pytest.approx(7 * 0.005)
    assert full["disks per hour"] == pytest.approx(tiny["disks per hour"] * 7 / 4)
    for c in (full, tiny):
        parts = c["machines per hour"] + c["disks per hour"] + c["external IPv4 per hour"]
        assert c["per hour (USD)"] == pytest.approx(parts, abs=1e-4)
        assert c["estimated cost (USD)"] == pytest.approx(c["per hour (USD)"] * c["estimated hours"], abs=0.01)


def test_a_dearer_machine_type_costs_more_for_the_same_time():
    micro, small = pricing.cloud_cost("full", "f1-micro"), pricing.cloud_cost("full", "e2-small")
    assert small["estimated hours"] == micro["estimated hours"], "the time is the assumed rate's, not the type's"
    assert small["machines per hour"] == pytest.approx(7 * 0.01675)
    assert small["disks per hour"] == micro["disks per hour"]
    assert small["external IPv4 per hour"] == micro["external IPv4 per hour"]
    assert small["estimated cost (USD)"] > micro["estimated cost (USD)"]


@pytest.mark.parametrize("args, message", [(("nope", "f1-micro"), "unknown profile 'nope'"),
                                           (("full", "zz-9"), "unknown machine type 'zz-9'")])
def test_bad_input_is_one_line_naming_what_is_known(args, message):
    with pytest.raises(ConfigError, match=message) as err:
        pricing.cloud_cost(*args)
    assert "\n" not in str(err.value) and "known:" in str(err.value)


def test_cost_table_has_one_row_per_profile_or_the_one_asked_for():
    t = pricing.cost_table("e2-small", rps_per_node=50.0)
    assert list(t["profile"]) == list(profiles.PROFILES)
    assert set(t["machine_type"]) == {"e2-small"} and set(t["assumed req/s per server"]) == {50.0}
    assert list(pricing.cost_table("e2-small", profile="tiny")["profile"]) == ["tiny"]
