"""What the autograder accepts, from the student's own results CSV, and what looks fabricated.

The notebooks' test cells call :func:`check_part1` and :func:`check_part2` inside
nbgrader's ``### BEGIN HIDDEN TESTS`` blocks: the student's copy only says that an
answer is needed, the expected answer is worked out at grading time from the CSV
the student submitted (design §13), under design §8's rules:

- part 1: the largest tested concurrency one node supports with every tested level
  up to it meeting :data:`~labkit.handout.PART1_SLA` (``None`` when the lowest fails);
- part 2: the measured ``nodes_needed`` when a tested node count meets
  :data:`~labkit.handout.PART2_SLA` for :data:`~labkit.handout.PART2_USERS` users;
  otherwise a server count in the model's range, from ``servers_min`` (the mean-only
  Little's-law lower bound) to the model plan's servers, naming a balancer big enough
  (the plan's type or larger) when the results measure the balancer's CPU
  (:func:`labkit.analysis.capacity.part2_accepts` is that rule).

So two students with different data are both right with different numbers.
:func:`authenticity_flags` is the other half: signs that a CSV was not measured
(Little's law, percentile order, timestamps and run ids, rows copied from
``data/reference.csv``). They are flags for the instructor, never lost points.
"""

from __future__ import annotations

import datetime as dt
import numbers
import re
from pathlib import Path

import pandas as pd

from labkit.analysis.capacity import capacity_answer, part2_accepts
from labkit.errors import LabkitError
from labkit.handout import PART1_SLA, PART2_SLA, PART2_USERS, load_handout
from labkit.record import PERCENTILES
from labkit.results import load_results
from labkit.analysis.sla import is_ok, max_concurrency, nodes_needed

#: The cell tag of a measuring cell: nbgrader autograde (with :mod:`labkit.grading.grade`'s
#: preprocessor) does not run it, the cells after it read the submitted CSV.
MEASURE_TAG = "measure"
#: ``data/reference.csv`` beside the package (absent from an installed wheel: that check is skipped).
REFERENCE_CSV = Path(__file__).resolve().parents[2] / "data" / "reference.csv"
#: Little's law for a closed loop (ab): rps × mean time / concurrency ≈ 1 (0.97-1.0 on clean
#: points). Overloaded points (SYN retransmissions, long tails) measure down to 0.49 in
#: data/reference.csv; above 1 the service would have answered more requests than the
#: concurrency allows.
LITTLE_RANGE = (0.4, 1.2)
#: ab's own arithmetic: its mean is concurrency × time taken / complete and its rps is complete /
#: time taken, so rps × ab mean / concurrency and rps × time taken / complete are 1 up to rounding.
AB_IDENTITY_TOLERANCE = 0.05
#: Slack for percentile order and timestamps (ab rounds to whole milliseconds; clocks to seconds).
PERCENTILE_SLACK_MS = 1.0
CLOCK_SLACK_S = 2.0
RUN_ID = re.compile(r"^(\d{8}T\d{6}Z)-[0-9a-f]{4}$")
#: The measured columns a copied row shares with the reference exactly.
MEASURED = ("time_taken_s", "rps", "mean_ms", *(f"p{p}_ms" for p in PERCENTILES), "max_ms")


# -- the answers the autograder accepts ------------------------------------------------------------
def _handout_rows(results_csv, machine_type: str) -> pd.DataFrame:
    try:
        return load_handout(results_csv, machine_type)
    except (OSError, LabkitError) as exc:
        raise AssertionError(f"your results CSV ({results_csv}) cannot be graded: {exc}") from None


def expected_part1(df: pd.DataFrame) -> int | None:
    """Part 1 on the handout's rows ``df``: max concurrency of one node under PART1_SLA."""
    one = df[df["nodes"] == 1]
    if one.empty:
        raise AssertionError("your results have no single-server (1 node) rows")
    return max_concurrency(one, PART1_SLA).get(1)


def part2_rule(df: pd.DataFrame) -> tuple[int | None, int | None]:
    """(measured nodes_needed, None) when a tested node count meets PART2_SLA for the users, else
    (None, the capacity answer's servers_min, or None when no clean row sizes a server)."""
    measured = nodes_needed(df, PART2_SLA, PART2_USERS)
    if measured is not None:
        return measured, None
    return None, capacity_answer(df, PART2_SLA, PART2_USERS, model=False)["servers_min"]  # the range's lower end


