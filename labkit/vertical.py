"""Vertical scaling (notebook 03): one node on bigger machines, Flask's dev server vs gunicorn.

The profile lists (machine type, server, workers) configurations; each is
measured on one node at the profile's vertical concurrency levels, appended to
the same results CSV as notebooks 01/02 (every row carries its configuration),
and compared in :func:`vertical_table` (drawn by
:func:`labkit.plots.vertical_chart`).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import pandas as pd

from . import profiles
from .backends.base import Backend, ClusterSpec
from .errors import ConfigError

log = logging.getLogger("labkit")

VERTICAL_TESTER = "e2-standard-2"
"""The local tester's machine type while measuring vertical scaling: the handout's micro tester
tops out at about 2,500 requests/s (bench/RESULTS.md, section 3), less than the bigger servers
serve, and a benchmark must measure the server, not the tester."""


def vertical_grids(profile: str, requests=None, concurrency=None) -> list:
    """One single-node grid per (machine type, server, workers) of the profile's vertical list."""
    from .sweep import profiles_grid

    p = profiles.get(profile)
    if not p.vertical:
        raise ConfigError(f"profile {profile!r} lists no machine types for vertical scaling")
    return [profiles_grid(profile, ClusterSpec(nodes=1, machine_type=mt, server=server, workers=workers),
                          nodes=(1,), concurrency=concurrency or p.vertical_concurrency, requests=requests)
            for mt, server, workers in p.vertical]


def vertical_backend(name: str, settings=None) -> Backend:
    """The backend for notebook 03: on ``local``, with a tester big enough not to be the limit."""
    from .backends import get_backend

    if name == "local":
        return get_backend(name, settings, tester_machine_type=VERTICAL_TESTER)
    return get_backend(name, settings)


def run_vertical(backend: Backend, grids, out) -> Path:
    """Measure each vertical grid on its own machines, appending to ``out`` (resuming).

    The backend is brought up with each grid's machine type and server first,
    so the sweep measures the configuration the grid names.
    """
    from .sweep import run_sweep

    for grid in grids:
        backend.up(grid.spec)
        run_sweep(backend, grid, out, resume=True)
    return Path(out)


def vertical_table(df: pd.DataFrame, concurrency=None) -> pd.DataFrame:
    """Throughput and mean latency per single-node configuration (machine type, server, workers).

    One row per configuration, ordered by vCPU; columns ``vcpu``, then
    ``rps@C`` and ``mean_ms@C`` per concurrency level (completed runs averaged).
    """
    from .machine_types import MACHINE_TYPES

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
