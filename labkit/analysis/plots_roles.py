"""Which machine was the bottleneck: per-role CPU utilisation against concurrency (seaborn).

:func:`role_utilisation_chart` draws, for each tested node count, the measured
utilisation of the servers, the balancer and the tester (cpu_s / (time_taken_s ×
vCPU × machines of the role), design §7) against concurrency. The role whose line
reaches 100 % first is the one that limits throughput at that node count. Same
conventions as :mod:`labkit.analysis.plots`: a :class:`~labkit.analysis.plots.LabFigure` (PNG inline in
Jupyter, no pyplot), log concurrency axis; save it with :func:`labkit.analysis.plots.save_chart`.
"""

from __future__ import annotations

import math

import pandas as pd
from matplotlib.figure import Figure

from labkit.analysis.capacity import ROLES, has_cpu_columns
from labkit.analysis.points import points
from labkit.analysis.plots import PANEL_SIZE, _figure, _log_concurrency_axis, _margins

ROLE_COLORS = {"server": "C0", "balancer": "C3", "tester": "C2"}


def role_utilisation_table(df: pd.DataFrame) -> pd.DataFrame:
    """Long table: ``nodes``, ``concurrency``, ``role``, ``utilisation``: the analysis core's per-point
    utilisation (:func:`labkit.analysis.points.points`, the mean over the point's clean rows), the
    value the bottleneck tables quote."""
    table = points(df)
    mean = table[["nodes", "concurrency"]].copy()
    for r in ROLES:
        mean[r] = table[f"{r}_util"].astype("float64")
    long = mean.melt(id_vars=["nodes", "concurrency"], value_vars=list(ROLES), var_name="role",
                     value_name="utilisation")
    return long.dropna(subset=["utilisation"]).reset_index(drop=True)


def role_utilisation_chart(df: pd.DataFrame) -> Figure:
    """One panel per node count: each role's CPU utilisation (%) vs concurrency, 100 % dashed.

    Without the CPU columns (results recorded before they existed) the figure says so
    instead of drawing empty panels.
    """
    import seaborn as sns

    if not has_cpu_columns(df):
        fig, ax = _figure()
        ax.set_axis_off()
        ax.text(0.5, 0.5, "no per-role CPU columns in these results\n(server_cpu_s, balancer_cpu_s, "
                "tester_cpu_s):\nmeasure with the current labkit to see the bottleneck",
                transform=ax.transAxes, ha="center", va="center", fontsize=11, color="0.3")
        return fig
    long = role_utilisation_table(df)
    long["utilisation"] *= 100.0
    nodes = sorted(int(n) for n in df["nodes"].unique())
    cols = min(3, len(nodes))
    rows = math.ceil(len(nodes) / cols)
    fig, _ = _figure(figsize=(PANEL_SIZE[0] * cols, PANEL_SIZE[1] * rows + 0.6), axes=False)
    axes = fig.subplots(rows, cols, sharey=True, squeeze=False).ravel()
    top = max(110.0, float(long["utilisation"].max()) * 1.05) if len(long) else 110.0
    for ax, n in zip(axes, nodes):
        sub = long[long["nodes"] == n]
        if len(sub):
            sns.lineplot(data=sub, x="concurrency", y="utilisation", hue="role", hue_order=list(ROLES),
                         palette=ROLE_COLORS, marker="o", ax=ax, legend=ax is axes[0])
        ax.axhline(100.0, color="0.3", linestyle="--", linewidth=1.0)
        _log_concurrency_axis(ax, sorted(df[df["nodes"] == n]["concurrency"].unique()))
        ax.set_ylim(0, top)
        ax.set_title(f"{n} node{'s' if n != 1 else ''}" + (" (no balancer)" if n == 1 else ""), fontsize=10)
        ax.set_ylabel("CPU utilisation of the role (%)")
        ax.set_xlabel("concurrent users (ab -c)")
    for ax in axes[len(nodes):]:
        ax.set_axis_off()
    if axes[0].get_legend() is not None:
        axes[0].legend(loc="upper left", fontsize=8, title=None)
    fig.suptitle("Which machine is the bottleneck: CPU utilisation per role (100 % = saturated)", fontsize=11)
    _margins(fig, bottom=0.9, top=0.6, wspace=0.08, hspace=0.55)
    return fig
