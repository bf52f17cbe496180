"""The capacity answer: how many servers, which balancer and tester, at what cost (design §8).

A model from operational laws, always labelled as one, beside the measured answers of
:mod:`labkit.analysis.sla`:

- **Little's law** for ab's closed loop without think time, N = X · R: ``users``
  concurrent users held under a mean response time R need a throughput of at least
  X = users / R. No fewer servers than X / (the best throughput one server has shown)
  can meet the mean bound, whatever else holds (``servers_min``).
- **The utilisation law**, U = X · D: a role whose requests cost D CPU-seconds each
  saturates its machines at X = vCPU / D. Measured per role (server, balancer,
  tester) from the CPU columns of the results (design §7); the role that saturates
  first when only servers are added is the ``bottleneck``.

Per point, :func:`littles_law` (rps × mean_s / concurrency, ≈ 1 for a sound closed-loop
measurement) and :func:`point_bottleneck` (the role with the highest measured
utilisation) are what :func:`labkit.analysis.sla.point_table` shows beside each point.
:func:`part2_accepts` is the part-2 rule the autograder applies.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import pandas as pd

from labkit import machine_types
from labkit.errors import ConfigError

log = logging.getLogger("labkit")

ROLES = ("server", "balancer", "tester")
#: Results column holding each role's CPU seconds during ab's run (design §7).
CPU_COLUMNS = {"server": "server_cpu_s", "balancer": "balancer_cpu_s", "tester": "tester_cpu_s"}
#: Results column holding each role's machine type (the server's is ``machine_type``).
TYPE_COLUMNS = {"server": "machine_type", "balancer": "balancer_machine_type", "tester": "tester_machine_type"}
#: A machine planned for the need runs at no more than this share of its vCPU.
MAX_UTILISATION = 0.8
#: Compute Engine's price of an external IPv4 address on a VM, USD per hour.
EXTERNAL_IPV4_PER_HOUR = 0.005
#: ``littles_law`` further than this from 1 flags the point (the data disagree with N = X·R).
LITTLE_TOLERANCE = 0.15
MODEL_LABEL = "model (operational laws) — not measured"


# -- per row and per point ------------------------------------------------------------------------
def _ok(df: pd.DataFrame) -> pd.Series:
    from labkit.analysis.sla import is_ok

    return is_ok(df) & df["rps"].notna()


def _vcpu(name) -> float | None:
    if not isinstance(name, str) or name not in machine_types.MACHINE_TYPES:
        return None
    return machine_types.MACHINE_TYPES[name].vcpu


def has_cpu_columns(df: pd.DataFrame, role: str | None = None) -> bool:
    """True when some row holds the CPU seconds of ``role`` (any role when ``None``)."""
    roles = [role] if role else list(ROLES)
    return any(CPU_COLUMNS[r] in df.columns and df[CPU_COLUMNS[r]].notna().any() for r in roles)


def utilisation(df: pd.DataFrame) -> pd.DataFrame:
    """Per row, each role's measured utilisation: cpu_s / (time_taken_s × vCPU × machines of the role).

    Machines: ``nodes`` servers, one balancer, one tester. Columns ``server``,
    ``balancer``, ``tester`` (NaN where the row lacks the CPU column, the time or a
    known machine type — e.g. the balancer at one node, or CSVs written before the
    CPU columns existed); the index is ``df``'s.
    """
    out = pd.DataFrame(index=df.index)
    t = pd.to_numeric(df.get("time_taken_s"), errors="coerce") if "time_taken_s" in df else None
    for role in ROLES:
        col, tcol = CPU_COLUMNS[role], TYPE_COLUMNS[role]
        if t is None or col not in df.columns or tcol not in df.columns:
            out[role] = np.nan
            continue
        vcpu = df[tcol].map(_vcpu).astype("float64")
        machines = df["nodes"].astype("float64") if role == "server" else 1.0
        cpu = pd.to_numeric(df[col], errors="coerce").astype("float64")
        out[role] = cpu / (t.astype("float64") * vcpu * machines)
    return out.replace([np.inf, -np.inf], np.nan)


def littles_law(rows: pd.DataFrame) -> float | None:
    """rps × mean_s / concurrency for the rows of one point (their mean); ``None`` without a completed row.

    ab keeps ``concurrency`` requests in flight, without think time: Little's law
    N = X·R says this ratio is 1. Far from 1 means the measurement is not the closed
    loop it claims to be (time lost connecting, requests failing fast, a stalled tester).
    """
    done = rows[~rows["aborted"].astype(bool) & rows["rps"].notna() & rows["mean_ms"].notna()]
    if done.empty:
        return None
    ratio = done["rps"].astype("float64") * done["mean_ms"].astype("float64") / 1000.0 \
        / done["concurrency"].astype("float64")
    return float(ratio.mean())


def point_bottleneck(rows: pd.DataFrame) -> str | None:
    """The role with the highest measured utilisation over the rows of one point; ``None`` without CPU columns."""
    u = utilisation(rows).mean(skipna=True)
    u = u.dropna()
    if u.empty:
        return None
    return str(u.idxmax())


def per_point(df: pd.DataFrame) -> pd.DataFrame:
    """One row per (nodes, concurrency): ``littles_law``, ``little_flag`` (off by more than 15 %),
    ``bottleneck`` and each role's mean utilisation (``server_util`` …); sorted like the point table."""
    records = []
    for (n, c), rows in df.groupby(["nodes", "concurrency"], sort=True):
        ll = littles_law(rows)
        u = utilisation(rows).mean(skipna=True)
        records.append({"nodes": int(n), "concurrency": int(c), "littles_law": ll,
                        "little_flag": ll is not None and abs(ll - 1.0) > LITTLE_TOLERANCE,
                        "bottleneck": point_bottleneck(rows),
                        **{f"{r}_util": (None if pd.isna(u.get(r)) else float(u[r])) for r in ROLES}})
    return pd.DataFrame.from_records(
        records, columns=["nodes", "concurrency", "littles_law", "little_flag", "bottleneck",
                          *(f"{r}_util" for r in ROLES)])


