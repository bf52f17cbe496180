"""Vertical scaling (notebook 03): one node on bigger machines, Flask's dev server vs gunicorn.

The profile lists (machine type, server, workers) configurations; each is
measured on one node at the profile's vertical concurrency levels, appended to
the same results CSV as notebooks 01/02 (every row carries its configuration),
and compared in :func:`vertical_table` (drawn by
:func:`labkit.analysis.plots.vertical_chart`) and in words, from the student's own numbers, by
:func:`vertical_text`.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from labkit import profiles
from labkit.backends.base import Backend, ClusterSpec
from labkit.errors import ConfigError

log = logging.getLogger("labkit")

VERTICAL_TESTER = "e2-standard-2"
"""The local tester's machine type while measuring vertical scaling: the handout's micro tester
can serve fewer requests/s than the bigger servers (bench/RESULTS.md, section 3), and a
benchmark must measure the server, not the tester."""


def vertical_grids(profile: str, requests=None, concurrency=None) -> list:
    """One single-node grid per (machine type, server, workers) of the profile's vertical list."""
    from labkit.sweep import profiles_grid

    p = profiles.get(profile)
    if not p.vertical:
        raise ConfigError(f"profile {profile!r} lists no machine types for vertical scaling")
    return [profiles_grid(profile, ClusterSpec(nodes=1, machine_type=mt, server=server, workers=workers),
                          nodes=(1,), concurrency=concurrency or p.vertical_concurrency, requests=requests)
            for mt, server, workers in p.vertical]


def vertical_backend(name: str, settings=None, **options) -> Backend:
    """The backend for notebook 03: on ``local``, with a tester big enough not to be the limit.

    ``options`` are the backend's own, as for :func:`labkit.backends.get_backend` (``project``
    and ``zone`` for gcp, ``hosts`` for ssh: the notebooks' ``cloud`` parameter).
    """
    from labkit.backends import get_backend

    if name == "local":
        options.setdefault("tester_machine_type", VERTICAL_TESTER)
    return get_backend(name, settings, **options)


def run_vertical(backend: Backend, grids, out) -> Path:
    """Measure each vertical grid on its own machines, appending to ``out`` (resuming).

    The backend is brought up with each grid's machine type and server first,
    so the sweep measures the configuration the grid names.
    """
    from labkit.sweep import run_sweep

    for grid in grids:
        backend.up(grid.spec)
        run_sweep(backend, grid, out, resume=True)
    return Path(out)


def vertical_table(df: pd.DataFrame, concurrency=None) -> pd.DataFrame:
    """Throughput and mean latency per single-node configuration (machine type, server, workers).

    One row per configuration, ordered by vCPU; columns ``vcpu``, then
    ``rps@C`` and ``mean_ms@C`` per concurrency level (completed runs averaged).
    """
    from labkit.machine_types import MACHINE_TYPES

    one = df[(df["nodes"] == 1) & ~df["aborted"]]
    if concurrency is not None:
        one = one[one["concurrency"].isin(list(concurrency))]
    if one.empty:
        raise ConfigError("no completed single-node rows to compare")
    g = one.groupby(["machine_type", "server", "workers", "concurrency"])[["rps", "mean_ms"]].mean()
    wide = g.unstack("concurrency")
    wide.columns = [f"{m}@{c}" for m, c in wide.columns]
    wide = wide.reset_index()
    wide.insert(1, "vcpu", wide["machine_type"].map(lambda m: MACHINE_TYPES[m].vcpu if m in MACHINE_TYPES else math.nan))
    return wide.sort_values(["vcpu", "server", "workers"]).reset_index(drop=True)


