"""What the balancer itself costs: one node reached directly vs the same node behind nginx.

Every other point behind nginx also has more servers, so its gains and losses mix the
balancer's cost with the servers'. One node measured both ways, at the same levels, is the
one comparison that holds everything but the balancer fixed (issue 20):

- at a level **below the knee** (the server not saturated), the difference of the means is
  the time the extra hop adds to every request (the tester → nginx → server connection and
  nginx's own work) — unless the path behind nginx is *faster*, which a hop cannot be: then
  the direct path has a cost of its own (with the handout's Flask development server and ab
  without keep-alive: the server's wait for more request data before it closes, which ab
  waits out and nginx does not), and the words say so instead;
- at a level **where the server is saturated**, the difference of the throughputs is what
  the balancer takes away from what one server delivers, and the balancer's own CPU per
  request (measured in its cgroup or on its host) is its demand, which the capacity model
  scales to many servers.

:func:`balancer_cost` is the table (one row per level measured both ways);
:func:`finding` picks the two levels a sentence quotes. Both read :func:`~labkit.analysis.points.points`
— the rows of each side are never pooled with the other's.
"""

from __future__ import annotations

import dataclasses
import math

import pandas as pd

from labkit.analysis.points import one_node_behind_balancer, points, vcpu_of

#: The columns of :func:`balancer_cost`, in order.
COLUMNS = ("concurrency", "runs_direct", "runs_behind", "status_direct", "status_behind",
           "rps_direct", "rps_behind", "rps_change_pct", "mean_direct_ms", "mean_behind_ms", "added_mean_ms",
           "server_util_direct", "server_util_behind", "balancer_util", "balancer_cpu_ms_per_request",
           "server_cpu_ms_direct", "server_cpu_ms_behind")


def _single(df: pd.DataFrame, behind: bool) -> pd.DataFrame:
    """The one-node rows of ``df`` reached directly (``behind`` False) or through nginx (True)."""
    if df is None or df.empty:
        return pd.DataFrame(columns=df.columns if df is not None else [])
    via = one_node_behind_balancer(df)
    return df[(df["nodes"] == 1) & (via if behind else ~via)]


def balancer_cost(direct: pd.DataFrame, behind: pd.DataFrame) -> pd.DataFrame:
    """One row per concurrency level that one node was measured at both directly (``direct``: e.g. the
    lab's results) and behind nginx (``behind``: the balancer-cost CSV), in :data:`COLUMNS`.

    ``rps_*``, ``mean_*`` and utilisations are each side's point values (:func:`points`: mean
    throughput and utilisation over clean runs, the worst run's mean); ``rps_change_pct`` is the
    throughput behind nginx relative to direct, in percent; ``added_mean_ms`` the mean behind
    minus the mean direct; ``server_cpu_ms_*`` the server's CPU ms per request each way. Levels measured
    one way only are left out (nothing is extrapolated).
    """
    d = points(_single(direct, False))
    b = points(_single(behind, True))
    if d.empty or b.empty:
        return pd.DataFrame({c: pd.Series([], dtype="float64") for c in COLUMNS})
    m = d.merge(b, on="concurrency", suffixes=("_d", "_b"))
    out = pd.DataFrame({
        "concurrency": m["concurrency"].astype("int64"),
        "runs_direct": m["runs_d"].astype("int64"),
        "runs_behind": m["runs_b"].astype("int64"),
        "status_direct": m["status_d"],
        "status_behind": m["status_b"],
        "rps_direct": m["rps_d"].astype("float64"),
        "rps_behind": m["rps_b"].astype("float64"),
        "rps_change_pct": (m["rps_b"].astype("float64") / m["rps_d"].astype("float64") - 1.0) * 100.0,
        "mean_direct_ms": m["mean_ms_d"].astype("float64"),
        "mean_behind_ms": m["mean_ms_b"].astype("float64"),
        "added_mean_ms": m["mean_ms_b"].astype("float64") - m["mean_ms_d"].astype("float64"),
        "server_util_direct": m["server_util_d"].astype("float64"),
        "server_util_behind": m["server_util_b"].astype("float64"),
        "balancer_util": m["balancer_util_b"].astype("float64"),
        "balancer_cpu_ms_per_request": m["balancer_cpu_ms_per_request_b"].astype("float64"),
        "server_cpu_ms_direct": m["server_cpu_ms_per_request_d"].astype("float64"),
        "server_cpu_ms_behind": m["server_cpu_ms_per_request_b"].astype("float64"),
    })
    return out[list(COLUMNS)].sort_values("concurrency").reset_index(drop=True)