# -- the capacity answer --------------------------------------------------------------------------
def mean_bound_s(sla) -> tuple[float | None, str]:
    """The mean response time Little's law may use, in seconds, and where it comes from.

    The SLA's mean clause; else its max clause (the mean can never exceed the
    longest request, so it is a weaker but valid bound); else none.
    """
    from labkit.analysis.sla import as_sla

    by = {c.metric: c for c in as_sla(sla).clauses}
    for metric in ("mean", "max"):
        if metric in by:
            return by[metric].ms / 1000.0, f"{metric}{by[metric].op}{by[metric].ms:g} ms"
    return None, ""


def _mode(series: pd.Series):
    s = series.dropna()
    s = s[s.astype(str) != ""]
    return None if s.empty else s.mode().iloc[0]


def cheapest_type(vcpu_needed: float, max_utilisation: float = MAX_UTILISATION) -> str | None:
    """The cheapest machine type whose vCPU carries ``vcpu_needed`` at ≤ ``max_utilisation``; ``None`` if none."""
    fits = [m for m in machine_types.MACHINE_TYPES.values() if vcpu_needed <= max_utilisation * m.vcpu]
    return min(fits, key=lambda m: (m.price_per_hour, -m.vcpu)).name if fits else None


def _hourly(mt: str) -> dict:
    """Price per hour of one machine of type ``mt``: instance, its boot disk and its external IPv4 address."""
    from labkit.backends.gcp import api_requests as g

    disk = g.DISK_GB * g.PD_STANDARD_PER_GB_MONTH / g.HOURS_PER_MONTH
    ipv4 = getattr(g, "EXTERNAL_IPV4_PER_HOUR", EXTERNAL_IPV4_PER_HOUR)
    price = machine_types.get(mt).price_per_hour
    return {"instance": price, "disk": disk, "ipv4": ipv4, "total": price + disk + ipv4}


