"""labkit.reanalysis: which CSV notebook 04 re-opens, and the line describing it."""

from __future__ import annotations

from pathlib import Path

import pytest

from labkit import reanalysis
from labkit.errors import ConfigError
from labkit.results import load_results
from tests.analysis_data import make_row, write_csv

def test_reanalysis_csv_prefers_reference_then_latest_report_then_fallback(tmp_path):
    fallback = tmp_path / "runs" / "lab.csv"
    with pytest.raises(ConfigError, match="run the lab first"):
        reanalysis.reanalysis_csv(root=tmp_path, fallback=fallback)
    write_csv(fallback, [make_row()])
    assert reanalysis.reanalysis_csv(root=tmp_path, fallback=fallback) == fallback
    for stamp in ("20240101-000000", "20250101-000000"):
        write_csv(tmp_path / "reports" / stamp / "results.csv", [make_row()])
    assert reanalysis.reanalysis_csv(root=tmp_path, fallback=fallback) == \
        tmp_path / "reports" / "20250101-000000" / "results.csv"
    write_csv(tmp_path / "data" / "reference.csv", [make_row()])
    assert reanalysis.reanalysis_csv(root=tmp_path, fallback=fallback) == tmp_path / "data" / "reference.csv"
    assert reanalysis.reanalysis_csv("x.csv", root=tmp_path) == Path("x.csv")


def test_describe_results_names_what_the_csv_holds(tmp_path):
    csv = write_csv(tmp_path / "r.csv", [make_row(1, 10), make_row(2, 50), make_row(1, 10, server="gunicorn")])
    assert reanalysis.describe_results(load_results(csv), "r.csv") == \
        "r.csv: 3 rows of f1-micro/flask, f1-micro/gunicorn; node counts 1, 2; concurrency 10, 50"
