"""The handout's two report questions: their SLAs, the user count, the answers and their justification.

Lab 02 asks two questions. Part 1: how many concurrent users can *one* server
support with max response <= 1.5 s, mean < 200 ms and 98% within 300 ms?
Part 2: how many nodes do 2000 concurrent users need with max <= 1 s, mean
< 300 ms and 98% < 400 ms? Both are answered for the handout's configuration
(the chosen machine type running the Flask development server) from a results
CSV. This module is the one place the questions, their SLAs and their answers
are written down: notebooks 01/02 (the student's answer cells and the
autograder's test cells), notebook 04, the SLA explorer and ``summary.json``
all read them from here, so they cannot disagree.
"""

from __future__ import annotations

import logging

import pandas as pd

from labkit import profiles
from labkit.backends.base import ClusterSpec
from labkit.errors import ConfigError
from labkit.analysis.report import build_report
from labkit.results import handout_table, load_results
from labkit.analysis.sla import as_sla, max_concurrency_of_table, point_status, point_table

log = logging.getLogger("labkit")

#: Handout part 1: max response 1.5 s, mean < 200 ms, 98% within 300 ms; one server
#: (written in :mod:`labkit.profiles`, whose quick profile refines its boundary).
PART1_SLA = profiles.PART1_SLA
PART1_QUESTION = ("Maximum number of concurrent users one server supports with max response <= 1.5 s, "
                  "mean < 200 ms and 98% within 300 ms")
#: Handout part 2: max 1 s, mean < 300 ms, 98% < 400 ms, for 2000 concurrent users.
PART2_SLA = "max<=1000 mean<300 p98<400"
PART2_USERS = 2000
PART2_QUESTION = ("Nodes needed for 2000 concurrent users with max response <= 1 s, mean < 300 ms "
                  "and 98% < 400 ms")
#: The handout's configuration: the Flask development server, one process per node.
HANDOUT_SERVER = "flask"


def handout_spec(machine_type: str, nodes: int = 1) -> ClusterSpec:
    """The handout's cluster: ``nodes`` servers of ``machine_type`` running the Flask development server."""
    return ClusterSpec(nodes=nodes, machine_type=machine_type, server=HANDOUT_SERVER)


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


# -- the rows the questions are about -------------------------------------------------------------
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
    """:func:`labkit.results.load_results` then :func:`handout_rows`."""
    return handout_rows(load_results(csv), machine_type, server)


def status_table(df: pd.DataFrame, nodes: int) -> pd.DataFrame:
    """The handout's table (:func:`labkit.results.handout_table`) for ``nodes``, with each level's
    ``Runs`` (rows: repeats and refinement probes) and ``Status`` (design §8: ok / errors /
    refused / aborted), so an aborted or all-502 level is not read as a measurement."""
    table = handout_table(df, nodes)
    sub = df[df["nodes"] == nodes]
    if sub.empty:
        return table.assign(Runs=pd.Series([], dtype="int64"), Status=pd.Series([], dtype="object"))
    groups = sub.groupby("concurrency")
    runs = groups.size()
    status = {int(c): point_status(rows) for c, rows in groups}
    return table.assign(Runs=table["Concurrency"].map(runs).astype("int64"),
                        Status=table["Concurrency"].map(status))


def tables_by_nodes(df: pd.DataFrame) -> dict[int, pd.DataFrame]:
    """The handout's table with ``Runs`` and ``Status`` (:func:`status_table`) for every tested node count."""
    return {int(n): status_table(df, int(n)) for n in sorted(df["nodes"].unique())}


# -- the answers ------------------------------------------------------------------------------------
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
    return {"part1": r1["max_concurrency"].get(1), "part2": part2, "part2_source": source,
            "report1": r1, "report2": r2}


def part2_from_report(report: dict) -> tuple[int | None, str]:
    """(nodes, where the number comes from) for a :func:`labkit.analysis.report.build_report` dict with users.

    Design §8's part-2 rule: ``"measured"`` when a tested node count meets the SLA; else the
    capacity model's ``servers_min`` (Little's law: no fewer servers can meet the mean bound),
    labelled as a model; else None with the reason. The USL extrapolation is reported beside
    it (:func:`justify_part2`), never as the answer: it scales one node count's users, not
    the throughput the users need.
    """
    if report["nodes_needed"] is not None:
        return report["nodes_needed"], "measured"
    cap = report.get("capacity") or {}
    if cap.get("servers_min") is not None:
        return int(cap["servers_min"]), "model: Little's-law lower bound (servers_min), not measured"
    return None, ("unanswered: no tested node count meets the SLA and the capacity model has no "
                  "per-server throughput to work from")


