"""Wait until the machines are idle before a point is measured (design §6, "settle").

After an overloaded or aborted point a server is still draining queued connections for
seconds; a light point started then measures that backlog, not itself. :func:`wait_idle`
samples every machine's cumulative CPU seconds and returns once each one's rate over a
short window is below ``threshold`` (5 %) of its quota *and* no connection is still queued
for a server (optional ``pending`` counts: an aborted point's backlog drains in TCP
retransmission waves seconds apart, idle in between); :func:`wait_responsive` is the
fallback where no CPU counter can be read: every server's ``/status`` answers at its idle
latency. Both are bounded: on timeout they log a warning and return the time waited --
the point is measured anyway and the wait is recorded in ``settle_s``.

A sample is ``{machine: (cpu_seconds or None, vcpu)}`` taken at one instant; the caller may
pass the last sample it took (e.g. just after the previous ab run) so that a lab that is
already quiet costs no more than one short window.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

log = logging.getLogger("labkit")

Sample = dict[str, tuple[float | None, float]]

THRESHOLD = 0.05  # of a machine's quota
FIRST_WINDOW = 0.025  # s: a quiet lab is recognised in one short window (a busy f1-micro uses 5 ms of it)...
WINDOW = 0.25  # s: ...a busy one is re-checked at this pace
MAX_AGE = 1.0  # s: an older previous sample is not used (its average could hide a recent burst)
IDLE_LATENCY = 0.1  # s: /status answering faster than this is "idle" (an idle f1-micro: a few ms)


def busy(before: tuple[float, Sample], after: tuple[float, Sample], threshold: float = THRESHOLD) -> dict[str, float]:
    """Machines whose CPU rate between two timed samples is at or above ``threshold`` of their quota
    (name -> fraction of the quota used)."""
    (t0, s0), (t1, s1) = before, after
    dt = max(t1 - t0, 1e-6)
    out = {}
    for name, (cpu1, vcpu) in s1.items():
        cpu0 = s0.get(name, (None, vcpu))[0]
        if cpu0 is None or cpu1 is None:
            continue
        use = (cpu1 - cpu0) / dt / max(vcpu, 1e-3)
        if use >= threshold:
            out[name] = use
    return out


def wait_idle(sample: Callable[[], Sample], timeout: float = 30.0, *, previous: tuple[float, Sample] | None = None,
              pending: Callable[[], dict[str, int] | None] | None = None, threshold: float = THRESHOLD, first_window: float = FIRST_WINDOW, window: float = WINDOW,
              clock=time.monotonic, sleep=time.sleep, what: str = "the lab") -> float:
    """Sample until every machine is idle or ``timeout`` passed; return the seconds waited.

    ``previous`` is a ``(clock time, sample)`` taken earlier; when it is at most
    :data:`MAX_AGE` old it is the first sample, so a quiet lab costs at most one
    ``first_window`` from that sample (nothing at all when it is older than that).
    """
    start = clock()
    deadline = start + max(0.0, timeout)
    if previous is not None and 0 <= start - previous[0] <= MAX_AGE:
        last = previous
    else:
        last = (clock(), sample())
    if clock() - last[0] < first_window:
        sleep(first_window - (clock() - last[0]))
    hot: dict[str, float] = {}
    while True:
        now = (clock(), sample())
        hot = busy(last, now, threshold)
        # queued connections are only asked for once the CPU looks idle (it costs a little)
        queued = {k: v for k, v in ((pending() if pending and not hot else None) or {}).items() if v > 0}
        if not hot and not queued:
            return now[0] - start
        if now[0] >= deadline:
            why = [f"{k} at {v:.0%} of its CPU" for k, v in sorted(hot.items())]
            why += [f"{v} connections queued for {k}" for k, v in sorted(queued.items())]
            log.warning("%s did not go idle within %.0f s (%s); measuring anyway", what, timeout, ", ".join(why))
            return now[0] - start
        last = now
        sleep(min(window, max(0.0, deadline - now[0])) or 0.01)


def wait_responsive(probe: Callable[[str, float], float], names: list[str], timeout: float = 30.0, *,
                    idle_latency: float = IDLE_LATENCY, clock=time.monotonic, sleep=time.sleep,
                    what: str = "the lab") -> float:
    """Fallback without CPU counters: until every ``name`` answers ``probe(name, timeout)`` (its
    ``/status`` round trip in seconds; raises OSError/ValueError when it does not answer) in
    under ``idle_latency`` twice in a row. Bounded like :func:`wait_idle`."""
    start = clock()
    deadline = start + max(0.0, timeout)
    streak = {n: 0 for n in names}
    last: dict[str, str] = {}
    while True:
        for name in names:
            if streak[name] >= 2:
                continue
            left = deadline - clock()
            try:
                took = probe(name, max(0.2, min(2.0, left)))
            except (OSError, ValueError) as exc:
                streak[name], last[name] = 0, str(exc)[-120:]
                continue
            if took < idle_latency:
                streak[name] += 1
            else:
                streak[name], last[name] = 0, f"/status took {took * 1000:.0f} ms"
        if all(v >= 2 for v in streak.values()):
            return clock() - start
        if clock() >= deadline:
            log.warning("%s did not answer at its idle latency within %.0f s (%s); measuring anyway", what,
                        timeout, "; ".join(f"{k}: {last.get(k, '?')}" for k, v in streak.items() if v < 2))
            return clock() - start
        sleep(0.05)


def wait_answering(probe: Callable[[float], object], timeout: float, *, clock=time.monotonic, sleep=time.sleep,
                   what: str = "the balancer") -> float:
    """Until ``probe(timeout)`` succeeds (the balancer routes ``/status`` to a server again: nginx
    answers 502 while it keeps every server marked down); bounded like :func:`wait_idle`."""
    start = clock()
    deadline = start + max(0.0, timeout)
    while True:
        try:
            probe(max(0.2, min(2.0, deadline - clock())))
            return clock() - start
        except (OSError, ValueError) as exc:
            if clock() >= deadline:
                log.warning("%s still answers %s after %.0f s; measuring anyway", what, str(exc)[-80:], timeout)
                return clock() - start
        sleep(0.25)
