"""The results CSV: its columns (design §7), appending rows, loading them back.

This file is the contract between measuring (sweeps) and analysing (SLA,
charts): every row carries its full configuration, so a CSV can be re-read
without knowing how it was made.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

PERCENTILES = (50, 66, 75, 80, 90, 95, 98, 99)

COLUMNS: tuple[str, ...] = (
    "run_id", "started_at", "backend", "machine_type", "server", "workers", "nodes",
    "concurrency", "requests", "complete", "failed", "non_2xx", "aborted", "attempts",
    "time_taken_s", "rps", "mean_ms", "ab_mean_ms",
    *(f"p{p}_ms" for p in PERCENTILES),
    "max_ms", "connect_mean_ms",
)


def append_row(path: str | os.PathLike, row: dict) -> None:
    """Append one measured point to ``path`` (header written when the file is new).

    The row is flushed and fsync'ed before returning, so an interrupted sweep
    keeps every point it measured. Keys beyond :data:`COLUMNS` are ignored.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.exists() or path.stat().st_size == 0
    with open(path, "a", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS, extrasaction="ignore")
        if new:
            writer.writeheader()
        writer.writerow({c: _cell(row.get(c)) for c in COLUMNS})
        fh.flush()
        os.fsync(fh.fileno())


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(round(value, 3))
    return str(value)