def plan_cost(servers: int, server_type: str, balancer_type: str | None, tester_type: str) -> dict:
    """``cost_per_hour`` (USD) of ``servers`` servers, a balancer (none for one server) and a tester,
    each with its boot disk and external IPv4 address, and the per-machine breakdown."""
    machines = [("server", server_type, servers), ("tester", tester_type, 1)]
    if servers > 1 and balancer_type:
        machines.insert(1, ("balancer", balancer_type, 1))
    items, total = [], 0.0
    for role, mt, count in machines:
        h = _hourly(mt)
        items.append({"role": role, "machine_type": mt, "count": count,
                      "per_machine": round(h["total"], 5), "of_which_ipv4": round(h["ipv4"], 5),
                      "subtotal": round(count * h["total"], 5)})
        total += count * h["total"]
    return {"cost_per_hour": round(total, 4), "machines": items, "currency": "USD",
            "prices_as_of": machine_types.PRICES_AS_OF}


def _servers_usl(df: pd.DataFrame, need: float, max_nodes: int = 1000) -> tuple[int | None, str]:
    from labkit.analysis.usl import describe_fit, fit_nodes

    try:
        fit = fit_nodes(df)
    except ConfigError as exc:
        return None, f"no USL fit: {exc}"
    words = describe_fit(fit, "nodes")
    if math.isfinite(fit.peak_x) and fit.peak_x < need:
        return None, f"USL fit: {words} — below the {need:,.0f} req/s needed: adding servers does not get there"
    ns = np.arange(1, max_nodes + 1)
    hit = np.flatnonzero(fit.predict(ns) >= need)
    if not hit.size:
        return None, f"USL fit: {words} — more than {max_nodes} nodes would be needed"
    return int(ns[hit[0]]), f"smallest N with USL X(N) ≥ {need:,.0f} req/s (USL fit: {words})"