#: how a hidden check announces the answer it checks (read back by the grader: labkit.grading.verify)
ANSWER_PREFIX = "labkit-answer: "


def announce(part: str, answer, machine_type: str, balancer: str | None = None) -> None:
    """Print the answer being checked as one line, for the grader's own re-check in a fresh process
    (:mod:`labkit.grading.verify`): the verdict of this kernel is not trusted."""
    import json

    print(ANSWER_PREFIX + json.dumps({"part": part, "answer": answer, "machine_type": machine_type,
                                      "balancer": balancer}, default=str), flush=True)


def check_part1(answer, results_csv, machine_type: str, announce_answer: bool = True) -> None:
    """Raise AssertionError unless ``answer`` is part 1's answer for the student's own CSV."""
    if announce_answer:
        announce("part1", answer, machine_type)
    expected = expected_part1(_handout_rows(results_csv, machine_type))
    assert answer is None or _is_count(answer), "part1_max_users must be a whole number of users (or None)"
    assert answer == expected, "part1_max_users does not follow from your results: check every level up to it"


def check_part2(answer, results_csv, machine_type: str, balancer: str | None = None,
                announce_answer: bool = True) -> None:
    """Raise AssertionError unless ``answer`` (nodes, with ``balancer``) is a part-2 answer design §8
    accepts for the student's own CSV (:func:`labkit.analysis.capacity.part2_accepts`)."""
    if announce_answer:
        announce("part2", answer, machine_type, balancer)
    df = _handout_rows(results_csv, machine_type)
    if answer is None:
        measured, least = part2_rule(df)
        assert measured is None and least is None, "part2_nodes must be a whole number of nodes"
        return
    verdict = part2_accepts(df, PART2_SLA, PART2_USERS, answer, balancer)
    assert verdict.accepted, f"part2_nodes = {answer!r} does not follow from your results: {verdict.why}"


