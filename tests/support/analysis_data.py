"""Hand-made results rows and CSVs for the analysis tests (SLA, USL, charts, report).

Every row is a :class:`labkit.record.Measurement` with all the §7 columns set, written
with the real :func:`labkit.results.append_row`, so the tests read exactly what a sweep writes.
"""

from __future__ import annotations

from pathlib import Path

from labkit.record import COLUMNS, PERCENTILES, Measurement
from labkit.results import append_row


def make_row(nodes: int = 1, concurrency: int = 10, mean: float = 50.0, p98: float | None = None,
             max_ms: float | None = None, **over) -> Measurement:
    """One completed point with plausible numbers; ``over`` replaces any column.

    Percentiles rise from ``0.8·mean`` (p50) to ``p98``; ``max_ms`` defaults to
    ``2·p98``. ``aborted=True`` empties the latency columns as a sweep does.
    """
    p98 = 1.5 * mean if p98 is None else p98
    max_ms = 2 * p98 if max_ms is None else max_ms
    requests = over.get("requests", 1000)
    row = {
        "run_id": "test", "started_at": "2024-05-01T12:00:00Z", "backend": "local",
        "machine_type": "f1-micro", "server": "flask", "workers": 1,
        "nodes": nodes, "concurrency": concurrency, "requests": requests,
        "complete": requests, "failed": 0, "non_2xx": 0, "aborted": False, "attempts": 1,
        "time_taken_s": 2.0, "rps": requests / 2.0, "mean_ms": mean,
        "ab_mean_ms": mean, "max_ms": max_ms, "connect_mean_ms": 1.0,
    }
    for p in PERCENTILES:
        row[f"p{p}_ms"] = 0.8 * mean + (p98 - 0.8 * mean) * (p - 50) / 48 if p <= 98 else (p98 + max_ms) / 2
    row.update(over)
    if row["aborted"]:
        for col in ("time_taken_s", "rps", "mean_ms", "ab_mean_ms", "max_ms", "connect_mean_ms",
                    *(f"p{p}_ms" for p in PERCENTILES)):
            if col not in over:
                row[col] = None
        row["attempts"] = over.get("attempts", 3)
        row["complete"] = over.get("complete", requests // 3)
    assert set(row) >= set(COLUMNS)
    return Measurement(**row)


def write_csv(path: Path, rows: list[Measurement]) -> Path:
    """Write ``rows`` with the real appender; returns ``path``."""
    path = Path(path)
    if path.exists():
        path.unlink()
    for r in rows:
        append_row(path, r)
    return path


def write_text(path: Path, text: str) -> Path:
    """Write raw CSV text (for malformed-file tests)."""
    path = Path(path)
    path.write_text(text)
    return path


def grid_rows(latency, nodes=(1, 2, 3), levels=(10, 20, 50, 100, 200, 500, 1000)) -> list[Measurement]:
    """Rows for every (nodes, concurrency), with ``latency(n, c) -> (mean, p98, max)``."""
    rows = []
    for n in nodes:
        for c in levels:
            mean, p98, mx = latency(n, c)
            rows.append(make_row(n, c, mean=mean, p98=p98, max_ms=mx))
    return rows


def cpu_rows(nodes=(1, 2, 3), levels=(10, 50, 100, 200), per_server=200.0, server_ms=0.8, balancer_ms=0.1,
             tester_ms=0.025, balancer="f1-micro", tester="f1-micro", requests=1000):
    """Rows whose throughput is ``per_server`` × nodes and whose roles spend the given CPU ms per request.

    Latency follows Little's law exactly (mean = c / X), so ``littles_law`` is 1. Defaults are
    physically possible on f1-micro machines (0.2 vCPU): servers 80 % busy, balancer 10-30 %.
    """
    rows = []
    for n in nodes:
        x = per_server * n
        t = requests / x
        for c in levels:
            mean = 1000.0 * c / x
            rows.append(make_row(n, c, mean=mean, p98=mean * 1.2, max_ms=mean * 1.5, time_taken_s=t, rps=x,
                                 requests=requests,
                                 server_cpu_s=requests * server_ms / 1000, tester_cpu_s=requests * tester_ms / 1000,
                                 tester_machine_type=tester,
                                 balancer_cpu_s=requests * balancer_ms / 1000 if n > 1 else None,
                                 balancer_machine_type=balancer if n > 1 else None))
    return rows
