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
