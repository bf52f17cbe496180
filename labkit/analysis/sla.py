"""Service Level Agreements and the report's two questions (design §8).

An SLA is a set of clauses ``METRIC OP MS`` such as ``"max<=1500 mean<200
p98<=300"`` (handout part 1). From a results DataFrame (see
:func:`labkit.results.load_results`) this module answers:

- :func:`max_concurrency`: per node count, the largest tested concurrency C
  such that *every* tested level <= C meets the SLA (``None`` when the lowest
  level already fails). A pass above a failing level does not count: the
  service cannot be promised for a load it failed at on the way up.
- :func:`nodes_needed` (and :func:`nodes_needed_of` from the answers of
  :func:`max_concurrency`): the smallest tested node count whose
  ``max_concurrency`` is at least the user count (``None`` when none is; the
  report then adds a labelled USL extrapolation, see :mod:`labkit.analysis.usl`).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from labkit.analysis.points import DECIDING_NOTE, STATUSES, is_ok, point_status, points, row_status  # noqa: F401
from labkit.analysis.connections import near_syn_retry, syn_retry_cause
from labkit.errors import ConfigError, SlaSyntaxError
from labkit.record import PERCENTILES

log = logging.getLogger("labkit")

#: Metric name in an SLA clause -> results column (design §7).
METRICS: dict[str, str] = {
    "max": "max_ms", "mean": "mean_ms", **{f"p{p}": f"p{p}_ms" for p in PERCENTILES},
}
OPERATORS = ("<", "<=")

_CLAUSE_RE = re.compile(r"(?P<metric>[A-Za-z]\w*)\s*(?P<op><=|>=|==|=<|<|>|=)\s*"
                        r"(?P<ms>[+-]?(?:\d+(?:\.\d*)?|\.\d+))\s*(?P<unit>ms)?$")


@dataclass(frozen=True)
class Clause:
    """One ``METRIC OP MS`` bound, e.g. ``p98 <= 300``."""

    metric: str
    op: str
    ms: float

    def __post_init__(self):
        if self.metric not in METRICS:
            raise SlaSyntaxError(f"unknown metric {self.metric!r} (use one of {', '.join(METRICS)})")
        if self.op not in OPERATORS:
            raise SlaSyntaxError(f"operator {self.op!r} in {self.metric} clause: use < or <=")
        if not (isinstance(self.ms, (int, float)) and np.isfinite(self.ms) and self.ms >= 0):
            raise SlaSyntaxError(f"bound of the {self.metric} clause must be a number >= 0, got {self.ms!r}")

    @property
    def column(self) -> str:
        """The results column this clause bounds."""
        return METRICS[self.metric]

    @property
    def strict(self) -> bool:
        """True for ``<``: a value equal to the bound fails."""
        return self.op == "<"

    def holds(self, values: pd.Series) -> pd.Series:
        """Per value: does it satisfy the bound? Missing values do not."""
        v = values.astype("float64")
        ok = v < self.ms if self.strict else v <= self.ms
        return ok & v.notna()

    def holds_value(self, value: float) -> bool:
        """The bound for one number (missing -> False)."""
        if value is None or pd.isna(value):
            return False
        return value < self.ms if self.strict else value <= self.ms

    def __str__(self) -> str:
        return f"{self.metric}{self.op}{self.ms:g}"


@dataclass(frozen=True)
class Sla:
    """A frozen set of clauses; build one with :meth:`parse` or from :class:`Clause` objects."""

    clauses: tuple[Clause, ...]

    def __post_init__(self):
        object.__setattr__(self, "clauses", tuple(self.clauses))
        if not self.clauses:
            raise SlaSyntaxError("an SLA needs at least one clause, e.g. 'max<=1500 mean<200 p98<=300'")
        seen = set()
        for c in self.clauses:
            if c.metric in seen:
                raise SlaSyntaxError(f"metric {c.metric!r} appears in more than one clause")
            seen.add(c.metric)

    @classmethod
    def parse(cls, text: str) -> "Sla":
        """Read ``"max<=1500 mean<200 p98<=300"``: clauses separated by spaces or commas.

        Spaces around the operator and an ``ms`` suffix are allowed
        (``"p98 <= 300ms"``). Anything else — an unknown metric, ``>``/``=``,
        a missing or negative bound, a repeated metric — raises
        :class:`~labkit.errors.SlaSyntaxError` quoting the clause.
        """
        if not isinstance(text, str) or not text.strip():
            raise SlaSyntaxError("empty SLA: write clauses like 'max<=1500 mean<200 p98<=300'")
        # Glue "p98 <= 300" into one token, then split on spaces/commas.
        glued = re.sub(r"\s*(<=|>=|==|=<|<|>|=)\s*", r"\1", text.strip())
        clauses = []
        for token in filter(None, re.split(r"[\s,;]+", glued)):
            m = _CLAUSE_RE.match(token)
            if not m:
                raise SlaSyntaxError(f"malformed SLA clause {token!r}: expected METRIC OP MS, e.g. 'p98<=300'")
            metric = m["metric"].lower()
            if metric not in METRICS:
                raise SlaSyntaxError(f"unknown metric {m['metric']!r} in clause {token!r} "
                                     f"(use one of {', '.join(METRICS)})")
            if m["op"] not in OPERATORS:
                raise SlaSyntaxError(f"operator {m['op']!r} in clause {token!r}: use < or <=")
            ms = float(m["ms"])
            if not ms > 0:  # -0 and 0 too: no latency is below them
                what = "negative" if m["ms"].startswith("-") else "zero"
                raise SlaSyntaxError(f"{what} bound in clause {token!r}: a bound must be > 0 ms")
            clauses.append(Clause(metric, m["op"], ms))
        return cls(tuple(clauses))

    def __str__(self) -> str:
        return " ".join(str(c) for c in self.clauses)

    def meets(self, df: pd.DataFrame) -> pd.Series:
        """Per row: :func:`is_ok` (not aborted, no failed or non-2xx requests), and every clause holds."""
        ok = is_ok(df)
        for c in self.clauses:
            ok &= c.holds(df[c.column])
        return ok.rename("meets")


def as_sla(sla) -> Sla:
    """Accept an :class:`Sla` or its text form."""
    return sla if isinstance(sla, Sla) else Sla.parse(sla)


#: A clause whose value is within this fraction of its bound decides a point only narrowly.
BORDERLINE = 0.10


def point_table(df: pd.DataFrame, sla) -> pd.DataFrame:
    """:func:`labkit.analysis.points.points` with the SLA's verdict: one row per tested (nodes, concurrency).

    The per-point values are the analysis core's (one clean-row rule, one status rule; with
    repeats every latency column is the worst run's, the value that decides a clause). Added
    here: ``passing`` (rows that meet), ``meets`` (the point's status is ``ok`` and every
    clause holds on its deciding values — the same as "every run meets"), ``reason`` (empty
    when the point meets, else what broke and, where it can tell, why: e.g. ``"aborted; p98
    312 > 300"``, ``"max 1041 > 1000: one slow request (p99 45 ms) ..."``) and ``borderline``
    (empty, or the deciding clause within 10 % of its bound). Sorted by nodes then concurrency;
    ``table.attrs["note"]`` says what the latency columns are.
    """
    sla = as_sla(sla)
    table = points(df)
    if table.empty:
        out = table.assign(passing=pd.Series([], dtype="int64"), meets=pd.Series([], dtype="bool"),
                           reason=pd.Series([], dtype="object"), borderline=pd.Series([], dtype="object"))
        out.attrs["note"] = DECIDING_NOTE
        return out
    per_row = df.assign(_meets=sla.meets(df)).groupby(["nodes", "concurrency"], sort=True)["_meets"].sum()
    table["passing"] = [int(per_row.get((n, c), 0)) for n, c in zip(table["nodes"], table["concurrency"])]
    meets = table["status"] == "ok"
    for c in sla.clauses:
        meets &= c.holds(table[c.column])
    table["meets"] = meets.astype(bool)
    table["reason"] = [_reason(row, sla) for row in table.itertuples(index=False)]
    table["borderline"] = [_borderline(row, sla) for row in table.itertuples(index=False)]
    table.attrs["note"] = DECIDING_NOTE
    return table


def _ms(v: float) -> str:
    """A latency for a sentence: whole milliseconds from 100 ms up, three significant digits below."""
    return f"{v:.0f}" if abs(v) >= 100 else f"{v:.3g}"


#: How a reason names a SYN-retransmission stall, by :func:`~labkit.analysis.connections.syn_retry_cause`.
SYN_WORDS = {"client": "a SYN retransmission (the listen backlog ab connects to was full)",
             "upstream": "a SYN retransmission between nginx and a server (a server's backlog was full)"}


def _reason(row, sla: Sla) -> str:
    """Why a point fails, from its aggregated values, in words ("" when it meets)."""
    if row.meets:
        return ""
    parts = []
    values = row._asdict()
    if row.aborted:
        parts.append(f"aborted ({row.aborted}/{row.runs} runs)" if row.runs > 1 else "aborted")
    if row.status == "refused":
        who = "the balancer had no live server" if row.nodes > 1 else "the server answered only errors"
        parts.append(f"refused: all {row.non_2xx} responses non-2xx ({who}; not a measurement of the service)")
        return "; ".join(parts)
    if not pd.isna(row.failed) and row.failed > 0:
        parts.append(f"{row.failed} failed requests")
    if not pd.isna(row.non_2xx) and row.non_2xx > 0:
        parts.append(f"{row.non_2xx} non-2xx responses")
    failing = [c for c in sla.clauses if not pd.isna(values[c.column]) and not c.holds_value(values[c.column])]
    connect = values.get("connect_mean_ms")
    # a max at 1, 3, 7 or 15 s is called a SYN retransmission only when the point's own numbers allow one
    cause = syn_retry_cause(int(row.nodes), int(row.concurrency), connect)
    for c in failing:
        v = values[c.column]
        text = f"{c.metric} {_ms(v)} {'>=' if c.strict else '>'} {c.ms:g}"
        p99, p98 = values.get("p99_ms"), values.get("p98_ms")
        if c.metric == "max" and len(failing) == 1 and p99 is not None and not pd.isna(p99):
            if p99 <= c.ms:
                text += f": one slow request (p99 {p99:.0f} ms)"
            elif p98 is not None and not pd.isna(p98) and p98 <= c.ms:
                text += (f": a tail, between 1 % and 2 % of the requests took longer than {c.ms:g} ms "
                         f"(p98 {p98:.0f} ms, p99 {p99:.0f} ms)")
        if c.metric == "max" and (t := near_syn_retry(v)) is not None and cause:
            text += f"; {v:.0f} ms ≈ {t / 1000:g} s: {SYN_WORDS[cause]}"
        parts.append(text)
    if (t := near_syn_retry(connect)) is not None:
        parts.append(f"connect mean {connect:.0f} ms ≈ {t / 1000:g} s: SYN retransmissions "
                     "(the listen backlog was full)")
    border = _borderline(row, sla)
    if border:
        parts.append(border)
    return "; ".join(parts) or "fails"


def _borderline(row, sla: Sla) -> str:
    """The deciding clause when it is within :data:`BORDERLINE` of its bound, in words, else "".

    A failing point (status ok, failed by clauses only) is borderline when every failing
    clause is within 10 % over its bound; a meeting point when its closest clause is
    within 10 % under it.
    """
    if row.status != "ok":
        return ""
    values = row._asdict()
    margins = []
    for c in sla.clauses:
        v = values[c.column]
        if v is None or pd.isna(v) or c.ms <= 0:
            continue
        margins.append((c, float(v), (float(v) - c.ms) / c.ms))
    if not margins:
        return ""
    failing = [m for m in margins if not m[0].holds_value(m[1])]
    if failing:
        if any(rel > BORDERLINE for _, _, rel in failing):
            return ""
        c, v, rel = max(failing, key=lambda m: m[2])
        return f"{c.metric} {v:.0f} ms, {100 * rel:.0f} % over {c.ms:g}: a repeat may decide differently"
    c, v, rel = max(margins, key=lambda m: m[2])  # the closest to its bound
    if -rel >= BORDERLINE:
        return ""
    return f"{c.metric} {v:.0f} ms, {100 * -rel:.0f} % under {c.ms:g}: a repeat may decide differently"


def max_concurrency(df: pd.DataFrame, sla) -> dict[int, int | None]:
    """Per tested node count: the largest tested C with every tested level <= C meeting the SLA.

    ``None`` when the lowest tested level already fails. Non-monotone data
    (a pass above a fail) stops at the first failing level.
    """
    return max_concurrency_of_table(point_table(df, sla))


def max_concurrency_of_table(table: pd.DataFrame, levels=None) -> dict[int, int | None]:
    """:func:`max_concurrency` from an already computed :func:`point_table`.

    ``levels`` (optional) keeps only those concurrency levels: with the handout's
    (:data:`labkit.profiles.HANDOUT_CONCURRENCY`) it is the answer on the handout's own
    levels, leaving out a refinement's probes.
    """
    if levels is not None:
        table = table[table["concurrency"].isin(list(levels))]
    out: dict[int, int | None] = {}
    for n, group in table.groupby("nodes", sort=True):
        best = None
        for c, ok in zip(group["concurrency"], group["meets"]):
            if not ok:
                break
            best = int(c)
        out[int(n)] = best
    return out


def nodes_needed(df: pd.DataFrame, sla, users: int) -> int | None:
    """Smallest tested node count whose :func:`max_concurrency` is >= ``users``; ``None`` if none.

    Only measured levels count: with levels 1000 and 2000 and a pass up to
    1000, 1500 users are *not* covered (1500 was never shown to meet the SLA).
    """
    return nodes_needed_of(max_concurrency(df, sla), users)


def nodes_needed_of(max_conc: dict[int, int | None], users: int) -> int | None:
    """:func:`nodes_needed` from an already computed :func:`max_concurrency` (node count -> C or None)."""
    users = _check_users(users)
    for n, best in sorted(max_conc.items()):
        if best is not None and best >= users:
            return int(n)
    return None


def _check_users(users) -> int:
    if isinstance(users, bool) or not isinstance(users, (int, np.integer)) or users < 1:
        raise ConfigError(f"users must be a positive integer, got {users!r}")
    return int(users)