def justify_part1(df: pd.DataFrame, answer: int | None, sla=PART1_SLA) -> str:
    """A sentence saying why ``answer`` is the part-1 answer, with the numbers that decide it.

    When the boundary was refined (levels off the handout's), it also gives the answer on
    the handout's own levels; a deciding point within 10 % of a bound is called borderline.
    """
    table = point_table(df[df["nodes"] == 1], as_sla(sla))
    if table.empty:
        return "No single-server results to judge."
    failing = table[~table["meets"]]
    first_fail = failing.iloc[0] if len(failing) else None
    if answer is None:
        text = (f"Even the lowest tested level ({int(table['concurrency'].min())} users) breaks the SLA "
                f"{as_sla(sla)}: {first_fail['reason']}.")
        return text + _handout_levels_note(table, answer)
    row = table[table["concurrency"] == answer].iloc[0]
    text = (f"One server meets the SLA {as_sla(sla)} at every tested level up to {answer} concurrent users "
            f"(at {answer}: mean {row['mean_ms']:.0f} ms, p98 {row['p98_ms']:.0f} ms, "
            f"longest {row['max_ms']:.0f} ms)")
    if first_fail is not None:
        text += f"; at {int(first_fail['concurrency'])} users it fails ({first_fail['reason']})."
    else:
        text += "; no tested level failed, so the true limit lies above the highest level tested."
    if row["borderline"]:
        text += f" At {answer} the margin is thin ({row['borderline']})."
    return text + _handout_levels_note(table, answer)


def _handout_levels_note(table: pd.DataFrame, answer: int | None) -> str:
    """" On the handout's own levels ...", when the table holds refinement probes, else ""."""
    if table["concurrency"].isin(profiles.HANDOUT_CONCURRENCY).all():
        return ""
    probes = sorted(int(c) for c in table["concurrency"] if c not in profiles.HANDOUT_CONCURRENCY)
    on_levels = max_concurrency_of_table(table, profiles.HANDOUT_CONCURRENCY).get(1)
    return (f" The boundary was refined between the handout's levels (probes at {', '.join(map(str, probes))} "
            f"users, each measured up to 3 times: a probe meets only if every run does); on the handout's own "
            f"levels the answer is "
            f"{on_levels if on_levels is not None else 'none'}.")


def justify_part2(report: dict) -> str:
    """A paragraph for the part-2 answer from the student's own numbers (design §8).

    Measured when a tested node count suffices; otherwise the capacity model's numbers, each
    labelled as a model with its basis: the throughput the users need, the best measured
    per-server throughput, ``servers_min``, the USL estimate, and the balancer the need requires.
    """
    nodes, source = part2_from_report(report)
    mc = ", ".join(f"{n} node(s): {c if c is not None else 'none'}" for n, c in report["max_concurrency"].items())
    users = report["users"]
    steps = "".join(f" {s}" for s in report.get("steps_down") or [])  # why a larger count supports fewer
    if source == "measured":
        return (f"{nodes} nodes is the smallest tested count supporting {users} users "
                f"(max concurrency per count: {mc}).{steps}")
    head = f"No tested node count supports {users} users ({mc}).{steps} "
    cap = report.get("capacity") or {}
    if nodes is None:
        return head + source + "."
    basis = cap.get("per_server_basis") or {}
    text = head + (f"Model (Little's law, N = X·R for ab's closed loop): {users} users at a mean under "
                   f"{cap['mean_bound_s'] * 1000:.0f} ms need at least {cap['throughput_needed_rps']:,.0f} req/s; "
                   f"the best measured throughput per server is {cap['per_server_rps']:,.0f} req/s")
    if basis:
        text += f" ({basis['rps']:,.0f} req/s at {basis['nodes']} node(s), c={basis['concurrency']})"
    text += f", so no fewer than {nodes} servers can meet the mean bound."
    if cap.get("servers_usl") is not None:
        text += f" A USL fit of throughput against nodes (a model) puts it at {cap['servers_usl']}."
    balancer = (cap.get("roles") or {}).get("balancer") or {}
    if cap.get("balancer_needed") or balancer.get("machine_type"):
        need = cap.get("balancer_needed") or balancer["machine_type"]
        text += (f" Every request also crosses the balancer: at the measured "
                 f"{balancer.get('cpu_ms_per_request', float('nan')):.2f} CPU ms per request it must be at least "
                 f"{need}.")
    elif cap.get("bottleneck") is None:
        text += " These results do not measure the balancer's CPU, so which machine caps first is not known."
    return text + " Confirm by measuring that many nodes."
