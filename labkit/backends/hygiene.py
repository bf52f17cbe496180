"""Measurement hygiene every backend shares (design §6, §7): settle, warm up, CPU per role.

:class:`MeasurementHygiene` is a mixin of :class:`~labkit.backends.base.Backend`:

* :meth:`~MeasurementHygiene.settle` waits until the servers and the balancer are idle
  (:mod:`labkit.backends.settle`) before a point is measured;
* :meth:`~MeasurementHygiene.warm_up` is the short unrecorded ab run the ``up`` template
  does after every reconfiguration;
* :meth:`~MeasurementHygiene.cpu_seconds_by_role` reads the CPU counters just before and
  after every ab run, and ``balancer_machine_type`` / ``tester_machine_type`` say what
  each role runs on.

They are built on small hooks a backend provides (:meth:`~MeasurementHygiene._cpu_sample`,
:meth:`~MeasurementHygiene._tester_cpu_seconds`, :meth:`~MeasurementHygiene._pending`,
the ``/status`` probes); a backend that drives another one (gcp drives ssh) hands all of
it to that one (:meth:`~MeasurementHygiene.inner`).
"""

from __future__ import annotations

import logging
import time

from labkit.backends.settle import MAX_AGE, Sample, wait_answering, wait_idle, wait_responsive

# (no import of labkit.backends.base, even for type checking: base imports this mixin)

log = logging.getLogger("labkit")

WARM_UP_TIMEOUT = 60.0  # s: the warm-up's ab run is stopped after this (a broken lab must not hang up())
ROLES = ("server", "balancer", "tester")


