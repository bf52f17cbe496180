"""A local HTTP stub of the Compute Engine REST endpoints labkit uses.

Runs http.server in a thread on 127.0.0.1, records every request (method, path,
query, JSON body) and answers like Compute: inserts return an operation that is
DONE after ``delay`` seconds; errors can be injected per instance name; an insert
of a name that exists answers 409; ``insert_delay`` holds the insert's answer
back (an insert "in flight"); ``known_zones`` are the zones that exist;
``service_disabled`` answers every call with the real 403 SERVICE_DISABLED shape.

With ``machines=SshMachines(...)`` every instance it creates is a real machine
as far as SSH can tell: an OpenSSH ``sshd`` on the instance's own loopback
address (127.S.N.k, port 22, which is both its internal and external IP), with
its own host key published as guest attributes and the ``ssh-keys`` metadata as
its authorized keys. ``stop`` kills what runs on that address (except sshd),
``delete`` kills everything on it, sshd included (by PID).
"""

from __future__ import annotations

import http.server
import itertools
import json
import os
import re
import shutil
import signal
import tempfile
import threading
import time
import urllib.parse

import pytest

from tests.support.sshd import SSHD, host_key_line, keygen, start_sshd  # noqa: F401 (SSHD: imported from here too)

KNOWN_ZONES = ("us-central1-a", "us-central1-b", "us-central1-c", "us-central1-f", "europe-west1-b")

SERVICE_DISABLED = {"error": {
    "code": 403,
    "message": "Compute Engine API has not been used in project 123456789 before or it is disabled. Enable it by "
               "visiting https://console.developers.google.com/apis/api/compute.googleapis.com/overview?project="
               "123456789 then retry. If you enabled this API recently, wait a few minutes for the action to "
               "propagate to our systems and retry.",
    "errors": [{"message": "Compute Engine API has not been used in project 123456789 before or it is disabled.",
                "domain": "usageLimits", "reason": "accessNotConfigured",
                "extendedHelp": "https://console.developers.google.com"}],
    "status": "PERMISSION_DENIED",
    "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "SERVICE_DISABLED",
                 "domain": "googleapis.com",
                 "metadata": {"service": "compute.googleapis.com", "consumer": "projects/123456789"}}]}}


def _listener_pids(ip: str) -> set[int]:
    """PIDs holding a TCP socket bound to ``ip`` (read from /proc: listening or connected)."""
    want = "".join(f"{int(o):02X}" for o in reversed(ip.split(".")))
    inodes = set()
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            cols = line.split()
            if cols[1].split(":")[0] == want:
                inodes.add(cols[9])
    pids = set()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
                if link.startswith("socket:[") and link[8:-1] in inodes:
                    pids.add(int(pid))
                    break
        except OSError:
            continue
    return pids - {os.getpid()}


def _kill(pids) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.time() + 3
        while any(os.path.exists(f"/proc/{p}") and _state(p) not in ("Z", None) for p in pids) \
                and time.time() < deadline:
            time.sleep(0.05)


def _state(pid: int):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None


class SshMachines:
    """Instances as real sshd processes, one loopback address each (see the module docstring)."""

    _nets = itertools.count(240)

    def __init__(self, octet: int | None = None):
        self.octet = octet if octet is not None else 1 + os.getpid() % 250
        self.net = next(self._nets)
        self._hosts = itertools.count(1)
        self.dir = tempfile.mkdtemp(prefix="compute-stub-")
        self.machines: dict[str, dict] = {}  # name -> {ip, pid, dir, proc, host_key}

    def start(self, name: str, metadata: dict) -> dict:
        ip = f"127.{self.octet}.{self.net}.{next(self._hosts)}"
        d = os.path.join(self.dir, name)
        os.makedirs(d, exist_ok=True)
        keygen(f"{d}/host_ed25519")
        keys = [v.split(":", 1)[1] for item in metadata.get("items", []) if item["key"] == "ssh-keys"
                for v in item["value"].splitlines() if ":" in v]
        with open(f"{d}/authorized_keys", "w") as f:
            f.write("".join(k.strip() + "\n" for k in keys))
        os.chmod(f"{d}/authorized_keys", 0o600)
        proc = start_sshd(d, ip, 22)
        host_key = host_key_line(d)
        self.machines[name] = {"ip": ip, "pid": proc.pid, "proc": proc, "dir": d, "host_key": host_key}
        return self.machines[name]

    def stop(self, name: str) -> None:
        """A stopped VM runs nothing: kill what holds its address, but keep sshd (it "boots" again)."""
        m = self.machines.get(name)
        if m:
            _kill(_listener_pids(m["ip"]) - {m["pid"]})

    def delete(self, name: str) -> None:
        m = self.machines.pop(name, None)
        if m is None:
            return
        _kill({m["pid"]})
        m["proc"].wait(5)
        _kill(_listener_pids(m["ip"]))
        shutil.rmtree(m["dir"], ignore_errors=True)

    def close(self) -> None:
        for name in list(self.machines):
            self.delete(name)
        shutil.rmtree(self.dir, ignore_errors=True)

    def leftovers(self, allow: set[int] = frozenset(), wait: float = 10.0) -> dict[str, set[int]]:
        """Per address this stub ever handed out: PIDs other than ``allow`` still holding a socket on it.

        Polled for up to ``wait`` seconds: sshd's per-connection child (and a server shutting
        down) can hold its socket for a moment after the client closed, which is not a leftover.
        Whatever still holds one after ``wait`` is returned (should be nothing).
        """
        deadline = time.monotonic() + wait
        while True:
            out = {}
            for k in range(1, 64):
                ip = f"127.{self.octet}.{self.net}.{k}"
                pids = _listener_pids(ip) - set(allow)
                if pids:
                    out[ip] = pids
            if not out or time.monotonic() >= deadline:
                return out
            time.sleep(0.2)

