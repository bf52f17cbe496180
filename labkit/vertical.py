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
from pathlib import Path

import pandas as pd

from labkit import profiles
from labkit.backends.base import Backend, ClusterSpec
from labkit.errors import ConfigError

log = logging.getLogger("labkit")

VERTICAL_TESTER = "e2-standard-2"
"""The local tester's machine type while measuring vertical scaling: the handout's micro tester
tops out at about 2,500 requests/s (bench/RESULTS.md, section 3), less than the bigger servers
serve, and a benchmark must measure the server, not the tester."""


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
    from labkit.teaching.interpret import _clean
    from labkit.machine_types import MACHINE_TYPES

    one = df[(df["nodes"] == 1) & _clean(df)]
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


def vertical_text(df: pd.DataFrame, concurrency=None) -> str:
    """Why a bigger machine does not help one Python process, and does help gunicorn's workers, with their numbers."""
    from labkit.teaching.interpret import _ms, _num

    lines = ["The Flask development server is one Python process: CPython's global interpreter lock runs one thread "
             "at a time, so it computes on at most one core whatever the machine has. gunicorn runs several worker "
             "processes, each with its own interpreter, which the kernel spreads over the cores. 'cores busy' below "
             "is the server's CPU seconds per second of the run (measured)."]
    vp = vertical_points(df, concurrency)
    if vp.empty:
        return "\n".join(lines + ["  No clean single-node rows to compare yet."])
    for r in vp.itertuples(index=False):
        busy = f", {r.cores_busy:.2f} cores busy of {r.vcpu:g}" if not pd.isna(r.cores_busy) else ""
        lines.append(f"  {r.server} ({r.workers} worker{'s' if r.workers > 1 else ''}) on {r.machine_type} "
                     f"({r.vcpu:g} vCPU), c={r.concurrency}: {_num(r.rps)} rps, mean {_ms(r.mean_ms)}{busy}")
    compared = 0
    for server, g in vp.groupby("server", sort=True):
        g = g.dropna(subset=["vcpu"]).sort_values("vcpu")
        if len(g) < 2 or g["vcpu"].iloc[0] == g["vcpu"].iloc[-1]:
            continue
        a, b = g.iloc[0], g.iloc[-1]
        gain, more = b["rps"] / a["rps"], b["vcpu"] / a["vcpu"]
        verdict = ("scaled with the machine" if gain >= 0.7 * more else
                   "did not keep up with the machine" if gain < 0.5 * more else "scaled partly")
        text = (f"  {server}: {a['machine_type']} → {b['machine_type']}: vCPU ×{more:.1f}, throughput "
                f"×{gain:.2f} ({_num(a['rps'])} → {_num(b['rps'])} rps): {verdict}")
        if not pd.isna(b["cores_busy"]):
            text += f"; on {b['machine_type']} it kept {b['cores_busy']:.2f} of {b['vcpu']:g} cores busy"
            if server == "flask" and b["vcpu"] > 1:
                text += (" — one process cannot use more than one" if b["cores_busy"] <= 1.15 else
                         " (more than one core: Werkzeug's threads also run C code and I/O outside the lock)")
        lines.append(text + ".")
        compared += 1
    if not compared:
        lines.append("  No server was measured on two machine types of different size, so how each scales with "
                     "the machine cannot be read from these results (the quick and full profiles measure that); "
                     "compare 'cores busy' with the vCPU above instead.")
    same = vp.groupby("machine_type").filter(lambda g: g["server"].nunique() > 1)
    for mt, g in same.groupby("machine_type", sort=False):
        f, gu = g[g["server"] == "flask"], g[g["server"] == "gunicorn"]
        if len(f) and len(gu):
            lines.append(f"  Same machine ({mt}): flask {_num(f['rps'].iloc[0])} rps vs gunicorn "
                         f"({int(gu['workers'].iloc[0])} workers) {_num(gu['rps'].iloc[0])} rps — part of the "
                         "difference is gunicorn being a leaner server, not only its workers.")
    return "\n".join(lines)