def capacity_answer(df: pd.DataFrame, sla, users: int) -> dict:
    """The model answer for ``users`` concurrent users under ``sla`` (design §8), JSON-ready.

    Keys: ``label`` (always a model), ``users``, ``mean_bound_s`` and its
    ``basis``, ``throughput_needed_rps``, ``per_server_rps`` (with ``per_server_basis``:
    the row it comes from), ``servers_min``, ``servers_usl`` (+ ``servers_usl_note``),
    ``roles`` (per role: ``cpu_ms_per_request``, ``vcpu_needed``, ``machine_type`` —
    the cheapest carrying the need at ≤ 80 % —, ``measured_machine_type``,
    ``capacity_rps`` at it — per server for the server role —, ``rows``), ``bottleneck``
    and ``bottleneck_capacity_rps``, ``balancer_needed`` (the balancer type the need
    requires), ``cost_per_hour`` with ``cost`` (the plan, machine by machine),
    ``unavailable`` (what these results cannot give, and why) and ``conclusion`` (one
    sentence). Numbers are ``None`` where the data cannot give them.
    """
    from labkit.analysis.sla import _check_users

    users = _check_users(users)
    if df.empty:
        raise ConfigError("no results rows to answer from")
    unavailable: list[str] = []
    bound, basis = mean_bound_s(sla)
    need = users / bound if bound else None
    if need is None:
        unavailable.append("throughput needed and servers_min: the SLA bounds neither the mean nor the max")

    ok = df[_ok(df)]
    per_server, per_basis = None, None
    if not ok.empty:
        ratio = ok["rps"].astype("float64") / ok["nodes"].astype("float64")
        best = ratio.idxmax()
        per_server = float(ratio[best])
        r = ok.loc[best]
        per_basis = {"nodes": int(r["nodes"]), "concurrency": int(r["concurrency"]), "rps": float(r["rps"])}
    else:
        unavailable.append("per_server_rps and servers_min: no row completed without errors")
    servers_min = math.ceil(need / per_server - 1e-9) if need and per_server else None
    servers_usl, usl_note = (_servers_usl(df, need) if need else (None, "no throughput target"))

    server_type = _mode(df["machine_type"]) if "machine_type" in df else None
    roles: dict[str, dict] = {}
    missing_cpu = []
    for role in ROLES:
        col = CPU_COLUMNS[role]
        measured_type = _mode(df[TYPE_COLUMNS[role]]) if TYPE_COLUMNS[role] in df else None
        entry = {"cpu_ms_per_request": None, "vcpu_needed": None, "machine_type": None,
                 "measured_machine_type": measured_type, "capacity_rps": None, "rows": 0}
        have = ok[ok[col].notna() & (ok["complete"] > 0)] if col in ok.columns else ok.iloc[0:0]
        if role == "balancer":
            have = have[have["nodes"] > 1]
        if have.empty:
            missing_cpu.append(role)
        else:
            ms = float((have[col].astype("float64") / have["complete"].astype("float64")).median() * 1000.0)
            entry.update(cpu_ms_per_request=round(ms, 4), rows=int(len(have)))
            if need is not None:
                vcpu = need * ms / 1000.0
                entry["vcpu_needed"] = round(vcpu, 3)
                entry["machine_type"] = cheapest_type(vcpu)
            v = _vcpu(measured_type)
            if v and ms > 0:
                entry["capacity_rps"] = round(v / (ms / 1000.0), 1)
        roles[role] = entry
    if missing_cpu:
        unavailable.append(
            "CPU ms per request, vCPU needed and machine type for " + ", ".join(missing_cpu)
            + f" (no {', '.join(CPU_COLUMNS[r] for r in missing_cpu)} in the completed rows: "
            "measured with a labkit that did not record CPU per role)")

    bottleneck, bottleneck_cap = None, None
    caps = {r: roles[r]["capacity_rps"] for r in ("balancer", "tester") if roles[r]["capacity_rps"] is not None}
    if len(caps) < 2 or need is None:
        unavailable.append("bottleneck: needs the balancer's and the tester's CPU per request and machine types")
    else:
        low = min(caps, key=caps.get)
        bottleneck = low if caps[low] < need else "server"
        bottleneck_cap = caps[low] if bottleneck != "server" else None

    balancer_needed = roles["balancer"]["machine_type"]
    assumed = []
    b_type = balancer_needed or roles["balancer"]["measured_machine_type"] or server_type
    t_type = roles["tester"]["machine_type"] or roles["tester"]["measured_machine_type"] or server_type
    if not balancer_needed:
        assumed.append(f"balancer priced as {b_type}" + (
            " (no machine type carries the need at ≤ 80 %)" if roles["balancer"]["vcpu_needed"] else
            " (its CPU per request is not measured)"))
    if not roles["tester"]["machine_type"]:
        assumed.append(f"tester priced as {t_type}")
    cost = None
    if servers_min and server_type in machine_types.MACHINE_TYPES:
        cost = plan_cost(servers_min, server_type, b_type, t_type)
        cost["assumptions"] = assumed
    else:
        unavailable.append("cost_per_hour: needs servers_min and a known server machine type")

    answer = {
        "label": MODEL_LABEL,
        "users": users,
        "mean_bound_s": bound,
        "basis": (f"Little's law N = X·R (ab: closed loop, no think time): X ≥ {users} users / {basis}"
                  if bound else ""),
        "throughput_needed_rps": None if need is None else round(need, 1),
        "per_server_rps": None if per_server is None else round(per_server, 1),
        "per_server_basis": per_basis,
        "servers_min": servers_min,
        "servers_usl": servers_usl,
        "servers_usl_note": usl_note,
        "server_machine_type": server_type,
        "roles": roles,
        "bottleneck": bottleneck,
        "bottleneck_capacity_rps": bottleneck_cap,
        "balancer_needed": balancer_needed,
        "cost_per_hour": None if cost is None else cost["cost_per_hour"],
        "cost": cost,
        "unavailable": unavailable,
    }
    answer["conclusion"] = conclusion(answer)
    log.debug("capacity: %s", answer)
    return answer


