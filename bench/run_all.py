"""Run every benchmark in bench/ (`make bench`), each writing its section of bench/RESULTS.md.

Extra arguments are passed to every script (e.g. ``--runs 5``). Each script runs
in its own process, one after another (they share the machine and the 127.0.77.x
addresses, so they must not overlap). A failing benchmark is reported and the
others still run; the exit status is non-zero if any failed.

    .venv/bin/python bench/run_all.py [--only overhead,analysis] [--runs N]
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCRIPTS = ["bench_analysis", "bench_overhead", "bench_horizontal", "bench_vertical", "bench_efficiency",
           "bench_fullrun", "bench_startup", "bench_capacity", "bench_settle", "bench_pinning", "bench_grade", "bench_testers"]


def main(argv: list[str]) -> int:
    only = None
    if "--only" in argv:
        i = argv.index("--only")
        only = {f"bench_{n.removeprefix('bench_')}" for n in argv[i + 1].split(",")}
        argv = argv[:i] + argv[i + 2:]
    failed = []
    for name in SCRIPTS:
        if only and name not in only:
            continue
        t0 = time.monotonic()
        print(f"== {name} ==", flush=True)
        rc = subprocess.call([sys.executable, str(HERE / f"{name}.py"), *argv])
        print(f"== {name}: rc={rc}, {time.monotonic() - t0:.0f} s ==", flush=True)
        if rc:
            failed.append(name)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
