"""labkit.profiles: the sweep profiles and the table notebook 00 shows of them."""

from __future__ import annotations

import pytest

from labkit import profiles
from labkit.errors import ConfigError


def test_profiles_table_counts_points_and_requests():
    t = profiles.profiles_table().set_index("profile")
    assert t.loc["full", "points (01+02)"] == 65 and t.loc["full", "requests in total"] == (65 + 35) * 10000
    assert t.loc["tiny", "points (01+02)"] == 4 and t.loc["tiny", "points (03)"] == 2


def test_unknown_profile_names_the_known_ones():
    with pytest.raises(ConfigError, match="unknown profile 'huge'; known: full, quick, tiny"):
        profiles.get("huge")


def test_quick_refines_part_one_at_one_node_with_the_handouts_sla():
    from labkit.handout import PART1_SLA

    t = profiles.profiles_table().set_index("profile")
    assert t.loc["quick", "refines"] == f"{PART1_SLA} at 1 node(s)" and t.loc["full", "refines"] == ""
    assert (t["repeats"] == 1).all()
    assert profiles.get("quick").refine == PART1_SLA == "max<=1500 mean<200 p98<=300"
