"""The results-CSV column names (design §7), importable without pandas.

:mod:`labkit.results` (which needs pandas to load CSVs) re-exports these. They
live here so that measuring code - :mod:`labkit.ab`, and with it ``labkit
bench`` - does not pay pandas' import (0.2-1 s per process on a busy 2-core
machine) just to know the percentile columns.
"""

from __future__ import annotations

PERCENTILES = (50, 66, 75, 80, 90, 95, 98, 99)

COLUMNS: tuple[str, ...] = (
    "run_id", "started_at", "backend", "machine_type", "server", "workers", "nodes",
    "concurrency", "requests", "complete", "failed", "non_2xx", "aborted", "attempts",
    "time_taken_s", "rps", "mean_ms", "ab_mean_ms",
    *(f"p{p}_ms" for p in PERCENTILES),
    "max_ms", "connect_mean_ms",
)
#: Written after the §7 columns: whether CPU limits were enforced, and why a point aborted.
EXTRA_COLUMNS: tuple[str, ...] = ("cpu_limited", "abort_reason")
