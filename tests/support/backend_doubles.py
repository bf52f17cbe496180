"""Backends without machines, for tests whose ab runs are not a lab's (replayed, scripted, or ab on loopback).

:class:`NoMachinesBackend` subclasses :class:`~labkit.backends.base.Backend`, so :func:`labkit.measure.measure` and the
sweep call ``settle()``, ``cpu_seconds_by_role()`` and the machine-type properties on it as on
every real backend; the hygiene mixin's defaults answer them (nothing to wait for, no counter to
read). Subclasses give ``run_ab`` and a ``name``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from labkit.backends.base import AbRun, Backend, ClusterSpec
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


AB_DATA = Path(__file__).resolve().parent.parent / "data" / "ab"


def replayed_ab(name: str) -> AbRun:
    """The real ab run captured as ``tests/data/ab/<name>.*`` (see tests/data/capture.py)."""
    def read(suffix):
        p = AB_DATA / f"{name}{suffix}"
        return p.read_text() if p.exists() else None
    return AbRun(tuple(read(".argv").split()), int(read(".exit")), read(".stdout"), read(".stderr"),
                 read(".e.csv"), read(".g.tsv"))


class ScriptedBackend(NoMachinesBackend):
    """A backend whose ab runs replay real captures (tests/data/ab), in order, per concurrency level."""

    name = "scripted"

    def __init__(self, script: dict[int, list[str]]):
        super().__init__()
        self.script = {c: list(v) for c, v in script.items()}
        self.calls: list[tuple[int, str]] = []

    def run_ab(self, command, timeout, progress=None):
        c = command.concurrency
        name = self.script[c].pop(0)
        self.calls.append((c, name))
        return replayed_ab(name)
