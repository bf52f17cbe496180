"""The SLA report: the handout's questions answered from a results DataFrame.

:func:`build_report` returns a JSON-ready dict (what ``labkit report --json``
prints and ``summary.json`` stores); :func:`format_report` turns the same dict
into plain-text tables for a terminal. Keeping both on one dict means the
human and machine answers cannot disagree.
"""

from __future__ import annotations

import logging

import pandas as pd

from labkit.analysis.capacity_steps import steps_down
from labkit.analysis.points import DECIDING_NOTE, ROLES
from labkit.errors import ConfigError
from labkit.profiles import HANDOUT_CONCURRENCY
from labkit.analysis.sla import _check_users, as_sla, max_concurrency_of_table, nodes_needed_of, point_table
from labkit.analysis.usl import EXTRAPOLATION_LABEL, fit_concurrency, fit_nodes, predict_nodes

log = logging.getLogger("labkit")


def build_report(df: pd.DataFrame, sla, users: int | None = None) -> dict:
    """Answer the SLA questions for ``df`` (design §8).

    Keys: ``sla`` (canonical text), ``users``, ``max_concurrency`` (node count
    -> int or ``None``; integers here, the strings of design §8 once written as
    JSON, which is what ``json.dumps`` does with them), ``nodes_needed`` (int or ``None``; ``None``
    also when ``users`` is not given), ``extrapolation`` (only when ``users`` is
    given and no tested node count suffices: a dict whose ``label`` starts
    with ``"extrapolation (USL fit)"``, with ``nodes`` and the ``method``, or a
    ``refused`` reason), ``usl`` (fit of peak throughput vs nodes, or ``None``
    with the reason in ``notes``), ``usl_concurrency`` (fit of throughput vs
    concurrency at the smallest node count, or ``None``), ``tested`` (node
    counts and concurrency levels), ``points`` (per nodes × concurrency, from the analysis
    core :func:`labkit.analysis.points.points`; ``points_note`` says what the values are:
    ``meets``, ``clean_runs``, ``rps``, ``server_util``/``balancer_util``/``tester_util``, ``status`` (ok / errors / refused / aborted), ``reason``, ``borderline``,
    the worst ``mean_ms``/``p98_ms``/``max_ms``, ``littles_law`` and ``bottleneck``),
    ``max_concurrency_handout_levels`` (the same answer over the handout's own levels only,
    leaving out a refinement's probes), ``refined`` (node counts with levels off the
    handout's: a refined answer), ``steps_down`` (a sentence for every node count that
    supports fewer users than a smaller one, naming the cause: :mod:`labkit.analysis.capacity_steps`),
    ``notes`` and ``host_speed`` (how fast each run's host was against the reference and, when they
    differ, each other: :func:`labkit.calibration.host_speed_notes`).
    """
    sla = as_sla(sla)
    if users is not None:
        users = _check_users(users)
    if df.empty:
        raise ConfigError("no results rows to report on")
    table = point_table(df, sla)
    mc = max_concurrency_of_table(table)
    notes: list[str] = []

    needed = nodes_needed_of(mc, users) if users is not None else None

    usl_fit, usl_error = None, ""
    try:
        usl_fit = fit_nodes(df)
    except ConfigError as exc:
        usl_error = str(exc)
        notes.append(f"no USL fit of throughput vs nodes: {exc}")
    usl_conc = None
    n0 = int(table["nodes"].min())
    try:
        usl_conc = {"nodes": n0, **fit_concurrency(df, n0).to_dict()}
    except ConfigError as exc:
        notes.append(f"no USL fit of throughput vs concurrency at {n0} node(s): {exc}")

    extrapolation = None
    if users is not None and needed is None:
        refused = usl_error
        if usl_fit is not None:
            try:
                extrapolation = predict_nodes(df, sla, users, fit=usl_fit).to_dict()
            except ConfigError as exc:
                refused = str(exc)
        if extrapolation is None:
            extrapolation = {"label": EXTRAPOLATION_LABEL, "nodes": None, "users": users,
                             "refused": refused}

    points = [
        {"nodes": int(r.nodes), "concurrency": int(r.concurrency), "runs": int(r.runs),
         "meets": bool(r.meets), "status": r.status, "reason": r.reason, "borderline": r.borderline,
         "clean_runs": int(r.clean_runs), "rps": _num(r.rps),
         "mean_ms": _num(r.mean_ms), "p98_ms": _num(r.p98_ms), "max_ms": _num(r.max_ms),
         "littles_law": _num(r.littles_law), "bottleneck": None if r.bottleneck is None or pd.isna(r.bottleneck)
         else r.bottleneck, **{f"{role}_util": _num(getattr(r, f"{role}_util")) for role in ROLES}}
        for r in table.itertuples(index=False)
    ]
    on_handout = ~table["concurrency"].isin(HANDOUT_CONCURRENCY)
    refined = sorted(int(n) for n in table.loc[on_handout, "nodes"].unique())
    report = {
        "sla": str(sla),
        "users": users,
        "max_concurrency": mc,
        "max_concurrency_handout_levels": max_concurrency_of_table(table, HANDOUT_CONCURRENCY),
        "refined": refined,
        "steps_down": steps_down(table, mc, df),
        "nodes_needed": needed,
        "extrapolation": extrapolation,
        "usl": usl_fit.to_dict() if usl_fit else None,
        "usl_concurrency": usl_conc,
        "tested": {"nodes": sorted(int(n) for n in table["nodes"].unique()),
                   "concurrency": sorted(int(c) for c in table["concurrency"].unique())},
        "points": points,
        "points_note": DECIDING_NOTE,
        "notes": notes,
        "host_speed": _host_speed(df),
    }
    if users is not None:  # the model answer from operational laws, labelled as one (design §8)
        from labkit.analysis.capacity import capacity_answer

        report["capacity"] = capacity_answer(df, sla, users)
    log.debug("report: sla=%s users=%s max_concurrency=%s nodes_needed=%s",
             report["sla"], users, report["max_concurrency"], needed)
    return report


