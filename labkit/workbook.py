"""The notebooks' steps: what each handout step calls, so the notebooks stay thin.

The notebooks in ``notebooks/`` are a student's lab write-up: markdown that
says what to do and why, then one call into labkit. Everything with logic in
it lives here, where the tests reach it: the handout's two SLA questions and
their answers from a results CSV (the same answers ``summary.json`` and the
autograder's test cells use), the grid a notebook sweeps from its parameters,
notebook 03's vertical-scaling sweep, table and chart, the round-robin
demonstration, the cost of a cloud run, and the CSV notebook 04 re-analyses.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from pathlib import Path

import pandas as pd

from . import profiles
from .backends.base import Backend, ClusterSpec
from .errors import ConfigError
from .report import build_report
from .results import load_results
from .sla import as_sla, point_table

log = logging.getLogger("labkit")

#: Handout part 1: max response 1.5 s, mean < 200 ms, 98% within 300 ms; one server.
PART1_SLA = "max<=1500 mean<200 p98<=300"
#: Handout part 2: max 1 s, mean < 300 ms, 98% < 400 ms, for 2000 concurrent users.
PART2_SLA = "max<=1000 mean<300 p98<400"
PART2_USERS = 2000
#: The handout's configuration: the Flask development server, one process per node.
HANDOUT_SERVER = "flask"


class _Unanswered:
    """The value of a report answer before the student gives one (see :func:`require_answer`)."""

    def __repr__(self) -> str:
        return "UNANSWERED"


#: Placeholder for a report answer; the autograder's test cells turn it into NotImplementedError.
UNANSWERED = _Unanswered()


def require_answer(*values) -> None:
    """Raise NotImplementedError while any answer is still :data:`UNANSWERED`.

    Why: in the student version the solution is replaced by ``raise
    NotImplementedError()``; the test cells after it then fail the same way
    (not with a NameError or a misleading assertion), so "not answered yet"
    reads the same everywhere.
    """
    if any(v is UNANSWERED for v in values):
        raise NotImplementedError("answer the question in the cell above first")


# -- what to measure ---------------------------------------------------------------------------
def horizontal_grid(profile: str, machine_type: str, nodes=None, concurrency=None, requests=None):
    """The sweep grid for notebooks 01/02: the profile's, with any notebook parameter overriding it."""
    from .sweep import Grid

    p = profiles.get(profile)
    return Grid(spec=ClusterSpec(nodes=1, machine_type=machine_type, server=HANDOUT_SERVER),
                nodes=tuple(nodes or p.nodes), concurrency=tuple(concurrency or p.concurrency),
                requests=int(requests or p.requests), timeout_s=p.timeout_s, retries=p.retries)


def single_server_grid(grid):
    """``grid`` restricted to one node: the handout's first part, no balancer."""
    return dataclasses.replace(grid, nodes=(1,))


def vertical_grids(profile: str, requests=None, concurrency=None) -> list:
    """One single-node grid per (machine type, server, workers) of the profile's vertical list."""
    from .sweep import Grid

    p = profiles.get(profile)
    if not p.vertical:
        raise ConfigError(f"profile {profile!r} lists no machine types for vertical scaling")
    return [Grid(spec=ClusterSpec(nodes=1, machine_type=mt, server=server, workers=workers),
                 nodes=(1,), concurrency=tuple(concurrency or p.vertical_concurrency),
                 requests=int(requests or p.requests), timeout_s=p.timeout_s, retries=p.retries)
            for mt, server, workers in p.vertical]


VERTICAL_TESTER = "e2-standard-2"
"""The local tester's machine type while measuring vertical scaling: the handout's micro tester
tops out at about 2,500 requests/s (bench/RESULTS.md, section 3), less than the bigger servers
serve, and a benchmark must measure the server, not the tester."""


def vertical_backend(name: str) -> Backend:
    """The backend for notebook 03: on ``local``, with a tester big enough not to be the limit."""
    from .backends import get_backend

    if name == "local":
        return get_backend(name, tester_machine_type=VERTICAL_TESTER)
    return get_backend(name)


def run_vertical(backend: Backend, grids, out) -> Path:
    """Measure each vertical grid on its own machines, appending to ``out`` (resuming).

    The backend is brought up with each grid's machine type and server first:
    a sweep only re-deploys when the node count changes, and here it is the
    machine under the server that changes.
    """
    from .sweep import run_sweep

    for grid in grids:
        backend.up(grid.spec)
        run_sweep(backend, grid, out, resume=True)
    return Path(out)


