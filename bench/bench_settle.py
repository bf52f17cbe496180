"""Benchmark — measurement hygiene: issue 11's hand reproduction, and the CPU each role uses.

1. *Spill-over.* One f1-micro server, ``ab -c 1000`` (the full profile's ``-n 10000 -s 10``)
   aborts; at once ``scale 2``; then 2 nodes at ``-c 10 -n 2000``. Measured three ways,
   ``--runs`` times each, interleaved: with ``settle`` (what a sweep does now), with
   ``settle=False`` (the old behaviour of the point itself; the scale step's waits and
   warm-up still run), and from a quiet start (a fresh 2-node lab, nothing before it).
2. *CPU per role.* 2 × f1-micro servers behind an f1-micro balancer, f1-micro tester:
   CPU milliseconds per request of the servers (together), the balancer and the tester,
   from the rows' ``server_cpu_s``/``balancer_cpu_s``/``tester_cpu_s`` over ``complete``,
   at c = 10 and c = 100.

    .venv/bin/python bench/bench_settle.py [--runs 3]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402


def main() -> None:
    ap = C.parser(__doc__, "settle", runs=3, overload=1000)
    args = ap.parse_args()
    C.setup_env()
    from labkit.ab import AbCommand
    from labkit.backends.base import ClusterSpec
    from labkit.backends.local.backend import LocalBackend
    from labkit.measure import measure
    from labkit.settings import Settings

    settings = Settings.from_env()
    spill: dict[str, list] = {"settle": [], "settle=False": [], "quiet start": []}
    cpu: dict[int, list] = {10: [], 100: []}
    for r in range(args.runs):
        for mode in ("settle", "settle=False", "quiet start"):
            b = LocalBackend(settings)
            try:
                if mode == "quiet start":
                    b.up(ClusterSpec(nodes=2))
                else:
                    b.up(ClusterSpec(nodes=1))
                    b.run_ab(AbCommand(b.url, args.overload, 10000, timeout_s=10), timeout=300)  # aborts
                    b.scale(2)
                row = measure(b, AbCommand(b.url, 10, 2000), retries=0, settle=mode != "settle=False")
                spill[mode].append(row)
                print(f"round {r + 1} {mode:13} max={row.max_ms} ms p99={row.p99_ms} settle_s={row.settle_s}",
                      flush=True)
                if mode == "quiet start":
                    cpu[10].append(row)
                    row = measure(b, AbCommand(b.url, 100, 2000), retries=0)
                    cpu[100].append(row)
                    print(f"round {r + 1} c=100 server={row.server_cpu_s} balancer={row.balancer_cpu_s} "
                          f"tester={row.tester_cpu_s} complete={row.complete}", flush=True)
            finally:
                b.down()

    def med(rows, f):
        vals = [f(x) for x in rows if f(x) is not None]
        return (C.median(vals), C.spread(vals)) if vals else (None, "")

    rows1 = []
    for mode, rows in spill.items():
        mx, mxs = med(rows, lambda x: x.max_ms)
        p99, _ = med(rows, lambda x: x.p99_ms)
        st, sts = med(rows, lambda x: x.settle_s)
        rows1.append([mode, f"**{C.fmt(mx)}** ({mxs})", C.fmt(p99), f"{C.fmt(st)} ({sts})" if st is not None else "—"])
    quiet = C.median([x.max_ms for x in spill["quiet start"]])
    rows2 = []
    for c, rows in cpu.items():
        line = [f"c = {c}", C.fmt(C.median([x.rps for x in rows]))]
        for f in ("server_cpu_s", "balancer_cpu_s", "tester_cpu_s"):
            per = [1000 * getattr(x, f) / x.complete for x in rows if getattr(x, f) is not None and x.complete]
            line.append(f"**{C.fmt(C.median(per))}** ({C.spread(per)})" if per else "—")
        util = [x.server_cpu_s / (x.time_taken_s * 0.2 * 2) for x in rows if x.server_cpu_s and x.time_taken_s]
        line.append(f"{C.median(util):.0%}" if util else "—")
        rows2.append(line)
    body = "\n".join([
        "## Measurement hygiene: settle after an aborted point, and the CPU each role uses", "",
        f"**Spill-over (issue 11's hand reproduction).** 1 × f1-micro, `ab -c {args.overload} -n 10000 -s 10` "
        "aborts, at once `scale 2`, then 2 × f1-micro at `ab -c 10 -n 2000`; each way "
        f"{args.runs} times, interleaved, median (min–max). *settle* is what a sweep does now; "
        "*settle=False* the old start of the point (the scale step's waits and warm-up still run); "
        "*quiet start* a fresh 2-node lab.", "",
        C.table(["2 nodes, c = 10, after", "max ms", "p99 ms", "settle_s"], rows1), "",
        f"With settle the max is {C.fmt(rows1[0] and med(spill['settle'], lambda x: x.max_ms)[0] / quiet)}× "
        f"the quiet start's (goal ≤ 2×); without, "
        f"{C.fmt(med(spill['settle=False'], lambda x: x.max_ms)[0] / quiet)}×.", "",
        "**CPU per request, by role** (2 × f1-micro servers, f1-micro balancer and tester, `-n 2000`, from the "
        "rows' CPU columns; quiet lab):", "",
        C.table(["level", "rps", "servers ms/req", "balancer ms/req", "tester ms/req", "server utilisation"],
                rows2), "",
    ])
    C.publish(args.section, body)


if __name__ == "__main__":
    main()
