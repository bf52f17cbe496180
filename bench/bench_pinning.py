"""Benchmark — one core per vCPU: an f1-micro server pinned to one core vs free on every core.

One local lab (1 × f1-micro, Flask dev server, its 0.2-vCPU cgroup quota) stays up. The
same ab run (``-c C -n N``, the handout's payload) is measured with the server's threads
confined to one core (what :mod:`labkit.backends.local.cpu_affinity` does) and free to run on every core
of this machine (what labkit did before), alternating, ``--runs`` rounds. Figures per mode:
requests/s, mean and p98 from ab, and the server's CPU milliseconds per request from its
cgroup. The ratio pinned/free of the medians is the figure to quote.

    .venv/bin/python bench/bench_pinning.py [--runs 5] [--concurrency 20] [--requests 3000]
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402


def set_affinity(pid: int, cpus: set[int]) -> None:
    """Every thread of ``pid`` (and so the threads it starts next) may run on ``cpus`` only."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            os.sched_setaffinity(int(task.name), cpus)
        except ProcessLookupError:  # a request's thread that just ended
            pass


def main() -> None:
    ap = C.parser(__doc__, "pinning", runs=5, concurrency=20, requests=3000)
    args = ap.parse_args()
    C.setup_env()
    from labkit.backends.local import cpu_affinity
    from labkit.ab import AbCommand
    from labkit.backends.base import ClusterSpec
    from labkit.backends.local.backend import LocalBackend
    from labkit.measure import measure
    from labkit.settings import Settings

    b = LocalBackend(Settings.from_env())
    modes = {"pinned (one core)": cpu_affinity.cpus_for(0.2, 0), "free (every core)": set(cpu_affinity.available())}
    rows: dict[str, list] = {m: [] for m in modes}
    try:
        b.up(ClusterSpec(nodes=1, machine_type="f1-micro"))
        pid = b._record("restserver-0").pid
        for r in range(args.runs):
            for mode, cpus in (modes.items() if r % 2 == 0 else reversed(modes.items())):
                set_affinity(pid, cpus)
                row = measure(b, AbCommand(b.url, args.concurrency, args.requests), retries=0)
                rows[mode].append(row)
                print(f"round {r + 1} {mode:18} rps={row.rps} mean={row.mean_ms} p98={row.p98_ms} "
                      f"server_cpu_s={row.server_cpu_s}", flush=True)
    finally:
        b.down()

    def per_req(x):
        return 1000 * x.server_cpu_s / x.complete if x.server_cpu_s and x.complete else None

    table, med = [], {}
    for mode, got in rows.items():
        med[mode] = {k: C.median([f(x) for x in got]) for k, f in
                     (("rps", lambda x: x.rps), ("mean", lambda x: x.mean_ms), ("p98", lambda x: x.p98_ms),
                      ("cpu", per_req))}
        table.append([mode, f"**{C.fmt(med[mode]['rps'])}** ({C.spread([x.rps for x in got])})",
                      C.fmt(med[mode]["mean"]), C.fmt(med[mode]["p98"]),
                      f"**{C.fmt(med[mode]['cpu'])}** ({C.spread([per_req(x) for x in got])})"])
    pinned, free = (med[m] for m in modes)
    body = "\n".join([
        "## One core per vCPU (local backend)", "",
        f"1 × f1-micro Flask server (0.2-vCPU quota, cfs period {b.settings.cfs_period_us // 1000} ms), "
        f"`ab -c {args.concurrency} -n {args.requests}`, {args.runs} rounds alternating the two modes, "
        "median (min–max):", "",
        C.table(["server threads", "req/s", "mean ms", "p98 ms", "server CPU ms/request"], table), "",
        f"Pinned / free: **{pinned['rps'] / free['rps']:.2f}×** the requests/s, "
        f"**{pinned['cpu'] / free['cpu']:.2f}×** the CPU per request.", "",
    ])
    C.publish(args.section, body)


if __name__ == "__main__":
    main()
