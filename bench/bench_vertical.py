"""Benchmark 3 — vertical scaling: one node at 0.2, 0.5, 1 and 2 vCPU, Flask dev server vs gunicorn.

gunicorn runs the usual 2·vCPU+1 sync workers (rounded, at least 1). For every
(machine type, server) pair: rps and p98 at ``ab -c 100``, plus how busy the
server's cgroup was (CPU-seconds / (time × vCPU)) and the tester's, so a
plateau can be told apart from a tester limit. All configurations are run
once per round, rounds repeated; the figures are medians over rounds.

    .venv/bin/python bench/bench_vertical.py [--runs 3] [--requests 2000] [--concurrency 100]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

TYPES = ("f1-micro", "e2-small", "e2-medium", "e2-standard-2")


def configs(types):
    from labkit import machine_types

    out = []
    for t in types:
        vcpu = machine_types.get(t).vcpu
        out.append((t, "flask", 1))
        out.append((t, "gunicorn", max(1, round(2 * vcpu + 1))))
    return out


def main() -> None:
    ap = C.parser(__doc__, "vertical", runs=3, requests=2000, concurrency=100, types=",".join(TYPES))
    ap.add_argument("--testers", default="f1-micro,e2-standard-2", help="tester machine types to compare")
    args = ap.parse_args()
    C.setup_env()
    from labkit import machine_types

    cfgs = configs(args.types.split(","))
    testers = args.testers.split(",")
    data: dict[tuple, list[dict]] = {(t, *c): [] for t in testers for c in cfgs}
    for r in range(args.runs):
        for tester in (testers if r % 2 == 0 else testers[::-1]):
            run_round(tester, cfgs if r % 2 == 0 else cfgs[::-1], args, data, r)
    rows = []
    for key, runs in data.items():
        tester, mt, server, workers = key
        med = {k: C.median([x[k] for x in runs]) for k in runs[0]}
        rows.append([tester, mt, machine_types.get(mt).vcpu, server, workers,
                     f"{C.fmt(med['rps'])} ({C.spread([x['rps'] for x in runs])})",
                     f"{C.fmt(med['p98'])} ({C.spread([x['p98'] for x in runs])})",
                     f"{med['server_cores']:.2f}", f"{med['server_busy'] * 100:.0f} %",
                     f"{med['tester_busy'] * 100:.0f} %", int(C.median([x["failed"] or 0 for x in runs]))])
    body = "\n".join([
        "## 3. Vertical scaling (one node, Flask dev server vs gunicorn 2·vCPU+1 workers)", "",
        f"`ab -c {args.concurrency} -n {args.requests}` against one server; median of {args.runs} rounds "
        "(every configuration once per round, order reversed every other round). *tester* = the tester's "
        "machine type (the lab's is f1-micro, 0.2 vCPU; e2-standard-2 = effectively unlimited, to show what "
        "the servers themselves can do). *cores used* = the server cgroup's CPU-seconds / ab's time; "
        "*server busy* = that / the machine's vCPU; *tester busy* = the tester cgroup's CPU / its vCPU.", "",
        C.table(["tester", "machine type", "vCPU", "server", "workers", "rps (min–max)", "p98 ms (min–max)",
                 "cores used", "server busy", "tester busy", "failed"], rows), "",
    ])
    C.publish(args.section, body)


def run_round(tester, cfgs, args, data, r):
    from labkit import machine_types
    from labkit.ab import AbCommand
    from labkit.backends.base import ClusterSpec
    from labkit.backends.local.backend import LocalBackend
    from labkit.measure import measure

    backend = LocalBackend(tester_machine_type=tester)
    tvcpu = machine_types.get(tester).vcpu
    try:
        for cfg in cfgs:
            mt, server, workers = cfg
            backend.up(ClusterSpec(nodes=1, machine_type=mt, server=server, workers=workers))
            measure(backend, AbCommand(backend.url, 10, 200))  # warm-up
            b = {k: backend.cpu_seconds(k) or 0.0 for k in ("restserver-0", "tester-0")}
            row = measure(backend, AbCommand(backend.url, args.concurrency, args.requests))
            a = {k: backend.cpu_seconds(k) or 0.0 for k in ("restserver-0", "tester-0")}
            t = row.get("time_taken_s") or float("nan")
            res = {"rps": row.get("rps"), "p98": row.get("p98_ms"), "failed": row.get("failed"),
                   "server_busy": (a["restserver-0"] - b["restserver-0"]) / t / machine_types.get(mt).vcpu,
                   "server_cores": (a["restserver-0"] - b["restserver-0"]) / t,
                   "tester_busy": (a["tester-0"] - b["tester-0"]) / t / tvcpu}
            data[(tester, *cfg)].append(res)
            print(f"round {r + 1} tester={tester} {mt:14} {server:8} w={workers} " +
                  " ".join(f"{k}={v:.2f}" for k, v in res.items() if v is not None), flush=True)
    finally:
        backend.down()


if __name__ == "__main__":
    main()
