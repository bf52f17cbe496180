"""Service demand per role, from the points where the role is busiest, and its check against the data.

The utilisation law U = X · D / vCPU ties a role's CPU to the throughput it carries;
D (CPU seconds per request) is the role's *service demand* and vCPU / D the most one
machine of it can serve. Per-request CPU falls with load (a busy nginx batches its
events: 0.33 ms at 175 req/s and 0.19 ms at 585 req/s in one run), so a median over
light-load rows understates every cap. The estimator here:

- takes the role's clean rows (:func:`labkit.analysis.points.is_clean`) with its CPU
  column — the balancer's only with more than one node — and keeps the **top half by
  utilisation** (at least three rows when there are that many);
- fits the role's CPU rate (CPU seconds per second of ab's run, all its machines) =
  a + D · throughput over them by least squares (:func:`scipy.stats.linregress`) — the
  utilisation law with an intercept: the slope is the marginal CPU per request, the
  intercept absorbs a fixed cost per second (idle polling, the kernel) that a ratio would
  spread over the requests. (Regressing CPU seconds on completed requests says nothing
  when every point ran the same ``-n``, as the handout's grid does.) With fewer than three
  busy rows, or a non-positive slope — a role saturated at every busy row has one CPU rate
  whatever the throughput — the median of the busy rows' CPU / requests is used instead
  (``estimator`` says which);
- for the server, rows behind a balancer (nodes > 1) when there are any: that is the
  topology a capacity plan builds, and a server reached directly by ab (one node) pays
  more CPU per request (``topology`` says which rows);
- gives the spread as the interquartile range of the busy rows' per-request CPU;
- applies the **floor**: a role's capacity (vCPU / D per machine) is never below what it
  already delivered — at the clean row of its highest throughput, X / U there (with U
  taken as at most 1). When the fit says less, D is lowered to meet the floor
  (``floored``).

:func:`utilisation_check` predicts every clean row's utilisation from D (U = X·D /
(vCPU × machines)) and reports the error per role: the model checked against the data.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from labkit.analysis.points import CPU_COLUMNS, ROLES, TYPE_COLUMNS, is_clean, machines_of, utilisation, vcpu_of

log = logging.getLogger("labkit")

#: Busy rows all at least this utilised: the role was saturated there (its CPU rate cannot vary).
SATURATED = 0.9
#: Fewer busy rows than this: the median of their CPU per request, not a regression.
MIN_REGRESSION_ROWS = 3


def _mode(series: pd.Series):
    s = series.dropna()
    s = s[s.astype(str) != ""]
    return None if s.empty else s.mode().iloc[0]


def role_rows(df: pd.DataFrame, role: str) -> pd.DataFrame:
    """The clean rows that measured ``role``'s CPU (the balancer's only where there is one: nodes > 1)."""
    col = CPU_COLUMNS[role]
    if col not in df.columns:
        return df.iloc[0:0]
    rows = df[is_clean(df) & df[col].notna() & (pd.to_numeric(df["complete"], errors="coerce") > 0)]
    if role == "balancer" or (role == "server" and (rows["nodes"] > 1).any()):
        rows = rows[rows["nodes"] > 1]
    return rows


def service_demand(df: pd.DataFrame, role: str) -> dict | None:
    """The role's service demand from its busiest rows; ``None`` when no clean row measured its CPU.

    Keys: ``cpu_ms_per_request`` (D, per request, all the role's machines together — each
    request visits one server, one balancer and one tester), ``spread_ms`` ([q1, q3] of the
    busy rows' CPU per request), ``estimator`` (``"regression"`` or ``"median"``, over
    ``busy_rows`` rows with utilisation ≥ ``busy_from``), ``intercept_cpu_per_s`` (regression only), ``topology``,
    ``machine_type`` (the measured one), ``vcpu``, ``capacity_rps`` (per machine: vCPU / D),
    ``floor_rps`` (X / U at the row of the highest throughput, per machine) with
    ``floor_at`` (nodes, concurrency of that row), and ``floored`` (D lowered to the floor).
    """
    rows = role_rows(df, role)
    if rows.empty:
        return None
    mt = _mode(rows[TYPE_COLUMNS[role]]) if TYPE_COLUMNS[role] in rows else None
    vcpu = vcpu_of(mt)
    u = utilisation(rows)[role]
    cpu = pd.to_numeric(rows[CPU_COLUMNS[role]], errors="coerce").astype("float64")
    n = pd.to_numeric(rows["complete"], errors="coerce").astype("float64")
    per_req = cpu / n
    if u.notna().any():
        cut = float(u.median())
        busy = u >= cut
        if busy.sum() < MIN_REGRESSION_ROWS:  # keep the busiest three when there are three
            busy = u.rank(ascending=False, method="first") <= min(MIN_REGRESSION_ROWS, int(u.notna().sum()))
        cut = float(u[busy].min())
    else:  # no machine type to turn CPU into utilisation: the most loaded rows by throughput
        x = rows["rps"].astype("float64")
        busy = x >= x.median()
        cut = float("nan")
    b_req = per_req[busy]
    machines = machines_of(rows, role)
    # per machine of the role: CPU rate (CPU s per s) against throughput (req/s)
    rate = (cpu / pd.to_numeric(rows["time_taken_s"], errors="coerce").astype("float64") / machines)[busy]
    x = (rows["rps"].astype("float64") / machines)[busy]
    estimator, intercept, d = "median", 0.0, float(b_req.median())
    saturated = vcpu is not None and u[busy].notna().all() and float(u[busy].min()) >= SATURATED
    if saturated:  # one CPU rate whatever the throughput: X / U is the capacity, row by row
        estimator, d = "saturated", float(vcpu / (x / u[busy].clip(upper=1.0)).median())
    elif len(x) >= MIN_REGRESSION_ROWS and x.nunique() > 1:
        from scipy.stats import linregress

        fit = linregress(x.to_numpy(), rate.to_numpy())
        if fit.slope > 0 and fit.intercept >= 0:
            estimator, intercept, d = "regression", float(fit.intercept), float(fit.slope)
    out = {
        "cpu_ms_per_request": d * 1000.0,
        "spread_ms": [float(b_req.quantile(0.25)) * 1000.0, float(b_req.quantile(0.75)) * 1000.0],
        "estimator": estimator, "busy_rows": int(busy.sum()), "rows": int(len(rows)),
        "busy_from": None if np.isnan(cut) else round(cut, 3),
        "intercept_cpu_per_s": intercept, "machine_type": mt, "vcpu": vcpu,
        "topology": "behind a balancer (nodes > 1)" if (rows["nodes"] > 1).all() else "one node, no balancer",
        "capacity_rps": None, "floor_rps": None, "floor_at": None, "floored": False,
    }
    if vcpu:
        per_machine = rows["rps"].astype("float64") / machines_of(rows, role)
        top = per_machine.idxmax()
        ut = u.get(top)
        if ut is not None and not pd.isna(ut) and ut > 0:
            floor = float(per_machine[top] / min(float(ut), 1.0))
            out["floor_rps"] = floor
            out["floor_at"] = {"nodes": int(rows.loc[top, "nodes"]), "concurrency": int(rows.loc[top, "concurrency"]),
                               "rps": float(rows.loc[top, "rps"]), "utilisation": float(ut)}
            # d == 0: CPU below the counters' resolution (e.g. /proc's 10 ms ticks on a remote host);
            # the throughput the role delivered is then the only bound known
            if d <= 0 or (vcpu - intercept) / d < floor:
                d = (vcpu - intercept) / floor
                out["cpu_ms_per_request"] = d * 1000.0
                out["floored"] = True
        if d > 0:
            out["capacity_rps"] = (vcpu - intercept) / d
        else:
            log.warning("%s: no measurable CPU per request (below the counters' resolution); no capacity", role)
    return out


_CACHE: dict = {}


def demands(df: pd.DataFrame) -> dict[str, dict | None]:
    """:func:`service_demand` for every role (cached per process by the rows' content)."""
    import copy

    key = (int(pd.util.hash_pandas_object(df, index=False).sum()), len(df), tuple(df.columns))
    if key not in _CACHE:
        if len(_CACHE) > 256:
            _CACHE.clear()
        _CACHE[key] = {role: service_demand(df, role) for role in ROLES}
    return copy.deepcopy(_CACHE[key])


def utilisation_check(df: pd.DataFrame, found: dict[str, dict | None] | None = None) -> dict:
    """Predicted (U = (a + X·D) / vCPU, X per machine) against measured utilisation at every clean row, per role.

    Per role with a demand: ``rows`` checked, ``mean_abs_error`` and ``max_abs_error`` (in
    utilisation, 0.05 = 5 percentage points), ``bias`` (mean of predicted − measured) and
    ``points`` (nodes, concurrency, measured, predicted) — or ``None`` for a role without.
    """
    found = found if found is not None else demands(df)
    out: dict[str, dict | None] = {}
    for role in ROLES:
        d = found.get(role)
        rows = role_rows(df, role)
        if d is None or not d.get("vcpu") or rows.empty:
            out[role] = None
            continue
        measured = utilisation(rows)[role]
        x = rows["rps"].astype("float64") / machines_of(rows, role)
        predicted = (d["intercept_cpu_per_s"] + x * d["cpu_ms_per_request"] / 1000.0) / d["vcpu"]
        keep = measured.notna() & predicted.notna()
        err = (predicted - measured)[keep]
        if err.empty:
            out[role] = None
            continue
        out[role] = {
            "rows": int(keep.sum()),
            "mean_abs_error": round(float(err.abs().mean()), 4),
            "max_abs_error": round(float(err.abs().max()), 4),
            "bias": round(float(err.mean()), 4),
            "points": [{"nodes": int(r.nodes), "concurrency": int(r.concurrency),
                        "measured": round(float(m), 4), "predicted": round(float(p), 4)}
                       for r, m, p in zip(rows[keep].itertuples(), measured[keep], predicted[keep])],
        }
    return out
