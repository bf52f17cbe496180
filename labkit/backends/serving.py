"""Waiting until a deployed lab serves: the balancer answering from every server (local, ssh).

After ``up`` the servers answer one by one (each backend waits for them its own way);
then, with more than one node, the balancer must answer from exactly those servers.
An nginx reload is asynchronous, and after a point that overloaded the servers nginx
keeps them marked down for its ``fail_timeout`` (10 s) and answers 502 meanwhile:
:func:`wait_round_robin` waits both out, bounded, then raises one line saying what the
balancer answered.
"""

from __future__ import annotations

import time

from labkit.errors import BackendError
from labkit.service import get_status

SERVING_TIMEOUT = 45.0  # s: servers idle and answering, then the balancer (nginx's fail_timeout is 10 s)


def wait_round_robin(url: str, want: list[str], deadline: float, *, balancer: str, waited: float,
                     via=None, advice: str = "") -> None:
    """Wait until the balancer at ``url`` answers ``/status`` from exactly the nodes ``want``
    (one name per server), asking ``2 x len(want)`` times a round, until ``deadline``.

    Then a one-line BackendError: ``balancer`` at ``url`` still answers what it answered
    after ``waited`` seconds, and ``advice`` after it. ``via`` asks through an SSH
    connection (the tester's), as :func:`labkit.service.get_status` does.
    """
    while True:
        seen, failed = set(), None
        for _ in range(2 * len(want)):
            try:
                seen.add(get_status(url, timeout=max(0.5, min(5.0, deadline - time.monotonic())), via=via)["node"])
            except (OSError, ValueError) as exc:
                failed = str(exc)
                break
        if failed is None and seen == set(want):
            return
        last = failed or f"from {sorted(seen)}"
        if time.monotonic() >= deadline:
            raise BackendError(f"{balancer} at {url} still answers {last} after {waited:.0f} s "
                               f"(expected answers from {', '.join(sorted(set(want)))}){advice}")
        time.sleep(0.2)