# -- reading the results back --------------------------------------------------------------------
def handout_rows(df: pd.DataFrame, machine_type: str, server: str = HANDOUT_SERVER) -> pd.DataFrame:
    """The rows of the handout's configuration (one machine type, the Flask dev server).

    Why: notebook 03 appends other machine types and gunicorn to the same CSV;
    pooling them with the handout's rows would count them as repeats of the
    same (nodes, concurrency) point and change the SLA answers.
    """
    sub = df[(df["machine_type"] == machine_type) & (df["server"] == server)].reset_index(drop=True)
    if sub.empty:
        found = sorted({f"{m}/{s}" for m, s in zip(df["machine_type"], df["server"])})
        raise ConfigError(f"no {machine_type}/{server} rows in these results (they hold: {', '.join(found)})")
    return sub


def load_handout(csv, machine_type: str, server: str = HANDOUT_SERVER) -> pd.DataFrame:
    """:func:`load_results` then :func:`handout_rows`."""
    return handout_rows(load_results(csv), machine_type, server)


def answers(csv, machine_type: str, server: str = HANDOUT_SERVER) -> dict:
    """Both report answers from a results CSV: what the autograder and ``summary.json`` expect.

    ``part1``: the largest concurrency one node supports under :data:`PART1_SLA`
    (None when the lowest tested level already fails). ``part2``: the nodes
    needed for :data:`PART2_USERS` under :data:`PART2_SLA` — the smallest tested
    node count that meets it, else the USL extrapolation's node count (labelled
    by ``part2_source``), else None.
    """
    df = load_handout(csv, machine_type, server)
    r1 = build_report(df, PART1_SLA)
    r2 = build_report(df, PART2_SLA, PART2_USERS)
    part2, source = part2_from_report(r2)
    return {"part1": r1["max_concurrency"].get("1"), "part2": part2, "part2_source": source,
            "report1": r1, "report2": r2}


def part2_from_report(report: dict) -> tuple[int | None, str]:
    """(nodes, where the number comes from) for a :func:`build_report` dict with users.

    ``"measured"`` when a tested node count meets the SLA; else the
    extrapolation's label with its node count; else None with the reason
    (the fit says no number of nodes reaches the users, or no fit was possible).
    """
    if report["nodes_needed"] is not None:
        return report["nodes_needed"], "measured"
    ex = report.get("extrapolation") or {}
    if ex.get("refused"):
        return None, f"unanswered: no tested node count meets the SLA and the extrapolation is refused ({ex['refused']})"
    if ex.get("nodes") is not None:
        return int(ex["nodes"]), ex.get("label", "extrapolation")
    return None, "unanswered: no tested node count meets the SLA and the extrapolation says no node count does"


def justify_part1(df: pd.DataFrame, answer: int | None, sla=PART1_SLA) -> str:
    """A sentence saying why ``answer`` is the part-1 answer, with the numbers that decide it."""
    table = point_table(df[df["nodes"] == 1], as_sla(sla))
    if table.empty:
        return "No single-server results to judge."
    failing = table[~table["meets"]]
    first_fail = failing.iloc[0] if len(failing) else None
    if answer is None:
        return (f"Even the lowest tested level ({int(table['concurrency'].min())} users) breaks the SLA "
                f"{as_sla(sla)}: {first_fail['reason']}.")
    row = table[table["concurrency"] == answer].iloc[0]
    text = (f"One server meets the SLA {as_sla(sla)} at every tested level up to {answer} concurrent users "
            f"(at {answer}: mean {row['mean_ms']:.0f} ms, p98 {row['p98_ms']:.0f} ms, "
            f"longest {row['max_ms']:.0f} ms)")
    if first_fail is not None:
        text += f"; at {int(first_fail['concurrency'])} users it fails ({first_fail['reason']})."
    else:
        text += "; no tested level failed, so the true limit lies above the highest level tested."
    return text


def justify_part2(report: dict) -> str:
    """A sentence for the part-2 answer: which node count suffices, or what the extrapolation says."""
    nodes, source = part2_from_report(report)
    mc = ", ".join(f"{n} node(s): {c if c is not None else 'none'}" for n, c in report["max_concurrency"].items())
    users = report["users"]
    ex = report.get("extrapolation") or {}
    if source == "measured":
        return f"{nodes} nodes is the smallest tested count supporting {users} users (max concurrency per count: {mc})."
    head = f"No tested node count supports {users} users ({mc}); "
    if nodes is not None:
        return head + (f"extrapolating peak throughput with a USL fit gives {nodes} nodes — an estimate, "
                       f"not a measurement, to confirm by measuring {nodes} nodes.")
    if ex.get("refused"):
        return head + f"no extrapolation is possible ({ex['refused']}): measure more node counts or levels."
    return head + f"a USL fit of throughput says adding nodes does not get there ({ex.get('note', 'no note')})."


