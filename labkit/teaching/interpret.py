"""Interpret your results: explanations built from the student's own numbers (notebooks 01-03).

Every function takes the results DataFrame (:func:`labkit.results.load_results`) and
returns text to ``print``: the law or the mechanism in a sentence or two, then the
student's own points that show it (or, when their data cannot show it, which numbers
are missing and why). A number that is not measured is labelled as a model, with its
basis.

- :func:`littles_law_text`: N = X·R for a few of their points, and why latency rises
  with users once throughput is flat;
- :func:`bottleneck_text`: per-role CPU utilisation, the busiest role, the CPU cost of a
  request per role, the USL fit in words (:func:`usl_text`);
- :func:`noise_text`: ``max`` is one request; repeats and borderline points.

The path of a connection (one node reached directly vs nodes behind nginx, round robin,
nginx's open-file limit) is :mod:`labkit.teaching.network`; the handout's steps the
notebooks show beside the measurements (ab's raw report, payload.json, the handout's
bug) are :mod:`labkit.teaching.first_run`; vertical scaling's is
:func:`labkit.vertical.vertical_text`.
"""

from __future__ import annotations

import math

import pandas as pd

from labkit import machine_types
from labkit.analysis import capacity
from labkit.errors import ConfigError

#: A point is in the "flat" part of the throughput curve when its rps is at least this share of the peak.
FLAT_SHARE = 0.9


# -- helpers ---------------------------------------------------------------------------------------
def _num(v: float, digits: int = 0) -> str:
    return f"{v:,.{digits}f}"


def _ms(v: float) -> str:
    return f"{v:,.0f} ms" if abs(v) >= 10 else f"{v:.1f} ms"


def _where(nodes: int, c: int) -> str:
    return f"c={c}" if nodes == 1 else f"{nodes} nodes, c={c}"


def _clean(df: pd.DataFrame) -> pd.Series:
    """Per row: completed without failed or non-2xx requests, with a throughput (only such rows measure the service)."""
    from labkit.analysis.sla import is_ok

    return is_ok(df) & df["rps"].notna()


def points(df: pd.DataFrame) -> pd.DataFrame:
    """The analysis core's per-point table (:func:`labkit.analysis.points.points`), with ``ok_runs`` (its clean runs)."""
    from labkit.analysis.points import points as core_points

    return core_points(df).assign(ok_runs=lambda t: t["clean_runs"])


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
def littles_law_text(df: pd.DataFrame, nodes=None, k: int = 3) -> str:
    """Little's law N = X·R checked on up to ``k`` clean points per node count, and why latency rises.

    For each point: concurrency N, throughput X (rps), mean response time R, X·R and the ratio
    X·R / N (≈ 1 for a sound closed-loop measurement). Then, once throughput stops growing,
    R = N / X: every extra user only adds waiting.
    """
    lines = ["Little's law, N = X·R: ab keeps N = concurrency requests in flight and sends the next one as soon "
             "as one returns (a closed loop without think time), so throughput X (req/s) times the mean "
             "response time R (s) must equal N. Your points:"]
    pts = points(df)
    shown = 0
    for n in _node_counts(df, nodes):
        clean = pts[(pts["nodes"] == n) & (pts["ok_runs"] > 0)]
        if clean.empty:
            lines.append(f"  {n} node(s): no point completed without errors: nothing to check.")
            continue
        for r in _pick(list(clean.itertuples(index=False)), k):
            xr = r.rps * r.mean_ms / 1000.0
            ratio = xr / r.concurrency
            verdict = ("N = X·R holds" if abs(ratio - 1) <= capacity.LITTLE_TOLERANCE else
                       "far from 1: fewer than N requests were in flight on average — a short run's ramp-up and "
                       "ramp-down, connect stalls, fast failures or a busy tester")
            lines.append(f"  {_where(n, r.concurrency)}: X = {_num(r.rps, 1)} rps, R = mean {_ms(r.mean_ms)} "
                         f"→ X·R = {_num(r.rps, 1)} × {r.mean_ms / 1000:.3f} s = {xr:,.1f} "
                         f"(N = {r.concurrency}; ratio {ratio:.2f}: {verdict})")
            shown += 1
        lines.append(_flat_text(clean, n))
    if not shown:
        lines.append("  (no clean point yet: measure first)")
    return "\n".join(lines)


