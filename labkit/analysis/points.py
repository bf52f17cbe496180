"""One truth per measured point: the analysis core every table, sentence, chart, widget and grade reads.

A *point* is one (nodes, concurrency) of a results DataFrame (design §7); with
``--repeats`` it has several rows. This module holds the rules that decide what a
point says, each stated once:

- **clean row** (:func:`is_clean`): ab completed it (not aborted), no failed and no
  non-2xx request, and a throughput and a mean were measured. Only a clean row
  measures the service: fast error responses inflate requests per second.
- **row status** / **point status** (:func:`row_status`, :func:`point_status`):
  ``aborted`` > ``refused`` (every response non-2xx) > ``errors`` > ``ok``; a
  point has the worst status of its rows (design §8).
- **deciding values**: with repeats, a point's latency values (mean, every
  percentile, max, connect mean) are the *worst run's*, clause by clause, over the
  rows ab completed — all runs must meet an SLA, so the worst one decides. No
  statistic here averages maxima. Throughput (``rps``) is the mean over clean rows.
- **Little's law** per point: rps × mean_s / concurrency over clean rows (≈ 1 for a
  sound closed-loop measurement; ab keeps ``concurrency`` requests in flight).
- **utilisation** per row and role (:func:`utilisation`): cpu_s / (time_taken_s ×
  vCPU × machines of that role); per point the mean over clean rows, and the
  busiest role (``bottleneck``).

:func:`points` is the one per-point table. :func:`labkit.analysis.sla.point_table`
adds the SLA verdict (meets, reason, borderline) to it; nothing else aggregates rows.
This module imports no other analysis module (it is the bottom of the layer).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from labkit import machine_types
from labkit.analysis.configurations import config_labels, listing
from labkit.errors import ConfigError
from labkit.record import PERCENTILES

ROLES = ("server", "balancer", "tester")
#: Results column holding each role's CPU seconds during ab's run (design §7).
CPU_COLUMNS = {"server": "server_cpu_s", "balancer": "balancer_cpu_s", "tester": "tester_cpu_s"}
#: Results column holding each role's machine type (the server's is ``machine_type``).
TYPE_COLUMNS = {"server": "machine_type", "balancer": "balancer_machine_type", "tester": "tester_machine_type"}
#: Latency columns a point reports as its worst run's value (the deciding value of an SLA clause).
LATENCY_COLUMNS = ("mean_ms", *(f"p{p}_ms" for p in PERCENTILES), "max_ms")
#: ``littles_law`` further than this from 1 flags the point (the data disagree with N = X·R).
LITTLE_TOLERANCE = 0.15
#: A point's status, from the worst of its rows (design §8).
STATUSES = ("ok", "errors", "refused", "aborted")
#: What the table's latency columns are, said where the table is shown.
DECIDING_NOTE = ("with repeats, each latency column is the worst run's value (all runs must meet the SLA); "
                 "req/s is the mean over clean runs")

#: The columns of :func:`points`, in order.
COLUMNS = (
    "nodes", "concurrency", "runs", "clean_runs", "aborted", "failed", "non_2xx", "status",
    "rps", *LATENCY_COLUMNS, "connect_mean_ms", "littles_law", "little_flag",
    *(f"{r}_util" for r in ROLES), *(f"{r}_cpu_ms_per_request" for r in ROLES), "bottleneck",
)


# -- rows -----------------------------------------------------------------------------------------
def is_ok(df: pd.DataFrame) -> pd.Series:
    """Per row: ab completed it (not aborted) with no failed and no non-2xx requests.

    Only such a row can meet an SLA (design §8).
    """
    ok = ~df["aborted"].astype(bool)
    ok &= (df["failed"] == 0).fillna(False).astype(bool)
    ok &= (df["non_2xx"] == 0).fillna(False).astype(bool)
    return ok.rename("ok")


def is_clean(df: pd.DataFrame) -> pd.Series:
    """Per row: :func:`is_ok` and a measured throughput and mean — the one clean-row rule.

    Throughput, Little's law, utilisation and service demand are read from clean rows only.
    """
    return (is_ok(df) & df["rps"].notna() & df["mean_ms"].notna()).rename("clean")


def row_status(df: pd.DataFrame) -> pd.Series:
    """Per row: ``aborted``, ``refused`` (every completed response non-2xx), ``errors`` or ``ok``."""
    aborted = df["aborted"].astype(bool)
    complete = df["complete"].astype("float64")
    non_2xx = df["non_2xx"].astype("float64").fillna(0)
    failed = df["failed"].astype("float64").fillna(0)
    refused = (complete > 0) & (non_2xx >= complete)
    errors = (non_2xx > 0) | (failed > 0)
    status = np.select([aborted.to_numpy(), refused.to_numpy(), errors.to_numpy()],
                       ["aborted", "refused", "errors"], default="ok")
    return pd.Series(status, index=df.index, name="status")


def point_status(rows: pd.DataFrame) -> str:
    """The status of one point from its rows (repeats): the worst of theirs.

    ``aborted`` > ``refused`` > ``errors`` > ``ok``: a point is ``ok`` only when every
    repeat is. Only an ``ok`` point can meet an SLA (design §8).
    """
    if len(rows) == 0:
        raise ConfigError("a point needs at least one row")
    found = set(row_status(rows))
    for status in ("aborted", "refused", "errors"):
        if status in found:
            return status
    return "ok"


def vcpu_of(name) -> float | None:
    """vCPU of machine type ``name``; ``None`` for an unknown or missing type."""
    if not isinstance(name, str) or name not in machine_types.MACHINE_TYPES:
        return None
    return machine_types.MACHINE_TYPES[name].vcpu


def has_cpu_columns(df: pd.DataFrame, role: str | None = None) -> bool:
    """True when some row holds the CPU seconds of ``role`` (any role when ``None``)."""
    roles = [role] if role else list(ROLES)
    return any(CPU_COLUMNS[r] in df.columns and df[CPU_COLUMNS[r]].notna().any() for r in roles)


def behind_balancer(df: pd.DataFrame) -> pd.Series:
    """Per row: the tester went through the balancer — more than one node, or one node with a balancer
    recorded (``balancer_machine_type``: the point that separates the balancer's cost, issue 20)."""
    typed = (df["balancer_machine_type"].fillna("").astype(str).str.strip() != "") \
        if "balancer_machine_type" in df.columns else pd.Series(False, index=df.index)
    return ((df["nodes"] > 1) | typed).rename("behind_balancer")


def one_node_behind_balancer(df: pd.DataFrame) -> pd.Series:
    """Per row: one node reached through the balancer — not the handout's single-server point."""
    return (behind_balancer(df) & (df["nodes"] == 1)).rename("one_node_behind_balancer")


def machines_of(df: pd.DataFrame, role: str) -> pd.Series:
    """Per row, how many machines the role had: ``nodes`` servers, one balancer, ``testers`` testers."""
    if role == "server":
        return df["nodes"].astype("float64")
    if role == "tester" and "testers" in df.columns:
        return pd.to_numeric(df["testers"], errors="coerce").fillna(1.0).clip(lower=1.0).astype("float64")
    return pd.Series(1.0, index=df.index)


def utilisation(df: pd.DataFrame) -> pd.DataFrame:
    """Per row, each role's measured utilisation: cpu_s / (time_taken_s × vCPU × machines of the role).

    Columns ``server``, ``balancer``, ``tester`` (NaN where the row lacks the CPU
    column, the time or a known machine type — e.g. the balancer at one node, or CSVs
    written before the CPU columns existed); the index is ``df``'s.
    """
    out = pd.DataFrame(index=df.index)
    t = pd.to_numeric(df["time_taken_s"], errors="coerce").astype("float64") if "time_taken_s" in df else None
    for role in ROLES:
        col, tcol = CPU_COLUMNS[role], TYPE_COLUMNS[role]
        if t is None or col not in df.columns or tcol not in df.columns:
            out[role] = np.nan
            continue
        vcpu = df[tcol].map(vcpu_of).astype("float64")
        cpu = pd.to_numeric(df[col], errors="coerce").astype("float64")
        out[role] = cpu / (t * vcpu * machines_of(df, role))
    return out.replace([np.inf, -np.inf], np.nan)


def cpu_ms_per_request(df: pd.DataFrame) -> pd.DataFrame:
    """Per row and role: CPU ms the role spent per completed request (all its machines together)."""
    out = pd.DataFrame(index=df.index)
    complete = pd.to_numeric(df["complete"], errors="coerce").astype("float64").where(lambda s: s > 0)
    for role in ROLES:
        col = CPU_COLUMNS[role]
        out[role] = (pd.to_numeric(df[col], errors="coerce").astype("float64") / complete * 1000.0
                     if col in df.columns else np.nan)
    return out.replace([np.inf, -np.inf], np.nan)


def littles_law_rows(df: pd.DataFrame) -> pd.Series:
    """Per row: rps × mean_s / concurrency (NaN where either is missing)."""
    return (df["rps"].astype("float64") * df["mean_ms"].astype("float64") / 1000.0
            / df["concurrency"].astype("float64")).rename("littles_law")


# -- points ---------------------------------------------------------------------------------------
def _refuse_pooled_configurations(df: pd.DataFrame) -> None:
    """ConfigError when the rows hold more than one configuration (machine type, server, workers)."""
    held = config_labels(df).value_counts()
    if len(held) > 1:
        raise ConfigError(f"these rows hold {len(held)} configurations ({listing(held)}); a point of one is not a "
                          "repeat of another's: analyse one at a time (labkit.handout_rows(df, machine_type), "
                          "or labkit report --machine-type/--server)")


def points(df: pd.DataFrame) -> pd.DataFrame:
    """The one per-point table: one row per tested (nodes, concurrency), sorted by both.

    Columns (:data:`COLUMNS`):

    - ``runs`` (rows measured), ``clean_runs`` (:func:`is_clean` rows), ``aborted`` (rows ab
      aborted), ``failed`` / ``non_2xx`` (summed over the rows), ``status`` (:func:`point_status`);
    - ``rps``: mean throughput over clean rows (NaN without one);
    - ``mean_ms``, ``p50_ms`` … ``p99_ms``, ``max_ms``, ``connect_mean_ms``: the **worst run's**
      value of each over the rows ab completed — the value that decides an SLA clause
      (:data:`DECIDING_NOTE`); NaN when every row aborted;
    - ``littles_law`` (mean over clean rows of rps × mean_s / concurrency) and ``little_flag``
      (off 1 by more than :data:`LITTLE_TOLERANCE`);
    - ``server_util``, ``balancer_util``, ``tester_util``: mean utilisation over clean rows
      (:func:`utilisation`); ``server_cpu_ms_per_request`` …: mean CPU ms per request of each
      role (all its machines) over clean rows; ``bottleneck``: the role with the highest
      utilisation (``None`` without CPU columns).

    ``table.attrs["note"]`` is :data:`DECIDING_NOTE`. Empty ``df`` → an empty table with these columns.
    One node reached directly and one node behind nginx are different points: rows of both at the
    same level are refused (:mod:`labkit.analysis.balancer_cost` compares them). So are rows of
    more than one configuration (machine type, server, workers) — notebook 03's bigger machines
    beside the handout's f1-micro in one results.csv — whose rows at a level would otherwise count
    as repeats of one point (:mod:`labkit.analysis.configurations` picks one).
    """
    if df.empty:
        return pd.DataFrame({c: pd.Series([], dtype="object") for c in COLUMNS})
    single = df["nodes"] == 1
    via = one_node_behind_balancer(df)
    mixed = sorted(set(df.loc[via, "concurrency"].astype(int)) & set(df.loc[single & ~via, "concurrency"].astype(int)))
    if mixed:
        raise ConfigError(f"one node reached directly and one node behind nginx are different points (both at "
                          f"c={', c='.join(map(str, mixed))}): analyse them apart, e.g. with labkit.balancer_cost")
    _refuse_pooled_configurations(df)
    work = pd.DataFrame({"nodes": df["nodes"].astype("int64"), "concurrency": df["concurrency"].astype("int64")},
                        index=df.index)
    clean = is_clean(df)
    done = ~df["aborted"].astype(bool)
    status = row_status(df)
    rank = status.map({s: i for i, s in enumerate(STATUSES)})
    util = utilisation(df)
    cost = cpu_ms_per_request(df)
    ll = littles_law_rows(df)
    for col in (*LATENCY_COLUMNS, "connect_mean_ms"):
        work[col] = (pd.to_numeric(df[col], errors="coerce").astype("float64").where(done)
                     if col in df.columns else np.nan)
    work["rps"] = df["rps"].astype("float64").where(clean)
    work["littles_law"] = ll.where(clean)
    for r in ROLES:
        work[f"{r}_util"] = util[r].where(clean)
        work[f"{r}_cpu_ms_per_request"] = cost[r].where(clean)
    work["clean_runs"] = clean.astype("int64")
    work["aborted"] = (~done).astype("int64")
    work["failed"] = pd.to_numeric(df["failed"], errors="coerce")
    work["non_2xx"] = pd.to_numeric(df["non_2xx"], errors="coerce")
    work["rank"] = rank
    g = work.groupby(["nodes", "concurrency"], sort=True)
    table = pd.DataFrame({
        "runs": g.size(),
        "clean_runs": g["clean_runs"].sum(),
        "aborted": g["aborted"].sum(),
        "failed": g["failed"].sum(min_count=1).astype("Int64"),
        "non_2xx": g["non_2xx"].sum(min_count=1).astype("Int64"),
        "status": g["rank"].max().map(dict(enumerate(STATUSES))),
        "rps": g["rps"].mean(),
    })
    worst = g[[*LATENCY_COLUMNS, "connect_mean_ms"]].max()
    means = g[["littles_law", *(f"{r}_util" for r in ROLES), *(f"{r}_cpu_ms_per_request" for r in ROLES)]].mean()
    table = table.join(worst).join(means).reset_index()
    table["little_flag"] = (table["littles_law"] - 1.0).abs() > LITTLE_TOLERANCE
    u = table[[f"{r}_util" for r in ROLES]].astype("float64")
    has = u.notna().any(axis=1)
    busiest = u.fillna(-1.0).to_numpy().argmax(axis=1)
    table["bottleneck"] = [ROLES[i] if h else None for i, h in zip(busiest, has)]
    table = table[list(COLUMNS)]
    table.attrs["note"] = DECIDING_NOTE
    return table


def point_rows(df: pd.DataFrame, nodes: int, concurrency: int) -> pd.DataFrame:
    """The rows (repeats) of one point."""
    return df[(df["nodes"] == nodes) & (df["concurrency"] == concurrency)]
