"""The lab's charts (seaborn), each returned as a matplotlib Figure and savable as PNG.

- :func:`mean_latency_chart`: the handout's single chart — mean request time
  vs concurrent users, one line per node count.
- :func:`sla_heatmap`: SLA pass/fail per (nodes, concurrency).
- :func:`percentiles_chart`: mean, p98 and max vs concurrency for one node count.
- :func:`throughput_chart`: peak throughput vs nodes with the fitted USL curve.
- :func:`vertical_chart`: throughput per single-node configuration (notebook 03).

:func:`save_chart` writes any of them as PNG; :func:`save_all` writes the first four.

Figures are built with :class:`matplotlib.figure.Figure` directly, not
pyplot: nothing touches the global backend (a notebook keeps its own, a
headless run needs no display — PNGs are drawn by Agg), figures are not kept
alive by pyplot's registry, and each one still shows itself in Jupyter through
``_repr_png_``. Concurrency axes are logarithmic (the handout's levels run
from 10 to 3000), latency axes are labelled in milliseconds, SLA bounds are
dashed horizontal lines.
"""

from __future__ import annotations

import io
import logging
import re
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure

from labkit.errors import ConfigError
from labkit.analysis.capacity import cap_crossing, measured_caps
from labkit.analysis.sla import as_sla, max_concurrency, point_table
from labkit.analysis.points import points
from labkit.analysis.usl import MIN_R2, describe_fit, fit_usl, throughput_by_nodes

log = logging.getLogger("labkit")

#: Size of every chart: 8 x 5 inches at 100 dpi = 800 x 500 pixels.
FIGSIZE = (8.0, 5.0)
#: Size of one panel of the all-node-counts percentiles chart.
PANEL_SIZE = (4.5, 3.5)
DPI = 100
PASS_COLOR, FAIL_COLOR = "#4daf4a", "#e41a1c"
_METRIC_LABELS = {"mean_ms": "mean", "p98_ms": "98th percentile", "max_ms": "longest (max)"}


class LabFigure(Figure):
    """A Figure that renders itself as PNG in Jupyter without pyplot."""

    def _repr_png_(self) -> bytes:
        buf = io.BytesIO()
        self.savefig(buf, format="png", dpi=DPI)
        return buf.getvalue()


def _figure(figsize=FIGSIZE, axes: bool = True, layout: str | None = None) -> tuple[LabFigure, object]:
    """A new figure (and its one Axes unless ``axes`` is False) in the lab's style."""
    import seaborn as sns

    sns.set_theme(style="whitegrid", context="notebook")
    fig = LabFigure(figsize=figsize, dpi=DPI, layout=layout)
    return fig, (fig.add_subplot() if axes else None)


def _margins(fig: Figure, left=0.95, right=0.25, bottom=1.0, top=0.45, wspace=0.0, hspace=0.0) -> None:
    """Fixed margins in inches (faster and more predictable than constrained layout)."""
    w, h = fig.get_size_inches()
    fig.subplots_adjust(left=left / w, right=1 - right / w, bottom=bottom / h, top=1 - top / h,
                        wspace=wspace, hspace=hspace)


#: Point statuses a latency chart leaves out (design §8): no latency, or fast errors that are
#: not a measurement of the service.
NOT_PLOTTED = ("aborted", "refused")
ERRORS_LABEL = "errors (failed or non-2xx requests)"


def _plotted_points(df: pd.DataFrame, cols: list[str], table: pd.DataFrame | None = None) -> pd.DataFrame:
    """``cols`` per plotted (nodes, concurrency) point with its ``status``, read from the analysis
    core: with repeats, the worst run's latency (the value the tables print and the SLA
    decides on), never an average of maxima. Aborted and refused points are left out.
    ``table`` is ``points(df)`` when the caller already has it (it is computed once per chart)."""
    table = points(df) if table is None else table
    table = table[["nodes", "concurrency", *cols, "status"]].astype({c: "float64" for c in cols})
    return table[~table["status"].isin(NOT_PLOTTED)].reset_index(drop=True)


