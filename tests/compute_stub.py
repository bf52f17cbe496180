"""A local HTTP stub of the Compute Engine REST endpoints labkit uses.

Runs http.server in a thread on 127.0.0.1, records every request (method, path,
query, JSON body) and answers like Compute: inserts return an operation that is
DONE after ``delay`` seconds; errors can be injected per instance name.
"""

from __future__ import annotations

import http.server
import itertools
import json
import re
import threading
import time
import urllib.parse

P = r"/compute/v1/projects/(?P<project>[^/]+)"


class ComputeStub:
    def __init__(self, delay: float = 0.0):
        self.delay = delay
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

    def _instances(self, method, project, zone, name, verb, query, body):
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
            inst["networkInterfaces"] = [dict(nic, networkIP=f"10.128.0.{n}", accessConfigs=[
                dict(ac, natIP="127.0.0.1") for ac in nic.get("accessConfigs", [])]) for nic in body.get("networkInterfaces", [])]
            self.instances[body["name"]] = inst
            return self._op(project, zone, body["name"])
        if name is None:
            return 200, {"items": [i for i in self.instances.values() if i["zone"] == zone]}
        inst = self.instances.get(name)
        if inst is None or inst["zone"] != zone:
            return self._not_found(name)
        if verb == "getGuestAttributes":
            return 200, {"queryPath": query.get("queryPath"), "queryValue": {"items": [
                {"namespace": "hostkeys", "key": k.split()[0], "value": k.split()[1]} for k in self.host_keys]}}
        if verb in ("stop", "start"):
            inst["status"] = "TERMINATED" if verb == "stop" else "RUNNING"
            return self._op(project, zone, name, kind=verb)
        if method == "DELETE":
            del self.instances[name]
            return self._op(project, zone, name, kind="delete")
        return 200, inst
