"""A backend without machines, for tests whose ab runs are not a lab's (replayed, scripted, or ab on loopback).

It subclasses :class:`~labkit.backends.base.Backend`, so :func:`labkit.measure.measure` and the
sweep call ``settle()``, ``cpu_seconds_by_role()`` and the machine-type properties on it as on
every real backend; the hygiene mixin's defaults answer them (nothing to wait for, no counter to
read). Subclasses give ``run_ab`` and a ``name``.
"""

from __future__ import annotations

import dataclasses

from labkit.backends.base import Backend, ClusterSpec
from labkit.backends.records import Record
from labkit.settings import Settings


@dataclasses.dataclass
class NoMachinesRecord(Record):
    """The record of a backend without machines: only the spec."""

    spec: ClusterSpec | None = None


class NoMachinesBackend(Backend):
    """A backend without machines: only ``run_ab`` (and ``name``) differ between its subclasses."""

    cpu_limited = False
    record_class = NoMachinesRecord

    def __init__(self):
        super().__init__(Settings(), persist=False)

    def _new_state(self, **options):
        return NoMachinesRecord()

    def _stop_servers(self):
        pass

    def _deploy(self, spec):
        pass

    def _down(self):
        return [], []

    def status(self):
        return {}

    def balancer_config(self):
        return "no balancer: a test backend"

    @property
    def url(self):
        return "http://127.0.0.1:9"
