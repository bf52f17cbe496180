"""Shared-core bursting: which machine types burst, and how the local backend models it.

Compute Engine's shared-core types (``f1-micro``, ``g1-small`` and the E2 shared-core
``e2-micro``, ``e2-small``, ``e2-medium``) are not a hard cap at their vCPU share: the
machine-types documentation (section "CPU bursting" of "Machine families resource and
comparison guide"/"General-purpose machine family", read on :data:`DOCS_AS_OF`) says
they *burst*: they use additional physical CPU for short periods, automatically, when
the instance needs more than its share and the host has it free; bursts are not
permanent and only possible periodically, and cost nothing extra. The E2 shared-core
types expose 2 vCPUs and may burst up to both; f1-micro and g1-small have one vCPU.
The documentation gives no burst length or credit size (users report roughly 30 s at a
full core on an f1-micro before it falls back to its share: serverfault question 776117).

The local backend models this with the kernel's **CFS burst** (``cpu.cfs_burst_us`` on
cgroup v1, ``cpu.max.burst`` on v2, Linux >= 5.14): a group that used less than its
quota in earlier periods may carry the unused time over and spend it later, above its
quota. The kernel bounds the stored time by one period's quota (a larger value is
refused with EINVAL), so :func:`burst_us` asks for exactly that, the most it allows:
an f1-micro may run at up to twice its share in a CFS period that follows idle time.
That smooths short spikes (a request arriving at an idle server is not throttled
half-way), but it is *not* the multi-second burst to a full core described above: a
server that is busy all the time (any ab run at c >= 1 that saturates its share) has
nothing stored and runs at its share, with or without burst (bench/RESULTS.md,
"Host speed and bursting").
"""

from __future__ import annotations

#: The date the machine-type documentation was read for :data:`BURSTING_TYPES`.
DOCS_AS_OF = "2026-12-04"

#: Machine types that burst, and the vCPUs they may burst up to (their vCPU count).
BURSTING_TYPES: dict[str, float] = {
    "f1-micro": 1.0,
    "g1-small": 1.0,
    "e2-micro": 2.0,
    "e2-small": 2.0,
    "e2-medium": 2.0,
}


def bursts(machine_type: str) -> bool:
    """Whether Compute Engine lets ``machine_type`` burst above its vCPU share."""
    return machine_type in BURSTING_TYPES


def burst_us(quota_us: int) -> int:
    """The CFS burst to write for a group whose quota is ``quota_us``: the kernel's maximum, the quota itself."""
    return max(0, int(quota_us))