def _left_out(table: pd.DataFrame) -> str:
    """" (not plotted: 1 aborted point, 2 refused)" for the title, from a :func:`points` table, or ""."""
    counts = table["status"].value_counts()
    parts = [f"{int(counts[s])} {s}" for s in NOT_PLOTTED if counts.get(s, 0)]
    if not parts:
        return ""
    total = sum(int(counts.get(s, 0)) for s in NOT_PLOTTED)
    return f" (not plotted: {', '.join(parts)} point{'s' if total != 1 else ''})"


def _mark_errors(ax, data: pd.DataFrame, y: str) -> None:
    """A red cross on every plotted point whose requests partly failed (status ``errors``)."""
    bad = data[data["status"] == "errors"]
    if len(bad):
        ax.scatter(bad["concurrency"], bad[y], marker="x", s=90, linewidths=2, color=FAIL_COLOR,
                   label=ERRORS_LABEL, zorder=5)


def _log_concurrency_axis(ax, levels, min_gap: float = 0.07) -> None:
    """Log x axis ticked at the tested levels; labels closer than ``min_gap`` decades are skipped."""
    levels = sorted(int(c) for c in levels)
    ax.set_xscale("log")
    if levels:
        labels, last = [], None
        for c in levels:
            show = last is None or np.log10(c) - np.log10(last) >= min_gap
            labels.append(str(c) if show else "")
            last = c if show else last
        ax.set_xticks(levels)
        ax.set_xticklabels(labels, rotation=45)
        ax.minorticks_off()
    ax.set_xlabel("concurrent users (ab -c), log scale")


def _threshold_lines(ax, sla, metrics: dict[str, str] | None = None) -> None:
    """Dashed lines at the SLA bounds; ``metrics`` maps a clause metric to its line colour."""
    if sla is None:
        return
    for c in as_sla(sla).clauses:
        if metrics is not None and c.metric not in metrics:
            continue
        color = (metrics or {}).get(c.metric, "0.3")
        ax.axhline(c.ms, color=color, linestyle="--", linewidth=1.2, label=f"SLA {c} ms")


