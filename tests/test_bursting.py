"""Shared-core bursting with the kernel's CFS burst (labkit/backends/local/bursting.py, cgroups.set_cpu),
and --calibrate's quota scale, on the cgroups of this machine and on laid-out v1/v2 trees."""

from __future__ import annotations

import logging
import os

import pytest

from labkit.backends.base import ClusterSpec
from labkit.backends.local import bursting, cgroups
from labkit.backends.local.backend import LocalBackend
from labkit.settings import Settings


def test_the_shared_core_types_burst_and_the_others_do_not():
    assert {t for t in ("f1-micro", "g1-small", "e2-micro", "e2-small", "e2-medium", "n1-standard-1",
                        "e2-standard-2") if bursting.bursts(t)} == {"f1-micro", "g1-small", "e2-micro",
                                                                     "e2-small", "e2-medium"}
    assert bursting.burst_us(2000) == 2000  # the kernel's maximum: one period's quota


@pytest.fixture
def warn_again(monkeypatch):
    monkeypatch.setattr(cgroups, "_warned_burst", False)  # the warning is said once per process


def _v2(tmp_path, monkeypatch, with_burst: bool):
    root = tmp_path / "cgroup"
    group = root / "labkit" / "run1" / "restserver-0"
    group.mkdir(parents=True)
    (root / "cgroup.controllers").write_text("cpu memory\n")
    for d in (root, root / "labkit", root / "labkit" / "run1"):
        (d / "cgroup.subtree_control").write_text("cpu memory")
    if with_burst:
        (group / "cpu.max.burst").write_text("0\n")
    monkeypatch.setattr(cgroups, "_own_path", lambda controller: "")
    return cgroups.detect(Settings(cgroup_root=root, cfs_period_us=10000)), group


def test_v2_writes_cpu_max_burst_with_the_quota(tmp_path, monkeypatch):
    groups, group = _v2(tmp_path, monkeypatch, with_burst=True)
    groups.create("labkit/run1/restserver-0", cgroups.Limits(0.2, 1 << 30, burst=True))
    assert (group / "cpu.max").read_text() == "2000 10000"
    assert (group / "cpu.max.burst").read_text() == "2000"
    assert groups.set_cpu("labkit/run1/restserver-0", 0.2, burst=False) is False
    assert (group / "cpu.max.burst").read_text() == "0"


def test_v2_without_cpu_max_burst_says_so_once_and_reports_no_burst(tmp_path, monkeypatch, caplog, warn_again):
    groups, group = _v2(tmp_path, monkeypatch, with_burst=False)
    with caplog.at_level(logging.WARNING, logger="labkit"):
        assert groups.set_cpu("labkit/run1/restserver-0", 0.2, burst=True) is False
        assert groups.set_cpu("labkit/run1/restserver-0", 0.5, burst=True) is False
    assert (group / "cpu.max").read_text() == "5000 10000" and not (group / "cpu.max.burst").exists()
    said = [r.getMessage() for r in caplog.records if "no CFS burst" in r.getMessage()]
    assert said == ["this kernel has no CFS burst (cpu.max.burst is missing): shared-core machine types run at "
                    "their plain vCPU share, without bursting (recorded as burst=false)"]


def test_v1_without_cfs_burst_us_runs_the_plain_quota(tmp_path, monkeypatch, caplog, warn_again):
    bases = {c: tmp_path / c for c in cgroups.V1_CONTROLLERS}
    for base in bases.values():
        base.mkdir()
    groups = cgroups.CgroupsV1(bases, period_us=10000)
    groups.create("labkit/r/tester-0", cgroups.Limits(0.2, 1 << 30))
    with caplog.at_level(logging.WARNING, logger="labkit"):
        assert groups.set_cpu("labkit/r/tester-0", 0.2, burst=True) is False
    assert (bases["cpu"] / "labkit/r/tester-0/cpu.cfs_quota_us").read_text() == "2000"
    assert "cpu.cfs_burst_us is missing" in caplog.text


def _real_v1_burst_file() -> bool:
    groups = cgroups.detect(Settings())
    return groups.version == "v1" and (groups.bases["cpu"] / "cpu.cfs_burst_us").exists()


def test_this_kernel_takes_cfs_burst_and_refuses_more_than_the_quota():
    """On this machine (cgroup v1, kernel 6.x, cpu.cfs_burst_us present) for real: the burst is written
    after the quota, cleared before a lower quota (the kernel refuses burst > quota with EINVAL)."""
    groups = cgroups.detect(Settings())
    assert _real_v1_burst_file(), "this test needs the development machine's writable cgroup v1 with CFS burst"
    rel = f"labkit/test-burst-{os.getpid()}/restserver-0"
    made = groups.create(rel, cgroups.Limits(0.5, 1 << 30, burst=True))
    cpu = groups.bases["cpu"] / rel
    try:
        assert (cpu / "cpu.cfs_quota_us").read_text().strip() == "5000"
        assert (cpu / "cpu.cfs_burst_us").read_text().strip() == "5000"
        assert groups.set_cpu(rel, 0.2, burst=True) is True  # a lower quota than the burst in place
        assert (cpu / "cpu.cfs_quota_us").read_text().strip() == "2000"
        assert (cpu / "cpu.cfs_burst_us").read_text().strip() == "2000"
        with pytest.raises(OSError):  # what the kernel refuses, and why burst_us asks for the quota
            (cpu / "cpu.cfs_burst_us").write_text("2001")
        assert groups.set_cpu(rel, None, burst=True) is False  # no quota, nothing to burst above
        assert groups.set_cpu(rel, 0.2) is False
        assert (cpu / "cpu.cfs_burst_us").read_text().strip() == "0"
    finally:
        assert cgroups.remove(made) == []


@pytest.mark.cgroups
@pytest.mark.serial
def test_a_local_f1_micro_bursts_unless_told_not_to_and_calibrate_scales_its_quota(local_env):
    settings = local_env["settings"]
    b = LocalBackend(settings, cpu_scale=1.5)
    b.up(ClusterSpec(nodes=1, machine_type="f1-micro"))
    cpu = cgroups.detect(settings).bases["cpu"] / f"labkit/{b.run_id}/restserver-0"
    assert (cpu / "cpu.cfs_quota_us").read_text().strip() == "3000"  # 0.2 vCPU x 1.5 of a 10 ms period
    assert (cpu / "cpu.cfs_burst_us").read_text().strip() == "3000"
    assert b.burst is True and b.cpu_scale == 1.5
    assert b.status()["burst"] is True and b.status()["cpu_scale"] == 1.5
    # another process attaching with --no-burst changes the running lab at once
    other = LocalBackend(settings, burst=False)
    assert other.burst is False and (cpu / "cpu.cfs_burst_us").read_text().strip() == "0"
    assert (cpu / "cpu.cfs_quota_us").read_text().strip() == "3000"
    assert LocalBackend(settings).burst is False  # recorded in the state
    other.up(ClusterSpec(nodes=1, machine_type="n1-standard-1"))  # a type that does not burst
    other = LocalBackend(settings, burst=True)
    assert other.burst is False and (cpu / "cpu.cfs_quota_us").read_text().strip() == "10000"
    other.down()
