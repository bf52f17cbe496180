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
from labkit.analysis.points import DECIDING_NOTE, one_node_behind_balancer, points
from labkit.analysis.sla import as_sla, max_concurrency_of_table, point_table
from labkit.results import load_results

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


def handout_spec(machine_type: str, nodes: int = 1, balanced: bool = False) -> ClusterSpec:
    """The handout's cluster: ``nodes`` servers of ``machine_type`` running the Flask development server
    (``balanced``: behind the nginx balancer even with one node)."""
    return ClusterSpec(nodes=nodes, machine_type=machine_type, server=HANDOUT_SERVER, balanced=balanced)


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
    same (nodes, concurrency) point and change the SLA answers. Rows of one node
    behind nginx (the balancer-cost point, normally in a CSV of their own) are not
    the handout's single server either: they are left out, with a log line.
    """
    via = one_node_behind_balancer(df)
    if via.any():
        log.info("left out %d row(s) of one node behind nginx: not the handout's single server", int(via.sum()))
    df = df[~via]
    sub = df[(df["machine_type"] == machine_type) & (df["server"] == server)].reset_index(drop=True)
    if sub.empty:
        found = sorted({f"{m}/{s}" for m, s in zip(df["machine_type"], df["server"])})
        raise ConfigError(f"no {machine_type}/{server} rows in these results (they hold: {', '.join(found)})")
    return sub


def load_handout(csv, machine_type: str, server: str = HANDOUT_SERVER) -> pd.DataFrame:
    """:func:`labkit.results.load_results` then :func:`handout_rows`."""
    return handout_rows(load_results(csv), machine_type, server)


def status_table(df: pd.DataFrame, nodes: int) -> pd.DataFrame:
    """The handout's table for ``nodes`` (the columns of :func:`labkit.results.handout_table`), read from the
    analysis core (:func:`labkit.analysis.points.points`), with each level's ``Runs`` (rows: repeats and
    refinement probes) and ``Status`` (design §8: ok / errors / refused / aborted).

    With repeats, each latency column is the worst run's — the value that decides the SLA, the one
    the part-1 sentence quotes — never an average of maxima; ``table.attrs["note"]`` says so. A level
    whose every row aborted stays in the table with empty values, so a gap is visible.
    """
    t = points(df[df["nodes"] == nodes])
    table = pd.DataFrame({
        "Concurrency": t["concurrency"].astype("int64"),
        "Mean Request Time (ms)": t["mean_ms"].astype("float64"),
        "Longest request (ms)": t["max_ms"].astype("float64"),
        "98 percentile (ms)": t["p98_ms"].astype("float64"),
        "Runs": t["runs"].astype("int64"),
        "Status": t["status"].astype("object"),
    }).reset_index(drop=True)
    table.attrs["note"] = DECIDING_NOTE
    return table


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
    p2 = part2_answer(r2)
    return {"part1": r1["max_concurrency"].get(1), "part2": p2["nodes"], "part2_source": p2["source"],
            "part2_answer": p2, "report1": r1, "report2": r2}


def part2_from_report(report: dict) -> tuple[int | None, str]:
    """(nodes, where the number comes from) for a :func:`labkit.analysis.report.build_report` dict with users.

    Design §8's part-2 rule, said once (:func:`part2_answer` is the full answer): ``"measured"``
    when a tested node count meets the SLA; else the model plan's server count (servers +
    balancer + tester, validated on held-out node counts); else None. ``servers_min`` (the
    mean-only Little's-law bound) is never the answer: it is shown as a lower bound.
    """
    a = part2_answer(report)
    return a["nodes"], a["source"]


def part2_answer(report: dict) -> dict:
    """The part-2 answer, the one the notebook, ``summary.txt``/``summary.json`` and the autograder give.

    From a :func:`labkit.analysis.report.build_report` dict with ``users``. Keys: ``nodes``
    (the answer: measured ``nodes_needed``, else the model plan's servers, else None),
    ``source`` (``"measured"``, ``"model plan"`` or ``"unanswered: …"``), ``servers_min``
    (lower bound), ``plan`` (the model's plan, or None), ``balancer`` / ``tester`` (what the
    plan needs), ``cost_per_hour``, ``holdout_errors`` and ``headline`` (one sentence).
    """
    cap = report.get("capacity") or {}
    plan = cap.get("plan") or {}
    smin = cap.get("servers_min")
    out = {"nodes": None, "source": "", "servers_min": smin, "plan": plan or None,
           "balancer": plan.get("balancer"), "tester": plan.get("tester"),
           "cost_per_hour": plan.get("cost_per_hour"), "holdout_errors": plan.get("holdout_errors")}
    users = report["users"]
    if report["nodes_needed"] is not None:
        out.update(nodes=report["nodes_needed"], source="measured")
        out["headline"] = f"{report['nodes_needed']} nodes (measured: the smallest tested count supporting {users} users)"
        return out
    if plan.get("servers") is not None:
        from labkit.analysis.capacity import plan_sentence

        out.update(nodes=int(plan["servers"]), source="model plan")
        out["headline"] = (f"{plan['servers']} servers (model, no tested node count supports {users} users): "
                           + plan_sentence(plan, cap.get("model"))
                           + (f"; at least {smin} by Little's law (a lower bound)" if smin else ""))
        return out
    why = "; ".join(cap.get("unavailable") or []) or "the capacity model has no plan for these results"
    out["source"] = "unanswered: " + why
    out["headline"] = (f"no answer: no tested node count supports {users} users and the model gives no plan"
                       + (f" (at least {smin} servers by Little's law, a lower bound)" if smin else ""))
    return out


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

    Measured when a tested node count suffices; otherwise the model's plan, which names the
    balancer and the tester the throughput needs (the constraint servers alone cannot lift),
    with the Little's-law ``servers_min`` as a lower bound and the model's holdout errors.
    """
    a = part2_answer(report)
    mc = ", ".join(f"{n} node(s): {c if c is not None else 'none'}" for n, c in report["max_concurrency"].items())
    users = report["users"]
    steps = "".join(f" {s}" for s in report.get("steps_down") or [])  # why a larger count supports fewer
    if a["source"] == "measured":
        return (f"{a['nodes']} nodes is the smallest tested count supporting {users} users "
                f"(max concurrency per count: {mc}).{steps}")
    head = f"No tested node count supports {users} users ({mc}).{steps} "
    cap = report.get("capacity") or {}
    if cap.get("throughput_needed_rps") is None:
        return head + a["headline"] + "."
    text = head + (f"Little's law (N = X·R for ab's closed loop): {users} users at a mean under "
                   f"{cap['mean_bound_s'] * 1000:.0f} ms need at least {cap['throughput_needed_rps']:,.0f} req/s; "
                   f"one server carries at most {cap['per_server_rps']:,.0f} req/s, so at least "
                   f"{cap['servers_min']} servers — a lower bound: it uses only the mean clause.")
    plan = a["plan"] or {}
    if plan.get("servers") is not None:
        b, t = plan["balancer"], plan["tester"]
        bal = cap.get("roles", {}).get("balancer", {})
        text += (f" Every request also crosses the balancer and the tester: at "
                 f"{bal.get('cpu_ms_per_request') or float('nan'):.3f} CPU ms per request the balancer must be "
                 f"{b['kind']} of type {b['machine_type']} ({b['workers']} nginx worker(s), one per vCPU), and ab, "
                 f"single-threaded, needs {t['processes']} process(es) on {t['machines']} {t['machine_type']} "
                 f"machine(s). The queueing model (MVA for the mean, a simulation with the listen backlog and SYN "
                 f"retries for p98 and max) meets all three clauses with {a['headline'].split(': ', 1)[-1]}.")
    else:
        text += " " + a["headline"] + "."
    return text + " Confirm by measuring that plan."
