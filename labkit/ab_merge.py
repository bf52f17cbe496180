"""Several ab processes measuring one point, merged exactly into one row (design §6, §7 ``testers``).

One ab process is single-threaded: one core carries a few thousand requests per second of
it, less than part 2's 6,667 req/s. A point can therefore be measured by ``k`` ab processes
started together (locally each pinned to its own core, remotely one per tester machine),
each with its share of the users and the requests (:func:`split`). Their results are
*merged*, not averaged (:func:`merge`):

* percentiles and ``max_ms`` are those of the concatenated per-request times of every
  process's ``-g`` file, with ab's own ``-e`` rule (:func:`percentile`), so they are exact
  over all requests (to ab's whole-ms resolution of ``-g``) -- averaging each process's
  percentiles would not be;
* ``mean_ms`` and ``connect_mean_ms`` are the means of the concatenated ``ttime`` and ``ctime``;
* ``complete``, ``failed``, ``non_2xx`` are summed; ``concurrency`` and ``requests`` are the totals;
* the window is the union of the processes' runs, from the first start to the last end
  (a process's start is its end, observed by the runner, minus its own ``Time taken``):
  ``time_taken_s`` is that window and ``rps`` = all completed requests / the window. With
  the processes started together the window is each one's run plus the start skew; the
  skew (latest start - earliest start) is returned beside the row and logged.
"""

from __future__ import annotations

import dataclasses
import logging
import statistics

from labkit.ab import AbCommand
from labkit.errors import AbParseError, ConfigError
from labkit.record import PERCENTILES, Measurement

log = logging.getLogger("labkit")


def _share(total: int, k: int, i: int) -> int:
    return total // k + (1 if i < total % k else 0)


def split(command: AbCommand, k: int) -> list[AbCommand]:
    """``command`` as ``k`` commands whose concurrencies and requests add up to its own.

    Users and requests are dealt out as evenly as whole numbers allow (the first
    ``total % k`` processes get one more). Each share must still be a valid ab run:
    at least one user, and no more users than requests.
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ConfigError(f"testers must be a positive integer, not {k!r}")
    if k == 1:
        return [command]
    if command.concurrency < k:
        raise ConfigError(f"{k} testers need at least {k} users (one each), not concurrency {command.concurrency}")
    return [dataclasses.replace(command, concurrency=_share(command.concurrency, k, i),
                                requests=_share(command.requests, k, i)) for i in range(k)]


def percentile(sorted_ms: list[float], percent: float) -> float:
    """ab's ``-e`` rule for ``percent`` of ``sorted_ms``: 0 → the fastest, 100 → the slowest, else
    ``stats[int(0.5 + n * percent / 100)]`` clamped to the last (see :func:`labkit.ab.clamp_percentiles`)."""
    n = len(sorted_ms)
    if n == 0:
        raise ValueError("no request times")
    if percent <= 0:
        return sorted_ms[0]
    if percent >= 100:
        return sorted_ms[-1]
    return sorted_ms[min(n - 1, int(0.5 + n * percent / 100.0))]


@dataclasses.dataclass(frozen=True)
class Part:
    """One ab process's share of a point: its parsed report, its ``-g`` rows and when it ended
    (epoch seconds, observed by the runner as the process exited)."""

    report: dict
    gnuplot: list[dict]
    ended: float

    @property
    def started(self) -> float:
        """When ab's own clock started: its end minus its ``Time taken for tests``."""
        return self.ended - self.report["time_taken_s"]


@dataclasses.dataclass(frozen=True)
class Merged:
    """The merged row and the start skew between the processes (seconds; logged, not a column)."""

    row: Measurement
    skew_s: float


def merge(parts: list[Part]) -> Merged:
    """The exact merge of ``parts`` (module docstring). Raises AbParseError when a process's ``-g``
    data does not hold one line per completed request (the merge would not be exact)."""
    if not parts:
        raise ValueError("nothing to merge")
    for i, p in enumerate(parts):
        if len(p.gnuplot) != p.report["complete"]:
            raise AbParseError("gnuplot file", f"ab process {i} completed {p.report['complete']} requests "
                               f"but its -g file holds {len(p.gnuplot)}")
    rows = [r for p in parts for r in p.gnuplot]
    complete = sum(p.report["complete"] for p in parts)
    concurrency = sum(p.report["concurrency"] for p in parts)
    start, end = min(p.started for p in parts), max(p.ended for p in parts)
    window = max(end - start, max(p.report["time_taken_s"] for p in parts))
    skew = max(p.started for p in parts) - start
    total = sorted(float(r["ttime"]) for r in rows)
    have = bool(total)
    row = Measurement(
        concurrency=concurrency, complete=complete,
        failed=sum(p.report["failed"] for p in parts), non_2xx=sum(p.report["non_2xx"] for p in parts),
        aborted=False, time_taken_s=round(window, 3), rps=round(complete / window, 2) if window > 0 else None,
        mean_ms=round(statistics.fmean(total), 3) if have else None,
        ab_mean_ms=round(concurrency * window * 1000.0 / complete, 3) if complete else None,
        **{f"p{p}_ms": (percentile(total, p) if have else None) for p in PERCENTILES},
        max_ms=total[-1] if have else None,
        connect_mean_ms=round(statistics.fmean(float(r["ctime"]) for r in rows), 3) if have else None,
        testers=len(parts))
    return Merged(row, round(skew, 4))


def combined_progress(progress, k: int):
    """``k`` per-process progress callbacks whose counts ``progress`` receives summed (None → Nones)."""
    if progress is None:
        return [None] * k
    done = [0] * k

    def one(i):
        def report(n: int) -> None:
            done[i] = n
            progress(sum(done))
        return report

    return [one(i) for i in range(k)]


__all__ = ["Merged", "Part", "combined_progress", "merge", "percentile", "split"]
