"""Benchmark 6 — whole-lab wall time against the physical minimum (ab's own time).

Two figures:

* **The handout's full sweep** (`labkit sweep --profile full`, 65 points of 10,000
  requests): a full-profile run takes most of an hour on this machine, so it is not
  re-run here; the script reads the one made for ``data/`` (``--ref-dir``, default
  ``/tmp/ref``: ``done`` holds ``rc=… wall_s=…``, ``reference.csv`` the rows) and
  compares its wall time with the sum of ab's ``Time taken for tests`` over its points.
  ``make lab PROFILE=full`` = these sweeps plus the notebooks around them (part B's
  overhead, which does not grow with the profile).
* **`make lab` (`labkit lab --profile quick`)**, run ``--runs`` times: wall time of the
  whole headless lab (5 notebooks executed by papermill) against the sum of ab's time
  over every point in its ``results.csv``, plus each notebook's duration from
  papermill's metadata.

    .venv/bin/python bench/bench_fullrun.py [--runs 3] [--ref-dir /tmp/ref] [--skip-lab]
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402


def ab_time(csv_paths, df=None) -> dict:
    import pandas as pd

    from labkit.results import load_results

    df = load_results([str(p) for p in csv_paths]) if df is None else df
    return {"points": len(df), "ab_s": float(df["time_taken_s"].sum()), "aborted": int(df["aborted"].sum()),
            "retried": int((df["attempts"] > 1).sum()), "extra_attempts": int((df["attempts"] - 1).sum()),
            "requests": int(pd.to_numeric(df["complete"]).fillna(0).sum())}


LAB_JSON = C.BENCH_DIR / "out" / "fullrun-lab.json"


def _elapsed(text: str) -> float:
    parts = [int(x) for x in text.split(":")]
    return float(sum(v * 60 ** i for i, v in enumerate(reversed(parts))))


def _point_walls(log: Path) -> tuple[dict[int, float], int | None]:
    """tqdm's elapsed time when each point k finished ("| k/65 [MM:SS<"), from the sweep's log."""
    first_at: dict[int, float] = {}
    total = None
    for k, n, el in re.findall(r"\|\s*(\d+)/(\d+) \[([\d:]+)<", log.read_text(errors="replace")):
        first_at.setdefault(int(k), _elapsed(el))
        total = int(n)
    return first_at, total


def reference(ref: Path) -> dict | None:
    """The reference run (finished, or the part finished so far: ``partial``), with per-point walls."""
    from labkit.results import load_results

    done, log, csv = ref / "done", ref / "sweep.log", ref / "reference.csv"
    if not csv.exists():
        return None
    df = load_results(csv)  # one snapshot: the sweep may be appending
    out = ab_time([csv], df)
    first_at, total = _point_walls(log) if log.exists() else ({}, None)
    if done.exists():
        m = dict(re.findall(r"(\w+)=(\S+)", done.read_text()))
        out.update(rc=int(m.get("rc", -1)), wall_s=float(m["wall_s"]), partial=False)
    elif out["points"] in first_at:
        out.update(wall_s=first_at[out["points"]], partial=True, rc=None)
    else:
        return None
    out["total_points"] = total or out["points"]
    # split the tqdm walls into completed and aborted points (rows are appended in measuring order)
    walls = {k: first_at[k] - first_at.get(k - 1, 0.0) for k in first_at if 1 <= k <= len(df)}
    ok = [k for k in walls if not df["aborted"].iloc[k - 1]]
    bad = [k for k in walls if df["aborted"].iloc[k - 1]]
    out["ok_points"], out["ok_wall"] = len(ok), sum(walls[k] for k in ok)
    out["ok_ab"] = float(sum(df["time_taken_s"].iloc[k - 1] for k in ok))
    first = [k for k in ok if df["attempts"].iloc[k - 1] == 1]
    out["first_points"], out["first_wall"] = len(first), sum(walls[k] for k in first)
    out["first_ab"] = float(sum(df["time_taken_s"].iloc[k - 1] for k in first))
    out["bad_points"], out["bad_wall"] = len(bad), sum(walls[k] for k in bad)
    out["bad_attempts"] = int(sum(df["attempts"].iloc[k - 1] for k in bad))
    return out


def balancer_figures(report: Path) -> dict:
    """Notebook 02's one node behind nginx vs reached directly (issue 20), from the run's two CSVs."""
    path = report / "balancer.csv"
    if not path.exists():
        return {}
    from labkit.analysis.balancer_cost import finding
    from labkit.handout import load_handout
    from labkit.results import load_results

    f = finding(load_handout(report / "results.csv", "f1-micro"), load_results(path))
    return {"hop_c": f.hop.concurrency if f.hop else None, "hop_added_ms": f.hop.added_mean_ms if f.hop else None,
            "hop_direct_ms": f.hop.mean_direct_ms if f.hop else None,
            "load_c": f.load.concurrency if f.load else None,
            "load_rps": (f.load.rps_direct, f.load.rps_behind) if f.load else None,
            "load_rps_change_pct": f.load.rps_change_pct if f.load else None,
            "balancer_cpu_ms": f.load.balancer_cpu_ms_per_request if f.load else None,
            "balancer_util": f.load.balancer_util if f.load else None,
            "server_util": f.load.server_util_behind if f.load else None}


def _behind(r: dict) -> str:
    if r.get("hop_added_ms") is None:
        return "-"
    text = f"{r['hop_c']} user: {r['hop_added_ms']:+.1f} ms on {r['hop_direct_ms']:.1f} ms"
    if r.get("load_rps"):
        d, b = r["load_rps"]
        text += (f"; {r['load_c']} users: {d:.1f} → {b:.1f} req/s ({r['load_rps_change_pct']:+.1f} %), balancer "
                 f"{r['balancer_cpu_ms']:.2f} CPU ms/request, {r['balancer_util'] * 100:.0f} % busy vs server "
                 f"{r['server_util'] * 100:.0f} %")
    return text


def one_lab(tmp: Path, i: int, tree: Path | None = None, label: str = "now") -> dict:
    work = tmp / f"lab{i}-{'base' if tree else 'now'}"
    work.mkdir(parents=True)
    env = {**C.tree_env(tree), "LABKIT_STATE_DIR": str(work / "state")}
    argv = [C.PYTHON, "-m", "labkit.cli"] if tree else [C.LABKIT]
    t0 = time.perf_counter()
    res = subprocess.run([*argv, "lab", "--profile", "quick", "--out", str(work / "reports")], cwd=work,
                         capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    (work / "lab.log").write_text(res.stdout + res.stderr)
    if res.returncode != 0:
        raise SystemExit(f"labkit lab failed (rc {res.returncode}); see {work / 'lab.log'}")
    report = next((work / "reports").iterdir())
    out = {"wall_s": wall, **ab_time([report / "results.csv"])}
    for nb in sorted(report.glob("*.ipynb")):
        meta = json.loads(nb.read_text()).get("metadata", {}).get("papermill", {})
        out[nb.stem] = meta.get("duration")
    # what the run answered, and what the consistency check (sentences vs tables) found in its notebooks
    summary = json.loads((report / "summary.json").read_text())
    out["part1"] = summary["part1"]["max_concurrency"]
    out["part2"] = summary["part2"]["answer"]
    out["part2_source"] = summary["part2"]["answer_source"]
    out["consistency_problems"] = sum(len(v) for v in (summary.get("consistency") or {}).values())
    out.update(balancer_figures(report))
    out["report"] = str(report)
    print(f"lab run {i + 1} ({label}): " + " ".join(f"{k}={v:.1f}" if isinstance(v, float) else f"{k}={v}"
                                          for k, v in out.items()), flush=True)
    return out


def main() -> None:
    ap = C.parser(__doc__, "fullrun", runs=3)
    ap.add_argument("--ref-dir", type=Path, default=Path("/tmp/ref"))
    ap.add_argument("--skip-lab", action="store_true")
    ap.add_argument("--reuse-lab", action="store_true",
                    help=f"take the `labkit lab` runs from {LAB_JSON.relative_to(C.ROOT)} (saved by the last run) "
                         "instead of running them again, e.g. to refresh the full-profile figure alone")
    ap.add_argument("--baseline", default=None, metavar="REV",
                    help="also run `labkit lab` as of git revision REV, interleaved (before/after a fix)")
    args = ap.parse_args()
    C.setup_env()
    lines = ["## 6. Whole-lab wall time vs ab's own time (the physical minimum)", ""]
    ref = reference(args.ref_dir)
    if ref:
        over = ref["wall_s"] - ref["ab_s"]
        if ref["partial"]:
            what = (f"**still running** when this was written: the figures cover the first {ref['points']} of its "
                    f"{ref['total_points']} points (wall = tqdm's elapsed time when point {ref['points']} finished, "
                    "from its log) — the low-concurrency single-node points first, the slow high-concurrency "
                    "ones after")
        else:
            what = f"finished, rc={ref['rc']}; one run — a full sweep takes ~{ref['wall_s'] / 60:.0f} min, so it was not repeated"
        lines += [
            "**Full profile** (`labkit sweep --backend local --profile full --machine-type f1-micro`, the run "
            f"that produced `data/reference.csv`, read from {args.ref_dir}; {what}):", "",
            C.table(["points", "requests completed", "wall s", "Σ ab time s", "wall / Σ ab", "overhead s",
                     "overhead / point s", "aborted points", "points retried (extra ab runs)"],
                    [[ref["points"], f"{ref['requests']:,}", ref["wall_s"], ref["ab_s"],
                      f"**{ref['wall_s'] / ref['ab_s']:.3f}**", over, over / ref["points"], ref["aborted"],
                      f"{ref['retried']} ({ref['extra_attempts']})"]]), "",
            "Σ ab time counts only the attempt each row reports (aborted rows have no `time_taken_s`), so "
            "time spent in retried and aborted ab runs, the retry pauses and the up/scale steps all show up as "
            "overhead. Split by point, from the per-point wall times in the sweep's progress log:", "",
            C.table(["points", "count", "wall s", "Σ ab time s", "wall / Σ ab", "overhead / point s"],
                    [["completed (1 attempt or retried)", ref["ok_points"], ref["ok_wall"], ref["ok_ab"],
                      f"**{ref['ok_wall'] / ref['ok_ab']:.3f}**" if ref["ok_ab"] else "-",
                      (ref["ok_wall"] - ref["ok_ab"]) / max(ref["ok_points"], 1)],
                     ["… of which completed at the first attempt", ref["first_points"], ref["first_wall"],
                      ref["first_ab"], f"**{ref['first_wall'] / ref['first_ab']:.3f}**" if ref["first_ab"] else "-",
                      (ref["first_wall"] - ref["first_ab"]) / max(ref["first_points"], 1)],
                     ["aborted (every attempt hit ab's 70007 timeout)", ref["bad_points"], ref["bad_wall"],
                      f"– ({ref['bad_attempts']} ab runs)", "-", "-"]]), ""]
    else:
        lines += [f"Full profile: `{args.ref_dir}/done` does not exist yet (the reference sweep is still "
                  "running), so there is no full-profile figure in this run.", ""]
    if args.reuse_lab:
        runs = json.loads(LAB_JSON.read_text())
    elif not args.skip_lab:
        tmp = Path(tempfile.mkdtemp(prefix="labkit-bench-lab-"))
        trees = {"now": None}
        if args.baseline:
            base = C.export_revision(args.baseline)
            # same grid on both sides: the baseline gets today's profiles (only the code differs)
            shutil.copy(C.ROOT / "labkit" / "profiles.py", base / "labkit" / "profiles.py")
            trees = {f"at {args.baseline}": base, "now": None}
        runs: dict[str, list[dict]] = {label: [] for label in trees}
        for i in range(args.runs):
            for label, tree in (list(trees.items()) if i % 2 == 0 else list(trees.items())[::-1]):
                runs[label].append(one_lab(tmp, i, tree, label))
        LAB_JSON.parent.mkdir(exist_ok=True)
        LAB_JSON.write_text(json.dumps(runs, indent=1))
    if args.reuse_lab or not args.skip_lab:
        rows, nb_rows, nbs = [], [], []
        compared = len(runs) > 1
        n_runs = len(next(iter(runs.values())))
        base_label = next((lb for lb in runs if lb != "now"), "")
        for label, rs in runs.items():
            med = lambda k: C.median([r[k] for r in rs if r.get(k) is not None])  # noqa: E731
            ratio = [r["wall_s"] / r["ab_s"] for r in rs]
            nbs = [k for k in rs[0] if re.match(r"\d\d_", k)]
            lead = [label] if compared else []
            rows.append(lead + [int(med("points")), f"{C.fmt(med('wall_s'))} ({C.spread([r['wall_s'] for r in rs])})",
                                med("ab_s"), f"**{C.median(ratio):.2f}** ({C.spread(ratio)})",
                                med("wall_s") - med("ab_s"),
                                f"{int(med('aborted'))} ({C.spread([r['aborted'] for r in rs])})"])
            nb_rows.append(lead + [med(k) for k in nbs])
        lead = ["labkit"] if compared else []
        lines += [
            f"**`make lab` (quick profile)** — `labkit lab --profile quick`, median of {n_runs} runs"
            + (f" each, alternating with labkit {base_label} (given today's `profiles.py`, so both "
               "measure the same grid)" if compared else "") + ":", "",
            C.table(lead + ["points", "wall s (min–max)", "Σ ab time s", "wall / Σ ab", "overhead s",
                            "aborted points (min–max)"], rows),
            "", "Per notebook (papermill's recorded duration, s, median):", "",
            C.table(lead + nbs, nb_rows), "",
            "Each run: its wall, its answers and what the consistency check (every sentence's numbers against "
            "the notebook's own tables, labkit/teaching/consistency.py) found in its five executed notebooks:", "",
            C.table(["run", "wall s", "part 1", "part 2 (source)", "consistency problems",
                     "one node behind nginx vs direct (notebook 02)"],
                    [[f"{label} {i + 1}", r["wall_s"], r.get("part1", "-"),
                      f"{r.get('part2', '-')} ({r.get('part2_source', '-')})", r.get("consistency_problems", "-"),
                      _behind(r)]
                     for label, rs in runs.items() for i, r in enumerate(rs)]), ""]
    body = "\n".join(lines)
    C.publish(args.section, body)


if __name__ == "__main__":
    main()