def _host_speed(df: pd.DataFrame) -> list[str]:
    """How fast the hosts behind ``df``'s runs were, against the reference and each other (labkit/calibration.py)."""
    from labkit.calibration import host_speed_notes

    return host_speed_notes(df)


def _num(v) -> float | None:
    return None if v is None or pd.isna(v) else float(v)


def format_report(report: dict) -> str:
    """Plain-text tables of a :func:`build_report` dict, for a terminal or a log."""
    lines = [f"SLA: {report['sla']}"]
    if report.get("users") is not None:
        lines.append(f"Users: {report['users']}")
    lines += ["", "Maximum concurrency within the SLA (every tested level up to it meets)"]
    mc = report["max_concurrency"]
    refined = set(report.get("refined") or [])
    on_levels = report.get("max_concurrency_handout_levels") or {}
    width = max([5, *(len(str(n)) for n in mc)])
    lines.append(f"  {'nodes':>{width}}  max concurrency")
    for n, c in mc.items():
        text = str(c) if c is not None else "none (lowest level fails)"
        if n in refined:
            h = on_levels.get(n)
            text += f"  (refined; on the handout's levels: {h if h is not None else 'none'})"
        lines.append(f"  {n:>{width}}  {text}")
    lines += [f"  note: {s}" for s in report.get("steps_down") or []]

    if report.get("users") is not None:
        lines.append("")
        if report["nodes_needed"] is not None:
            lines.append(f"Nodes needed for {report['users']} users: {report['nodes_needed']}")
        else:
            tested = ", ".join(str(n) for n in mc)
            lines.append(f"Nodes needed for {report['users']} users: none of the tested node counts ({tested})")
        ex = report.get("extrapolation")
        if ex:
            if ex.get("refused"):
                lines.append(f"  {ex['label']}: refused — {ex['refused']}")
            else:
                answer = f"{ex['nodes']} nodes" if ex["nodes"] is not None else "not reachable by adding nodes"
                lines.append(f"  {ex['label']}: {answer}")
                lines.append(f"    method: {ex['method']}")
                if ex.get("note"):
                    lines.append(f"    {ex['note']}")
                beyond = _past_a_cap(report, ex)
                if beyond:
                    lines.append(f"    {beyond}")
            if report.get("capacity"):
                lines.append("    (another model, shown for comparison: the answer is the capacity plan below)")
    if report.get("capacity"):
        from labkit.analysis.capacity import format_capacity

        lines += format_capacity(report["capacity"])

    fit = report.get("usl")
    if fit:
        lines += ["", "USL fit of peak throughput vs nodes"]
        lines.append(_fit_line(fit, "nodes"))
    fc = report.get("usl_concurrency")
    if fc:
        lines += ["", f"USL fit of throughput vs concurrency ({fc['nodes']} node(s))"]
        lines.append(_fit_line(fc, "concurrency"))

    points = report.get("points") or []
    if points:
        frame = pd.DataFrame(points)
        frame["shown"] = [("pass" if p["meets"] else "FAIL") if p.get("status", "ok") == "ok" else p["status"]
                          for p in points]
        grid = frame.pivot(index="nodes", columns="concurrency", values="shown")
        shown = grid.apply(lambda col: col.map(lambda v: "-" if pd.isna(v) else v))
        shown.index.name = "nodes \\ c"
        lines += ["", "SLA per tested point (pass / FAIL / errors / refused / aborted / - not tested)"]
        lines += ["  " + ln for ln in shown.to_string().splitlines()]
        first_fail: dict[int, dict] = {}
        for p in points:
            if not p["meets"]:
                first_fail.setdefault(p["nodes"], p)
        if first_fail:
            lines += ["", "Where each node count first fails"]
            lines += [f"  nodes={p['nodes']:<3} c={p['concurrency']:<6} {p['reason']}"
                      for p in first_fail.values()]
        close = [p for p in points if p.get("borderline")]
        if close:
            lines += ["", "Borderline points (the deciding clause within 10 % of its bound)"]
            lines += [f"  nodes={p['nodes']:<3} c={p['concurrency']:<6} {p['borderline']}" for p in close]
    for note in report.get("notes") or []:
        lines.append(f"note: {note}")
    for note in report.get("host_speed") or []:
        lines.append(f"host speed: {note}")
    return "\n".join(lines) + "\n"


def _past_a_cap(report: dict, ex: dict) -> str:
    """A sentence when the USL extrapolation's node count needs more throughput than the lowest measured
    role cap (balancer or tester) delivers: the fit scales servers only. "" otherwise."""
    from labkit.analysis.capacity import cap_crossing
    from labkit.analysis.usl import UslFit

    if ex.get("nodes") is None or not report.get("usl"):
        return ""
    fit = UslFit.from_dict(report["usl"])
    hit = cap_crossing(fit, report.get("capacity"), float(ex["nodes"]))
    x = float(fit.predict(ex["nodes"]))
    if hit is None or x <= hit[2]:
        return ""
    role, mtype, rps, at = hit
    return (f"it scales servers only: at {ex['nodes']} nodes the fit gives {x:,.0f} req/s, past the measured "
            f"{mtype} {role}'s cap of about {rps:,.0f} req/s (model; reached near {at:.1f} nodes), so that many "
            f"nodes need a bigger {role} too")


def _fit_line(fit: dict, what: str) -> str:
    """One line saying what the USL fit means, in words (:func:`labkit.analysis.usl.describe_fit`)."""
    from labkit.analysis.usl import describe_fit

    return f"  {describe_fit(fit, what)}"