def tables_by_nodes(df: pd.DataFrame) -> dict[int, pd.DataFrame]:
    """The handout's table for every tested node count."""
    from .results import handout_table

    return {int(n): handout_table(df, int(n)) for n in sorted(df["nodes"].unique())}


# -- vertical scaling ----------------------------------------------------------------------------
def vertical_table(df: pd.DataFrame, concurrency=None) -> pd.DataFrame:
    """Throughput and mean latency per single-node configuration (machine type, server, workers).

    One row per configuration, ordered by vCPU; columns ``vcpu``, then
    ``rps@C`` and ``mean_ms@C`` per concurrency level (completed runs averaged).
    """
    from .machine_types import MACHINE_TYPES

    one = df[(df["nodes"] == 1) & ~df["aborted"]]
    if concurrency is not None:
        one = one[one["concurrency"].isin(list(concurrency))]
    if one.empty:
        raise ConfigError("no completed single-node rows to compare")
    g = one.groupby(["machine_type", "server", "workers", "concurrency"])[["rps", "mean_ms"]].mean()
    wide = g.unstack("concurrency")
    wide.columns = [f"{m}@{c}" for m, c in wide.columns]
    wide = wide.reset_index()
    wide.insert(1, "vcpu", wide["machine_type"].map(lambda m: MACHINE_TYPES[m].vcpu if m in MACHINE_TYPES else math.nan))
    return wide.sort_values(["vcpu", "server", "workers"]).reset_index(drop=True)


def vertical_chart(df: pd.DataFrame, concurrency=None):
    """Bar chart: throughput per configuration at each concurrency level, Flask vs gunicorn side by side."""
    import seaborn as sns

    from .plots import DPI, FIGSIZE, LabFigure

    table = vertical_table(df, concurrency)
    rps_cols = [c for c in table.columns if c.startswith("rps@")]
    long = table.melt(id_vars=["machine_type", "vcpu", "server", "workers"], value_vars=rps_cols,
                      var_name="concurrency", value_name="rps")
    long["concurrency"] = long["concurrency"].str.removeprefix("rps@").map(lambda c: f"c={c}")
    long["configuration"] = [f"{m} ({v:g} vCPU)\n{s}" + (f" ×{w}" if s == "gunicorn" else "")
                             for m, v, s, w in zip(long["machine_type"], long["vcpu"], long["server"],
                                                   long["workers"])]
    sns.set_theme(style="whitegrid", context="notebook")
    fig = LabFigure(figsize=FIGSIZE, dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    sns.barplot(data=long, x="configuration", y="rps", hue="concurrency", ax=ax, palette="viridis")
    ax.set_xlabel("server machine type and server (×workers)")
    ax.set_ylabel("throughput (requests/s)")
    ax.set_title("Vertical scaling: one node, bigger machines, Flask dev server vs gunicorn")
    ax.tick_params(axis="x", labelsize=8)
    return fig


def save_chart(fig, charts_dir, name: str) -> Path:
    """Save ``fig`` as ``charts_dir/name`` (PNG); returns the path."""
    from .plots import DPI

    path = Path(charts_dir) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=DPI)
    log.info("wrote %s", path)
    return path


# -- the balancer ----------------------------------------------------------------------------------
def round_robin_table(url: str, calls: int) -> pd.DataFrame:
    """``curl URL/status`` ``calls`` times: which node answered each call, and its counters."""
    from .client import round_robin

    rows = round_robin(url, calls)
    return pd.DataFrame([{"call": i + 1, "node": r.get("node"), "requests": r.get("requests"),
                          "cache_length": r.get("cache_length")} for i, r in enumerate(rows)])


# -- setup ---------------------------------------------------------------------------------------
def doctor_table() -> pd.DataFrame:
    """``labkit doctor`` as a table (check, ok, required, detail, fix)."""
    from .doctor import run_checks

    return pd.DataFrame([dataclasses.asdict(c) for c in run_checks()])[["name", "ok", "required", "detail", "fix"]]