@dataclasses.dataclass(frozen=True)
class Level:
    """One level of :func:`balancer_cost` as plain numbers (NaN where not measured)."""

    concurrency: int
    rps_direct: float
    rps_behind: float
    rps_change_pct: float
    mean_direct_ms: float
    mean_behind_ms: float
    added_mean_ms: float
    server_util_direct: float
    server_util_behind: float
    balancer_util: float
    balancer_cpu_ms_per_request: float
    server_cpu_ms_direct: float
    server_cpu_ms_behind: float
    clean: bool  # both sides ok: only then do the differences measure the balancer

    @property
    def cpu_explained_change_pct(self) -> float:
        """The throughput change, in percent, that the server's own CPU per request accounts for.

        A saturated server answers its CPU share divided by its CPU per request, so when the server
        is saturated both ways, ``server_cpu_ms_direct / server_cpu_ms_behind - 1`` is the part of
        ``rps_change_pct`` that comes from the server doing more (or less) work per request rather
        than from anything the balancer does in front of it.
        """
        return (self.server_cpu_ms_direct / self.server_cpu_ms_behind - 1.0) * 100.0


@dataclasses.dataclass(frozen=True)
class BalancerCost:
    """What a sentence about the balancer's cost may say, from :func:`balancer_cost`'s table.

    ``hop``: the lowest clean level (its ``added_mean_ms`` is the hop's latency when the server
    is not saturated there: ``hop_unsaturated``); ``load``: the highest clean level (its
    throughput change and the balancer's CPU). ``levels``: every level measured both ways;
    ``unclean``: levels where one side had errors or aborted (compared by nobody);
    ``repeated``: whether every level has more than one run on both sides; ``load_saturated``:
    the server was saturated at ``load`` both ways (then its throughput is its CPU share over its
    CPU per request, :attr:`Level.cpu_explained_change_pct`).
    """

    levels: tuple[Level, ...]
    hop: Level | None
    load: Level | None
    balancer_type: str | None
    balancer_vcpu: float | None
    unclean: tuple[int, ...]
    repeated: bool
    busier: str | None  # at ``load``: "balancer" or "server", whichever was busier behind nginx

    @property
    def hop_unsaturated(self) -> bool:
        return self.hop is not None and not (self.hop.server_util_direct >= SATURATED)

    @property
    def load_saturated(self) -> bool:
        x = self.load
        return (x is not None and x.server_util_direct >= SATURATED and x.server_util_behind >= SATURATED
                and not math.isnan(x.cpu_explained_change_pct))


#: A server this busy or more is saturated (its latency is queueing, not the hop).
SATURATED = 0.8


def _f(v) -> float:
    return float(v) if v is not None and not pd.isna(v) else math.nan


def finding(direct: pd.DataFrame, behind: pd.DataFrame) -> BalancerCost:
    """:class:`BalancerCost` of ``direct`` (one node reached directly) vs ``behind`` (behind nginx)."""
    t = balancer_cost(direct, behind)
    levels = tuple(Level(int(r.concurrency), *(_f(getattr(r, c)) for c in COLUMNS[5:]),
                         clean=(r.status_direct == "ok" and r.status_behind == "ok"))
                   for r in t.itertuples(index=False))
    clean = [x for x in levels if x.clean and not math.isnan(x.rps_change_pct)]
    hop = clean[0] if clean else None
    load = clean[-1] if len(clean) > 1 else None
    btype = None
    if behind is not None and not behind.empty and "balancer_machine_type" in behind.columns:
        types = _single(behind, True)["balancer_machine_type"].dropna().astype(str).unique()
        btype = types[0] if len(types) == 1 else None
    busier = None
    if load is not None and not math.isnan(load.balancer_util) and not math.isnan(load.server_util_behind):
        busier = "balancer" if load.balancer_util > load.server_util_behind else "server"
    return BalancerCost(
        levels=levels, hop=hop, load=load, balancer_type=btype, balancer_vcpu=vcpu_of(btype),
        unclean=tuple(x.concurrency for x in levels if not x.clean),
        repeated=bool(len(t)) and bool((t["runs_direct"] > 1).all() and (t["runs_behind"] > 1).all()),
        busier=busier)
