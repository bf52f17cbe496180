"""Holdout validation of the capacity model: fit on 1–3 nodes, predict 4 and 5, compare with the measurement.

Validated, not asserted (issue 12): the model is fitted only on the rows of the
first three node counts of a full run and predicts what it has not seen:

- **throughput** at 4 and 5 nodes, two ways: the USL fit of peak clean throughput
  vs nodes, and the Little's-law model behind ``servers_min`` (n × the best rps per
  node measured on 1–3 nodes);
- **the node count where the balancer saturates**: the balancer's measured CPU per
  request on 2–3 nodes gives its capacity (vCPU / CPU per request, the utilisation
  law); it saturates at the first n whose predicted throughput reaches it. Checked
  against the measured balancer utilisation at 4–5 nodes — which needs a CSV with the
  per-role CPU columns (``--cpu-csv``); without one the section says it cannot be
  checked yet.

Also reported: the Little's-law check of every measured point (rps × mean / c).
Writes the ``capacity`` section of bench/RESULTS.md.

    python bench/bench_capacity.py [--csv data/reference.csv] [--cpu-csv runs/cpu.csv] [--no-write]
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

FIT_NODES = (1, 2, 3)
SATURATED = 0.9  # a role this busy (share of its vCPU) is saturated


def _err(pred: float, meas: float) -> float:
    return 100.0 * (pred - meas) / meas


def throughput_holdout(df) -> dict:
    """Predictions at the held-out node counts from the rows of FIT_NODES only."""
    from labkit.analysis.capacity import capacity_answer
    from labkit.analysis.usl import describe_fit, fit_usl, throughput_by_nodes

    measured = throughput_by_nodes(df).set_index("nodes")["rps"]
    train = df[df["nodes"].isin(FIT_NODES)]
    t = throughput_by_nodes(train)
    fit = fit_usl(t["nodes"], t["rps"])
    per_server = capacity_answer(train, "mean<300", 1, model=False)["per_server_rps"]
    held = [int(n) for n in measured.index if n not in FIT_NODES]
    rows = []
    for n in held:
        usl_x, lin_x = float(fit.predict(n)), per_server * n
        rows.append({"nodes": n, "measured": float(measured[n]), "usl": usl_x, "usl_err": _err(usl_x, measured[n]),
                     "linear": lin_x, "linear_err": _err(lin_x, measured[n])})
    return {"fit": describe_fit(fit, "nodes"), "per_server_rps": per_server, "rows": rows,
            "train": {int(n): float(x) for n, x in zip(t["nodes"], t["rps"])}}


def balancer_holdout(df) -> dict | None:
    """Predicted vs measured node count where the balancer saturates; None without the CPU columns."""
    from labkit import machine_types
    from labkit.analysis.points import has_cpu_columns, utilisation
    from labkit.analysis.sla import is_ok

    if not has_cpu_columns(df, "balancer"):
        return None
    ok = df[is_ok(df) & df["rps"].notna()]
    train = ok[ok["nodes"].isin(FIT_NODES) & (ok["nodes"] > 1) & ok["balancer_cpu_s"].notna()]
    if train.empty:
        return None
    d = float((train["balancer_cpu_s"] / train["complete"]).median())
    lb_type = train["balancer_machine_type"].mode().iloc[0]
    cap = machine_types.get(lb_type).vcpu / d
    per_node = float((ok[ok["nodes"].isin(FIT_NODES)]["rps"] / ok[ok["nodes"].isin(FIT_NODES)]["nodes"]).max())
    predicted = math.ceil(cap / per_node)
    u = utilisation(ok).assign(nodes=ok["nodes"]).groupby("nodes")["balancer"].max()
    sat = [int(n) for n, v in u.items() if v == v and v >= SATURATED]
    return {"cpu_ms": 1000 * d, "type": lb_type, "capacity_rps": cap, "per_node_rps": per_node,
            "predicted_nodes": predicted, "measured_nodes": sat[0] if sat else None,
            "max_util": {int(n): float(v) for n, v in u.items() if v == v}, "tested": sorted(int(n) for n in u.index)}


def littles_check(df) -> dict:
    """rps × mean / c over the clean points (no error, not aborted) and over those with errors."""
    from labkit.analysis.points import is_ok, littles_law_rows

    out = {}
    for name, rows in (("clean", df[is_ok(df)]), ("errors", df[~is_ok(df) & ~df["aborted"].astype(bool)])):
        ll = littles_law_rows(rows).dropna() if len(rows) else rows.get("rps", [])
        out[name] = ({"points": len(ll), "median": float(ll.median()), "min": float(ll.min()),
                      "max": float(ll.max()), "within_5": int(((ll - 1).abs() <= 0.05).sum())} if len(ll) else None)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--csv", default=str(C.ROOT / "data" / "reference.csv"), help="a full run (1–5 nodes)")
    ap.add_argument("--cpu-csv", help="a measured CSV with the per-role CPU columns (for the balancer check)")
    ap.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md alone")
    args, _ = ap.parse_known_args()  # run_all passes --runs to every benchmark; this one has no repeats
    from labkit.handout import PART2_SLA, PART2_USERS, load_handout

    # the handout's configuration only: a lab's results.csv also holds notebook 03's bigger machines
    df = load_handout(args.csv, "f1-micro")
    tp = throughput_holdout(df)
    lc = littles_check(df)
    cpu_df = load_handout(args.cpu_csv, "f1-micro") if args.cpu_csv else df
    lb = balancer_holdout(cpu_df)

    out = [f"Fit on {', '.join(map(str, FIT_NODES))} nodes only (`{Path(args.csv).name}`, peak clean req/s "
           + ", ".join(f"{n}: {x:,.0f}" for n, x in tp["train"].items()) + "); predict the held-out node counts "
           "and compare with what the same run measured there. *error* = (predicted − measured) / measured.", "",
           f"- USL fit on 1–3 nodes: {tp['fit']}.",
           f"- Little's-law model (the one behind `servers_min`): n × {tp['per_server_rps']:,.1f} req/s, the best "
           "clean rps per node on 1–3 nodes.", "",
           C.table(["nodes", "measured req/s", "USL predicted", "USL error", "n × per-server", "n × per-server error"],
                   [[r["nodes"], f"{r['measured']:,.0f}", f"{r['usl']:,.0f}", f"{r['usl_err']:+.1f} %",
                     f"{r['linear']:,.0f}", f"{r['linear_err']:+.1f} %"] for r in tp["rows"]]), ""]
    if lb is None:
        src = Path(args.cpu_csv).name if args.cpu_csv else Path(args.csv).name
        out.append(f"**Balancer saturation: cannot be checked yet.** `{src}` has no `balancer_cpu_s` column "
                   "(it was measured before the per-role CPU columns existed), and no full run with them exists yet. "
                   "Re-run `python bench/bench_capacity.py --cpu-csv <a 1–5-node run with CPU columns>`.")
    else:
        meas = lb["measured_nodes"]
        out.append(f"**Balancer saturation** (`{Path(args.cpu_csv or args.csv).name}`): {lb['type']} balancer, "
                   f"{lb['cpu_ms']:.3f} ms CPU per request on 2–3 nodes → capacity {lb['capacity_rps']:,.0f} req/s "
                   f"(utilisation law); at {lb['per_node_rps']:,.0f} req/s per node it saturates at "
                   f"**{lb['predicted_nodes']} nodes (predicted)**; measured (first node count with the balancer "
                   f"≥ {SATURATED:.0%} busy): **{meas if meas is not None else 'none up to ' + str(max(lb['tested']))}**. "
                   "Peak balancer utilisation per node count: "
                   + ", ".join(f"{n}: {v:.0%}" for n, v in lb["max_util"].items()) + ".")
    out += ["", f"Little's-law check (rps × mean / c, 1 for a closed loop) of `{Path(args.csv).name}`:"]
    for name, what in (("clean", "clean points (no failed or non-2xx request)"),
                       ("errors", "points with failed or non-2xx requests")):
        v = lc[name]
        if v:
            out.append(f"- {what}: median {v['median']:.3f}, range {v['min']:.3f}–{v['max']:.3f}, "
                       f"{v['within_5']}/{v['points']} within 5 %.")
    out.append("")
    from labkit.analysis.capacity import capacity_answer

    a = capacity_answer(df, PART2_SLA, PART2_USERS)
    out.append(f"Part 2 on this CSV (`labkit report {Path(args.csv).name} --sla \"{PART2_SLA}\" --users {PART2_USERS}`), "
               f"capacity block: {a['conclusion']}; servers_usl {a['servers_usl']}; cost of the plan "
               f"${a['cost_per_hour']:.4f}/h.")
    out += ["", f"Command: `{C.command_line()}`"]
    body = "## 8. Capacity model: holdout validation\n\n" + "\n".join(out)
    print(body)
    if not args.no_write:
        C.write_section("capacity", body)


if __name__ == "__main__":
    main()
