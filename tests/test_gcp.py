"""The gcp backend with the real google-cloud-compute client against a local Compute stub."""

import json
import time

import pytest

from labkit.backends.gcp import compute as gcp
from labkit.backends.gcp import api_requests as req
from labkit.backends.gcp.backend import GcpBackend
from labkit.backends.base import ClusterSpec
from labkit.errors import ConfigError, QuotaError, StockoutError
from labkit.settings import Settings
from tests.support.compute_stub import ComputeStub
from tests.support.compute_stub import anonymous_compute as _compute

PROJECT, ZONE = "lab-project", "us-central1-a"
PUB = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"


def _backend(stub, tmp_path, **kw):
    return GcpBackend(Settings(state_dir=tmp_path / ".labkit"), project=PROJECT, zone=kw.pop("zones", [ZONE]),
                      run_id="run1", compute=_compute(stub), timeout=30, **kw)


def test_instance_request_body(stub, tmp_path):
    b = _backend(stub, tmp_path)
    zones = b.create({"restserver-0": b._maker("restserver-0", "server", "f1-micro", PUB),
                      "tester-0": b._maker("tester-0", "tester", "f1-micro", PUB)})
    assert zones == {"restserver-0": ZONE, "tester-0": ZONE}
    posted = {r["body"]["name"]: r for r in stub.requests if r["method"] == "POST"}
    server = posted["restserver-0"]
    assert server["path"] == f"/compute/v1/projects/{PROJECT}/zones/{ZONE}/instances"
    body = server["body"]
    assert body["machineType"] == f"zones/{ZONE}/machineTypes/f1-micro"
    disk = body["disks"][0]
    assert disk["boot"] and disk["autoDelete"]
    assert disk["initializeParams"]["sourceImage"] == "projects/ubuntu-os-cloud/global/images/family/ubuntu-2404-lts-amd64"
    assert disk["initializeParams"]["diskSizeGb"] == "10"
    assert disk["initializeParams"]["diskType"] == f"zones/{ZONE}/diskTypes/pd-standard"
    assert body["networkInterfaces"][0]["accessConfigs"] == [{"name": "External NAT", "type": "ONE_TO_ONE_NAT"}]
    assert body["tags"] == {"items": ["labkit-server"]}
    assert body["labels"]["labkit-run"] == "run1"
    assert abs(int(body["labels"]["labkit-expires"]) - (time.time() + 4 * 3600)) < 60
    meta = {i["key"]: i["value"] for i in body["metadata"]["items"]}
    assert meta == {"ssh-keys": f"labkit:{PUB} labkit", "enable-guest-attributes": "TRUE"}
    assert posted["tester-0"]["body"]["tags"] == {"items": ["labkit-tester"]}  # no HTTP to the tester


def test_quota_error_becomes_advice(stub, tmp_path):
    stub.fail[("restserver-0", "*")] = "quota"
    b = _backend(stub, tmp_path)
    with pytest.raises(QuotaError) as info:
        b.create({"restserver-0": b._maker("restserver-0", "server", "f1-micro", PUB)})
    msg = str(info.value)
    assert "quota" in msg and "CPUS" in msg and "labkit gc" in msg and "request more quota" in msg


def test_stockout_tries_next_zone(stub, tmp_path):
    stub.fail[("restserver-0", "us-central1-a")] = "stockout"
    b = _backend(stub, tmp_path, zones=["us-central1-a", "us-central1-b"])
    assert b.create({"restserver-0": b._maker("restserver-0", "server", "f1-micro", PUB)}) == \
        {"restserver-0": "us-central1-b"}
    tried = [r["path"].split("/")[6] for r in stub.requests if r["method"] == "POST"]
    assert tried == ["us-central1-a", "us-central1-b"]
    body_b = [r["body"] for r in stub.requests if r["method"] == "POST"][1]
    assert body_b["machineType"] == "zones/us-central1-b/machineTypes/f1-micro"


def test_stockout_everywhere(stub, tmp_path):
    stub.fail[("restserver-0", "*")] = "stockout"
    b = _backend(stub, tmp_path, zones=["us-central1-a", "us-central1-b"])
    with pytest.raises(StockoutError, match="no capacity in any of us-central1-a, us-central1-b"):
        b.create({"restserver-0": b._maker("restserver-0", "server", "f1-micro", PUB)})


def test_five_instances_created_in_parallel(tmp_path):
    with ComputeStub(delay=2.0) as stub:
        b = _backend(stub, tmp_path)
        t0 = time.monotonic()
        b.create({f"restserver-{i}": b._maker(f"restserver-{i}", "server", "f1-micro", PUB) for i in range(5)})
        elapsed = time.monotonic() - t0
        print(f"5 instances with 2 s operations: {elapsed:.2f} s")
        assert 2.0 <= elapsed < 4.0
        assert sorted(stub.instances) == [f"restserver-{i}" for i in range(5)]


