"""Benchmark 4 — service efficiency: requests per CPU-second, Flask dev server vs gunicorn vs nginx.

The same POST /fibonacci (n=20) answered by:

* the Flask development server (threaded, one process),
* gunicorn with 2·vCPU+1 sync workers,
* nginx returning the very same JSON body from a ``return 200 '...'`` location — no
  Python at all: the ceiling of this machine's HTTP path as ab sees it.

Each runs on one emulated machine of the same type (its own cgroup, same CPU
quota), ab runs in the tester's cgroup (e2-standard-2, so it is never the limit).
CPU-seconds come from the cgroups' cpuacct counters read before and after each ab
run; *req per CPU-s* = completed requests / the server's CPU-seconds. ab's own
cost per request (tester cgroup) is shown too. Servers are interleaved round by round.

    .venv/bin/python bench/bench_efficiency.py [--runs 3] [--requests 5000] [--concurrency 50]
"""

from __future__ import annotations

import os
import socket
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

BODY = '{"fibonacci_number": 20, "value": 6765}'

NGINX_CONF = """worker_processes 1;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    server {{
        listen {host}:{port} backlog=2048;
        location /fibonacci {{
            default_type application/json;
            return 200 '{body}';
        }}
    }}
}}
"""


def wait_port(host: str, port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            s.settimeout(0.2)
            if s.connect_ex((host, port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listening on {host}:{port}")


def main() -> None:
    ap = C.parser(__doc__, "efficiency", runs=3, requests=5000, concurrency=50, machine_type="e2-medium")
    args = ap.parse_args()
    C.setup_env()
    from labkit import machine_types
    from labkit.ab import AbCommand
    from labkit.backends.base import ClusterSpec
    from labkit.backends.local.backend import LocalBackend
    from labkit.measure import measure

    mt = machine_types.get(args.machine_type)
    workers = max(1, round(2 * mt.vcpu + 1))
    servers = [("flask", 1), ("gunicorn", workers), ("nginx", 1)]
    backend = LocalBackend(tester_machine_type="e2-standard-2")
    data: dict[str, list[dict]] = {s: [] for s, _ in servers}
    tmp = Path(tempfile.mkdtemp(prefix="labkit-bench-nginx-"))
    host, port = f"{os.environ['LABKIT_LOCAL_NET']}.50", 8080
    (tmp / "nginx.conf").write_text(NGINX_CONF.format(dir=tmp, host=host, port=port, body=BODY))
    try:
        backend.up(ClusterSpec(nodes=1, machine_type=args.machine_type))
        # nginx in a cgroup of the same machine type, recorded so `down` stops and removes it
        backend._start("nginx-static", ["nginx", "-p", str(tmp), "-c", str(tmp / "nginx.conf")], dict(os.environ),
                       args.machine_type)
        wait_port(host, port)
        for r in range(args.runs):
            for server, w in (servers if r % 2 == 0 else servers[::-1]):
                if server == "nginx":
                    role, url = "nginx-static", f"http://{host}:{port}"
                else:
                    backend.up(ClusterSpec(nodes=1, machine_type=args.machine_type, server=server, workers=w))
                    role, url = "restserver-0", backend.url
                measure(backend, AbCommand(url, 10, 300))  # warm-up
                b = {k: backend.cpu_seconds(k) for k in (role, "tester-0")}
                row = measure(backend, AbCommand(url, args.concurrency, args.requests))
                a = {k: backend.cpu_seconds(k) for k in (role, "tester-0")}
                cpu = a[role] - b[role]
                done = (row.get("complete") or 0) - (row.get("failed") or 0)
                res = {"rps": row.get("rps"), "req_per_cpu_s": done / cpu if cpu > 0 else float("nan"),
                       "cpu_ms_per_req": cpu / max(done, 1) * 1000,
                       "ab_cpu_ms_per_req": (a["tester-0"] - b["tester-0"]) / max(done, 1) * 1000,
                       "server_cores": cpu / row["time_taken_s"], "failed": row.get("failed"),
                       "non_2xx": row.get("non_2xx"), "bytes": row.get("html_transferred_bytes")}
                data[server].append(res)
                print(f"round {r + 1} {server:8} " + " ".join(f"{k}={v:.3f}" for k, v in res.items()
                                                               if isinstance(v, float)), flush=True)
    finally:
        backend.down()
    nginx_eff = C.median([x["req_per_cpu_s"] for x in data["nginx"]])
    rows = []
    for server, w in servers:
        runs = data[server]
        med = {k: C.median([x[k] for x in runs]) for k in ("rps", "req_per_cpu_s", "cpu_ms_per_req",
                                                           "ab_cpu_ms_per_req", "server_cores")}
        label = {"flask": "Flask dev server", "gunicorn": f"gunicorn ({w} sync workers)",
                 "nginx": "nginx `return 200` (same JSON)"}[server]
        rows.append([label, f"{C.fmt(med['rps'])} ({C.spread([x['rps'] for x in runs])})",
                     f"{med['server_cores']:.2f}",
                     f"**{C.fmt(med['req_per_cpu_s'])}** ({C.spread([x['req_per_cpu_s'] for x in runs])})",
                     f"{med['cpu_ms_per_req']:.3f}", f"{med['req_per_cpu_s'] / nginx_eff * 100:.1f} %",
                     f"{med['ab_cpu_ms_per_req']:.3f}",
                     int(C.median([(x["failed"] or 0) + (x["non_2xx"] or 0) for x in runs]))])
    body = "\n".join([
        "## 4. Service efficiency (requests per CPU-second of the server)", "",
        f"`ab -c {args.concurrency} -n {args.requests}` POST /fibonacci (n = 20); each server alone on one "
        f"{args.machine_type} ({mt.vcpu:g} vCPU) cgroup; ab in an e2-standard-2 tester cgroup; median of "
        f"{args.runs} rounds, servers interleaved. CPU-seconds from the cgroups' `cpuacct.usage` before/after "
        "each run. *of nginx* = the server's requests per CPU-second as a share of nginx's.", "",
        C.table(["server", "rps (min–max)", "cores used", "req per CPU-s (min–max)", "CPU ms/req", "of nginx",
                 "ab CPU ms/req", "failed+non-2xx"], rows), "",
    ])
    C.publish(args.section, body)


if __name__ == "__main__":
    main()
