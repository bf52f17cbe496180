"""Calibrate the queueing model on some node counts, check it on the others: validate before use.

:func:`calibrate` builds a :class:`labkit.analysis.queueing.Network` from a results
DataFrame: the CPU per request of each role (:mod:`labkit.analysis.demand`), the
per-request time distribution (:func:`labkit.analysis.queueing.service_shape`) and the
one free parameter, the connections a server admits before its listen backlog is full
(``admit``: its requests in service plus the backlog of 128), chosen from
:data:`ADMIT_CHOICES` as the one that best reproduces the calibration points' mean, p98
and pass/fail.

:func:`holdout` calibrates on the smaller node counts (1–3 when 1–5 were measured) and
predicts every tested level of the others: mean (MVA and simulation), p98, max and
pass/fail under the SLA, beside the measured values, with the errors the answer quotes.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import pandas as pd

from labkit.analysis.demand import demands
from labkit.analysis.points import vcpu_of
from labkit.analysis.connections import SERVER_BACKLOG
from labkit.analysis.queueing import Network, mva, service_shape, simulate
from labkit.errors import ConfigError

log = logging.getLogger("labkit")

#: Connections a server admits (in service + listen backlog) the calibration chooses from.
ADMIT_CHOICES = (SERVER_BACKLOG + 8, SERVER_BACKLOG + 64, 2 * SERVER_BACKLOG + 128)
#: Requests simulated per point (ab's -n when smaller): enough for a p98, bounded for speed.
SIM_REQUESTS = 2000
#: Requests simulated per point while calibrating (each point is simulated once per admit choice).
CALIBRATION_REQUESTS = 600
MODEL_LABEL = "model (queueing: MVA + simulation, calibrated on your data) — not measured"


def _type(df: pd.DataFrame, col: str):
    s = df[col].dropna() if col in df.columns else pd.Series([], dtype="object")
    s = s[s.astype(str) != ""]
    return None if s.empty else s.mode().iloc[0]


def network_for(df: pd.DataFrame, servers: int, admit: float = math.inf) -> Network:
    """The network of the measured machines for ``servers`` nodes, from ``df``'s demands."""
    d = demands(df)
    if d["server"] is None:
        raise ConfigError("the queueing model needs the servers' CPU per request (server_cpu_s): "
                          "these results were measured without it")
    shape, _ = service_shape(df)
    s_type = _type(df, "machine_type")
    b = d["balancer"] or {}
    t = d["tester"] or {}
    return Network(servers=servers, server_cpu_s=d["server"]["cpu_ms_per_request"] / 1000.0,
                   server_vcpu=vcpu_of(s_type) or 1.0,
                   balancer_cpu_s=(b.get("cpu_ms_per_request") or 0.0) / 1000.0,
                   balancer_vcpu=b.get("vcpu") or vcpu_of(_type(df, "balancer_machine_type")) or 1.0,
                   tester_cpu_s=(t.get("cpu_ms_per_request") or 0.0) / 1000.0,
                   tester_vcpu=t.get("vcpu") or vcpu_of(_type(df, "tester_machine_type")) or 1.0,
                   admit=admit, shape=shape)


def predict_point(net: Network, users: int, requests: int, sla=None, seed: int = 0,
                  cap: int = SIM_REQUESTS) -> dict:
    """Mean (MVA), and p98, max, mean, failures (simulation of at most ``cap`` requests) for one point;
    ``meets`` under ``sla``. A server never holds more connections than there are users, so when
    ``users`` ≤ ``admit`` the backlog cannot fill and the simulation is the same for every admit."""
    from dataclasses import replace

    if users <= net.admit:
        net = replace(net, admit=math.inf)
    key = (net, int(users), min(int(requests), cap), seed)
    if key not in _SIMS:
        if len(_SIMS) > 4096:
            _SIMS.clear()
        _SIMS[key] = simulate(net, users, min(int(requests), cap), seed=seed)
    m = mva(net, users)
    s = _SIMS[key]
    out = {"mean_ms": m["mean_ms"], "mean_ms_sim": s.get("mean_ms"), "p98_ms": s.get("p98_ms"),
           "max_ms": s.get("max_ms"), "rps": m["rps"], "failed": s["failed"], "syn_retries": s["syn_retries"]}
    if sla is not None:
        from labkit.analysis.sla import as_sla

        vals = {"mean_ms": m["mean_ms"], **{k: v for k, v in s.items() if k.endswith("_ms")}}
        out["meets"] = s["failed"] == 0 and all(c.holds_value(vals.get(c.column)) for c in as_sla(sla).clauses)
    return out


_SIMS: dict = {}


def _err(pred, meas) -> float | None:
    if pred is None or meas is None or pd.isna(pred) or pd.isna(meas) or meas <= 0:
        return None
    return (float(pred) - float(meas)) / float(meas)


def _score(df: pd.DataFrame, net: Network, sla) -> float:
    """How badly ``net`` reproduces ``df``'s points: mean |log error| of mean and p98, plus pass/fail misses."""
    table = _table(df, sla)
    table = table[table["status"] != "aborted"]  # nothing measured there to compare (both sides fail)
    # only a level with more users than the smallest choice admits can tell the choices apart: below it the
    # backlog never fills and every choice predicts the same
    table = table[table["concurrency"] > min(ADMIT_CHOICES)]
    bad = []
    for r in table.itertuples(index=False):
        p = predict_point(_with_servers(net, int(r.nodes)), int(r.concurrency), int(r.requests), sla,
                          cap=CALIBRATION_REQUESTS)
        for pm, mm in ((p["mean_ms"], r.mean_ms), (p["p98_ms"], r.p98_ms)):
            if pm and mm and not pd.isna(mm) and mm > 0:
                bad.append(abs(math.log(pm / mm)))
        bad.append(0.0 if p["meets"] == bool(r.meets) else 1.0)
    return float(np.mean(bad)) if bad else math.inf