def _log_latency_axis(ax, values: pd.Series, sla, metrics) -> None:
    """A log latency axis ticked at 1-2-5 steps and at the SLA's bounds of ``metrics`` (so a 300 ms bound
    reads as 300, not as a gap between 100 and 1,000)."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

    v = values.dropna()
    v = v[v > 0]
    if v.empty:
        return
    ax.set_yscale("log")
    bounds = [c.ms for c in as_sla(sla).clauses if c.metric in metrics] if sla is not None else []
    lo, hi = min([v.min(), *bounds]) / 1.5, max([v.max(), *bounds]) * 1.5
    ax.set_ylim(lo, hi)
    steps = [m * 10 ** e for e in range(-1, 6) for m in (1, 2, 5)]
    ticks = sorted({t for t in steps + bounds if lo <= t <= hi})
    ax.yaxis.set_major_locator(FixedLocator(ticks))
    ax.yaxis.set_minor_locator(NullLocator())
    ax.yaxis.set_major_formatter(FuncFormatter(lambda t, _: f"{t:,.0f}" if t >= 1 else f"{t:g}"))


def mean_latency_chart(df: pd.DataFrame, sla=None) -> Figure:
    """Mean request time vs concurrent users, one line per node count (handout part 2, step 3).

    Points are the analysis core's (:func:`points`: with repeats, the worst run's mean, the value
    the tables print); aborted and refused points (design §8) are left out (the title says how
    many) and points with errors are marked with a red cross. With ``sla``, its ``mean`` bound is drawn.
    """
    import seaborn as sns

    fig, ax = _figure()
    table = points(df)
    data = _plotted_points(df, ["mean_ms"], table)
    data["nodes"] = data["nodes"].map(lambda n: f"{n} node" + ("s" if n != 1 else ""))
    order = sorted(data["nodes"].unique(), key=lambda s: int(s.split()[0]))
    sns.lineplot(data=data, x="concurrency", y="mean_ms", hue="nodes", hue_order=order,
                 marker="o", errorbar=None, ax=ax, palette="viridis")
    _mark_errors(ax, data, "mean_ms")
    _threshold_lines(ax, sla, {"mean": FAIL_COLOR})
    _log_concurrency_axis(ax, df["concurrency"].unique())
    # log y: the bound (300 ms) and the passing points are readable beside seconds-long overloaded points
    _log_latency_axis(ax, data["mean_ms"], sla, ("mean",))
    ax.set_ylabel("mean request time (ms), log scale")
    ax.set_title("Mean request time vs concurrent users" + _left_out(table))
    ax.legend(title=None)
    _margins(fig)
    return fig


def sla_heatmap(df: pd.DataFrame, sla) -> Figure:
    """SLA pass/fail for every tested (nodes, concurrency); grey cells, labelled "not tested", were not.

    A point that is not ``ok`` (design §8) is a failing cell labelled with its status
    (``errors``, ``refused``, ``aborted``). Each row's label gives that node count's
    maximum concurrency.
    """
    import seaborn as sns

    sla = as_sla(sla)
    fig, ax = _figure()
    table = point_table(df, sla)
    grid = table.pivot(index="nodes", columns="concurrency", values="meets")
    values = grid.apply(lambda col: col.map(lambda v: np.nan if pd.isna(v) else float(bool(v))))
    shown = table.assign(shown=[("pass" if m else "FAIL") if st == "ok" else st
                                for m, st in zip(table["meets"], table["status"])])
    labels = shown.pivot(index="nodes", columns="concurrency", values="shown").fillna("not\ntested")
    sns.heatmap(values.astype("float64"), ax=ax, cmap=ListedColormap([FAIL_COLOR, PASS_COLOR]),
                vmin=0, vmax=1, cbar=False, annot=labels.to_numpy(), fmt="",
                linewidths=0.5, linecolor="white", annot_kws={"fontsize": 8})
    ax.set_facecolor("0.94")  # untested cells: light grey, no grid through them
    ax.grid(False)
    for i, j in zip(*np.where(values.isna().to_numpy())):  # seaborn does not annotate masked (NaN) cells
        ax.text(j + 0.5, i + 0.5, "not\ntested", ha="center", va="center", fontsize=7, color="0.45")
    mc = max_concurrency(df, sla)
    ax.set_yticklabels([f"{n} (max {mc.get(int(n)) if mc.get(int(n)) is not None else 'none'})"
                        for n in grid.index], rotation=0)
    ax.set_ylabel("nodes (max concurrency within SLA)")
    ax.set_xlabel("concurrent users (ab -c)")
    ax.set_title(f"SLA {sla}: pass / FAIL per point")
    _margins(fig, left=1.9, bottom=0.8)
    return fig


def percentiles_chart(df: pd.DataFrame, sla=None, nodes: int | None = None,
                      logy: bool | None = None, answer: int | None = None) -> Figure:
    """Mean, 98th percentile and longest request vs concurrency.

    Aborted and refused points are left out (the panel's title says how many); points
    with errors are marked with a red cross on their mean.

    With ``nodes`` one chart for that node count (the handout's single
    server is ``nodes=1``); with ``nodes=None`` one panel per tested node
    count, sharing the latency axis, in a grid of up to three columns
    (:data:`PANEL_SIZE` inches each). ``logy`` defaults to a log latency axis
    when values span more than 50x, so a 200 ms bound and a 10 s timeout are
    both readable; a log axis is ticked at the SLA's bounds. The SLA's mean/p98/max
    bounds are drawn in their line's colour. ``answer`` (the largest concurrency meeting
    the SLA) is marked with a vertical line and shaded up to it.
    """
    import seaborn as sns

    if df.empty:
        raise ConfigError("no results rows to chart")
    tested = sorted(int(n) for n in df["nodes"].unique())
    if nodes is not None and int(nodes) not in tested:
        raise ConfigError(f"no results for {nodes} node(s); tested: {tested}")
    panels = tested if nodes is None else [int(nodes)]
    cols = list(_METRIC_LABELS)
    table = points(df[df["nodes"].isin(panels)])
    data = _plotted_points(df, cols, table).melt(
        id_vars=["nodes", "concurrency", "status"], value_vars=cols, var_name="metric", value_name="ms")
    data["metric"] = data["metric"].map(_METRIC_LABELS)
    positive = data["ms"].dropna()
    positive = positive[positive > 0]
    if logy is None:
        logy = bool(len(positive)) and positive.max() / positive.min() > 50
    if len(panels) == 1:
        fig, ax = _figure()
        axes = [ax]
    else:
        ncols = min(3, len(panels))
        nrows = -(-len(panels) // ncols)
        fig, _ = _figure((PANEL_SIZE[0] * ncols, PANEL_SIZE[1] * nrows), axes=False)
        grid = fig.subplots(nrows, ncols, sharey=True, squeeze=False)
        axes = list(grid.ravel())
        for extra in axes[len(panels):]:
            extra.set_visible(False)
    palette = dict(zip(_METRIC_LABELS.values(), sns.color_palette("deep", 3)))
    colors = {"mean": palette["mean"], "p98": palette["98th percentile"], "max": palette["longest (max)"]}
    for ax, n in zip(axes, panels):
        sns.lineplot(data=data[data["nodes"] == n], x="concurrency", y="ms", hue="metric",
                     hue_order=list(palette), palette=palette, marker="o", errorbar=None, ax=ax)
        _mark_errors(ax, data[(data["nodes"] == n) & (data["metric"] == "mean")], "ms")
        _threshold_lines(ax, sla, colors)
        _log_concurrency_axis(ax, df.loc[df["nodes"] == n, "concurrency"].unique(),
                              min_gap=0.07 if len(panels) == 1 else 0.12)
        if logy:
            _log_latency_axis(ax, data["ms"], sla, ("mean", "p98", "max"))
        if answer is not None:
            ax.axvspan(ax.get_xlim()[0], answer, color=PASS_COLOR, alpha=0.12, zorder=0)
            ax.axvline(answer, color="0.2", linewidth=1.5, label=f"answer: {answer} users")
        ax.set_ylabel("request time (ms)" + (", log scale" if logy else ""))
        ax.set_title(f"Latency vs concurrency, {n} node{'s' if n != 1 else ''}" + _left_out(table[table["nodes"] == n]))
        if ax is axes[0]:
            ax.legend(title=None, fontsize=8)
        elif ax.get_legend() is not None:
            ax.get_legend().remove()
        if ax is not axes[0] and len(panels) > 1 and ax.get_subplotspec().colspan.start > 0:
            ax.set_ylabel("")
    if len(panels) == 1:
        _margins(fig)
    else:
        _margins(fig, left=0.95, bottom=1.0, top=0.4, wspace=0.08, hspace=0.55)
    return fig


def throughput_chart(df: pd.DataFrame, sla=None, users: int | None = None) -> Figure:
    """Peak throughput vs node count; with ``sla`` and ``users``, what the answer needs.

    The USL fit is drawn only when it explains the peaks (R² ≥ 0.5), dashed past the largest
    tested node count. With ``sla`` and ``users`` the chart also shows the throughput the users
    need under the mean bound (Little's law, a model), each role's cap at its measured machine
    type (vCPU / CPU per request, a model), the Little's-law lower bound ``servers_min`` and the
    capacity model's line (servers × rps per server) out to the model plan's server count, the
    answer, marked with its balancer (without a plan: out to the lower bound, capped by the
    lowest measured role cap).
    """
    import seaborn as sns

    fig, ax = _figure()
    t = throughput_by_nodes(df)
    sns.scatterplot(data=t, x="nodes", y="rps", ax=ax, s=70, color="C0", label="measured (peak req/s)",
                    zorder=3)
    top = int(t["nodes"].max()) if len(t) else 1
    end = max(top * 1.6, top + 2)
    cap = None
    if sla is not None and users is not None:
        from labkit.analysis.capacity import capacity_answer

        try:
            cap = capacity_answer(df, sla, users)
        except ConfigError:
            cap = None
    if cap is not None and cap.get("throughput_needed_rps"):
        need = float(cap["throughput_needed_rps"])
        ax.axhline(need, color=FAIL_COLOR, linestyle="--", linewidth=1.2,
                   label=f"needed: {need:,.0f} req/s ({users} users, mean bound; model)")
        caps = {}
        for role, (mtype, rps) in measured_caps(cap).items():
            caps[role] = rps
            ax.axhline(rps, color={"balancer": "C2", "tester": "C4"}.get(role, "0.4"), linestyle=":",
                       linewidth=1.3, label=f"{role} cap ({mtype}): {rps:,.0f} req/s (model)")
        per = cap.get("per_server_rps")
        smin = cap.get("servers_min")
        plan = cap.get("plan") or {}
        servers = plan.get("servers")
        if per and smin:
            if servers is not None:
                # the answer: the model's plan, whose balancer and tester are sized for the need, so the
                # line is not capped at the measured (smaller) balancer's or tester's cap
                end = max(end, servers * 1.05)
                n = np.linspace(1, servers, 200)
                ax.plot(n, n * per, color="C3", linewidth=1.2,
                        label=f"capacity model: {per:,.0f} req/s per server")
                rps = (plan.get("predicted") or {}).get("rps")
                ax.axvline(servers, color="C3", linestyle="-.", linewidth=1.2,
                           label=f"model plan (the answer): {servers} servers + {plan['balancer']['machine_type']} "
                                 "balancer" + (f", predicted {rps:,.0f} req/s" if rps else ""))
            else:
                end = max(end, smin * 1.05)
                n = np.linspace(1, smin, 200)
                ceiling = min(caps.values()) if caps else np.inf
                ax.plot(n, np.minimum(n * per, ceiling), color="C3", linewidth=1.2,
                        label=f"capacity model: {per:,.0f} req/s per server (capped by the measured roles)")
            ax.axvline(smin, color="C3", linestyle=":", linewidth=1,
                       label=f"lower bound: {smin} servers (Little's law, mean clause only)")
    try:
        fit = fit_usl(t["nodes"], t["rps"])
    except ConfigError as exc:
        ax.text(0.5, 0.5, f"no USL curve: {exc}", transform=ax.transAxes, ha="center",
                va="center", wrap=True, fontsize=9, color="0.3")
        fit = None
    if fit is not None and fit.r2 < MIN_R2:
        ax.text(0.02, 0.97, f"USL fit not drawn: R² {fit.r2:.2f} explains too little", transform=ax.transAxes,
                ha="left", va="top", fontsize=8, color="0.3")
    elif fit is not None:
        inside = np.linspace(1, top, 100)
        beyond = np.linspace(top, end, 60)
        short = re.split(r",\s|[:;]", describe_fit(fit))[0]  # "peaks at 2.7 nodes (498 req/s)", "linear so far"
        ax.plot(inside, fit.predict(inside), color="C1", label=f"USL fit (model): {short}, R² {fit.r2:.2f}")
        ax.plot(beyond, fit.predict(beyond), color="C1", linestyle="--", label=_extrapolation_label(fit, cap, end))
        if np.isfinite(fit.peak_n) and fit.peak_n <= end:
            ax.axvline(fit.peak_n, color="0.5", linestyle=":", label=f"fitted peak N≈{fit.peak_n:.1f}")
    ax.set_xlim(0.5, end + 0.5)
    step = 1 if end <= 12 else 5
    ax.set_xticks([1, *range(step, int(end) + 1, step)] if step > 1 else range(1, int(end) + 1))
    ax.set_xlabel("nodes behind the load balancer")
    ax.set_ylabel("throughput (requests/s)")
    ax.set_ylim(bottom=0)
    ax.set_title("Throughput vs nodes" + (f": what {users} users need" if cap is not None else ""))
    ax.legend(loc="center right" if cap is not None else "lower right", fontsize=7)
    _margins(fig, bottom=0.75)
    return fig


def _extrapolation_label(fit, cap: dict | None, end: float) -> str:
    """The dashed USL line's legend: a fit of the measured peaks, which does not know the roles' caps;
    where it passes the lowest measured one within the chart, at how many nodes."""
    hit = cap_crossing(fit, cap, end)
    if hit is not None:
        role, mtype, _, at = hit
        return (f"extrapolation (USL fit, servers only): passes the {mtype} {role}'s cap at N≈{at:.1f}; "
                "beyond, only with a bigger one")
    return "extrapolation (USL fit of your peaks, servers only: not measured)"


def vertical_chart(df: pd.DataFrame, concurrency=None) -> Figure:
    """Bar chart: throughput per configuration at each concurrency level, Flask vs gunicorn side by side.

    The bars are :func:`labkit.vertical.vertical_table`'s ``rps@C`` columns;
    constrained layout keeps the two-line configuration labels readable.
    """
    import seaborn as sns

    from labkit.vertical import vertical_table

    table = vertical_table(df, concurrency)
    rps_cols = [c for c in table.columns if c.startswith("rps@")]
    long = table.melt(id_vars=["machine_type", "vcpu", "server", "workers"], value_vars=rps_cols,
                      var_name="concurrency", value_name="rps")
    long["concurrency"] = long["concurrency"].str.removeprefix("rps@").map(lambda c: f"c={c}")
    long["configuration"] = [f"{m} ({v:g} vCPU)\n{s}" + (f" ×{w}" if s == "gunicorn" else "")
                             for m, v, s, w in zip(long["machine_type"], long["vcpu"], long["server"],
                                                   long["workers"])]
    fig, ax = _figure(layout="constrained")
    sns.barplot(data=long, x="configuration", y="rps", hue="concurrency", ax=ax, palette="viridis")
    ax.set_xlabel("server machine type and server (×workers)")
    ax.set_ylabel("throughput (requests/s)")
    ax.set_title("Vertical scaling: one node, bigger machines, Flask dev server vs gunicorn")
    ax.tick_params(axis="x", labelsize=8)
    return fig


def save_chart(fig: Figure, charts_dir, name: str) -> Path:
    """Save ``fig`` as ``charts_dir/name`` (PNG, the folder created if needed); returns the path."""
    path = Path(charts_dir) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=DPI)
    log.info("wrote %s", path)
    return path


def save_all(df: pd.DataFrame, sla, outdir) -> list[Path]:
    """Write every results chart as PNG into ``outdir`` (created if needed); returns the paths.

    Files: ``mean_latency.png``, ``sla_heatmap.png``, ``percentiles.png`` (one
    panel per tested node count) and ``throughput.png``.
    """
    sla = as_sla(sla)
    charts: list[tuple[str, Figure]] = [
        ("mean_latency.png", mean_latency_chart(df, sla)),
        ("sla_heatmap.png", sla_heatmap(df, sla)),
        ("percentiles.png", percentiles_chart(df, sla)),
        ("throughput.png", throughput_chart(df)),
    ]
    return [save_chart(fig, outdir, name) for name, fig in charts]