def _is_count(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


# -- signs that a CSV was not measured ---------------------------------------------------------------
def _point(row) -> str:
    return f"{int(row.nodes)} node(s) c={int(row.concurrency)}"


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    """``text`` without control characters (terminal escape sequences from a student's CSV), each shown as
    ``?``: what the grader prints must not drive the instructor's terminal."""
    return _CONTROL.sub("?", str(text))


def _some(items: list[str], limit: int = 3) -> str:
    more = f" and {len(items) - limit} more" if len(items) > limit else ""
    return printable(", ".join(items[:limit]) + more)


def authenticity_flags(df: pd.DataFrame, reference: pd.DataFrame | None = None,
                       now: dt.datetime | None = None) -> list[str]:
    """Signs that the results ``df`` (every row of a student's CSV) were not measured.

    Each flag is one line, ``"<check>: <what>"``: ``littles-law`` (rps × mean time /
    concurrency far from 1 on a row without errors, or ab's own mean inconsistent
    with its rps), ``percentiles`` (p50 <= ... <= p99 <= max broken), ``run-id``
    (not the ``YYYYMMDDTHHMMSSZ-xxxx`` labkit writes), ``timestamps`` (a row started
    before its run, in the future, before the previous row of its run finished),
    ``reference-copy`` (rows whose measured numbers equal a row of
    ``data/reference.csv``). ``reference`` defaults to that file when it exists.
    """
    flags: list[str] = []
    done = df[~df["aborted"].astype(bool) & df["rps"].notna() & df["mean_ms"].notna()]

    clean = done[is_ok(done)]
    ratio = clean["rps"] * clean["mean_ms"] / 1000.0 / clean["concurrency"]
    far = [f"{_point(r)}: {v:.2f}" for r, v in zip(clean.itertuples(), ratio)
           if not LITTLE_RANGE[0] <= v <= LITTLE_RANGE[1]]
    if far:
        flags.append(f"littles-law: rps × mean / concurrency far from 1 on {len(far)} row(s) ({_some(far)})")
    off = []
    for r in done.itertuples():
        checks = []
        if not pd.isna(r.ab_mean_ms):
            checks.append(r.rps * r.ab_mean_ms / 1000.0 / r.concurrency)
        if not pd.isna(r.time_taken_s) and not pd.isna(r.complete) and r.complete:
            checks.append(r.rps * r.time_taken_s / r.complete)
        if any(abs(v - 1) > AB_IDENTITY_TOLERANCE for v in checks):
            off.append(_point(r))
    if off:
        flags.append(f"littles-law: ab's own rps, mean time and time taken disagree on {len(off)} row(s) "
                     f"({_some(off)})")

    cols = [*(f"p{p}_ms" for p in PERCENTILES), "max_ms"]
    bad = []
    for r in done.itertuples():
        values = [getattr(r, c) for c in cols]
        if any(pd.isna(v) for v in values):
            continue
        if any(b < a - PERCENTILE_SLACK_MS for a, b in zip(values, values[1:])) or r.mean_ms > r.max_ms + PERCENTILE_SLACK_MS:
            bad.append(_point(r))
    if bad:
        flags.append(f"percentiles: p50 <= ... <= p99 <= max (and mean <= max) broken on {len(bad)} row(s) "
                     f"({_some(bad)})")

    flags += _time_flags(df, now or dt.datetime.now(dt.timezone.utc))

    if reference is None and REFERENCE_CSV.is_file():
        reference = load_results(REFERENCE_CSV)
    if reference is not None and not reference.empty:
        flags += _reference_flags(done, reference)
    return flags


def _time_flags(df: pd.DataFrame, now: dt.datetime) -> list[str]:
    flags = []
    ids = df["run_id"].astype("object")
    odd = sorted({str(i) for i in ids if pd.isna(i) or not RUN_ID.match(str(i))})
    if odd:
        flags.append(f"run-id: {len(odd)} run id(s) labkit does not write ({_some(odd)})")
    started = df["started_at"]
    missing = int(started.isna().sum())
    problems = []
    if missing:
        problems.append(f"{missing} row(s) without a start time")
    future = df[started > pd.Timestamp(now) + pd.Timedelta(hours=1)]
    if len(future):
        problems.append(f"{len(future)} row(s) start in the future ({_some([_point(r) for r in future.itertuples()])})")
    for run_id, rows in df[started.notna()].groupby(df["run_id"].astype("object").fillna(""), sort=False):
        m = RUN_ID.match(str(run_id))
        if m:
            begun = pd.Timestamp(dt.datetime.strptime(m.group(1), "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.timezone.utc))
            early = rows[rows["started_at"] < begun - pd.Timedelta(seconds=CLOCK_SLACK_S)]
            if len(early):
                problems.append(f"{len(early)} row(s) of run {run_id} start before the run did")
        times = rows["started_at"].tolist()
        took = rows["time_taken_s"].astype("float64").fillna(0).tolist()
        overlap = [_point(r) for r, prev, prev_took, t in zip(rows.iloc[1:].itertuples(), times, took, times[1:])
                   if (t - prev).total_seconds() < prev_took - CLOCK_SLACK_S]
        if overlap:
            problems.append(f"{len(overlap)} row(s) of run {run_id} start before the previous ab run ended "
                            f"({_some(overlap)})")
    if problems:
        flags.append("timestamps: " + "; ".join(problems))
    return flags


def _reference_flags(done: pd.DataFrame, reference: pd.DataFrame) -> list[str]:
    def keys(frame):
        sub = frame[list(MEASURED)].astype("float64").round(3)
        return [tuple(v) for v in sub.itertuples(index=False, name=None)]

    ref = set(_measured_keys(reference))
    copied = [_point(r) for r, k in zip(done.itertuples(), keys(done)) if k in ref]
    if copied:
        return [f"reference-copy: {len(copied)} row(s) identical to data/reference.csv ({_some(copied)})"]
    return []


def _measured_keys(frame: pd.DataFrame) -> list[tuple]:
    done = frame[frame["rps"].notna()]
    sub = done[list(MEASURED)].astype("float64").round(3)
    return [tuple(v) for v in sub.itertuples(index=False, name=None)]


def copied_between(csvs: dict[str, Path]) -> dict[str, dict[str, int]]:
    """Submissions sharing measured rows with another (hashed across the class): student -> {other: rows}.

    Two measurements never agree to the millisecond on every measured column, so one
    shared row is a copy. Unreadable or missing CSVs are skipped (they have their own flags).
    """
    import hashlib

    owners: dict[str, set[str]] = {}
    for student, path in sorted(csvs.items()):
        try:
            keys = _measured_keys(load_results(path))
        except (OSError, LabkitError, ValueError, KeyError):
            continue
        for key in set(keys):
            owners.setdefault(hashlib.sha256(repr(key).encode()).hexdigest(), set()).add(student)
    shared: dict[str, dict[str, int]] = {}
    for students in owners.values():
        for a in students:
            for b in students - {a}:
                shared.setdefault(a, {}).setdefault(b, 0)
                shared[a][b] += 1
    return shared