def _flat_text(clean: pd.DataFrame, n: int) -> str:
    """Why the mean grows with users once throughput is flat, for one node count's clean points."""
    if len(clean) < 2:
        return f"  {n} node(s): one clean point only: measure more levels to see how latency grows."
    peak = clean.loc[clean["rps"].idxmax()]
    flat = clean[(clean["rps"] >= FLAT_SHARE * peak["rps"]) & (clean["concurrency"] >= clean["concurrency"].min())]
    first_flat = flat.iloc[0]
    last = clean.iloc[-1]
    where = f"{n} node(s)"
    if int(first_flat["concurrency"]) == int(last["concurrency"]):
        return (f"  {where}: throughput was still growing up to your highest clean level "
                f"(c={int(last['concurrency'])}, "
                f"{_num(last['rps'], 1)} rps): not saturated yet, so latency had not started to climb with N.")
    a, b = first_flat, last
    model = b["concurrency"] / peak["rps"] * 1000.0
    return (f"  {where}: throughput flattens at about {_num(peak['rps'])} rps (from c={int(a['concurrency'])}): "
            f"from c={int(a['concurrency'])} to c={int(b['concurrency'])} users grew "
            f"×{b['concurrency'] / a['concurrency']:.1f} "
            f"but throughput went ×{b['rps'] / a['rps']:.2f} ({_num(a['rps'])} → {_num(b['rps'])} rps), so R = N/X "
            f"had to grow: mean {_ms(a['mean_ms'])} → {_ms(b['mean_ms'])} (model R = {int(b['concurrency'])} / "
            f"{_num(peak['rps'])} rps = {_ms(model)}). Once the server is busy all the time, every extra user "
            "only waits in its queue.")


# -- the bottleneck ----------------------------------------------------------------------------------
def bottleneck_text(df: pd.DataFrame, sla=None, users: int | None = None) -> str:
    """Per node count, each role's CPU utilisation at its best clean point and the busiest role;
    the CPU cost per request of each role; the USL fit over node counts in words; with ``sla`` and
    ``users``, the capacity model's conclusion (labelled as a model)."""
    lines = ["The bottleneck is the machine that is busy all the time first. Utilisation = CPU seconds the role "
             "used / (time taken × vCPU × machines of the role), measured around every ab run; the role near "
             "100 % caps throughput, and adding machines of another role does not help."]
    pts = points(df)
    if not capacity.has_cpu_columns(df):
        lines.append("  Your results have no per-role CPU columns (server_cpu_s, balancer_cpu_s, tester_cpu_s): "
                     "they were measured with a labkit that did not record them, so the bottleneck cannot be "
                     "shown from them.")
    else:
        util = capacity.utilisation(df)
        ok = _clean(df)
        for n in sorted(int(x) for x in df["nodes"].unique()):
            clean = pts[(pts["nodes"] == n) & (pts["ok_runs"] > 0)]
            if clean.empty:
                lines.append(f"  {n} node(s): no clean point.")
                continue
            best = clean.loc[clean["rps"].idxmax()]
            rows = df[(df["nodes"] == n) & (df["concurrency"] == best["concurrency"]) & ok]
            u = util.loc[rows.index].mean(skipna=True)
            shown = ", ".join(f"{r} {100 * u[r]:.0f} %" for r in capacity.ROLES if not pd.isna(u.get(r)))
            top = capacity.point_bottleneck(rows)
            lines.append(f"  {n} node(s), best clean point c={int(best['concurrency'])} ({_num(best['rps'])} rps): "
                         f"{shown or 'no CPU measured'}" + (f" → busiest: {top}" if top else ""))
        clean = df[_clean(df)]
        costs = []
        for role in capacity.ROLES:
            col = capacity.CPU_COLUMNS[role]
            have = clean[clean[col].notna() & (clean["complete"] > 0)] if col in clean else clean.iloc[0:0]
            if role == "balancer":
                have = have[have["nodes"] > 1]
            if have.empty:
                continue
            ms = float((have[col].astype("float64") / have["complete"].astype("float64")).median() * 1000)
            mt = have[capacity.TYPE_COLUMNS[role]].dropna()
            mt = str(mt.mode().iloc[0]) if len(mt) else None
            vcpu = machine_types.MACHINE_TYPES[mt].vcpu if mt in machine_types.MACHINE_TYPES else None
            cap = (f", so one {mt} ({vcpu:g} vCPU) saturates near {vcpu / (ms / 1000):,.0f} rps "
                   "(model: vCPU / CPU per request)") if vcpu and ms > 0 else ""
            costs.append(f"{role} {ms:.2f} ms{cap}")
        if costs:
            lines.append("  CPU per request (median over your clean rows): " + "; ".join(costs) + ".")
    lines.append("  " + usl_text(df))
    if sla is not None and users is not None:
        try:
            a = capacity.capacity_answer(df, sla, users, model=False)
            lines.append(f"  Capacity for {users} users ({a['label']}): {a['conclusion']}.")
        except ConfigError as exc:
            lines.append(f"  Capacity for {users} users: not available ({exc}).")
    return "\n".join(lines)


