"""Which host CPUs a local role may run on: a k-vCPU machine gets ceil(k) of them.

A cgroup quota alone gives an ``f1-micro`` server 0.2 CPU-seconds per second but
lets its threads run on every core of the host. The Flask development server
starts a thread per request, so under a 0.2-vCPU quota spread over two cores its
threads hand the GIL across cores and each request costs more CPU: on this
2-core machine (kernel 6.18, 10 ms CFS period) one f1-micro server used 1.8 CPU
ms per request and answered about 105 req/s, against 1.0 ms and about 190 req/s
when its threads were confined to one core (``bench/RESULTS.md``, "One core per
vCPU"). A real f1-micro has one vCPU, so confining a role to ``ceil(vcpu)``
CPUs is both faster and closer to the machine it stands for.

Roles are spread over the host round-robin by a slot: server ``i`` uses slot
``i``, the tester the host's last CPU and the balancer the one before it. On two
cores that keeps one node's tester off the server's core, and puts two nodes'
roles two a core (server 0 with the balancer, server 1 with the tester): with the
balancer beside the tester, the second server shared its core three ways and two
nodes fell under 1.6 × one node's throughput.
"""

from __future__ import annotations

import math
import os


def available() -> list[int]:
    """The CPUs this process may run on, sorted (what the roles are spread over)."""
    return sorted(os.sched_getaffinity(0))


def slot_of(role: str) -> int:
    """The round-robin slot of ``role``: ``restserver-i`` is ``i``, the balancer the CPU before the last (-2),
    the tester (and any other role) the last CPU (-1)."""
    if role.startswith("restserver-"):
        return int(role.split("-", 1)[1])
    if role.startswith("loadbalancer-"):
        return -2
    return -1


def cpus_for(vcpu: float, slot: int, cpus: list[int] | None = None) -> set[int]:
    """The ``ceil(vcpu)`` CPUs (at most all of ``cpus``) that start at ``slot``, wrapping around."""
    cpus = available() if cpus is None else sorted(cpus)
    if not cpus:
        raise ValueError("no CPU to run on")
    want = min(len(cpus), max(1, math.ceil(vcpu)))
    start = slot % len(cpus)
    return {cpus[(start + k) % len(cpus)] for k in range(want)}


def pin_preexec(cpus: set[int]):
    """A ``preexec_fn`` step that confines the new child (and every thread it starts) to ``cpus``."""
    frozen = frozenset(cpus)

    def _pin():
        os.sched_setaffinity(0, frozen)

    return _pin
