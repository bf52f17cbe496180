"""Issue 15 items 1, 2, 9, 10 (gcp) and issue 14's bad input, against the Compute stub."""

import os
import signal
import stat
import threading
import time

import pytest
from google.auth.credentials import AnonymousCredentials

from labkit.backends.gcp import compute as gcp
from labkit.backends.gcp import api_requests as req
from labkit.backends.base import ClusterSpec
from labkit.backends.gcp.backend import GcpBackend
from labkit.errors import CloudError, ConfigError
from labkit.backends.gcp.client import check_endpoint
from labkit.settings import Settings
from tests.support.compute_stub import ComputeStub
from tests.support.compute_stub import anonymous_compute as _compute

PROJECT, ZONE = "lab-project", "us-central1-a"


def _backend(stub, tmp_path, run_id="run1", folder=".labkit", **kw):
    return GcpBackend(Settings(state_dir=tmp_path / folder), project=PROJECT, zone=kw.pop("zones", [ZONE]),
                      run_id=run_id, compute=_compute(stub), timeout=30, key_dir=str(tmp_path / folder / "keys"),
                      deploy=False, **kw)


# -- item 1: another run's resources are never deleted ---------------------------------------------
def test_a_409_ends_up_naming_the_other_run_and_its_machines_survive(stub, tmp_path):
    a = _backend(stub, tmp_path, run_id="runa", folder="a")
    a.up(ClusterSpec(nodes=1, port=80))
    b = _backend(stub, tmp_path, run_id="runb", folder="b")
    with pytest.raises(gcp.ConflictError) as err:
        b.up(ClusterSpec(nodes=1, port=80))
    msg = str(err.value)
    assert "\n" not in msg and "labkit run runa" in msg and "labkit down" in msg and "name prefix" in msg
    # run A's machines are untouched; run B left nothing of its own
    assert {n: i["labels"]["labkit-run"] for n, i in stub.instances.items()} == \
        {"restserver-0": "runa", "tester-0": "runa"}
    assert all(f["description"].split()[1] == "labkit-run=runa" for f in stub.firewalls.values())
    assert b.spec is None and not b.created and not b.firewalls
    a.down()
    assert stub.empty()


def test_down_skips_a_recorded_name_that_is_another_runs(stub, tmp_path):
    a = _backend(stub, tmp_path, run_id="runa", folder="a")
    a.up(ClusterSpec(nodes=1, port=80))
    b = _backend(stub, tmp_path, run_id="runb", folder="b")
    b.record.created["restserver-0"] = ZONE  # e.g. a state from before the fix
    b.record.firewalls.append("labkit-runa-ssh")
    assert b.down()["stopped"] == []
    assert "restserver-0" in stub.instances and "labkit-runa-ssh" in stub.firewalls
    assert not [r for r in stub.requests if r["method"] == "DELETE"]
    a.down()


def test_a_name_prefix_lets_two_runs_share_a_project(stub, tmp_path):
    a = _backend(stub, tmp_path, run_id="runa", folder="a")
    b = _backend(stub, tmp_path, run_id="runb", folder="b", name_prefix="bob-")
    a.up(ClusterSpec(nodes=1, port=80))
    b.up(ClusterSpec(nodes=2, port=80))
    assert sorted(stub.instances) == ["bob-loadbalancer-0", "bob-restserver-0", "bob-restserver-1", "bob-tester-0",
                                      "restserver-0", "tester-0"]
    assert list(stub.images) == ["bob-lab02-restserver-runb"]
    b.down()
    assert sorted(stub.instances) == ["restserver-0", "tester-0"]
    a.down()
    assert stub.empty()