def _with_servers(net: Network, n: int) -> Network:
    from dataclasses import replace

    return replace(net, servers=int(n))


def _table(df: pd.DataFrame, sla) -> pd.DataFrame:
    """The points of ``df`` the model is compared on: every tested level (status ok or not), with ab's -n."""
    from labkit.analysis.sla import point_table

    table = point_table(df, sla)
    req = df.groupby(["nodes", "concurrency"])["requests"].max()
    table["requests"] = [int(req.get((n, c), SIM_REQUESTS)) for n, c in zip(table["nodes"], table["concurrency"])]
    return table


def calibrate(df: pd.DataFrame, sla) -> tuple[Network, dict]:
    """The network calibrated on ``df``: demands, the per-request shape, and ``admit`` from :data:`ADMIT_CHOICES`."""
    base = network_for(df, int(df["nodes"].min()))
    scores = {}
    for admit in ADMIT_CHOICES:
        from dataclasses import replace

        scores[admit] = _score(df, replace(base, admit=admit), sla)
    finite = {k: v for k, v in scores.items() if math.isfinite(v)}
    best = min(finite, key=finite.get) if finite else SERVER_BACKLOG + 64  # no level fills a backlog: any choice
    from dataclasses import replace

    _, src = service_shape(df)
    return replace(base, admit=best), {"admit": best, "scores": {str(k): round(v, 3) for k, v in scores.items()},
                                        "service_times": src}


def split(nodes: list[int]) -> tuple[list[int], list[int]]:
    """Calibration and holdout node counts: the smaller ~60 % (1–3 of 1–5) and the rest."""
    nodes = sorted(nodes)
    if len(nodes) < 2:
        return nodes, []
    k = max(1, math.ceil(0.6 * len(nodes)) - (1 if len(nodes) == 2 else 0))
    return nodes[:k], nodes[k:]


def holdout(df: pd.DataFrame, sla, predict: bool = True) -> dict:
    """Calibrate on the smaller node counts, predict the larger ones' tested levels, and the errors.

    Keys: ``calibrated_on``, ``checked_on`` (node counts), ``admit`` and the calibration
    ``scores``, ``service_times`` (where the per-request distribution comes from), ``points``
    (per held-out level: measured and predicted mean, p98, max, meets), ``errors``
    (median |relative error| of mean (MVA) and p98 over the held-out points whose
    measurement completed, and ``pass_fail_agreement`` as "k of n"), or ``refused`` with
    the reason when there is nothing to hold out. ``predict=False`` stops after the
    calibration (``errors`` None, a ``note`` says so).
    """
    nodes = sorted(int(n) for n in df["nodes"].unique())
    train_n, test_n = split(nodes)
    out = {"label": MODEL_LABEL, "calibrated_on": train_n, "checked_on": test_n}
    if not test_n:
        out["refused"] = "only one node count was measured: nothing to hold out"
        return out
    train = df[df["nodes"].isin(train_n)]
    try:
        net, info = calibrate(train, sla)
    except ConfigError as exc:
        out["refused"] = str(exc)
        return out
    out.update(info)
    if not predict:  # calibrated only (the plan needs no more); said so
        out["errors"] = None
        out["note"] = "calibrated only: the held-out points were not predicted in this call"
        return out
    rows, e_mean, e_p98, e_max, agree = [], [], [], [], 0
    table = _table(df[df["nodes"].isin(test_n)], sla)
    for r in table.itertuples(index=False):
        p = predict_point(_with_servers(net, int(r.nodes)), int(r.concurrency), int(r.requests), sla)
        row = {"nodes": int(r.nodes), "concurrency": int(r.concurrency), "status": r.status,
               "measured": {"mean_ms": _f(r.mean_ms), "p98_ms": _f(r.p98_ms), "max_ms": _f(r.max_ms),
                            "meets": bool(r.meets)},
               "predicted": {"mean_ms": round(p["mean_ms"], 1), "p98_ms": _r(p["p98_ms"]), "max_ms": _r(p["max_ms"]),
                             "meets": bool(p["meets"])}}
        rows.append(row)
        agree += int(row["predicted"]["meets"] == row["measured"]["meets"])
        if r.status == "ok":
            for acc, pm, mm in ((e_mean, p["mean_ms"], r.mean_ms), (e_p98, p["p98_ms"], r.p98_ms),
                                (e_max, p["max_ms"], r.max_ms)):
                e = _err(pm, mm)
                if e is not None:
                    acc.append(abs(e))
    out["points"] = rows
    out["errors"] = {"mean_median_abs_pct": _pct(e_mean), "p98_median_abs_pct": _pct(e_p98),
                     "max_median_abs_pct": _pct(e_max), "points_compared": len(e_mean),
                     "pass_fail_agreement": f"{agree} of {len(rows)}"}
    return out


def _f(v):
    return None if v is None or pd.isna(v) else round(float(v), 1)


def _r(v):
    return None if v is None else round(float(v), 1)


def _pct(errors: list[float]) -> float | None:
    return None if not errors else round(100.0 * float(np.median(errors)), 1)


__all__ = ["calibrate", "holdout", "network_for", "predict_point", "split"]
