"""labkit.dashboard.reanalysis: which CSV notebook 04 re-opens, and the line describing it."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from labkit.dashboard import reanalysis
from labkit.errors import ConfigError
from labkit.results import load_results
from tests.support.analysis_data import make_row, write_csv

def test_reanalysis_csv_prefers_own_newest_results_then_reference(tmp_path):
    import os

    fallback = tmp_path / "runs" / "lab.csv"
    with pytest.raises(ConfigError, match="run the lab first"):
        reanalysis.reanalysis_csv(root=tmp_path, fallback=fallback)
    write_csv(tmp_path / "data" / "reference.csv", [make_row()])
    assert reanalysis.reanalysis_csv(root=tmp_path, fallback=fallback) == tmp_path / "data" / "reference.csv"
    write_csv(fallback, [make_row()])
    os.utime(fallback, (1_000, 1_000))
    assert reanalysis.reanalysis_csv(root=tmp_path, fallback=fallback) == fallback  # own results beat the reference
    for i, stamp in enumerate(("20240101-000000", "20250101-000000")):
        p = write_csv(tmp_path / "reports" / stamp / "results.csv", [make_row()])
        os.utime(p, (2_000 + i, 2_000 + i))
    assert reanalysis.reanalysis_csv(root=tmp_path, fallback=fallback) == \
        tmp_path / "reports" / "20250101-000000" / "results.csv"
    os.utime(fallback, (3_000, 3_000))  # the notebooks' CSV was written last
    assert reanalysis.reanalysis_csv(root=tmp_path, fallback=fallback) == fallback
    assert reanalysis.reanalysis_csv("x.csv", root=tmp_path) == Path("x.csv")
    assert [p.relative_to(tmp_path).as_posix() for p in reanalysis.candidate_csvs(tmp_path, fallback)] == [
        "runs/lab.csv", "reports/20250101-000000/results.csv", "reports/20240101-000000/results.csv",
        "data/reference.csv"]


def test_provenance_text_and_overlaid_sources(tmp_path):
    import json

    a = write_csv(tmp_path / "data" / "reference.csv", [make_row(1, 10), make_row(2, 10)])
    b = write_csv(tmp_path / "runs" / "lab.csv", [make_row(1, 10, mean=80.0)])
    (tmp_path / "data" / "reference.provenance.json").write_text(json.dumps(
        {"date": "2026-11-28T14:34:20+00:00", "command": "labkit sweep --profile full", "cpu": "AMD EPYC", "cores": 2}))
    assert reanalysis.provenance_text(a) == ("reference.csv: 2026-11-28T14:34:20+00:00; `labkit sweep --profile full`; "
                                             "AMD EPYC (2 cores)")
    assert reanalysis.provenance_text(b) == "lab.csv: no provenance file beside it (lab.provenance.json)"
    df = reanalysis.load_sources([a, b], root=tmp_path)
    assert df.groupby("source").size().to_dict() == {"data/reference.csv": 2, "runs/lab.csv": 1}
    fig = reanalysis.overlay_chart(df, "mean<300")
    assert fig._repr_png_()[:4] == b"\x89PNG"


def test_dashboard_picks_overlays_filters_and_exports(tmp_path):
    ref = write_csv(tmp_path / "data" / "reference.csv",
                    [make_row(n, c, mean=c / n) for n in (1, 2) for c in (10, 100)]
                    + [make_row(1, 10, machine_type="e2-small")])
    own = write_csv(tmp_path / "runs" / "lab.csv", [make_row(1, c, mean=2 * c) for c in (10, 100)])
    d = reanalysis.ReanalysisDashboard(own, root=tmp_path, fallback=own, sla="mean<150", users=50,
                                       export_dir=tmp_path / "out")
    assert d.picker.value == ("runs/lab.csv",) and d.machine.value == "f1-micro" and d.server.value == "flask"
    assert d.explorer.max_concurrency == {1: 10}  # own: mean 20, 200 ms
    d.picker.value = ("runs/lab.csv", "data/reference.csv")
    assert set(d.filtered["source"]) == {"runs/lab.csv", "data/reference.csv"}
    assert d.overlay.value[:4] == b"\x89PNG"
    d.primary.value = "data/reference.csv"
    assert d.explorer.max_concurrency == {1: 100, 2: 100}
    assert len(d.explorer.enabled) == 10  # max, mean and every percentile
    d.machine.value = "e2-small"
    assert len(d.filtered) == 1 and d.explorer.max_concurrency == {1: 10}
    d.machine.value = reanalysis.ALL
    # the reference now holds two configurations: no SLA answer pools them, the overlay draws each apart
    assert d.explorer is None and "holds 2 configurations (e2-small/flask, f1-micro/flask)" in d.status.value
    assert d.overlay.value[:4] == b"\x89PNG"
    path = d.export()
    out = pd.read_csv(path)
    assert len(out) == 7 and set(out["source"]) == {"runs/lab.csv", "data/reference.csv"}
    assert "download=" in d.export_link.value
    d.add(str(tmp_path / "nope.csv"))
    assert "no such file" in d.status.value


def test_describe_results_names_what_the_csv_holds(tmp_path):
    csv = write_csv(tmp_path / "r.csv", [make_row(1, 10), make_row(2, 50), make_row(1, 10, server="gunicorn")])
    assert reanalysis.describe_results(load_results(csv), "r.csv") == \
        "r.csv: 3 rows of f1-micro/flask, f1-micro/gunicorn; node counts 1, 2; concurrency 10, 50"
