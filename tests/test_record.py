"""labkit.record.Measurement: the results columns (design §7) as one typed, frozen record."""

from __future__ import annotations

import dataclasses

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from labkit.errors import ConfigError
from labkit.record import COLUMNS, EXTRA_COLUMNS, PERCENTILES, Measurement, column_kinds
from labkit.results import append_row, load_results

REFERENCE = Path(__file__).resolve().parent.parent / "data" / "reference.csv"


def _every_column_set() -> Measurement:
    """A point with a value (not the default) in every column, of every type the record has."""
    values = {"run_id": "20261120T090000Z-a1b2", "started_at": "2026-11-20T09:00:01+00:00", "backend": "gcp",
              "machine_type": "e2-small", "server": "gunicorn", "workers": 3, "nodes": 4, "concurrency": 200,
              "requests": 2000, "complete": 1990, "failed": 10, "non_2xx": 3, "aborted": False, "attempts": 2,
              "time_taken_s": 7.25, "rps": 274.483, "mean_ms": 728.625, "ab_mean_ms": 730.5,
              **{f"p{p}_ms": 100.0 + p for p in PERCENTILES}, "max_ms": 1499.125, "connect_mean_ms": 0.5,
              "cpu_limited": True, "abort_reason": "retried: apr_socket_recv (104)", "repeat": 2, "settle_s": 1.75,
              "balancer_machine_type": "e2-medium", "tester_machine_type": "e2-standard-2", "server_cpu_s": 3.5,
              "balancer_cpu_s": 0.875, "tester_cpu_s": 2.125, "testers": 2, "host_cpu_ms_per_request": 1.125,
              "steal_pct": 0.25, "burst": True, "cpu_scale": 0.5}
    assert set(values) == set(COLUMNS + EXTRA_COLUMNS), "the test sets every column"
    return Measurement(**values)


def test_a_row_round_trips_through_the_csv_with_every_column_and_its_type(tmp_path):
    m = _every_column_set()
    append_row(tmp_path / "r.csv", m)
    append_row(tmp_path / "r.csv", m.replace(nodes=5, aborted=True, cpu_limited=None, burst=None, testers=None,
                                              **{c: None for c in ("rps", "mean_ms", "max_ms", "complete",
                                                                   *(f"p{p}_ms" for p in PERCENTILES))}))
    df = load_results(tmp_path / "r.csv")
    assert list(df.columns) == [*COLUMNS, *EXTRA_COLUMNS]
    row = df.iloc[0]
    for name, value in m.to_json().items():
        got = row[name]
        if name == "started_at":
            assert got == pd.Timestamp("2026-11-20T09:00:01Z"), name
        else:
            assert got == value and type(got.item() if hasattr(got, "item") else got) is type(value), \
                (name, got, value)
    assert str(df["nodes"].dtype) == "int64" and str(df["workers"].dtype) == "Int64"
    assert str(df["cpu_limited"].dtype) == "boolean" and str(df["burst"].dtype) == "boolean"
    assert df["aborted"].dtype == bool and str(df["run_id"].dtype) == "string"
    gone = df.iloc[1]  # the aborted row: its empty cells load as missing, not as 0 or False
    assert gone["aborted"] and gone["nodes"] == 5
    assert pd.isna(gone["mean_ms"]) and pd.isna(gone["complete"]) and pd.isna(gone["cpu_limited"])
    assert pd.isna(gone["burst"]) and pd.isna(gone["testers"])


def test_a_csv_written_before_the_appended_columns_still_loads_and_appends(tmp_path):
    old = tmp_path / "old.csv"
    full = _every_column_set()
    cells = full.to_cells()
    old.write_text(",".join(COLUMNS) + "\n" + ",".join(cells[c] for c in COLUMNS) + "\n")
    append_row(old, full.replace(nodes=2))  # a resumed sweep keeps the file's own header
    assert old.read_text().splitlines()[0] == ",".join(COLUMNS)
    df = load_results(old)
    assert list(df.columns) == [*COLUMNS, *EXTRA_COLUMNS] and list(df["nodes"]) == [4, 2]
    assert df[list(EXTRA_COLUMNS)].isna().all().all(), "columns the file lacks are empty"
    assert list(df["mean_ms"]) == [728.625, 728.625] and list(df["workers"]) == [3, 3]
    reference = load_results(REFERENCE)  # the committed reference run, written before `testers` existed
    assert len(reference) > 0 and reference["testers"].isna().all() and reference["nodes"].min() >= 1


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