def conclusion(a: dict) -> str:
    """One sentence saying what the capacity answer means."""
    if a["throughput_needed_rps"] is None:
        return "no Little's-law bound: the SLA bounds neither the mean nor the max response time"
    need = a["throughput_needed_rps"]
    parts = [f"{a['users']} users need ≥ {need:,.0f} req/s"]
    if a["servers_min"] is not None:
        parts.append(f"so at least {a['servers_min']} servers at {a['per_server_rps']:,.0f} req/s each")
    b = a["bottleneck"]
    if b in ("balancer", "tester"):
        r = a["roles"][b]
        parts.append(f"but one {r['measured_machine_type']} {b} caps at about {a['bottleneck_capacity_rps']:,.0f} "
                     f"req/s: no number of servers behind it can do it")
        if r["machine_type"]:
            parts.append(f"the {b} must be at least {r['machine_type']} ({r['vcpu_needed']:g} vCPU needed)")
        else:
            parts.append(f"no single machine type carries the {b}'s {r['vcpu_needed']:g} vCPU at ≤ 80 %")
    elif b == "server":
        parts.append("the balancer and tester as measured keep up: servers are the limit")
    else:
        parts.append("which role saturates first is not measured in these results")
    return "; ".join(parts)


# -- the part-2 rule ------------------------------------------------------------------------------
class Verdict(tuple):
    """``(accepted, why)``; true exactly when accepted (so ``assert part2_accepts(...)`` works)."""

    def __new__(cls, accepted: bool, why: str):
        return super().__new__(cls, (bool(accepted), why))

    @property
    def accepted(self) -> bool:
        return self[0]

    @property
    def why(self) -> str:
        return self[1]

    def __bool__(self) -> bool:
        return self[0]


def part2_accepts(df: pd.DataFrame, sla, users: int, nodes: int, balancer_type: str | None = None) -> Verdict:
    """Is ``nodes`` (with ``balancer_type``) an acceptable part-2 answer for these results? (design §8)

    When a tested node count meets the SLA for ``users``, exactly that measured
    ``nodes_needed`` is accepted. Otherwise any ``nodes ≥ servers_min`` of the
    capacity answer is, provided — when the results measure the balancer's CPU and the
    need requires a bigger balancer than the one measured — ``balancer_type`` names a
    machine type that carries the need (at least as many vCPU as the one required).
    Returns a :class:`Verdict` ``(accepted, why)``, true when accepted.
    """
    from labkit.analysis.sla import nodes_needed

    if isinstance(nodes, bool) or not isinstance(nodes, (int, np.integer)) or nodes < 1:
        return Verdict(False, f"the answer must be a positive whole number of nodes, not {nodes!r}")
    measured = nodes_needed(df, sla, users)
    if measured is not None:
        if int(nodes) == measured:
            return Verdict(True, f"{nodes} is the measured nodes_needed")
        return Verdict(False, f"a tested node count meets the SLA for {users} users: the answer is the measured {measured}")
    a = capacity_answer(df, sla, users)
    smin = a["servers_min"]
    if smin is None:
        return Verdict(False, "no servers_min can be derived from these results: " + "; ".join(a["unavailable"]))
    if nodes < smin:
        return Verdict(False, (f"{nodes} < servers_min = {smin}: by Little's law {users} users need ≥ "
                       f"{a['throughput_needed_rps']:,.0f} req/s and one server gave at most {a['per_server_rps']:,.0f}"))
    need_type = a["balancer_needed"]
    if a["roles"]["balancer"]["vcpu_needed"] is not None:
        if need_type is None:
            return Verdict(True, (f"{nodes} ≥ servers_min = {smin}; no single machine type carries the balancer "
                          "(the justification must say so)"))
        if not balancer_type:
            return Verdict(False, f"{nodes} ≥ servers_min = {smin}, but the answer must name the balancer: at least {need_type}")
        v = _vcpu(balancer_type)
        if v is None:
            return Verdict(False, f"unknown balancer machine type {balancer_type!r}")
        if v < machine_types.MACHINE_TYPES[need_type].vcpu:
            return Verdict(False, f"a {balancer_type} balancer cannot carry the need: at least {need_type}")
    return Verdict(True, f"{nodes} ≥ servers_min = {smin}" + (f" with a {balancer_type} balancer" if balancer_type else ""))


