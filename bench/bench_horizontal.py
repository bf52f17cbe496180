"""Benchmark 2 — horizontal scaling of the local emulation: rps at c=200 for 1…5 f1-micro nodes.

Efficiency E(n) = rps(n) / (n · rps(1)) (goal >= 0.9 up to the machine's capacity).
To say *where* it flattens and why, every point also records how busy each
emulated machine was: CPU-seconds its cgroup used during ab's run divided by
(ab's time × the machine type's vCPU) — 100 % means that machine was the
bottleneck (its quota was used up), whatever the rest could do. Also the
whole machine's CPU use (/proc/stat) against its cores.

Two set-ups, interleaved round by round:

* ``lab``  — the lab as shipped: servers, balancer and tester all f1-micro (0.2 vCPU);
* ``big-lb`` — the same servers, but balancer and tester given e2-standard-2 (2 vCPU,
  i.e. effectively unlimited): what the servers alone would scale to.

    .venv/bin/python bench/bench_horizontal.py [--runs 3] [--requests 2000] [--concurrency 200]
"""

from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

SETUPS = {"lab": ("f1-micro", "f1-micro"), "big-lb": ("e2-standard-2", "e2-standard-2")}


def proc_stat() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine."""
    f = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = f[3] + f[4]
    return sum(f) - idle, sum(f)


def one_round(setup: str, nodes_list, c: int, n: int, machine_type: str) -> dict[int, dict]:
    from labkit import machine_types
    from labkit.ab import AbCommand
    from labkit.backends.base import ClusterSpec
    from labkit.backends.local.backend import LocalBackend
    from labkit.measure import measure

    lb_type, tester_type = SETUPS[setup]
    backend = LocalBackend(balancer_machine_type=lb_type, tester_machine_type=tester_type)
    out = {}
    try:
        backend.up(ClusterSpec(nodes=nodes_list[0], machine_type=machine_type))
        measure(backend, AbCommand(backend.url, 10, 100))  # warm-up, creates the tester cgroup
        for nodes in nodes_list:
            t_scale = time.perf_counter()
            backend.scale(nodes)
            t_scale = time.perf_counter() - t_scale
            measure(backend, AbCommand(backend.url, 10, 100))  # warm the new servers and the balancer
            roles = [f"restserver-{i}" for i in range(nodes)] + ["tester-0"] + (["loadbalancer-0"] if nodes > 1 else [])
            before = {r: backend.cpu_seconds(r) or 0.0 for r in roles}
            m0 = proc_stat()
            row = measure(backend, AbCommand(backend.url, c, n))
            m1 = proc_stat()
            after = {r: backend.cpu_seconds(r) or 0.0 for r in roles}
            t = row.get("time_taken_s") or float("nan")
            vcpu = {"tester-0": machine_types.get(tester_type).vcpu,
                    "loadbalancer-0": machine_types.get(lb_type).vcpu}
            util = {r: (after[r] - before[r]) / t / vcpu.get(r, machine_types.get(machine_type).vcpu) for r in roles}
            servers = [util[r] for r in roles if r.startswith("restserver-")]
            out[nodes] = {"rps": row.get("rps"), "failed": row.get("failed"), "aborted": row.get("aborted"),
                          "connect_ms": row.get("connect_mean_ms"), "max_ms": row.get("max_ms"),
                          "server_util": sum(servers) / len(servers), "tester_util": util["tester-0"],
                          "lb_util": util.get("loadbalancer-0"), "scale_s": t_scale,
                          "machine_cores": (m1[0] - m0[0]) / (m1[1] - m0[1]) * (C.os.cpu_count() or 1)}
            print(f"{setup:6} nodes={nodes} rps={row.get('rps')} failed={row.get('failed')} "
                  + " ".join(f"{k}={v:.2f}" for k, v in out[nodes].items()
                             if isinstance(v, float) and k != "rps"), flush=True)
    finally:
        backend.down()
    return out


def main() -> None:
    ap = C.parser(__doc__, "horizontal", runs=3, requests=2000, concurrency=200, machine_type="f1-micro")
    ap.add_argument("--nodes", default="1,2,3,4,5")
    ap.add_argument("--setups", default="lab,big-lb")
    args = ap.parse_args()
    C.setup_env()
    C.os.environ.setdefault("PYTHONUNBUFFERED", "1")
    nodes_list = [int(x) for x in args.nodes.split(",")]
    setups = args.setups.split(",")
    data: dict[str, list[dict]] = {s: [] for s in setups}
    for r in range(args.runs):
        for s in (setups if r % 2 == 0 else setups[::-1]):
            data[s].append(one_round(s, nodes_list, args.concurrency, args.requests, args.machine_type))
    sections = [
        "## 2. Horizontal scaling of the local emulation", "",
        f"`ab -c {args.concurrency} -n {args.requests}` against 1…{max(nodes_list)} × {args.machine_type} "
        f"Flask dev servers (nodes = 1 is the server directly, as in the handout; more go through the nginx "
        f"balancer); median of {args.runs} rounds, set-ups interleaved. *E* = rps(n) / (n · rps(1)) from the "
        "medians; *E vs 2 nodes* = rps(n) / (n · rps(2) / 2), i.e. comparing only set-ups that go through the "
        "balancer; *connect ms* = ab's mean connect time (SYN retries show up here), *max ms* = longest request. *busy* = cgroup CPU-seconds during ab's run / (ab's time × the machine's vCPU): 100 % means "
        "that emulated machine was saturated. *host cores* = CPU the whole 2-core machine was using (all "
        "processes, including other engineers'). *scale to n* = wall time of `backend.scale(n)` from n−1 "
        "nodes (start one server under its CPU quota, regenerate, validate and reload nginx, wait until "
        "the balancer answers from every node).", ""]
    for s in setups:
        lb, tester = SETUPS[s]
        med = {n: {k: C.median([run[n][k] for run in data[s] if run[n][k] is not None]) for k in data[s][0][n]}
               for n in nodes_list}
        rps1 = med[nodes_list[0]]["rps"]
        n2 = next((n for n in nodes_list if n >= 2), None)
        rows = []
        for n in nodes_list:
            rps_runs = [run[n]["rps"] for run in data[s]]
            m = med[n]
            rows.append([n, f"{C.fmt(m['rps'])} ({C.spread(rps_runs)})", f"**{m['rps'] / (n * rps1):.2f}**",
                         f"{m['rps'] * n2 / (n * med[n2]['rps']):.2f}" if n2 and n >= n2 else "-",
                         C.fmt(m["connect_ms"]), C.fmt(m["max_ms"]),
                         f"{m['server_util'] * 100:.0f} %", f"{m['lb_util'] * 100:.0f} %" if n > 1 else "-",
                         f"{m['tester_util'] * 100:.0f} %", f"{m['machine_cores']:.2f}",
                         f"{m['scale_s']:.2f}" if n > nodes_list[0] else "-"])
        sections += [f"**Set-up `{s}`**: balancer {lb}, tester {tester}.", "",
                     C.table(["nodes", "rps (min–max)", "E", "E vs 2 nodes", "connect ms", "max ms", "servers busy", "balancer busy", "tester busy",
                              "host cores", "scale to n, s"], rows), ""]
    body = "\n".join(sections)
    C.publish(args.section, body)


if __name__ == "__main__":
    main()
