"""Bench: the queueing model's holdout check and part-2 plan on a results CSV, and how long it takes.

Usage: .venv/bin/python bench/bench_queueing.py [CSV]   (default data/reference.csv)
Prints markdown for bench/RESULTS.md §8 ("Capacity model: holdout validation").
"""

import sys
import time

from labkit.analysis.capacity import capacity_answer
from labkit.handout import PART2_SLA, PART2_USERS
from labkit.results import load_results


def main(path="data/reference.csv"):
    df = load_results(path)
    t0 = time.perf_counter()
    a = capacity_answer(df, PART2_SLA, PART2_USERS)
    took = time.perf_counter() - t0
    m, p = a["model"], a["plan"]
    print(f"CSV {path}; capacity_answer with model and plan: {took:.1f} s wall")
    print(f"calibrated on {m['calibrated_on']}, checked on {m['checked_on']}, admit {m['admit']}; errors {m['errors']}")
    print("| nodes | c | status | mean meas | mean pred | p98 meas | p98 pred | max meas | max pred | meets meas | meets pred |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in m["points"]:
        me, pr = r["measured"], r["predicted"]
        print(f"| {r['nodes']} | {r['concurrency']} | {r['status']} | {me['mean_ms']} | {pr['mean_ms']} | {me['p98_ms']} | "
              f"{pr['p98_ms']} | {me['max_ms']} | {pr['max_ms']} | {me['meets']} | {pr['meets']} |")
    for role, c in a["utilisation_check"].items():
        if c:
            print(f"utilisation check {role}: mean |err| {100 * c['mean_abs_error']:.1f} pts, max {100 * c['max_abs_error']:.1f}, "
                  f"bias {100 * c['bias']:+.1f} over {c['rows']} rows")
    print("plan:", a["conclusion"])


if __name__ == "__main__":
    main(*sys.argv[1:])
