"""Interpret your results (notebooks 01-03): findings worded from the student's own numbers, as Markdown.

Every ``*_text`` function takes the results DataFrame (:func:`labkit.results.load_results`),
computes a finding (:mod:`labkit.teaching.findings`: numbers and flags) and words it with
a template (:mod:`labkit.teaching.render`). The law or mechanism itself is fixed text in
the notebooks' Markdown cells. :func:`points` is the one read of per-point data the
findings share (one row per node count and concurrency).

- :func:`littles_law_text`: N = X·R at a few points, and where throughput stopped growing;
- :func:`bottleneck_text`: per-role CPU utilisation, the busiest role, the CPU cost of a
  request per role, the USL fit (:func:`usl_text`, worded only when R² ≥ 0.5);
- :func:`noise_text`: ``max`` vs p99, repeats, and clauses within 10 % of their bound.

The path of a connection is :mod:`labkit.teaching.network`; the handout's steps shown beside
the measurements are :mod:`labkit.teaching.first_run`; vertical scaling's is
:func:`labkit.vertical.vertical_text`.
"""

from __future__ import annotations

import math

import pandas as pd

from labkit import machine_types
from labkit.analysis import capacity
from labkit.errors import ConfigError
from labkit.analysis.points import is_clean
from labkit.teaching.findings import points  # noqa: F401 - the one read of per-point data, re-exported


# -- helpers ---------------------------------------------------------------------------------------
def _num(v: float, digits: int = 0) -> str:
    return f"{v:,.{digits}f}"


def _ms(v: float) -> str:
    return f"{v:,.0f} ms" if abs(v) >= 10 else f"{v:.1f} ms"


def _where(nodes: int, c: int) -> str:
    return f"c={c}" if nodes == 1 else f"{nodes} nodes, c={c}"


def _pick(values: list, k: int) -> list:
    """Up to ``k`` items spread over ``values`` (first, middle, last...)."""
    if len(values) <= k:
        return list(values)
    idx = sorted({round(i * (len(values) - 1) / (k - 1)) for i in range(k)})
    return [values[i] for i in idx]


def _node_counts(df: pd.DataFrame, nodes) -> list[int]:
    have = sorted(int(n) for n in df["nodes"].unique())
    if nodes is None:
        return have
    want = [nodes] if isinstance(nodes, int) else list(nodes)
    return [n for n in have if n in want]


# -- Little's law ------------------------------------------------------------------------------------
def littles_law_text(df: pd.DataFrame, nodes=None, k: int = 3, solve: bool = False):
    """Up to ``k`` clean points per node count as evidence for N = X·R — N, X, R and a flag where X·R is
    far from N (:func:`labkit.teaching.findings.littles_law`) — as Markdown. ``solve`` adds what the graded
    question asks the student to work out (X·R, and where throughput stopped growing): for instructors."""
    from labkit.teaching import findings
    from labkit.teaching.render import markdown

    return markdown("littles_law.md.j2", f=findings.littles_law(df, nodes, k), solve=solve)


# -- the bottleneck ----------------------------------------------------------------------------------
def bottleneck_text(df: pd.DataFrame, sla=None, users: int | None = None):
    """Per node count, each role's CPU utilisation at its best clean point and the busiest role; the CPU
    cost per request of each role (tables); the USL fit over node counts (worded only when it explains
    the peaks); with ``sla`` and ``users``, the capacity model's conclusion (labelled as a model)."""
    from labkit.teaching.render import Text

    lines = []
    pts = points(df)
    if not capacity.has_cpu_columns(df):
        lines.append("- Your results have no per-role CPU columns (server_cpu_s, balancer_cpu_s, tester_cpu_s): "
                     "they were measured with a labkit that did not record them, so the bottleneck cannot be "
                     "shown from them.")
    else:
        util = capacity.utilisation(df)
        ok = is_clean(df)
        lines += ["| nodes | best clean point | req/s | " + " | ".join(f"{r} CPU" for r in capacity.ROLES)
                  + " | busiest |", "|---|---|---|" + "---|" * len(capacity.ROLES) + "---|"]
        for n in sorted(int(x) for x in df["nodes"].unique()):
            clean = pts[(pts["nodes"] == n) & (pts["ok_runs"] > 0)]
            if clean.empty:
                lines.append(f"| {n} | no clean point | | " + " | " * len(capacity.ROLES) + " |")
                continue
            best = clean.loc[clean["rps"].idxmax()]
            rows = df[(df["nodes"] == n) & (df["concurrency"] == best["concurrency"]) & ok]
            u = util.loc[rows.index].mean(skipna=True)
            cells = [("—" if pd.isna(u.get(r)) else f"{100 * u[r]:.0f} %") for r in capacity.ROLES]
            top = capacity.point_bottleneck(rows)
            lines.append(f"| {n} | c={int(best['concurrency'])} | {_num(best['rps'], 1)} | " + " | ".join(cells)
                         + f" | {top or '—'} |")
        from labkit.analysis.demand import demands

        costs = []
        for role, d in demands(df).items():  # the capacity answer's own service demand: one number per role
            if d is None:
                continue
            lo, hi = d["spread_ms"]
            cap = f"{d['capacity_rps']:,.0f}" if d.get("capacity_rps") else "—"
            costs.append(f"| {role} | {d['cpu_ms_per_request']:.3f} ({lo:.2f}–{hi:.2f}) | {d['estimator']} | "
                         f"{d['machine_type'] or '—'} | {d['vcpu'] if d['vcpu'] is not None else '—'} | {cap} |")
        if costs:
            lines += ["", "CPU per request where each role is busiest (the top half of its utilisation; spread: "
                          "the busy rows' quartiles) and the throughput one machine of that type carries — never "
                          "below what it already delivered (model: vCPU / CPU per request):", "",
                      "| role | CPU ms per request | estimator | machine | vCPU | model cap (req/s) |",
                      "|---|---|---|---|---|---|", *costs]
    lines += ["", usl_text(df).strip()]
    if sla is not None and users is not None:
        try:
            a = capacity.capacity_answer(df, sla, users, validate=False)  # the part-2 answer's own plan
            lines += ["", f"Capacity for {users} users ({a['label']}): {a['conclusion']}."]
        except ConfigError as exc:
            lines += ["", f"Capacity for {users} users: not available ({exc})."]
    return Text("\n".join(lines) + "\n")


def usl_text(df: pd.DataFrame):
    """The Universal Scalability Law fit of peak throughput against nodes, in words (a model, labelled);
    a fit with R² < 0.5 is said to explain too little, and nothing more."""
    from labkit.teaching import findings
    from labkit.teaching.render import markdown

    return markdown("usl.md.j2", f=findings.usl(df))


# -- noise, max, repeats -----------------------------------------------------------------------------
def noise_text(df: pd.DataFrame, sla=None, k: int = 3):
    """``max`` vs p99, repeats and every clause within 10 % of its bound (:func:`labkit.teaching.findings.noise`),
    as Markdown."""
    from labkit.teaching import findings
    from labkit.teaching.render import markdown

    return markdown("noise.md.j2", f=findings.noise(df, sla), k=k)
