"""A local role runs on ceil(vCPU) host CPUs, spread round-robin by its slot."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from labkit.backends.local import cpu_affinity


def test_a_machine_gets_ceil_vcpu_cpus_starting_at_its_slot():
    cpus = [0, 1, 2, 3]
    assert cpu_affinity.cpus_for(0.2, 0, cpus) == {0}
    assert cpu_affinity.cpus_for(0.2, 5, cpus) == {1}
    assert cpu_affinity.cpus_for(1.0, 3, cpus) == {3}
    assert cpu_affinity.cpus_for(2.0, 3, cpus) == {3, 0}
    assert cpu_affinity.cpus_for(8.0, 1, cpus) == {0, 1, 2, 3}  # never more than the host has
    assert cpu_affinity.cpus_for(0.5, -1, [4, 6]) == {6}


def test_slots_spread_servers_and_put_tester_and_balancer_on_the_last_two_cpus():
    assert [cpu_affinity.slot_of(f"restserver-{i}") for i in range(3)] == [0, 1, 2]
    assert (cpu_affinity.slot_of("tester-0"), cpu_affinity.slot_of("loadbalancer-0")) == (-1, -2)
    two = [0, 1]  # this machine: two nodes' roles two a core
    on = {r: cpu_affinity.cpus_for(0.2, cpu_affinity.slot_of(r), two)
          for r in ("restserver-0", "restserver-1", "loadbalancer-0", "tester-0")}
    assert on == {"restserver-0": {0}, "loadbalancer-0": {0}, "restserver-1": {1}, "tester-0": {1}}
    assert cpu_affinity.cpus_for(0.2, cpu_affinity.slot_of("loadbalancer-0"), [3]) == {3}  # one core: all on it


def test_a_pinned_child_sees_and_spreads_over_only_its_own_cpus():
    """``available()`` is what the process may use, not what the host has: a lab started from a
    ``taskset``-pinned shell spreads its roles over the pinned CPUs only."""
    before = os.sched_getaffinity(0)
    one = {max(before)}
    code = ("import json, os; from labkit.backends.local import cpu_affinity as a; "
            "print(json.dumps([sorted(os.sched_getaffinity(0)), a.available(), sorted(a.cpus_for(2.0, 0)), "
            "sorted(a.cpus_for(0.2, a.slot_of('restserver-1')))]))")
    out = subprocess.run([sys.executable, "-c", code], preexec_fn=cpu_affinity.pin_preexec(one),
                         capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == [sorted(one)] * 4
    assert os.sched_getaffinity(0) == before, "pinning the child leaves the parent as it was"
    assert cpu_affinity.available() == sorted(before)
    if len(before) > 1:
        assert len(cpu_affinity.cpus_for(2.0, 0)) == 2, "unpinned, a 2-vCPU role gets two CPUs"