# -- item 2: an interrupted up ----------------------------------------------------------------------
@pytest.fixture
def ctrl_c_raises():
    """SIGINT as in an interactive shell (KeyboardInterrupt), whatever this test process inherited:
    started in the background by a non-interactive shell (CI), it inherits SIGINT ignored."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def test_ctrl_c_while_inserts_are_in_flight_deletes_them_once_they_land(tmp_path, ctrl_c_raises):
    with ComputeStub(delay=0.5) as stub:
        stub.insert_delay = 1.5  # the inserts' answers are still on their way when Ctrl-C comes
        b = _backend(stub, tmp_path)
        timer = threading.Timer(0.6, os.kill, (os.getpid(), signal.SIGINT))
        timer.start()
        try:
            with pytest.raises(KeyboardInterrupt):
                b.up(ClusterSpec(nodes=2, port=80))
        finally:
            timer.cancel()
        time.sleep(2.0)  # anything a worker thread would still create
        assert stub.empty(), (sorted(stub.instances), sorted(stub.firewalls))
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_down_finds_the_run_by_label_when_the_state_lost_track(stub, tmp_path):
    b = _backend(stub, tmp_path)
    b.up(ClusterSpec(nodes=2, port=80))
    saved = b.to_state()
    c = _compute(stub)
    other = req.instance_body("stray", ZONE, "f1-micro", "run2", b.expires, "server")
    gcp.wait(gcp.insert_instance(c, PROJECT, ZONE, other), "create")
    saved["created"] = {}
    saved["images"] = []  # a state that lost track of everything
    saved["firewalls"] = []
    again = GcpBackend.from_state(saved, Settings(state_dir=tmp_path / "elsewhere"), compute=c)
    again.down()
    assert sorted(stub.instances) == ["stray"], "only run2's machine is left"
    assert stub.images == {} and stub.firewalls == {}


# -- bad input ---------------------------------------------------------------------------------------
def test_all_unknown_zones_is_one_line_and_creates_nothing(stub, tmp_path):
    b = _backend(stub, tmp_path, zones=["us-central9-z", "mars-north1-a"])
    with pytest.raises(ConfigError) as err:
        b.up(ClusterSpec(nodes=1, port=80))
    assert "\n" not in str(err.value) and "none of the zones us-central9-z, mars-north1-a exists" in str(err.value)
    assert not [r for r in stub.requests if r["method"] in ("POST", "DELETE")]
    assert stub.empty() and b.spec is None


def test_an_unknown_zone_in_the_list_is_skipped(stub, tmp_path):
    b = _backend(stub, tmp_path, zones=["us-central9-z", ZONE])
    b.up(ClusterSpec(nodes=1, port=80))
    assert {i["zone"] for i in stub.instances.values()} == {ZONE}
    b.down()
    assert stub.empty()


def test_a_project_without_the_compute_api_is_one_line_of_advice(stub, tmp_path):
    stub.service_disabled = True
    b = _backend(stub, tmp_path)
    with pytest.raises(CloudError) as err:
        b.up(ClusterSpec(nodes=1, port=80))
    msg = str(err.value)
    assert "\n" not in msg and "not enabled" in msg and f"gcloud services enable compute.googleapis.com --project {PROJECT}" in msg
    assert not [r for r in stub.requests if r["method"] in ("POST", "DELETE")]
    stub.service_disabled = False
    assert stub.empty() and b.spec is None


# -- item 9: who may SSH in ---------------------------------------------------------------------------
def test_ssh_source_defaults_to_this_machines_public_address_else_the_world(caplog):
    assert req.ssh_source_ranges(addresses=["127.0.0.1", "10.0.0.5", "203.0.113.9", "8.8.4.4"]) == ["8.8.4.4/32"]
    assert req.ssh_source_ranges(addresses=["127.0.0.1", "192.168.1.4"]) == ["0.0.0.0/0"]
    assert "open to the world" in caplog.text and "--ssh-source" in caplog.text
    assert req.ssh_source_ranges("198.51.100.0/24, 203.0.113.7") == ["198.51.100.0/24", "203.0.113.7/32"]
    with pytest.raises(ConfigError, match="--ssh-source"):
        req.ssh_source_ranges("not-an-address")


def test_ssh_source_reaches_the_firewall_rule(stub, tmp_path):
    b = _backend(stub, tmp_path, ssh_source_ranges="203.0.113.7/32")
    b.up(ClusterSpec(nodes=1, port=80))
    assert stub.firewalls["labkit-run1-ssh"]["sourceRanges"] == ["203.0.113.7/32"]
    b.down()


# -- item 10 (gcp): key folder, credentials ---------------------------------------------------------
def test_the_key_folder_is_private(stub, tmp_path):
    b = _backend(stub, tmp_path)
    b.up(ClusterSpec(nodes=1, port=80))
    keys = tmp_path / ".labkit" / "keys"
    assert stat.S_IMODE(keys.stat().st_mode) == 0o700
    assert stat.S_IMODE((keys / "run1").stat().st_mode) == 0o700
    b.down()


def test_a_key_that_cannot_be_made_leaves_nothing_behind(stub, tmp_path, ctrl_c_raises):
    (tmp_path / "file").write_text("")
    b = GcpBackend(Settings(state_dir=tmp_path / ".labkit"), project=PROJECT, zone=[ZONE], run_id="run1",
                   compute=_compute(stub), timeout=30, key_dir=str(tmp_path / "file" / "keys"), deploy=False)
    with pytest.raises(OSError):
        b.up(ClusterSpec(nodes=1, port=80))
    assert stub.empty() and b.spec is None
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


@pytest.mark.parametrize("endpoint", ["https://compute.example.com", "http://10.1.2.3:8080",
                                      "https://googleapis.com.evil.example"])
def test_credentials_go_only_to_googleapis_or_loopback(endpoint):
    with pytest.raises(ConfigError, match="googleapis.com"):
        check_endpoint(endpoint, object())


def test_loopback_endpoints_get_anonymous_credentials_only():
    assert isinstance(check_endpoint("http://127.0.0.1:9999"), AnonymousCredentials)
    assert isinstance(check_endpoint("https://localhost:9999"), AnonymousCredentials)
    with pytest.raises(ConfigError, match="anonymous"):
        check_endpoint("https://127.0.0.1:9999", object())
    creds = object()
    assert check_endpoint("https://compute.googleapis.com", creds) is creds


def test_the_interrupt_handlers_cover_the_first_provisioning_only(stub, tmp_path, ctrl_c_raises):
    """Issue 21 item 4: after a successful `up` a Ctrl-C no longer deletes the run, and a later first
    provisioning in the same process (a sweep restored the handlers meanwhile) has them again."""
    seen = []
    b = _backend(stub, tmp_path)
    grow = b._grow

    def watched(spec):
        seen.append(signal.getsignal(signal.SIGINT))
        return grow(spec)

    b._grow = watched
    b.up(ClusterSpec(nodes=1, port=80))
    assert seen[0] is not signal.default_int_handler, "the run is deleted on Ctrl-C while it is being created"
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler, "and only then"
    b.scale(2)  # growing a run that is up: an interrupt must not delete it
    assert seen[1] is signal.default_int_handler
    with pytest.raises(KeyboardInterrupt):
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(1)
    assert b.created and stub.instances, "a Ctrl-C after up deleted nothing"
    b.down()
    c = _backend(stub, tmp_path, run_id="run2", folder="again")
    c._grow = watched
    c.up(ClusterSpec(nodes=1, port=80))
    assert seen[2] is not signal.default_int_handler
    c.down()
