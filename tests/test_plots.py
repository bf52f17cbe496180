"""Charts: real PNGs of the expected size, log concurrency axes, SLA lines, USL curve."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from matplotlib.figure import Figure

from tests.support.analysis_data import make_row, write_csv
from labkit.analysis import plots
from labkit.results import load_results
from labkit.analysis.usl import usl

SLA = "max<=1500 mean<200 p98<=300"


@pytest.fixture
def df(tmp_path):
    rows = []
    for n in (1, 2, 3):
        x = float(usl(n, 0.05, 0.02, 1000.0))
        for c in (10, 50, 100, 500, 1000):
            mean = 1000.0 * c / x
            rows.append(make_row(n, c, mean=mean, p98=1.5 * mean, max_ms=3 * mean, rps=x))
    rows.append(make_row(1, 2000, aborted=True))
    return load_results(write_csv(tmp_path / "r.csv", rows))


def png_size(path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def _hlines(ax) -> dict[str, float]:
    return {ln.get_label(): ln.get_ydata()[0] for ln in ax.get_lines() if ln.get_label().startswith("SLA ")}


def test_mean_latency_chart(df):
    fig = plots.mean_latency_chart(df, SLA)
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    assert ax.get_xscale() == "log"
    assert "(ms)" in ax.get_ylabel()
    assert _hlines(ax) == {"SLA mean<200 ms": 200.0}
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels[:3] == ["1 node", "2 nodes", "3 nodes"]
    assert ax.get_title() == "Mean request time vs concurrent users (not plotted: 1 aborted point)"
    # the 1-node line holds the measured means at the tested levels
    line = ax.get_lines()[0]
    assert list(line.get_xdata()) == [10, 50, 100, 500, 1000]
    assert np.allclose(line.get_ydata(), [10.0, 50.0, 100.0, 500.0, 1000.0])


def test_percentiles_chart_single_and_panels(df):
    fig = plots.percentiles_chart(df, SLA, nodes=1)
    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"  # 10 .. 3000 ms spans > 50x
    assert _hlines(ax) == {"SLA max<=1500 ms": 1500.0, "SLA mean<200 ms": 200.0, "SLA p98<=300 ms": 300.0}
    assert ax.get_title() == "Latency vs concurrency, 1 node (not plotted: 1 aborted point)"
    panels = plots.percentiles_chart(df, SLA)
    assert [a.get_title() for a in panels.axes if a.get_visible()] == [
        "Latency vs concurrency, 1 node (not plotted: 1 aborted point)", "Latency vs concurrency, 2 nodes", "Latency vs concurrency, 3 nodes"]
    assert plots.percentiles_chart(df, None, nodes=2, logy=False).axes[0].get_yscale() == "linear"


def test_sla_heatmap_cells(df):
    fig = plots.sla_heatmap(df, SLA)
    ax = fig.axes[0]
    texts = [t.get_text() for t in ax.texts]
    # 1 node: mean = c ms -> 10, 50, 100 pass; 500, 1000 fail; 2000 aborted
    assert texts[:6] == ["pass", "pass", "pass", "FAIL", "FAIL", "aborted"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["1 (max 100)", "2 (max 100)", "3 (max 100)"]


def test_throughput_chart_with_and_without_fit(df):
    fig = plots.throughput_chart(df)
    ax = fig.axes[0]
    labels = [ln.get_label() for ln in ax.get_lines()]
    # σ=0.05, κ=0.02: the fitted peak is at sqrt((1-σ)/κ) = 6.9 nodes, said in words, not as parameters
    assert any(lbl.startswith("USL fit (model): peaks at 6.9 nodes") for lbl in labels), labels
    assert any(lb.startswith("extrapolation (USL fit") for lb in labels)
    two = df[df["nodes"] <= 2]
    ax2 = plots.throughput_chart(two).axes[0]
    assert any("USL fit needs throughput at 3 or more" in t.get_text() for t in ax2.texts)


def test_save_all_writes_real_pngs(df, tmp_path):
    paths = plots.save_all(df, SLA, tmp_path / "charts")
    assert [p.name for p in paths] == ["mean_latency.png", "sla_heatmap.png", "percentiles.png",
                                       "throughput.png"]
    for p in paths:
        assert p.stat().st_size > 10_000
    assert png_size(paths[0]) == (800, 500)
    assert png_size(paths[1]) == (800, 500)
    assert png_size(paths[2]) == (int(4.5 * 100 * 3), int(3.5 * 100))
    assert png_size(paths[3]) == (800, 500)


def test_figure_renders_in_notebooks(df):
    png = plots.mean_latency_chart(df)._repr_png_()
    assert png[:4] == b"\x89PNG" and len(png) > 10_000


def test_vertical_chart_one_bar_per_configuration_and_level(tmp_path):
    rows = [make_row(1, 10, mean=10.0), make_row(1, 100, mean=100.0),
            make_row(1, 10, mean=1.0, machine_type="e2-medium", server="gunicorn", workers=3, rps=900.0),
            make_row(1, 100, mean=2.0, machine_type="e2-medium", server="gunicorn", workers=3, rps=950.0)]
    fig = plots.vertical_chart(load_results(write_csv(tmp_path / "v.csv", rows)), concurrency=(10, 100))
    ax = fig.axes[0]
    assert ax.get_ylabel() == "throughput (requests/s)"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["f1-micro (0.2 vCPU)\nflask",
                                                           "e2-medium (1 vCPU)\ngunicorn ×3"]
    heights = sorted(p.get_height() for p in ax.patches if p.get_height() > 0)
    assert heights == [500.0, 500.0, 900.0, 950.0]


def test_save_chart_creates_the_folder(df, tmp_path):
    path = plots.save_chart(plots.throughput_chart(df), tmp_path / "new" / "charts", "t.png")
    assert path == tmp_path / "new" / "charts" / "t.png" and png_size(path) == (800, 500)


def test_latency_charts_leave_out_aborted_and_refused_points_and_mark_errors(tmp_path):
    rows = [make_row(1, 10, mean=10.0), make_row(1, 20, mean=20.0, failed=2, non_2xx=2),
            make_row(1, 50, mean=3.0, non_2xx=1000, failed=1000), make_row(1, 100, aborted=True),
            make_row(1, 200, mean=200.0)]
    df = load_results(write_csv(tmp_path / "s.csv", rows))
    for fig in (plots.mean_latency_chart(df, SLA), plots.percentiles_chart(df, SLA, nodes=1)):
        ax = fig.axes[0]
        assert "(not plotted: 1 aborted, 1 refused points)" in ax.get_title()
        assert list(ax.get_lines()[0].get_xdata()) == [10, 20, 200]  # no refused 50, no aborted 100
        (crosses,) = [c for c in ax.collections if c.get_label() == plots.ERRORS_LABEL]
        assert crosses.get_offsets().tolist() == [[20.0, 20.0]]
    texts = [t.get_text() for t in plots.sla_heatmap(df, SLA).axes[0].texts]
    assert texts == ["pass", "errors", "refused", "aborted", "FAIL"]


def test_the_answer_and_the_bounds_are_readable(df):
    ax = plots.percentiles_chart(df, SLA, nodes=1, answer=100).axes[0]
    assert [ln.get_xdata()[0] for ln in ax.get_lines() if ln.get_label() == "answer: 100 users"] == [100]
    ticks = list(ax.get_yticks())
    assert {200, 300, 1500} <= set(ticks), "each SLA bound is a labelled tick of the log axis"
    mean_ax = plots.mean_latency_chart(df, "max<=1000 mean<300 p98<400").axes[0]
    assert mean_ax.get_yscale() == "log" and 300 in list(mean_ax.get_yticks())
    low, high = mean_ax.get_ylim()
    assert low < 10 and high > 1000  # the passing points and the overloaded ones on one readable axis


def test_heatmap_labels_untested_points(df):
    ax = plots.sla_heatmap(df, SLA).axes[0]
    # 2000 users were tried at 1 node only: 2 and 3 nodes have no point there
    assert [t.get_text() for t in ax.texts].count("not\ntested") == 2


def test_throughput_chart_shows_what_the_users_need(tmp_path):
    rows = []
    for n in (1, 2, 3):
        for c in (10, 100):
            rows.append(make_row(n, c, mean=1000.0 * c / (200.0 * n), rps=200.0 * n, requests=2000, complete=2000,
                                 time_taken_s=10.0 / n, server_cpu_s=2.0, tester_cpu_s=0.4,
                                 tester_machine_type="f1-micro",
                                 **({"balancer_cpu_s": 0.4, "balancer_machine_type": "f1-micro"} if n > 1 else {})))
    df = load_results(write_csv(tmp_path / "r.csv", rows))
    ax = plots.throughput_chart(df, "max<=1000 mean<300 p98<400", 2000).axes[0]
    lines = {ln.get_label(): ln for ln in ax.get_lines()}
    need = next(k for k in lines if k.startswith("needed:"))
    assert need.startswith("needed: 6,667 req/s (2000 users") and lines[need].get_ydata()[0] == pytest.approx(6666.7, 0.01)
    assert any(k.startswith("balancer cap (f1-micro):") for k in lines)
    assert any(k.startswith("tester cap (f1-micro):") for k in lines)
    assert any(k.startswith("capacity model: 200 req/s per server") for k in lines)
    # ceil(6,667 / 200): the lower bound, never the answer; the answer is the model plan's count, marked
    bound = next(k for k in lines if k.startswith("lower bound:"))
    assert bound == "lower bound: 34 servers (Little's law, mean clause only)"
    plan = next(k for k in lines if k.startswith("model plan (the answer):"))
    servers = int(plan.split(": ")[1].split()[0])
    assert servers >= 34 and lines[plan].get_xdata()[0] == servers and ax.get_xlim()[1] >= servers


def test_throughput_chart_does_not_draw_a_fit_that_explains_nothing(tmp_path):
    rows = [make_row(n, 100, mean=100.0, rps=rps) for n, rps in ((1, 100.0), (2, 300.0), (3, 120.0), (4, 290.0),
                                                                (5, 110.0))]
    ax = plots.throughput_chart(load_results(write_csv(tmp_path / "r.csv", rows))).axes[0]
    assert not [ln for ln in ax.get_lines() if ln.get_label().startswith("USL fit")]
    assert any(t.get_text().startswith("USL fit not drawn: R²") for t in ax.texts)


def test_with_repeats_a_chart_plots_the_value_the_table_prints(tmp_path):
    """One point, one value: the charts read the analysis core's deciding (worst-run) latency,
    the number the handout table and the part-1 sentence quote, not an average of the runs."""
    from labkit.handout import status_table

    rows = [make_row(1, 10, mean=50.0, p98=80.0, max_ms=100.0, rps=200.0)]
    rows += [make_row(1, 20, mean=m, p98=p, max_ms=x, rps=150.0, repeat=i)
             for i, (m, p, x) in enumerate([(100.0, 150.0, 1320.0), (120.0, 160.0, 320.0), (90.0, 140.0, 330.0)])]
    df = load_results(write_csv(tmp_path / "r.csv", rows))
    ax = plots.mean_latency_chart(df, SLA).axes[0]
    assert np.allclose(ax.get_lines()[0].get_ydata(), [50.0, 120.0])  # worst mean, not 103.3
    fig = plots.percentiles_chart(df, SLA, nodes=1)
    plotted = {ln.get_label(): list(ln.get_ydata()) for ln in fig.axes[0].get_lines() if len(ln.get_ydata()) == 2}
    table = status_table(df, 1)
    assert table["Longest request (ms)"].tolist() == [100.0, 1320.0]  # not 656.7
    assert [100.0, 1320.0] in plotted.values()
    assert [80.0, 160.0] in plotted.values()


def test_the_extrapolation_says_where_it_passes_the_measured_balancers_cap():
    """A linear fit drawn to 40 nodes beside an f1-micro balancer's 1,593 req/s cap (quick lab, 2026-12-07):
    the legend said 'behind the balancer and tester as measured' while the line ran to 9,000 req/s."""
    import math

    from labkit.analysis.usl import UslFit

    fit = UslFit(sigma=0.0, kappa=0.0, lam=227.0, peak_n=math.inf, peak_x=math.inf, r2=0.94, n_points=4)
    cap = {"roles": {"server": {"capacity_rps": 267.0, "measured_machine_type": "f1-micro"},
                     "balancer": {"capacity_rps": 1593.0, "measured_machine_type": "f1-micro"},
                     "tester": {"capacity_rps": 2080.0, "measured_machine_type": "f1-micro"}}}
    assert plots._extrapolation_label(fit, cap, 40.0) == (
        "extrapolation (USL fit, servers only): passes the f1-micro balancer's cap at N≈7.1; beyond, only with a "
        "bigger one")
    within = "extrapolation (USL fit of your peaks, servers only: not measured)"
    assert plots._extrapolation_label(fit, cap, 6.0) == within  # the chart ends before the cap is reached
    assert plots._extrapolation_label(fit, None, 40.0) == within  # no CPU columns: no cap known
