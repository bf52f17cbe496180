"""labkit.vertical: notebook 03's grids and the per-configuration table, on hand-made results."""

from __future__ import annotations

import pytest

from labkit import profiles, vertical
from labkit.errors import ConfigError
from labkit.results import load_results
from tests.support.analysis_data import make_row, write_csv


@pytest.fixture
def vertical_df(tmp_path):
    """The handout's f1-micro/flask rows (1 and 2 nodes) plus notebook 03's other configurations."""
    rows = [make_row(1, 10, mean=20.0), make_row(1, 2000, mean=4000.0), make_row(2, 10, mean=10.0, rps=999.0),
            make_row(1, 10, mean=1.0, machine_type="e2-medium", server="gunicorn", workers=3, rps=900.0),
            make_row(1, 2000, mean=1.0, machine_type="e2-medium", server="gunicorn", workers=3, rps=950.0),
            make_row(1, 10, mean=30.0, machine_type="e2-medium", server="flask", rps=300.0)]
    return load_results(write_csv(tmp_path / "r.csv", rows))


def test_vertical_table_averages_per_configuration(vertical_df):
    t = vertical.vertical_table(vertical_df, concurrency=(10,))
    assert list(t["machine_type"]) == ["f1-micro", "e2-medium", "e2-medium"]  # ordered by vCPU
    assert list(t["vcpu"]) == [0.2, 1.0, 1.0]
    assert list(t["server"]) == ["flask", "flask", "gunicorn"]
    assert list(t["rps@10"]) == [500.0, 300.0, 900.0]  # the 2-node row is not a vertical configuration
    assert list(t["mean_ms@10"]) == [20.0, 30.0, 1.0]
    with pytest.raises(ConfigError, match="no completed single-node rows"):
        vertical.vertical_table(vertical_df, concurrency=(7,))


def test_vertical_grids_follow_the_profile():
    tiny = profiles.get("tiny")
    v = vertical.vertical_grids("tiny")
    assert [(x.spec.machine_type, x.spec.server, x.spec.workers, x.nodes) for x in v] == \
        [("f1-micro", "flask", 1, (1,)), ("e2-medium", "gunicorn", 3, (1,))]
    assert all(x.concurrency == tiny.vertical_concurrency and x.requests == tiny.requests for x in v)
    assert [x.requests for x in vertical.vertical_grids("tiny", requests=20)] == [20, 20]
