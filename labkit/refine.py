"""Refining the SLA boundary between two tested levels (design §8).

The handout's levels jump from 20 to 50 users, and one f1-micro server's true limit lies
between them (Little's law: 0.2 s × ~225 rps ≈ 45), so machine noise of ±10 % flips the
part-1 answer between 20 and 50. After a sweep's grid, :func:`bisect` narrows the bracket
between the highest level that met the SLA (every level up to it met) and the lowest that
failed: each probe level is measured :data:`PROBE_REPEATS` times and must meet in all of
them, until the bracket is at most 10 % of its lower end or at most 2 users (a 5-user stop,
25 % at a 20-user limit, let three quick labs answer 15, 20 and 15).

Probes are ordinary results rows (their ``repeat`` column counts 0, 1, 2), so
:func:`labkit.analysis.sla.max_concurrency` over every tested level *is* the refined answer; the
report also gives the answer on the handout's own levels. This module holds the pure
search (a predicate over levels); :func:`labkit.sweep.run_sweep` supplies the predicate
that measures.
"""

from __future__ import annotations

import logging
from typing import Callable, Iterable

log = logging.getLogger("labkit")

#: Each probe is measured this many times; all must meet (the first that fails decides: no more).
PROBE_REPEATS = 3
#: Stop when the bracket is at most this fraction of its lower end ...
REL_TOLERANCE = 0.10
#: ... or at most this many users.
ABS_TOLERANCE = 2


def converged(lo: int, hi: int, rel: float = REL_TOLERANCE, users: int = ABS_TOLERANCE) -> bool:
    """Whether the bracket ``lo`` (met) .. ``hi`` (failed) is narrow enough to stop."""
    return hi - lo <= users or hi - lo <= rel * lo


def bracket(levels: Iterable[tuple[int, bool]]) -> tuple[int, int] | None:
    """(highest level with every level up to it meeting, the next tested level) from ``(level, meets)``.

    None when there is nothing to refine: the lowest level already fails (no lower end) or
    no level fails (no upper end).
    """
    lo = hi = None
    for c, ok in sorted(levels):
        if not ok:
            hi = c
            break
        lo = c
    if lo is None or hi is None:
        return None
    return int(lo), int(hi)


def bisect(lo: int, hi: int, meets: Callable[[int], bool], rel: float = REL_TOLERANCE,
           users: int = ABS_TOLERANCE) -> tuple[int, int, list[tuple[int, bool]]]:
    """Bisect ``lo`` (meets) .. ``hi`` (fails) with ``meets(level)``; return (lo, hi, probes in order).

    Stops when :func:`converged`, or when no integer level is left between them.
    """
    if not 1 <= lo < hi:
        raise ValueError(f"a bracket needs 1 <= lo < hi, got {lo}..{hi}")
    probes: list[tuple[int, bool]] = []
    while not converged(lo, hi, rel, users):
        mid = (lo + hi) // 2
        if mid in (lo, hi):
            break
        ok = bool(meets(mid))
        probes.append((mid, ok))
        log.info("refine: c=%d %s; bracket %d..%d", mid, "meets" if ok else "fails",
                 mid if ok else lo, hi if ok else mid)
        lo, hi = (mid, hi) if ok else (lo, mid)
    return lo, hi, probes