P = r"/compute/v1/projects/(?P<project>[^/]+)"


class ComputeStub:
    def __init__(self, delay: float = 0.0, machines: SshMachines | None = None):
        self.delay = delay
        self.machines = machines
        self.insert_delay = 0.0  # seconds an instance insert's answer is held back (outside the lock)
        self.known_zones = set(KNOWN_ZONES)
        self.service_disabled = False
        self.requests: list[dict] = []
        self.instances: dict[str, dict] = {}  # name -> resource (with "zone")
        self.images: dict[str, dict] = {}
        self.firewalls: dict[str, dict] = {}
        self.ops: dict[str, dict] = {}
        self.fail: dict[tuple[str, str], str] = {}  # (name, zone or "*") -> "quota" | "stockout"
        self.host_keys = ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"]
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        stub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def _handle(self):
                url = urllib.parse.urlsplit(self.path)
                n = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(n) if n else b""
                body = json.loads(raw) if raw else None
                query = dict(urllib.parse.parse_qsl(url.query))
                if self.command == "POST" and url.path.endswith("/instances") and stub.insert_delay:
                    time.sleep(stub.insert_delay)
                with stub._lock:
                    stub.requests.append({"method": self.command, "path": url.path, "query": query, "body": body})
                    try:
                        code, payload = stub.route(self.command, url.path, query, body)
                    except Exception as e:  # a stub bug shows up as a 500 naming it, not a hang-up
                        code, payload = 500, {"error": {"code": 500, "message": f"stub: {e!r}"}}
                data = json.dumps(payload).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_DELETE = do_PATCH = _handle

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
        if self.machines is not None:
            self.machines.close()

    def count(self) -> int:
        """How many Compute API calls were made."""
        return len(self.requests)

    def empty(self) -> bool:
        return not (self.instances or self.images or self.firewalls)

    # -- helpers --

    def bodies(self, method: str, suffix: str) -> list[dict]:
        return [r["body"] for r in self.requests if r["method"] == method and r["path"].endswith(suffix)]

    def _op(self, project, zone, target, error=None, kind="insert"):
        name = f"operation-{next(self._ids)}"
        op = {"kind": "compute#operation", "name": name, "operationType": kind, "targetLink": target,
              "status": "RUNNING", "_done_at": time.monotonic() + self.delay, "_error": error,
              "selfLink": f"{self.endpoint}/compute/v1/projects/{project}/"
                          + (f"zones/{zone}/operations/{name}" if zone else f"global/operations/{name}")}
        if zone:
            op["zone"] = f"{self.endpoint}/compute/v1/projects/{project}/zones/{zone}"
        self.ops[name] = op
        return 200, self._op_view(op)

    def _op_view(self, op):
        view = {k: v for k, v in op.items() if not k.startswith("_")}
        if time.monotonic() >= op["_done_at"]:
            view["status"] = "DONE"
            if op["_error"] == "stockout":
                view["error"] = {"errors": [{"code": "ZONE_RESOURCE_POOL_EXHAUSTED", "message":
                                             "The zone does not have enough resources available to fulfill "
                                             "the request. Try a different zone, or try again later."}]}
                view["httpErrorStatusCode"] = 503
                view["httpErrorMessage"] = "SERVICE UNAVAILABLE"
        return view

    @staticmethod
    def _not_found(what):
        return 404, {"error": {"code": 404, "message": f"The resource '{what}' was not found",
                               "errors": [{"reason": "notFound", "message": f"The resource '{what}' was not found"}]}}

    def route(self, method, path, query, body):
        if self.service_disabled:
            return 403, SERVICE_DISABLED
        m = re.fullmatch(P + r"/zones/(?P<zone>[^/]+)", path)
        if m:
            if m["zone"] not in self.known_zones:
                return self._not_found(f"projects/{m['project']}/zones/{m['zone']}")
            return 200, {"kind": "compute#zone", "name": m["zone"], "status": "UP"}
        m = re.fullmatch(P + r"/zones/(?P<zone>[^/]+)/operations/(?P<op>[^/]+)(?P<wait>/wait)?", path)
        if m or (m := re.fullmatch(P + r"/global/operations/(?P<op>[^/]+)(?P<wait>/wait)?", path)):
            op = self.ops.get(m["op"])
            return (200, self._op_view(op)) if op else self._not_found(m["op"])
        m = re.fullmatch(P + r"/zones/(?P<zone>[^/]+)/instances(?:/(?P<name>[^/]+))?(?:/(?P<verb>\w+))?", path)
        if m:
            return self._instances(method, m["project"], m["zone"], m["name"], m["verb"], query, body)
        m = re.fullmatch(P + r"/aggregated/instances", path)
        if m:
            items = {}
            for inst in self.instances.values():
                items.setdefault(f"zones/{inst['zone']}", {"instances": []})["instances"].append(inst)
            return 200, {"items": items}
        for coll, store in (("images", self.images), ("firewalls", self.firewalls)):
            m = re.fullmatch(P + rf"/global/{coll}(?:/(?P<name>[^/]+))?", path)
            if not m:
                continue
            if method == "POST":
                if body["name"] in store:
                    return self._exists(f"projects/{m['project']}/global/{coll}/{body['name']}")
                store[body["name"]] = dict(body)
                return self._op(m["project"], None, body["name"])
            if m["name"] is None:
                return 200, {"items": list(store.values())}
            if m["name"] not in store:
                return self._not_found(m["name"])
            if method == "DELETE":
                del store[m["name"]]
                return self._op(m["project"], None, m["name"], kind="delete")
            return 200, store[m["name"]]
        return self._not_found(path)

    @staticmethod
    def _exists(what):
        msg = f"The resource '{what}' already exists"
        return 409, {"error": {"code": 409, "message": msg, "errors": [
            {"domain": "global", "reason": "alreadyExists", "message": msg}]}}

    def _instances(self, method, project, zone, name, verb, query, body):
        if zone not in self.known_zones:
            return self._not_found(f"projects/{project}/zones/{zone}")
        if name is None and method == "POST" and body["name"] in self.instances:
            return self._exists(f"projects/{project}/zones/{zone}/instances/{body['name']}")
        if name is None and method == "POST":
            failure = self.fail.get((body["name"], zone)) or self.fail.get((body["name"], "*"))
            if failure == "quota":
                msg = "Quota 'CPUS' exceeded.  Limit: 8.0 in region us-central1."
                return 403, {"error": {"code": 403, "message": msg, "errors": [
                    {"message": msg, "domain": "usageLimits", "reason": "quotaExceeded"}]}}
            if failure == "stockout":
                return self._op(project, zone, body["name"], error="stockout")
            n = next(self._ids)
            inst = dict(body, zone=zone, status="RUNNING", id=str(n))
            internal, external = f"10.128.0.{n}", "127.0.0.1"
            if self.machines is not None:
                internal = external = self.machines.start(body["name"], body.get("metadata", {}))["ip"]
            inst["networkInterfaces"] = [dict(nic, networkIP=internal, accessConfigs=[
                dict(ac, natIP=external) for ac in nic.get("accessConfigs", [])]) for nic in body.get("networkInterfaces", [])]
            self.instances[body["name"]] = inst
            return self._op(project, zone, body["name"])
        if name is None:
            return 200, {"items": [i for i in self.instances.values() if i["zone"] == zone]}
        inst = self.instances.get(name)
        if inst is None or inst["zone"] != zone:
            return self._not_found(name)
        if verb == "getGuestAttributes":
            keys = [self.machines.machines[name]["host_key"]] if self.machines is not None else self.host_keys
            return 200, {"queryPath": query.get("queryPath"), "queryValue": {"items": [
                {"namespace": "hostkeys", "key": k.split()[0], "value": k.split()[1]} for k in keys]}}
        if verb in ("stop", "start"):
            inst["status"] = "TERMINATED" if verb == "stop" else "RUNNING"
            if verb == "stop" and self.machines is not None:
                self.machines.stop(name)
            return self._op(project, zone, name, kind=verb)
        if method == "DELETE":
            del self.instances[name]
            if self.machines is not None:
                self.machines.delete(name)
            return self._op(project, zone, name, kind="delete")
        return 200, inst


def anonymous_compute(stub: "ComputeStub"):
    """The real google-cloud-compute clients pointed at ``stub`` with anonymous credentials (design §10)."""
    from google.auth.credentials import AnonymousCredentials

    from labkit.backends.gcp.compute import Compute

    return Compute(credentials=AnonymousCredentials(), client_options={"api_endpoint": stub.endpoint})


@pytest.fixture
def stub():
    """A running :class:`ComputeStub` without machines (instances are records only), for one test."""
    with ComputeStub() as s:
        yield s