# -- interpreting the results (notebook 03) --------------------------------------------------------------
def vertical_points(df: pd.DataFrame, concurrency=None) -> pd.DataFrame:
    """Per single-node configuration at its highest clean concurrency (or ``concurrency``): ``machine_type``,
    ``server``, ``workers``, ``vcpu``, ``concurrency``, ``rps``, ``mean_ms``, ``cores_busy`` (server CPU
    seconds per second of ab's run: how many cores the server kept busy, NaN without the CPU column)."""
    from labkit.analysis.points import is_clean
    from labkit.machine_types import MACHINE_TYPES

    one = df[(df["nodes"] == 1) & is_clean(df)]
    if concurrency is not None:
        one = one[one["concurrency"].isin(list(concurrency))]
    recs = []
    for (mt, server, workers), g in one.groupby(["machine_type", "server", "workers"], sort=False):
        c = int(g["concurrency"].max())
        rows = g[g["concurrency"] == c]
        busy = math.nan
        if "server_cpu_s" in rows and rows["server_cpu_s"].notna().any():
            busy = float((rows["server_cpu_s"].astype("float64") / rows["time_taken_s"].astype("float64")).mean())
        recs.append({"machine_type": mt, "server": server, "workers": int(workers),
                     "vcpu": MACHINE_TYPES[mt].vcpu if mt in MACHINE_TYPES else math.nan,
                     "concurrency": c, "rps": float(rows["rps"].mean()), "mean_ms": float(rows["mean_ms"].mean()),
                     "cores_busy": busy})
    out = pd.DataFrame.from_records(recs, columns=["machine_type", "server", "workers", "vcpu", "concurrency", "rps",
                                                   "mean_ms", "cores_busy"])
    return out.sort_values(["server", "vcpu", "workers"]).reset_index(drop=True)


@dataclass(frozen=True)
class Scaling:
    """One server kind measured on its smallest and largest machine type: the ratios and a verdict
    (``"scaled"`` when throughput grew by ≥ 70 % of the vCPU ratio, ``"did not keep up"`` under 50 %,
    else ``"scaled partly"``)."""

    server: str
    small: str
    large: str
    vcpu_ratio: float
    rps_ratio: float
    small_rps: float
    large_rps: float
    verdict: str
    cores_busy: float  # on the large machine (NaN without the CPU column)
    large_vcpu: float


@dataclass(frozen=True)
class Vertical:
    rows: tuple[dict, ...]  # vertical_points' rows, plus ``tester``
    scaling: tuple[Scaling, ...]
    flask_above_one_vcpu: bool  # a flask server measured on more than one vCPU
    testers: tuple[str, ...]  # the tester machine types the rows were measured with


def vertical_finding(df: pd.DataFrame, concurrency=None) -> Vertical:
    """What the single-node rows show about bigger machines (numbers and flags, no words)."""
    vp = vertical_points(df, concurrency)
    testers = []
    rows = []
    for r in vp.to_dict("records"):
        one = df[(df["nodes"] == 1) & (df["machine_type"] == r["machine_type"]) & (df["server"] == r["server"])
                 & (df["workers"] == r["workers"]) & (df["concurrency"] == r["concurrency"])]
        t = one["tester_machine_type"].dropna() if "tester_machine_type" in one else pd.Series(dtype=object)
        r["tester"] = str(t.mode().iloc[0]) if len(t) else "not recorded"
        testers.append(r["tester"])
        rows.append(r)
    scaling = []
    for server, g in vp.groupby("server", sort=True):
        g = g.dropna(subset=["vcpu"]).sort_values(["vcpu", "workers"])
        if len(g) < 2 or g["vcpu"].iloc[0] == g["vcpu"].iloc[-1]:
            continue
        a, b = g.iloc[0], g.iloc[-1]
        gain, more = float(b["rps"] / a["rps"]), float(b["vcpu"] / a["vcpu"])
        verdict = ("scaled" if gain >= 0.7 * more else "did not keep up" if gain < 0.5 * more else "scaled partly")
        scaling.append(Scaling(server, a["machine_type"], b["machine_type"], more, gain, float(a["rps"]),
                               float(b["rps"]), verdict, float(b["cores_busy"]), float(b["vcpu"])))
    flask = vp[(vp["server"] == "flask") & (vp["vcpu"] > 1)]
    return Vertical(tuple(rows), tuple(scaling), bool(len(flask)), tuple(sorted(set(testers))))


def vertical_text(df: pd.DataFrame, concurrency=None):
    """What the student's single-node rows show (:func:`vertical_finding`), as Markdown: a heading that
    states the measured ratios, the evidence table, and what the rows cannot show."""
    from labkit.teaching.render import markdown

    return markdown("vertical.md.j2", f=vertical_finding(df, concurrency))