class MeasurementHygiene:
    """Settling, warming up and CPU accounting, on the hooks below (defaults: nothing to read)."""

    def inner(self) -> MeasurementHygiene | None:
        """The backend this one deploys and measures through, or None (the default).

        The gcp backend drives its machines with an ssh backend (its ``ssh`` attribute), so
        settling, warming up and the CPU counters are that backend's.
        """
        inner = getattr(self, "ssh", None)
        return inner if isinstance(inner, MeasurementHygiene) and inner is not self else None

    def _cpu_sample(self) -> Sample | None:
        """Cumulative CPU seconds of every running server and balancer *now*, with its vCPU quota:
        ``{"server:NAME" | "balancer:NAME": (seconds or None, vcpu)}``; None when this
        backend cannot read them (then :meth:`settle` falls back to ``/status`` latency)."""
        return None

    def _tester_cpu_seconds(self) -> float | None:
        """Cumulative CPU seconds ab has used on the tester, or None when unknown."""
        return None

    def _pending(self) -> dict[str, int] | None:
        """Connections still queued for each server (listen backlog, half-open, clients' unacked
        SYN/FIN), as of the last :meth:`_cpu_sample` or now; None when unknown."""
        return None

    def _status_probes(self) -> dict:
        """``{name: probe(timeout) -> seconds}``: one ``/status`` round trip per server, the
        settle fallback where no CPU counter can be read. None by default (nothing to wait for)."""
        return {}

    def _balancer_probe(self):
        """``probe(timeout)`` fetching ``/status`` through the balancer as the tester does (raises
        OSError on a 502), or None without a balancer. None by default."""
        return None

    def _sampled(self) -> Sample | None:
        """:meth:`_cpu_sample`, remembered with its time (settle starts from the last one)."""
        s = self._cpu_sample()
        if s is not None:
            self._last_sample = (time.monotonic(), s)
        return s

    def settle(self, timeout: float = 30.0) -> float:
        """Wait until the servers and the balancer are idle; return the seconds waited.

        Idle: every machine's CPU rate over a short window is below 5 % of its quota
        (:func:`labkit.backends.settle.wait_idle`); where no CPU counter can be read, every server's
        ``/status`` answering at its idle latency (:func:`labkit.backends.settle.wait_responsive`).
        Bounded by ``timeout``: then a warning is logged and the point is measured anyway.
        """
        inner = self.inner()
        if inner is not None:
            return inner.settle(timeout) if inner.spec is not None else 0.0
        if self.spec is None:
            return 0.0
        start = time.monotonic()
        previous = getattr(self, "_last_sample", None)
        try:
            first = self._sampled()
        except Exception as exc:  # noqa: BLE001 - accounting never fails a point
            log.debug("%s: no CPU counters for settling: %s", self.name, exc)
            first = None
        what = f"the {self.name} lab"
        try:
            left = max(0.0, timeout - (time.monotonic() - start))
            if first is not None and all(cpu is not None for cpu, _ in first.values()):
                # from the last sample (e.g. the one just after the previous ab run) when it
                # covers the same machines: a quiet lab then costs no extra window
                if (previous is None or set(previous[1]) != set(first)
                        or time.monotonic() - previous[0] > MAX_AGE):
                    previous = self._last_sample
                wait_idle(self._sampled, left, previous=previous, pending=self._pending, what=what)
            elif probes := self._status_probes():
                wait_responsive(lambda name, t: probes[name](t), list(probes), left, what=what)
            if (balancer := self._balancer_probe()) is not None:
                # after an overloaded point nginx keeps the servers marked down for its fail_timeout
                wait_answering(balancer, max(0.0, timeout - (time.monotonic() - start)),
                               what=f"the {self.name} lab's balancer")
        except Exception as exc:  # noqa: BLE001 - a counter that went away mid-wait: measure anyway
            log.warning("%s: could not tell whether it is idle (%s); measuring anyway", what, exc)
        return time.monotonic() - start

    def warm_up(self) -> None:
        """A short unrecorded ab run (c = min(10, 2 x nodes), 100-200 requests), so the first
        measured requests don't pay for process, thread and upstream-connection start-up.

        The ``up`` template calls it after every reconfiguration. Bounded
        (:data:`WARM_UP_TIMEOUT`, ab's own ``-s 2``) and never raises for a failed run: a
        broken lab is reported by the waits that come before it and by the point itself.
        """
        inner = self.inner()
        if inner is not None:
            if inner.spec is not None:
                inner.warm_up()
            return
        spec = self.spec
        if spec is None or not self.warms_up:
            return
        from labkit.ab import AbCommand

        c = min(10, 2 * spec.nodes)
        command = AbCommand(self.url, c, max(100, min(200, 20 * c)), timeout_s=2)
        t0 = time.monotonic()
        try:
            run = self.run_ab(command, timeout=WARM_UP_TIMEOUT)
            if run.exit_code != 0:
                log.warning("%s: the warm-up run (ab -c %d -n %d) exited with code %d: %s", self.name, c,
                            command.requests, run.exit_code, run.stderr.strip()[-200:])
        except Exception as exc:  # noqa: BLE001 - a failed warm-up is a warning, not an error
            log.warning("%s: the warm-up run failed: %s", self.name, exc)
        else:
            log.debug("%s: warmed up in %.2f s", self.name, time.monotonic() - t0)
        self._warmed = spec

    def cpu_seconds_by_role(self) -> dict[str, float | None]:
        """Cumulative CPU seconds now: ``{"server": sum over the running servers, "balancer": ...
        or None without a balancer in the path, "tester": ...}`` (None where a counter cannot be read).

        Cheap (a few file reads locally; one command per host, in parallel, over SSH), so
        :func:`labkit.measure.measure` reads it just before and after every ab run.
        """
        inner = self.inner()
        if inner is not None:
            return inner.cpu_seconds_by_role() if inner.spec is not None else dict.fromkeys(ROLES)
        spec = self.spec
        try:
            sample = self._sampled() or {}
        except Exception as exc:  # noqa: BLE001 - accounting never fails a point
            log.debug("%s: no CPU counters: %s", self.name, exc)
            sample = {}
        out: dict[str, float | None] = {}
        for role in ("server", "balancer"):
            values = [cpu for key, (cpu, _) in sample.items() if key.startswith(role + ":")]
            out[role] = sum(values) if values and None not in values else None
        if spec is None or not spec.behind_balancer:
            out["balancer"] = None
        try:
            out["tester"] = self._tester_cpu_seconds()
        except Exception as exc:  # noqa: BLE001 - accounting never fails a point
            log.debug("%s: no tester CPU counter: %s", self.name, exc)
            out["tester"] = None
        return out

    def _machine_type(self, role: str) -> str | None:
        """``role``'s machine type ("balancer" or "tester"): the inner backend's when there is one."""
        inner = self.inner()
        if inner is not None:
            return getattr(inner, f"{role}_machine_type")
        spec = self.spec
        if spec is None:
            return None
        if role == "balancer":
            return self._balancer_type(spec) if spec.behind_balancer else None
        return spec.machine_type

    def _balancer_type(self, spec) -> str:
        return spec.machine_type

    balancer_machine_type = property(lambda self: self._machine_type("balancer"), doc=(
        "Machine type of the balancer; None without one in the path (one node, not ``balanced``)."))
    tester_machine_type = property(lambda self: self._machine_type("tester"), doc=(
        "Machine type of the machine that runs ab (by default the servers')."))
