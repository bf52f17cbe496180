"""Settle before every point (design §6): the unit logic on a fake clock, then a real local lab."""

from __future__ import annotations

import logging
import time

import pytest

from labkit.backends import settle
from labkit.ab import AbCommand
from labkit.backends.base import ClusterSpec
from labkit.backends.local.backend import LocalBackend
from labkit.measure import measure


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now

    def sleep(self, s):
        self.now += s


def _draining(clock, busy_until, vcpu=0.2):
    """A server using its whole quota until ``busy_until``, then nothing; a balancer always idle."""
    state = {"cpu": 0.0, "t": clock()}

    def sample():
        t = clock()
        state["cpu"] += vcpu * max(0.0, min(t, busy_until) - state["t"])
        state["t"] = t
        return {"server:restserver-0": (state["cpu"], vcpu), "balancer:loadbalancer-0": (1.0, 0.2)}

    return sample


def test_wait_idle_waits_for_the_backlog_to_drain():
    clock = FakeClock()
    waited = settle.wait_idle(_draining(clock, busy_until=102.0), 30, clock=clock, sleep=clock.sleep)
    assert 2.0 <= waited <= 2.0 + settle.WINDOW + settle.FIRST_WINDOW + 1e-9


def test_a_quiet_lab_costs_one_short_window_or_nothing():
    clock = FakeClock()
    sample = _draining(clock, busy_until=0)
    assert settle.wait_idle(sample, 30, clock=clock, sleep=clock.sleep) == pytest.approx(settle.FIRST_WINDOW)
    previous = (clock(), sample())
    clock.now += 0.5  # the last sample (just after the previous ab run) is old enough: no wait at all
    assert settle.wait_idle(sample, 30, previous=previous, clock=clock, sleep=clock.sleep) == 0


def test_wait_idle_is_bounded_and_says_so(caplog):
    clock = FakeClock()
    with caplog.at_level(logging.WARNING, logger="labkit"):
        waited = settle.wait_idle(_draining(clock, busy_until=1e9), 3.0, clock=clock, sleep=clock.sleep,
                                  what="the local lab")
    assert 3.0 <= waited < 3.0 + settle.WINDOW + 0.01
    assert "the local lab did not go idle within 3 s (server:restserver-0 at 100% of its CPU)" in caplog.text


def test_busy_compares_each_machine_with_its_own_quota():
    before = (0.0, {"a": (1.0, 0.2), "b": (1.0, 2.0), "c": (None, 1.0)})
    after = (1.0, {"a": (1.02, 0.2), "b": (1.02, 2.0), "c": (5.0, 1.0)})
    assert settle.busy(before, after) == {"a": pytest.approx(0.1)}  # 0.02 s of 0.2: 10 %; b 1 %; c unknown


def test_wait_responsive_needs_two_fast_answers_and_is_bounded(caplog):
    clock = FakeClock()
    latencies = {"restserver-0": [2.0, 0.003, 0.004], "restserver-1": [OSError("refused"), 0.002, 0.002]}

    def probe(name, timeout):
        clock.now += 0.01
        v = latencies[name].pop(0) if latencies[name] else 0.002
        if isinstance(v, Exception):
            raise v
        return v

    assert settle.wait_responsive(probe, list(latencies), 30, clock=clock, sleep=clock.sleep) < 1
    clock2 = FakeClock()
    with caplog.at_level(logging.WARNING, logger="labkit"):
        def slow(name, timeout):
            clock2.now += 0.5
            return 0.5
        waited = settle.wait_responsive(slow, ["restserver-0"], 2.0, clock=clock2, sleep=clock2.sleep)
    assert 2.0 <= waited < 3.0
    assert "restserver-0: /status took 500 ms" in caplog.text


@pytest.mark.cgroups
@pytest.mark.serial
def test_settle_waits_out_an_aborted_point_on_a_real_lab(local_env, caplog):
    """The issue's case in small: one f1-micro server left a backlog by an aborted ab run."""
    b = LocalBackend(local_env["settings"], tester_machine_type="e2-standard-2")
    b.up(ClusterSpec(nodes=1))
    assert b.settle() < 1.0  # just warmed up: quiet within a window or two
    b.run_ab(AbCommand(b.url, 1000, 1000, timeout_s=1), timeout=60)  # aborts; the server keeps draining
    busy = b.cpu_seconds_by_role()["server"]
    with caplog.at_level(logging.WARNING, logger="labkit"):
        short = b.settle(timeout=0.3)
    if b.cpu_seconds_by_role()["server"] - busy > 0.05:  # still draining when the short wait ended
        assert 0.3 <= short < 1.0 and "did not go idle within 0 s" in caplog.text
    waited = b.settle(timeout=30)
    assert 0 <= waited < 30
    # idle now: the next second shows (almost) no CPU. A 1 s window, not 0.3 s: a last small drain
    # wave after settle returned (17 ms of CPU in one run of the suite, 0.3 s after) must not decide
    # it, while a server still working through its backlog (20-100 % of its quota) still does.
    before, t0 = b.cpu_seconds_by_role()["server"], time.monotonic()
    time.sleep(1.0)
    rate = (b.cpu_seconds_by_role()["server"] - before) / (time.monotonic() - t0)
    assert rate < 0.15 * 0.2, f"{rate / 0.2:.0%} of the f1-micro's quota in the second after settle said idle"
    row = measure(b, AbCommand(b.url, 10, 200))
    assert row.settle_s is not None and 0 <= row.settle_s < 1.0
    b.down()


def test_wait_answering_rides_out_a_502_window_and_is_bounded(caplog):
    clock = FakeClock()
    answers = [ConnectionError("answered HTTP 502")] * 3

    def probe(timeout):
        clock.now += 0.01
        if answers:
            raise answers.pop(0)

    assert 0.75 <= settle.wait_answering(probe, 30, clock=clock, sleep=clock.sleep) < 1.0
    with caplog.at_level(logging.WARNING, logger="labkit"):
        def down(timeout):
            clock.now += 0.01
            raise ConnectionError("http://x/status answered HTTP 502")
        assert 2.0 <= settle.wait_answering(down, 2.0, clock=clock, sleep=clock.sleep, what="lb") < 2.5
    assert "lb still answers http://x/status answered HTTP 502 after 2 s" in caplog.text