def usl_text(df: pd.DataFrame) -> str:
    """The Universal Scalability Law fit of peak throughput against nodes, in words (a model, labelled)."""
    from labkit.analysis.usl import describe_fit, fit_nodes, throughput_by_nodes

    try:
        fit = fit_nodes(df)
    except ConfigError as exc:
        return f"USL fit over node counts: not available ({exc})."
    peaks = throughput_by_nodes(df)
    measured = ", ".join(f"{int(r.nodes)}: {_num(r.rps)}" for r in peaks.itertuples(index=False))
    return (f"USL fit of peak throughput vs nodes (model, fitted to your peaks {measured} rps): "
            f"{describe_fit(fit, 'nodes')}.")


# -- noise, max, repeats -----------------------------------------------------------------------------
def noise_text(df: pd.DataFrame, sla=None, k: int = 3) -> str:
    """``max`` is one request out of thousands; how much repeats of a point differ; borderline points."""
    pts = points(df)
    lines = ["`max` is the single slowest request of a run (one out of `requests`): one request delayed by a "
             "SYN retransmission, a garbage collection or another process decides it, while p99 describes the "
             "slowest 1 %. A clause on `max` is therefore the noisiest of the SLA."]
    clean = pts[(pts["ok_runs"] > 0) & pts["p99_ms"].notna() & pts["max_ms"].notna()].copy()
    if clean.empty:
        lines.append("  No clean point with percentiles yet.")
    else:
        clean["gap"] = clean["max_ms"] / clean["p99_ms"].clip(lower=1e-9)
        far = clean[clean["gap"] >= 2].sort_values("gap", ascending=False)
        if len(far):
            lines.append("  In your data, max far above p99 (one or a few requests): " + "; ".join(
                f"{_where(r.nodes, r.concurrency)}: max {_ms(r.max_ms)} vs p99 {_ms(r.p99_ms)} (×{r.gap:.1f})"
                for r in far.head(k).itertuples(index=False)) + ".")
        else:
            r = clean.loc[clean["gap"].idxmax()]
            lines.append("  In your data max stays within ×2 of p99 everywhere (widest: "
                         f"{_where(int(r['nodes']), int(r['concurrency']))}, "
                         f"max {_ms(r['max_ms'])} vs p99 {_ms(r['p99_ms'])}).")
    rep = pts[pts["runs"] > 1]
    if rep.empty:
        lines.append("  Repeats: each of your points was measured once (`repeat` = 0), so how much a second run "
                     "would differ is unknown; set `repeats = 3` to measure a point again.")
    else:
        ok = _clean(df)
        parts = []
        for r in rep.itertuples(index=False):
            rows = df[(df["nodes"] == r.nodes) & (df["concurrency"] == r.concurrency) & ok]
            if len(rows) < 2:
                parts.append(f"{_where(r.nodes, r.concurrency)}: {r.runs} runs, {len(rows)} clean")
                continue
            m = rows["mean_ms"].astype("float64")
            spread = (m.max() - m.min()) / m.mean() * 100 if m.mean() else 0.0
            parts.append(f"{_where(r.nodes, r.concurrency)}: {len(rows)} runs, mean {_ms(m.min())}–{_ms(m.max())} "
                         f"({spread:.0f} % apart)")
        lines.append(f"  Repeats in your data ({len(rep)} point(s) measured more than once): "
                     + "; ".join(parts[:6]) + (" …" if len(parts) > 6 else "") + ".")
    if sla is not None:
        from labkit.analysis.sla import as_sla, point_table

        table = point_table(df, as_sla(sla))
        border = table[table["borderline"] != ""]
        if len(border):
            lines.append(f"  Borderline under {as_sla(sla)}: " + "; ".join(
                f"{_where(int(r.nodes), int(r.concurrency))}: {r.borderline}"
                for r in border.head(k).itertuples(index=False)) + ".")
        else:
            lines.append(f"  No point of yours is within 10 % of a bound of {as_sla(sla)}: the verdicts are clear-cut.")
    return "\n".join(lines)