def require_healthy(backend: str = "local") -> None:
    """Stop with the fix commands when a tool the ``local`` backend needs is missing.

    Remote backends install nginx and ab on their own machines, so only the
    local backend needs them here.
    """
    if backend != "local":
        return
    from .doctor import healthy, run_checks
    from .errors import MissingToolError

    checks = run_checks()
    if not healthy(checks):
        missing = "; ".join(f"{c.name}: {c.fix}" for c in checks if c.required and not c.ok)
        raise MissingToolError(f"required tools are missing — {missing}")


def profiles_table() -> pd.DataFrame:
    """Every profile: its grid size and the number of ab runs the lab makes with it."""
    rows = []
    for p in profiles.PROFILES.values():
        horizontal = len(p.nodes) * len(p.concurrency)
        vertical = len(p.vertical) * len(p.vertical_concurrency)
        rows.append({"profile": p.name, "requests per point": p.requests,
                     "concurrency levels": ", ".join(map(str, p.concurrency)),
                     "nodes": ", ".join(map(str, p.nodes)), "points (01+02)": horizontal,
                     "points (03)": vertical, "requests in total": (horizontal + vertical) * p.requests})
    return pd.DataFrame(rows)


def cloud_cost(profile: str, machine_type: str = "f1-micro", rps_per_node: float = 100.0,
               setup_hours: float = 0.5, project: str = "my-project", zone: str = "us-central1-a") -> dict:
    """Estimated cost of running ``profile`` on Compute Engine (no cloud call is made).

    Hourly price from :func:`labkit.gcp_requests.plan` for the largest cluster
    the profile uses; duration = setup time + every point's requests at an
    assumed ``rps_per_node`` per server (an assumption, stated in the result,
    not a measurement). The cluster is billed at its largest size throughout,
    an upper bound.
    """
    from .gcp_requests import plan

    p = profiles.get(profile)
    top = max(p.nodes)
    hourly = plan(project=project, zone=zone, nodes=top, machine_type=machine_type)["cost"]["total_per_hour"]
    seconds = sum(p.requests * len(p.concurrency) / (rps_per_node * n) for n in p.nodes)
    hours = setup_hours + seconds / 3600
    return {"profile": p.name, "machine_type": machine_type, "largest cluster": f"{top} servers + balancer + tester",
            "per hour (USD)": round(hourly, 4), "assumed req/s per server": rps_per_node,
            "estimated hours": round(hours, 2), "estimated cost (USD)": round(hourly * hours, 2)}


# -- notebook 04 -----------------------------------------------------------------------------------
def reanalysis_csv(csv=None, fallback=None, root="..") -> Path:
    """The CSV notebook 04 opens: ``csv`` when given, else ``ROOT/data/reference.csv``,
    else the newest ``ROOT/reports/*/results.csv``, else ``fallback`` (the notebooks' results_csv).

    Why this order: analysts re-open the reference data by default; a student
    who has run the lab gets their own latest results.
    """
    if csv:
        return Path(csv)
    root = Path(root)
    candidates = [root / "data" / "reference.csv",
                  *sorted(root.glob("reports/*/results.csv"), reverse=True)]
    if fallback:
        candidates.append(Path(fallback))
    for c in candidates:
        if c.is_file():
            return c
    raise ConfigError(f"no results to re-analyse: no {root / 'data/reference.csv'}, no "
                      f"{root / 'reports/*/results.csv'}" + (f", no {fallback}" if fallback else "")
                      + " — run the lab first, or pass csv=")


def describe_results(df: pd.DataFrame, source) -> str:
    """One line saying what a results DataFrame holds: file, rows, node counts, levels, configuration."""
    nodes = ", ".join(str(int(n)) for n in sorted(df["nodes"].unique()))
    levels = ", ".join(str(int(c)) for c in sorted(df["concurrency"].unique()))
    configs = ", ".join(sorted({f"{m}/{s}" for m, s in zip(df["machine_type"], df["server"])}))
    return f"{source}: {len(df)} rows of {configs}; node counts {nodes}; concurrency {levels}"


def balancer_config(backend: Backend) -> str:
    """The nginx configuration the balancer runs (handout steps 5-11), when the backend keeps it locally.

    The local backend writes it under its run folder; remote backends keep it on
    the balancer host, where ``labkit status`` shows where it is.
    """
    run_dir = getattr(backend, "run_dir", None)
    conf = Path(run_dir) / "nginx" / "nginx.conf" if run_dir else None
    if conf is None or not conf.is_file():
        return "(the balancer's nginx.conf is on the balancer host; see `labkit status`)"
    return conf.read_text()
