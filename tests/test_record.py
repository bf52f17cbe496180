"""labkit.record.Measurement: the results columns (design §7) as one typed, frozen record."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from labkit.errors import ConfigError
from labkit.record import COLUMNS, EXTRA_COLUMNS, PERCENTILES, Measurement, column_kinds


def test_the_fields_are_the_design_columns_in_order():
    assert COLUMNS == ("run_id", "started_at", "backend", "machine_type", "server", "workers", "nodes",
                       "concurrency", "requests", "complete", "failed", "non_2xx", "aborted", "attempts",
                       "time_taken_s", "rps", "mean_ms", "ab_mean_ms", *(f"p{p}_ms" for p in PERCENTILES),
                       "max_ms", "connect_mean_ms")
    assert EXTRA_COLUMNS == ("cpu_limited", "abort_reason", "repeat", "settle_s", "balancer_machine_type",
                             "tester_machine_type", "server_cpu_s", "balancer_cpu_s", "tester_cpu_s", "testers",
                             "host_cpu_ms_per_request", "steal_pct", "burst", "cpu_scale")
    assert tuple(f.name for f in dataclasses.fields(Measurement)) == COLUMNS + EXTRA_COLUMNS


def test_kinds_come_from_the_field_types():
    kinds = column_kinds()
    assert (kinds["nodes"].type, kinds["nodes"].required, kinds["nodes"].min) == (int, True, 1)
    assert (kinds["workers"].type, kinds["workers"].required, kinds["workers"].min) == (int, False, 0)
    assert (kinds["aborted"].type, kinds["aborted"].required) == (bool, True)
    assert (kinds["cpu_limited"].type, kinds["cpu_limited"].required) == (bool, False)
    assert kinds["started_at"].time and kinds["started_at"].type is str
    assert kinds["p98_ms"].done and not kinds["ab_mean_ms"].done and kinds["settle_s"].type is float


def test_values_are_checked_and_numpy_scalars_become_python_ones():
    m = Measurement(nodes=np.int64(3), mean_ms=np.float64(1.5), rps=200, aborted=np.bool_(False))
    assert (type(m.nodes), type(m.mean_ms), type(m.rps), type(m.aborted)) == (int, float, float, bool)
    for bad, needle in [({"nodes": "2"}, "nodes must be int"), ({"nodes": True}, "nodes must be int"),
                        ({"aborted": 1}, "aborted must be bool"), ({"nodes": None}, "nodes needs a value"),
                        ({"mean_ms": "fast"}, "mean_ms must be float"), ({"run_id": 7}, "run_id must be str")]:
        with pytest.raises(ConfigError, match=needle):
            Measurement(**bad)
    with pytest.raises(dataclasses.FrozenInstanceError):
        m.nodes = 4


def test_cells_json_and_replace():
    m = Measurement(run_id="r", nodes=2, concurrency=10, aborted=True, mean_ms=1.23456, cpu_limited=False)
    cells = m.to_cells()
    assert list(cells) == [*COLUMNS, *EXTRA_COLUMNS]
    assert (cells["run_id"], cells["nodes"], cells["aborted"], cells["mean_ms"]) == ("r", "2", "true", "1.235")
    assert (cells["cpu_limited"], cells["p98_ms"], cells["abort_reason"]) == ("false", "", "")
    data = m.to_json()
    assert data["nodes"] == 2 and data["mean_ms"] == 1.23456 and data["p98_ms"] is None
    assert m.replace(nodes=3).nodes == 3 and m.nodes == 2
