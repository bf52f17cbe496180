"""k tester machines on gcp (tester-0..k-1), against the Compute stub, for points measured by several ab processes.

The first test only creates and deletes (deploy=False); the second is end to end: the
real google-cloud-compute client creates the machines in the stub (each a real sshd on its
own loopback address), the real service is deployed over SSH, one ab process runs on each
of the two tester machines, the row is their exact merge, and ``down`` deletes all.
"""

from __future__ import annotations

import os
import shutil
import sys

import pytest

from labkit.ab import AbCommand
from labkit.backends.base import ClusterSpec
from labkit.backends.gcp import api_requests as req
from labkit.backends.gcp.backend import GcpBackend
from labkit.errors import ConfigError
from labkit.handout import handout_spec
from labkit.measure import measure
from labkit.settings import Settings
from tests.support.compute_stub import ComputeStub, SshMachines
from tests.support.sshd import SSHD
from tests.support.compute_stub import anonymous_compute

PROJECT, ZONE = "lab-project", "us-central1-a"


def test_plan_names_and_prices_k_testers():
    one = req.plan(PROJECT, ZONE, nodes=2, run_id="run1")
    two = req.plan(PROJECT, ZONE, nodes=2, run_id="run1", testers=2)
    assert two["instances"] == ["restserver-0", "restserver-1", "loadbalancer-0", "tester-0", "tester-1"]
    assert two["testers"] == 2 and one["testers"] == 1
    inserted = [r["body"]["name"] for r in two["requests"] if r["method"] == "instances.insert"]
    assert "tester-1" in inserted
    tester = next(r["body"] for r in two["requests"] if r["method"] == "instances.insert"
                  and r["body"]["name"] == "tester-1")
    assert tester["labels"]["labkit-run"] == "run1" and tester["tags"]["items"] == [req.TAG_TESTER]
    # one more f1-micro, its disk and its address
    extra = two["cost"]["total_per_hour"] - one["cost"]["total_per_hour"]
    f1 = req.hourly_cost("f1-micro", 1, False)["total_per_hour"] - req.hourly_cost("f1-micro", 0, False)["total_per_hour"]
    assert extra == pytest.approx(f1, abs=1e-6)
    with pytest.raises(ConfigError, match="testers must be an integer between 1 and 16"):
        req.plan(PROJECT, ZONE, nodes=1, testers=0)


def test_testers_are_created_labelled_and_deleted(tmp_path):
    with ComputeStub() as stub:
        b = GcpBackend(Settings(state_dir=tmp_path / ".labkit"), project=PROJECT, zone=[ZONE], run_id="run1",
                       compute=anonymous_compute(stub), timeout=30, key_dir=str(tmp_path / "keys"), deploy=False)
        b.up(ClusterSpec(nodes=1, port=80))
        assert sorted(stub.instances) == ["restserver-0", "tester-0"] and b.max_testers() == 1
        b.ensure_testers(2)  # a sweep with --testers 2 on a running lab: tester-1 the same way as tester-0
        assert sorted(stub.instances) == ["restserver-0", "tester-0", "tester-1"]
        t1 = stub.instances["tester-1"]
        assert t1["labels"]["labkit-run"] == "run1" and t1["tags"]["items"] == [req.TAG_TESTER]
        assert [t.name for t in b.ssh.testers] == ["tester-0", "tester-1"] and b.max_testers() == 2
        b.ensure_testers(2)  # nothing more
        assert len(stub.instances) == 3
        attached = GcpBackend(Settings(state_dir=tmp_path / ".labkit"), compute=anonymous_compute(stub))
        assert attached.max_testers() == 2  # recorded in the state
        down = attached.down()
        assert "instance tester-1" in down["stopped"] and stub.instances == {}


@pytest.mark.sshd
@pytest.mark.ab
@pytest.mark.skipif(not (os.path.exists(SSHD) and shutil.which("ab") and os.geteuid() == 0),
                    reason="sshd and ab as root are needed (make test installs them)")
def test_a_point_measured_by_two_tester_machines_end_to_end(tmp_path, monkeypatch):
    machines = SshMachines()
    with ComputeStub(machines=machines) as stub:
        settings = Settings(state_dir=tmp_path / ".labkit", gcp_project=PROJECT, gcp_zone=ZONE,
                            gcp_api_endpoint=stub.endpoint, cgroups="off")
        b = GcpBackend(settings, ssh_user="root", timeout=60, testers=2,
                       ssh_options={"root": str(tmp_path / "root"), "python": sys.executable})
        try:
            b.up(handout_spec("f1-micro"))
            b._restore_signal_handlers()
            assert sorted(stub.instances) == ["restserver-0", "tester-0", "tester-1"]
            ssh = b.ssh
            used = []
            real = ssh._run_ab_on
            monkeypatch.setattr(ssh, "_run_ab_on", lambda host, *a: (used.append(host), real(host, *a))[1])
            row = measure(b, AbCommand(b.url, 4, 200), settle=False, testers=2)
            assert (row.aborted, row.testers, row.concurrency, row.complete) == (False, 2, 4, 200)
            assert row.p50_ms <= row.p99_ms <= row.max_ms and row.rps > 0
            # one ab process on each tester machine, each its own address
            assert sorted(h.name for h in used) == ["tester-0", "tester-1"]
            assert len({h.host for h in used}) == 2
        finally:
            down = GcpBackend(settings).down()
        assert {"instance tester-0", "instance tester-1"} <= set(down["stopped"])
        assert stub.instances == {} and stub.firewalls == {}


def test_a_hosts_file_may_name_more_testers(tmp_path):
    from labkit.backends.ssh.backend import SshBackend
    from labkit.backends.ssh.hosts_file import load_hosts_file

    hosts = tmp_path / "hosts.toml"
    hosts.write_text('[[servers]]\nhost = "10.0.0.11"\n[balancer]\nhost = "10.0.0.10"\n'
                     '[tester]\nhost = "10.0.0.12"\n[[more_testers]]\nhost = "10.0.0.13"\n'
                     '[[more_testers]]\nhost = "10.0.0.14"\nname = "tester-b"\n')
    b = SshBackend(Settings(state_dir=tmp_path / ".labkit", ssh_hosts=str(hosts)), persist=False)
    assert [(t.name, t.host) for t in b.testers] == [("tester-0", "10.0.0.12"), ("tester-1", "10.0.0.13"),
                                                      ("tester-b", "10.0.0.14")]
    assert b.max_testers() == 3
    assert [t.name for t in SshBackend.from_state(b.to_state()).testers] == ["tester-0", "tester-1", "tester-b"]
    hosts.write_text('more_testers = 3\n[[servers]]\nhost = "10.0.0.11"\n[balancer]\nhost = "10.0.0.10"\n'
                     '[tester]\nhost = "10.0.0.12"\n')
    with pytest.raises(ConfigError, match="more_testers' must be a list"):
        load_hosts_file(hosts)