def test_up_without_deploy_grows_the_handouts_way_and_down_deletes_all(stub, tmp_path):
    b = _backend(stub, tmp_path, key_dir=str(tmp_path / "keys"), deploy=False)
    b.up(ClusterSpec(nodes=1, port=80))
    assert sorted(stub.instances) == ["restserver-0", "tester-0"]  # no balancer, no image for one node
    assert stub.images == {}
    fw = stub.firewalls
    assert sorted(fw) == ["labkit-run1-http", "labkit-run1-servers", "labkit-run1-ssh"]
    assert fw["labkit-run1-http"]["targetTags"] == ["http-server"]
    assert fw["labkit-run1-servers"]["sourceTags"] == ["labkit-balancer", "labkit-tester"]
    assert fw["labkit-run1-servers"]["targetTags"] == ["labkit-server"]
    assert fw["labkit-run1-servers"]["allowed"] == [{"IPProtocol": "tcp", "ports": ["80"]}]

    b.scale(2)  # the balancer when nodes first exceed 1; restserver-1 from the run's image
    assert sorted(stub.instances) == ["loadbalancer-0", "restserver-0", "restserver-1", "tester-0"]
    assert list(stub.images) == ["lab02-restserver-run1"]  # the image name carries the run id
    assert stub.images["lab02-restserver-run1"]["sourceDisk"] == f"zones/{ZONE}/disks/restserver-0"
    assert stub.instances["restserver-1"]["disks"][0]["initializeParams"]["sourceImage"] == \
        f"projects/{PROJECT}/global/images/lab02-restserver-run1"
    assert stub.instances["loadbalancer-0"]["tags"]["items"] == ["http-server", "labkit-balancer"]
    assert b.ssh.balancer.name == "loadbalancer-0" and len(b.ssh.servers) == 2

    b.scale(5)  # a sweep to 5 nodes after up --nodes 1: clones from the same image
    assert sorted(n for n in stub.instances if n.startswith("restserver-")) == [f"restserver-{i}" for i in range(5)]
    stops = [r["path"] for r in stub.requests if r["path"].endswith("/stop")]
    assert stops == [f"/compute/v1/projects/{PROJECT}/zones/{ZONE}/instances/restserver-0/stop"], "imaged once"
    assert len([r for r in stub.requests if r["method"] == "POST" and r["path"].endswith("/global/images")]) == 1
    # SSH goes to the external IP with the host key from guest attributes pinned
    assert b.ssh.servers[4].host_key == tuple(stub.host_keys)
    assert b.ssh.servers[4].address.startswith("10.128.0.")
    assert any(r["query"].get("queryPath") == "hostkeys/" for r in stub.requests)

    before = len(stub.instances)
    b.scale(2)  # shrinking leaves the machines up until down
    assert len(stub.instances) == before
    down = b.down()
    assert down["backend"] == "gcp" and down["left"] == [] and "instance restserver-4" in down["stopped"]
    assert stub.instances == {} and stub.images == {} and stub.firewalls == {}
    assert b.down() == {"backend": "gcp", "stopped": [], "left": []}  # safe twice


def test_up_with_two_nodes_creates_the_balancer_with_the_first_machines(stub, tmp_path):
    b = _backend(stub, tmp_path, key_dir=str(tmp_path / "keys"), deploy=False)
    b.up(ClusterSpec(nodes=2, port=80))
    first = [r["body"]["name"] for r in stub.requests if r["method"] == "POST" and r["path"].endswith("/instances")]
    assert set(first[:3]) == {"restserver-0", "tester-0", "loadbalancer-0"} and first[3:] == ["restserver-1"]
    b.down()
    assert stub.empty()


def test_failed_up_deletes_what_it_created(stub, tmp_path):
    stub.fail[("tester-0", "*")] = "quota"
    b = _backend(stub, tmp_path, key_dir=str(tmp_path / "keys"), deploy=False)
    with pytest.raises(QuotaError):
        b.up(ClusterSpec(nodes=2, port=80))
    assert stub.instances == {} and stub.firewalls == {}
    assert any(r["method"] == "DELETE" and r["path"].endswith("/restserver-0") for r in stub.requests)


def test_gc_deletes_only_expired(stub):
    c = _compute(stub)
    now = time.time()
    for name, expires in (("old", now - 10), ("fresh", now + 3600)):
        body = req.instance_body(name, ZONE, "f1-micro", "run" + name, str(int(expires)), "server")
        gcp.wait(gcp.insert_instance(c, PROJECT, ZONE, body), "create")
        gcp.wait(gcp.insert_firewall(c, PROJECT, req.firewall_bodies("run" + name, str(int(expires)))[0]), "fw")
        gcp.wait(gcp.insert_image(c, PROJECT, req.image_body(ZONE, name, "run" + name, str(int(expires)),
                                                              name=f"img-{name}")), "img")
    gcp.wait(gcp.insert_instance(c, PROJECT, ZONE, {"name": "not-ours", "machineType": "x", "labels": {},
                                                     "networkInterfaces": []}), "create")
    deleted = gcp.gc(PROJECT, now=now, compute=c)
    assert sorted(deleted) == ["firewall labkit-runold-http", "image img-old", "instance old"]
    assert sorted(stub.instances) == ["fresh", "not-ours"]
    assert list(stub.images) == ["img-fresh"] and list(stub.firewalls) == ["labkit-runfresh-http"]


