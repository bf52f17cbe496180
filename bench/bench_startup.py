"""Benchmark 7 — how fast the local lab comes up and scales (part of every sweep's and `make lab`'s time).

Times, in a fresh process per run: ``up(1 x f1-micro flask)``, then ``scale(2)`` … ``scale(5)``
(each starts one server, regenerates and reloads nginx, and waits until the balancer
answers from every node), then ``down()``. With ``--baseline REV`` the same is done with
labkit as of REV, interleaved, for before/after figures.

    .venv/bin/python bench/bench_startup.py [--runs 3] [--baseline REV]
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

CHILD = r"""
import json, time
from labkit.backends.local.backend import LocalBackend
from labkit.backends.base import ClusterSpec
b = LocalBackend()
out = {}
try:
    t = time.perf_counter(); b.up(ClusterSpec(nodes=1, machine_type="f1-micro")); out["up(1)"] = time.perf_counter() - t
    for n in (2, 3, 4, 5):
        t = time.perf_counter(); b.scale(n); out[f"scale({n})"] = time.perf_counter() - t
finally:
    t = time.perf_counter(); b.down(); out["down()"] = time.perf_counter() - t
print(json.dumps(out))
"""


def one(tree: Path | None) -> dict:
    env = {**C.setup_env(), "LABKIT_STATE_DIR": tempfile.mkdtemp(prefix="labkit-bench-startup-")}
    res = subprocess.run([C.PYTHON, "-c", C.prelude(tree) + CHILD], capture_output=True, text=True, env=env,
                         cwd=tempfile.gettempdir(), check=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = C.parser(__doc__, "startup", runs=3)
    ap.add_argument("--baseline", default=None, metavar="REV")
    args = ap.parse_args()
    C.setup_env()
    trees = {"now": None}
    if args.baseline:
        trees = {f"at {args.baseline}": C.export_revision(args.baseline), "now": None}
    runs: dict[str, list[dict]] = {k: [] for k in trees}
    for r in range(args.runs):
        for label, tree in (list(trees.items()) if r % 2 == 0 else list(trees.items())[::-1]):
            res = one(tree)
            runs[label].append(res)
            print(f"run {r + 1} {label}: " + " ".join(f"{k}={v:.2f}" for k, v in res.items()), flush=True)
    keys = list(next(iter(runs.values()))[0])
    rows = []
    for label, rs in runs.items():
        total = [sum(x[k] for k in keys) for x in rs]
        rows.append(([label] if args.baseline else []) + [C.median([x[k] for x in rs]) for k in keys]
                    + [f"**{C.fmt(C.median(total))}** ({C.spread(total)})"])
    body = "\n".join([
        "## 7. Lab start-up and scaling (local backend)", "",
        f"Seconds, median of {args.runs} runs" + (", interleaved with labkit as of the baseline" if args.baseline
                                                  else "") + ": 1 × f1-micro Flask server up, scaled 2 → 5 one "
        "step at a time (each step starts one server, rewrites and reloads nginx, waits for round robin "
        "over every node), then down.", "",
        C.table((["labkit"] if args.baseline else []) + keys + ["total (min–max)"], rows), "",
    ])
    C.publish(args.section, body)


if __name__ == "__main__":
    main()
