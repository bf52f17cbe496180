"""Findings: what the student's own results show, as numbers and flags (no words).

Each function takes the results DataFrame (:func:`labkit.results.load_results`) and
returns a frozen dataclass; :mod:`labkit.teaching.render` words it with a small
Markdown template. Splitting the two keeps every claim conditional on the data
(a template can only say what a flag allows) and lets the tests check findings
by value. Per-point data is read in one place, :func:`points` (one row per node count and
concurrency; the analysis helper's per-point table can replace it here).

- :func:`littles_law`: N = X·R at a few points, and where throughput stopped growing
  (flat, or dropping: a throughput that falls is not called flat);
- :func:`connections`: one node reached directly (Werkzeug's backlog of 128) vs behind
  nginx; connect stalls at the SYN retransmission times 1, 3, 7, 15 s, attributed to a
  full backlog only where the level exceeds it or the connect time shows it;
- :func:`noise`: max vs p99, repeats, and every clause within 10 % of its bound;
- :func:`usl`: the USL fit of throughput vs nodes, with ``explains`` False below R² 0.5.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from labkit.analysis import capacity
from labkit.analysis.connections import SERVER_BACKLOG, near_syn_retry, syn_retry_cause

#: A point is in the "flat" part of the throughput curve when its rps is at least this share of the peak.
FLAT_SHARE = 0.9
#: A later level whose throughput is below this share of the peak "drops" rather than flattens.
DROP_SHARE = 0.8
#: A clause is "near" its bound within this share of it (design §8's borderline).
NEAR = 0.10


def _pick(values: list, k: int) -> list:
    """Up to ``k`` items spread over ``values`` (first, middle, last...)."""
    if len(values) <= k:
        return list(values)
    idx = sorted({round(i * (len(values) - 1) / (k - 1)) for i in range(k)})
    return [values[i] for i in idx]


def points(df: pd.DataFrame) -> pd.DataFrame:
    """One row per (nodes, concurrency): the analysis's per-point table
    (:func:`labkit.analysis.points.points`: ``rps`` the mean over clean runs, latencies the worst run's,
    the values that decide an SLA clause), with ``ok_runs`` = its ``clean_runs``. Every finding reads
    per-point data here and nowhere else."""
    from labkit.analysis.points import points as point_table

    return point_table(df).rename(columns={"clean_runs": "ok_runs"})


_points = points


# -- Little's law -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LawPoint:
    """One clean point: X (rps), R (mean ms), X·R and X·R / N."""

    nodes: int
    concurrency: int
    rps: float
    mean_ms: float
    xr: float
    ratio: float
    holds: bool


@dataclass(frozen=True)
class Saturation:
    """One node count's throughput curve over its clean points.

    ``flat_from`` is the first level at ≥ 90 % of the peak when a higher level follows it
    (None: still growing at the highest clean level). ``drops`` is set when the highest
    clean level delivers under 80 % of the peak. ``model_mean_ms`` = highest level / peak
    rps (R = N / X, a model).
    """

    nodes: int
    clean_points: int
    peak_rps: float
    peak_at: int
    flat_from: int | None
    last: int
    last_rps: float
    flat_mean_ms: float
    last_mean_ms: float
    model_mean_ms: float
    drops: bool


@dataclass(frozen=True)
class LittlesLaw:
    points: tuple[LawPoint, ...]
    saturation: tuple[Saturation, ...]
    no_clean: tuple[int, ...]  # node counts without a clean point


def littles_law(df: pd.DataFrame, nodes=None, k: int = 3) -> LittlesLaw:
    """N = X·R on up to ``k`` clean points per node count (of ``nodes``: an int, a list, None for all)."""
    pts = _points(df)
    have = sorted(int(n) for n in pts["nodes"].unique()) if len(pts) else []
    if nodes is not None:
        want = [nodes] if isinstance(nodes, int) else list(nodes)
        have = [n for n in have if n in want]
    law, sat, none = [], [], []
    for n in have:
        clean = pts[(pts["nodes"] == n) & (pts["ok_runs"] > 0)].sort_values("concurrency")
        if clean.empty:
            none.append(n)
            continue
        for r in _pick(list(clean.itertuples(index=False)), k):
            xr = r.rps * r.mean_ms / 1000.0
            ratio = xr / r.concurrency
            law.append(LawPoint(n, int(r.concurrency), float(r.rps), float(r.mean_ms), xr, ratio,
                                abs(ratio - 1) <= capacity.LITTLE_TOLERANCE))
        if len(clean) >= 2:
            peak = clean.loc[clean["rps"].idxmax()]
            flat = clean[clean["rps"] >= FLAT_SHARE * peak["rps"]]
            first, last = flat.iloc[0], clean.iloc[-1]
            grows = int(first["concurrency"]) == int(last["concurrency"])
            sat.append(Saturation(
                nodes=n, clean_points=len(clean), peak_rps=float(peak["rps"]), peak_at=int(peak["concurrency"]),
                flat_from=None if grows else int(first["concurrency"]), last=int(last["concurrency"]),
                last_rps=float(last["rps"]), flat_mean_ms=float(first["mean_ms"]),
                last_mean_ms=float(last["mean_ms"]), model_mean_ms=float(last["concurrency"] / peak["rps"] * 1000),
                drops=bool(last["rps"] < DROP_SHARE * peak["rps"])))
    return LittlesLaw(tuple(law), tuple(sat), tuple(none))


# -- connections: backlog, SYN retransmissions, nginx -----------------------------------------------
@dataclass(frozen=True)
class Stall:
    """A point whose connect mean or longest request sits at a SYN retransmission time.

    ``cause`` is the attribution: ``"client"`` when the client's own connects stalled (the connect
    mean is ≥ 100 ms); else ``"upstream"`` behind nginx when the users per server exceed Werkzeug's
    128 (each request holds one upstream connection, so nginx's own connects to a server are dropped
    and retried while the client's connect stays fast); else ``"client"`` when the level exceeds the
    backlog of the listener the client reaches (Werkzeug's 128 at one node, nginx's 511); ``""``
    when neither holds: the connection was accepted at once and the time is not explained by
    dropped SYNs."""

    nodes: int
    concurrency: int
    what: str  # "connect_mean_ms" | "max_ms"
    ms: float
    retry_s: float
    connect_mean_ms: float
    cause: str


@dataclass(frozen=True)
class Connections:
    one_node_levels: tuple[int, ...]
    one_node_aborted: tuple[int, ...]
    above_backlog: tuple[int, ...]  # one-node levels above Werkzeug's backlog
    one_node_max_connect: tuple[int, float, float] | None  # (c, connect mean ms, max ms there)
    behind_levels: tuple[tuple[int, int], ...]  # (nodes, c) behind nginx
    behind_aborted: tuple[tuple[int, int], ...]
    behind_errors: tuple[tuple[int, int, str, int, int], ...]  # (nodes, c, status, non_2xx, failed)
    behind_max_connect: tuple[int, int, float] | None  # (nodes, c, connect mean ms)
    stalls: tuple[Stall, ...]
    table: tuple[ConnectRow, ...] = ()  # every point: users per server, connect mean, longest request, status


@dataclass(frozen=True)
class ConnectRow:
    nodes: int
    concurrency: int
    per_server: float
    connect_mean_ms: float
    max_ms: float
    status: str


def connections(df: pd.DataFrame) -> Connections:
    """What the student's points show about accepting connections, directly and behind nginx."""
    pts = _points(df)
    one, behind = pts[pts["nodes"] == 1], pts[pts["nodes"] > 1]
    aborted = df[df["aborted"].astype(bool)]
    ab_keys = sorted({(int(n), int(c)) for n, c in zip(aborted["nodes"], aborted["concurrency"])})
    stalls = []
    for r in pts.itertuples(index=False):
        cm = r.connect_mean_ms
        for what, v in (("connect_mean_ms", cm), ("max_ms", r.max_ms)):
            t = near_syn_retry(v)
            if t is not None:
                cause = syn_retry_cause(int(r.nodes), int(r.concurrency), cm)
                stalls.append(Stall(int(r.nodes), int(r.concurrency), what, float(v), t / 1000,
                                    float(cm) if not pd.isna(cm) else math.nan, cause))
    def top_connect(p):
        cm = p["connect_mean_ms"].dropna()
        return None if cm.empty else p.loc[cm.idxmax()]

    w1, wb = top_connect(one), top_connect(behind)
    errs = []
    if len(behind):
        nx = df.groupby(["nodes", "concurrency"])["non_2xx"].sum()
        fl = df.groupby(["nodes", "concurrency"])["failed"].sum()
        for r in behind[behind["status"].isin(["refused", "errors"])].itertuples(index=False):
            key = (r.nodes, r.concurrency)
            errs.append((int(r.nodes), int(r.concurrency), str(r.status), int(nx.get(key, 0) or 0),
                         int(fl.get(key, 0) or 0)))
    return Connections(
        one_node_levels=tuple(int(c) for c in one["concurrency"]),
        one_node_aborted=tuple(c for n, c in ab_keys if n == 1),
        above_backlog=tuple(int(c) for c in one["concurrency"] if c > SERVER_BACKLOG),
        one_node_max_connect=None if w1 is None else (int(w1["concurrency"]), float(w1["connect_mean_ms"]),
                                                      float(w1["max_ms"])),
        behind_levels=tuple((int(n), int(c)) for n, c in zip(behind["nodes"], behind["concurrency"])),
        behind_aborted=tuple(k for k in ab_keys if k[0] > 1),
        behind_errors=tuple(errs),
        behind_max_connect=None if wb is None else (int(wb["nodes"]), int(wb["concurrency"]),
                                                    float(wb["connect_mean_ms"])),
        stalls=tuple(stalls),
        table=tuple(ConnectRow(int(r.nodes), int(r.concurrency), r.concurrency / r.nodes,
                               float(r.connect_mean_ms), float(r.max_ms), str(r.status))
                    for r in pts.itertuples(index=False)))


# -- noise ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Gap:
    nodes: int
    concurrency: int
    max_ms: float
    p99_ms: float
    ratio: float


@dataclass(frozen=True)
class Near:
    """A clause within 10 % of its bound at a point: ``over`` > 0 means it fails by that share."""

    nodes: int
    concurrency: int
    metric: str
    value: float
    bound: float
    over: float


@dataclass(frozen=True)
class Repeat:
    nodes: int
    concurrency: int
    runs: int
    clean: int
    mean_lo: float
    mean_hi: float
    spread_pct: float


@dataclass(frozen=True)
class Noise:
    gaps: tuple[Gap, ...]  # max ≥ 2 × p99, widest first
    widest: Gap | None  # the widest max/p99 when none is ≥ 2
    repeats: tuple[Repeat, ...]
    sla: str | None
    near: tuple[Near, ...]
    runs: tuple[Run, ...] = ()  # every run of the repeated points


@dataclass(frozen=True)
class Run:
    nodes: int
    concurrency: int
    repeat: int
    status: str
    mean_ms: float
    p98_ms: float
    max_ms: float


def noise(df: pd.DataFrame, sla=None) -> Noise:
    """max vs p99 per clean point; repeated points and their spread; every clause near its bound."""
    from labkit.analysis.points import is_clean
    from labkit.analysis.sla import as_sla

    pts = _points(df)
    clean = pts[(pts["ok_runs"] > 0) & pts["p99_ms"].notna() & pts["max_ms"].notna()].copy()
    gaps, widest = (), None
    if len(clean):
        clean["gap"] = clean["max_ms"] / clean["p99_ms"].clip(lower=1e-9)
        allg = [Gap(int(r.nodes), int(r.concurrency), float(r.max_ms), float(r.p99_ms), float(r.gap))
                for r in clean.sort_values("gap", ascending=False).itertuples(index=False)]
        gaps = tuple(g for g in allg if g.ratio >= 2)
        widest = None if gaps else allg[0]
    reps, runs = [], []
    ok = is_clean(df)  # the analysis core's one clean-row rule
    for r in pts[pts["runs"] > 1].itertuples(index=False):
        every = df[(df["nodes"] == r.nodes) & (df["concurrency"] == r.concurrency)]
        for i, (idx, row) in enumerate(every.iterrows()):
            status = "aborted" if bool(row["aborted"]) else ("ok" if bool(ok.loc[idx]) else "errors")
            runs.append(Run(int(r.nodes), int(r.concurrency), int(row["repeat"]) if not pd.isna(row["repeat"]) else i,
                            status, float(row["mean_ms"]) if not pd.isna(row["mean_ms"]) else math.nan,
                            float(row["p98_ms"]) if not pd.isna(row["p98_ms"]) else math.nan,
                            float(row["max_ms"]) if not pd.isna(row["max_ms"]) else math.nan))
        rows = every[ok.loc[every.index]]
        m = rows["mean_ms"].astype("float64")
        spread = float((m.max() - m.min()) / m.mean() * 100) if len(m) and m.mean() else 0.0
        reps.append(Repeat(int(r.nodes), int(r.concurrency), int(r.runs), len(rows),
                           float(m.min()) if len(m) else math.nan, float(m.max()) if len(m) else math.nan, spread))
    near = []
    text = None
    if sla is not None:
        s = as_sla(sla)
        text = str(s)
        ok_rows = df[ok]
        for (n, c), rows in ok_rows.groupby(["nodes", "concurrency"], sort=True):
            for cl in s.clauses:
                col = cl.column
                if col not in rows or rows[col].isna().all():
                    continue
                v = float(rows[col].max())  # the worst run decides (every run must meet)
                over = (v - cl.ms) / cl.ms
                if abs(over) <= NEAR:
                    near.append(Near(int(n), int(c), cl.metric, v, float(cl.ms), over))
    return Noise(gaps, widest, tuple(reps), text, tuple(near), tuple(runs))


# -- the USL fit ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class UslFinding:
    """The USL fit of peak throughput vs nodes. ``explains``: R² ≥ 0.5 (only then is it drawn or worded)."""

    available: bool
    why_not: str
    peaks: tuple[tuple[int, float], ...]
    r2: float | None
    explains: bool
    summary: str


def usl(df: pd.DataFrame) -> UslFinding:
    from labkit.analysis.usl import MIN_R2, describe_fit, fit_nodes, throughput_by_nodes
    from labkit.errors import ConfigError

    try:
        peaks = tuple((int(r.nodes), float(r.rps)) for r in throughput_by_nodes(df).itertuples(index=False))
    except ConfigError:
        peaks = ()
    try:
        fit = fit_nodes(df)
    except ConfigError as exc:
        return UslFinding(False, str(exc), peaks, None, False, "")
    return UslFinding(True, "", peaks, float(fit.r2), bool(fit.r2 >= MIN_R2), describe_fit(fit, "nodes"))


# -- the values that decide the SLA ----------------------------------------------------------------
def deciding_table(df: pd.DataFrame) -> pd.DataFrame:
    """Per point, the values the SLA is decided on (the worst run of each latency, req/s the mean over clean
    runs), beside the handout's tables, which average a point's runs: the numbers the report quotes."""
    cols = ["nodes", "concurrency", "runs", "status", "rps", "mean_ms", "p98_ms", "p99_ms", "max_ms",
            "connect_mean_ms"]
    return points(df)[cols].reset_index(drop=True)
