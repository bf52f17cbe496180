"""measure() on a real local lab: settle_s, the CPU each role used and the machine types (design §7)."""

from __future__ import annotations

import pytest

from labkit.ab import AbCommand
from labkit.backends.base import ClusterSpec
from labkit.backends.local.backend import LocalBackend
from labkit.measure import measure

FLASK_CPU_PER_REQUEST = 0.76e-3  # s, bench/RESULTS.md §4 (Flask dev server, fib(20), one core)


@pytest.mark.cgroups
@pytest.mark.serial
def test_a_row_holds_the_cpu_each_role_used_and_the_machine_types(local_env):
    b = LocalBackend(local_env["settings"])
    b.up(ClusterSpec(nodes=2))
    row = measure(b, AbCommand(b.url, 10, 300))
    assert (row.aborted, row.complete, row.cpu_limited) == (False, 300, True)
    assert row.settle_s is not None and 0 <= row.settle_s < 30
    assert (row.balancer_machine_type, row.tester_machine_type) == ("f1-micro", "f1-micro")
    # the servers' CPU is the requests times the service's demand, within a broad factor
    per_request = row.server_cpu_s / row.complete
    assert FLASK_CPU_PER_REQUEST / 3 < per_request < FLASK_CPU_PER_REQUEST * 8, per_request
    assert 0 < row.balancer_cpu_s < row.server_cpu_s
    assert 0 < row.tester_cpu_s < row.server_cpu_s
    # no role can have used more than its quota over ab's run
    assert row.server_cpu_s <= 2 * 0.2 * row.time_taken_s * 1.2 + 0.05

    b.scale(1)  # the handout's single server: no balancer in the path
    row = measure(b, AbCommand(b.url, 5, 100), settle=False)
    assert row.settle_s is None
    assert row.balancer_cpu_s is None and row.balancer_machine_type is None
    assert row.server_cpu_s > 0 and row.tester_cpu_s > 0 and row.tester_machine_type == "f1-micro"
    b.down()


def test_without_cgroups_the_cpu_comes_from_the_process_trees(local_env):
    b = LocalBackend(local_env["settings"].replace(cgroups="off"))
    b.up(ClusterSpec(nodes=2))
    row = measure(b, AbCommand(b.url, 10, 300))
    assert row.cpu_limited is False and row.complete == 300
    assert row.server_cpu_s > 0 and row.balancer_cpu_s > 0 and row.tester_cpu_s > 0
    assert row.server_cpu_s / row.complete < FLASK_CPU_PER_REQUEST * 8
    b.down()
