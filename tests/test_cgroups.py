"""cgroup managers: v1 for real on this machine, v2 against a unified-hierarchy layout on disk.

Where the machine mounts cgroups v1 (as the development machines do), v1 is
exercised for real by the local-backend tests; a v2 host cannot be had here, so the v2
manager's file protocol (controllers enabled top-down in
``cgroup.subtree_control``, ``cpu.max`` as "quota period", ``memory.max``) is
checked against a directory laid out like ``/sys/fs/cgroup``.
"""

from __future__ import annotations

import pytest

from labkit.backends.local import cgroups
from labkit.settings import Settings


@pytest.fixture
def fake_v2(tmp_path, monkeypatch):
    root = tmp_path / "cgroup"
    (root / "labkit" / "run1").mkdir(parents=True)
    (root / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    for d in (root, root / "labkit", root / "labkit" / "run1"):
        (d / "cgroup.subtree_control").write_text("")
    monkeypatch.setattr(cgroups, "_own_path", lambda controller: "")
    return root


def test_v2_is_detected_and_writes_quota_and_memory(fake_v2):
    groups = cgroups.detect(Settings(cgroup_root=fake_v2, cfs_period_us=20000))
    assert groups.version == "v2" and groups.period_us == 20000
    made = groups.create("labkit/run1/restserver-0", cgroups.Limits(vcpu=0.2, memory_bytes=644245094))
    role = fake_v2 / "labkit" / "run1" / "restserver-0"
    assert made == [str(role)]
    assert (role / "cpu.max").read_text() == "4000 20000"
    assert (role / "memory.max").read_text() == "644245094"
    for d in (fake_v2, fake_v2 / "labkit", fake_v2 / "labkit" / "run1"):
        # "+cpu" then "+memory" written in turn (a real kernel file then lists both)
        assert (d / "cgroup.subtree_control").read_text() == "+memory"
    assert groups.procs_files("labkit/run1/restserver-0") == [role / "cgroup.procs"]
    groups.set_cpu("labkit/run1/restserver-0", None)
    assert (role / "cpu.max").read_text() == "max 20000"


def test_v2_without_cpu_and_memory_controllers_runs_unlimited(fake_v2, caplog):
    (fake_v2 / "cgroup.controllers").write_text("pids\n")
    warned = cgroups._warned
    cgroups._warned = False  # the warning is said once per process; make this the first time
    try:
        groups = cgroups.detect(Settings(cgroup_root=fake_v2))
    finally:
        cgroups._warned = warned
    assert groups.version == "unlimited"
    assert groups.create("labkit/x/y", cgroups.Limits(1, 1)) == []
    assert "WITHOUT CPU/memory limits" in caplog.text


def test_settings_turn_cgroups_off_and_nothing_is_read_at_import(fake_v2, monkeypatch):
    monkeypatch.setenv("LABKIT_CGROUPS", "off")  # the environment is read by Settings.from_env only
    assert cgroups.detect(Settings(cgroup_root=fake_v2)).version == "v2"
    assert cgroups.detect(Settings.from_env().replace(cgroup_root=fake_v2)).version == "unlimited"
    assert not hasattr(cgroups, "CFS_PERIOD_US") and not hasattr(cgroups, "CGROUP_ROOT")


def test_remove_keeps_a_parent_that_other_runs_still_use(tmp_path):
    parent = tmp_path / "labkit"
    (parent / "other-run").mkdir(parents=True)
    (parent / "mine").mkdir()
    left = cgroups.remove([str(parent), str(parent / "mine")], timeout=0.2)
    assert not (parent / "mine").exists()
    assert (parent / "other-run").is_dir()
    assert left == []  # a shared parent still in use is kept on purpose, not reported as a failure