def test_one_node_behind_nginx_creates_the_balancer_but_no_image_then_grows_the_handouts_way(stub, tmp_path):
    """``balanced``: the balancer with the first machines even for one server; no image until a second server."""
    b = _backend(stub, tmp_path, key_dir=str(tmp_path / "keys"), deploy=False)
    b.up(ClusterSpec(nodes=1, port=80, balanced=True))
    assert sorted(stub.instances) == ["loadbalancer-0", "restserver-0", "tester-0"]
    assert stub.images == {} and b.ssh.balancer.name == "loadbalancer-0" and len(b.ssh.servers) == 1
    assert stub.instances["loadbalancer-0"]["tags"]["items"] == ["http-server", "labkit-balancer"]
    b.scale(2)  # the balancer exists: only the image and restserver-1 are new
    assert sorted(stub.instances) == ["loadbalancer-0", "restserver-0", "restserver-1", "tester-0"]
    assert list(stub.images) == ["lab02-restserver-run1"]
    inserts = [r["body"]["name"] for r in stub.requests if r["method"] == "POST" and r["path"].endswith("/instances")]
    assert inserts.count("loadbalancer-0") == 1
    b.down()
    assert stub.empty()


def test_plan_for_one_node_behind_nginx_lists_and_prices_the_balancer():
    direct = req.plan(PROJECT, ZONE, 1, run_id="abc")
    behind = req.plan(PROJECT, ZONE, 1, run_id="abc", balanced=True)
    assert behind["instances"] == ["restserver-0", "loadbalancer-0", "tester-0"] and behind["image"] is None
    assert [r["method"] for r in behind["requests"]].count("instances.insert") == 3
    assert "instances.stop" not in [r["method"] for r in behind["requests"]]  # nothing to image
    # one more f1-micro (0.0076/h), its 10 GB disk and its external address
    assert behind["cost"]["instances_per_hour"] - direct["cost"]["instances_per_hour"] == pytest.approx(0.0076)
    assert behind["cost"]["external_ipv4_per_hour"] - direct["cost"]["external_ipv4_per_hour"] == \
        pytest.approx(0.005)


def test_plan_is_offline_and_complete():
    p = req.plan(PROJECT, ZONE, 3, "e2-small", run_id="abc", now=1_800_000_000)
    assert set(p) >= {"project", "zone", "run_id", "expires", "instances", "image", "firewalls", "requests", "cost"}
    assert p["instances"] == ["restserver-0", "restserver-1", "restserver-2", "loadbalancer-0", "tester-0"]
    assert p["expires"] == str(1_800_000_000 + 4 * 3600)
    methods = [r["method"] for r in p["requests"]]
    assert methods.count("instances.insert") == 5 and methods.count("firewalls.insert") == 3
    assert methods.index("instances.stop") < methods.index("images.insert") < methods.index("instances.start")
    clone = p["requests"][-1]["body"]
    assert p["image"] == "lab02-restserver-abc"
    assert clone["disks"][0]["initializeParams"]["sourceImage"] == \
        f"projects/{PROJECT}/global/images/lab02-restserver-abc"
    assert clone["labels"] == {"labkit-run": "abc", "labkit-expires": p["expires"]}
    # 4 e2-small + 1 e2-small tester at 0.01675/h, 5 x 10 GB pd-standard, 5 external IPv4 at 0.005/h
    cost = p["cost"]
    assert cost["instances_per_hour"] == pytest.approx(5 * 0.01675)
    assert cost["disks_per_hour"] == pytest.approx(5 * 10 * 0.04 / 730, rel=1e-3)
    assert cost["external_ipv4_per_hour"] == pytest.approx(5 * 0.005)
    assert cost["total_per_hour"] == pytest.approx(cost["instances_per_hour"] + cost["disks_per_hour"]
                                                   + cost["external_ipv4_per_hour"], abs=1e-6)
    assert set(cost["prices_as_of"]) == {"machine types", "pd-standard disks", "external IPv4"}
    json.dumps(p)  # JSON-serialisable as is
    single = req.plan(PROJECT, ZONE, 1, run_id="abc")
    assert single["instances"] == ["restserver-0", "tester-0"] and single["image"] is None


def test_plan_rejects_bad_input():
    with pytest.raises(ConfigError, match="unknown machine type"):
        req.plan(PROJECT, ZONE, 2, "n9-huge")
    with pytest.raises(ConfigError, match="run id"):
        req.plan(PROJECT, ZONE, 2, run_id="Bad Id")


def test_cost_table_for_the_chosen_profile_includes_the_external_addresses():
    from labkit.pricing import cost_table

    row = cost_table("f1-micro", profile="tiny").iloc[0]
    assert row["profile"] == "tiny" and row["external IPv4 per hour"] == pytest.approx(4 * 0.005)  # 2 + lb + tester
    assert row["per hour (USD)"] == pytest.approx(row["machines per hour"] + row["disks per hour"]
                                                  + row["external IPv4 per hour"], abs=1e-4)
    assert "external IPv4 2024-02-01" in row["prices as of"]