# -- text -----------------------------------------------------------------------------------------
def format_capacity(a: dict) -> list[str]:
    """The capacity answer as report lines; every number is labelled a model, with its basis."""
    def num(v, unit="", digits=0):
        return "not available" if v is None else f"{v:,.{digits}f}{unit}"

    lines = ["", f"Capacity for {a['users']} users — {a['label']}"]
    if a["throughput_needed_rps"] is not None:
        lines.append(f"  throughput needed (model):  {num(a['throughput_needed_rps'], ' req/s')}  [{a['basis']}]")
    b = a.get("per_server_basis")
    lines.append(f"  per server (measured):      {num(a['per_server_rps'], ' req/s')}"
                 + (f"  [best clean rps / nodes: {b['rps']:,.0f} req/s at {b['nodes']} node(s), c={b['concurrency']}]"
                    if b else ""))
    lines.append(f"  servers_min (model):        {num(a['servers_min'])}  [ceil(needed / per server): "
                 "no fewer servers can meet the mean bound]")
    lines.append(f"  servers_usl (model):        {num(a['servers_usl'])}  [{a['servers_usl_note']}]")
    lines.append("  per role (model: utilisation law U = X·D; capacity = vCPU / CPU per request):")
    lines.append(f"    {'role':<9}{'CPU ms/req':>11}{'vCPU needed':>13}  {'one machine for all (≤80 %)':<29}"
                 f"{'measured type':<15}{'capacity':>14}")
    for role, r in a["roles"].items():
        cap = num(r["capacity_rps"], " req/s") if r["capacity_rps"] is not None else "-"
        if role == "server" and r["capacity_rps"] is not None:
            cap += " each"
        lines.append(f"    {role:<9}{num(r['cpu_ms_per_request'], '', 3) if r['cpu_ms_per_request'] is not None else '-':>11}"
                     f"{num(r['vcpu_needed'], '', 2) if r['vcpu_needed'] is not None else '-':>13}  "
                     f"{(r['machine_type'] or ('none' if r['vcpu_needed'] is not None else '-')):<29}"
                     f"{(r['measured_machine_type'] or '-'):<15}{cap:>14}")
    lines.append(f"  bottleneck (model):         {a['bottleneck'] or 'not available'}"
                 + (f" (caps at {a['bottleneck_capacity_rps']:,.0f} req/s)" if a.get("bottleneck_capacity_rps") else ""))
    if a["cost_per_hour"] is not None:
        parts = ", ".join(f"{m['count']} × {m['machine_type']} {m['role']}" for m in a["cost"]["machines"])
        lines.append(f"  cost of the plan (model):   ${a['cost_per_hour']:.4f}/h  [{parts}; each with its disk and "
                     f"external IPv4 address; prices of {a['cost']['prices_as_of']}]")
        for note in a["cost"].get("assumptions") or []:
            lines.append(f"    assumed: {note}")
    for u in a["unavailable"]:
        lines.append(f"  cannot give: {u}")
    lines.append(f"  conclusion (model): {a['conclusion']}")
    return lines
