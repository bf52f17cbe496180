"""labkit.profiles: the sweep profiles and the table notebook 00 shows of them."""

from __future__ import annotations

import pytest

from labkit import profiles
from labkit.errors import ConfigError


def test_profiles_table_counts_points_and_requests():
    t = profiles.profiles_table().set_index("profile")
    # full: 65 grid points + 2 of one node behind nginx (c=10, 100) + 35 vertical, 10,000 requests each
    assert t.loc["full", "points (01+02)"] == 65 and t.loc["full", "requests in total"] == (65 + 2 + 35) * 10000
    assert t.loc["full", "1 node behind nginx"] == "10, 100" and t.loc["quick", "1 node behind nginx"] == "1, 20"
    assert t.loc["tiny", "points (01+02)"] == 4 and t.loc["tiny", "points (03)"] == 2
    # quick: 1 user → max(500, 5) = 500 requests, 20 users → max(500, 100) = 500
    quick = profiles.get("quick")
    assert [max(quick.requests, quick.requests_per_user * c) for c in quick.balancer_levels] == [500, 500]


def test_unknown_profile_names_the_known_ones():
    with pytest.raises(ConfigError, match="unknown profile 'huge'; known: full, quick, tiny"):
        profiles.get("huge")


def test_quick_refines_part_one_at_one_node_with_the_handouts_sla():
    from labkit.handout import PART1_SLA

    t = profiles.profiles_table().set_index("profile")
    assert t.loc["quick", "refines"] == f"{PART1_SLA} at 1 node(s)" and t.loc["full", "refines"] == ""
    assert (t["repeats"] == 1).all()
    assert profiles.get("quick").refine == PART1_SLA == "max<=1500 mean<200 p98<=300"


def test_quick_covers_both_questions():
    """Design §6: levels below the knee, five requests per user, 2,000 users at the largest node count,
    a 2-vCPU machine in the vertical part — and the table says which handout levels it skipped."""
    from labkit.backends.base import ClusterSpec
    from labkit.machine_types import MACHINE_TYPES
    from labkit.sweep import scale_grids

    q = profiles.get("quick")
    assert {1, 2, 5} <= set(q.levels_at(1)) and 2000 in q.levels_at(max(q.nodes))
    assert 2000 not in q.levels_at(2)
    assert any(MACHINE_TYPES[mt].vcpu >= 2 for mt, _, _ in q.vertical)
    grids = scale_grids(q, ClusterSpec())
    at = {(p.nodes, p.concurrency): p.requests for g in grids for p in g.points()}
    assert at[(1, 1)] == 500 and at[(1, 200)] == 1000 and at[(5, 2000)] == 10000  # max(500, 5 × users)
    assert sorted({n for n, _ in at}) == [1, 2, 3, 5] and (3, 2000) not in at
    assert profiles.skipped("quick", 5) == {"levels": [20, 100, 700, 1200, 1500, 2500, 3000], "nodes": [4]}
    assert profiles.skipped_text("quick", 1) == (
        "Profile quick: handout levels not measured at 1 node(s): 500, 700, 1000, 1200, 1500, 2000, 2500, 3000; "
        "handout node counts not measured: 4; levels added below or between the handout's: 1, 2, 5 "
        "(not tested, not extrapolated).")
    assert profiles.skipped_text("full", 3) == "Profile full: every handout level measured at 3 node(s)."
    t = profiles.profiles_table().set_index("profile")
    assert t.loc["quick", "requests per point"] == "max(500, 5 × users)"
