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
  report then adds a labelled USL extrapolation, see :mod:`labkit.usl`).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .errors import ConfigError, SlaSyntaxError
from .record import PERCENTILES

log = logging.getLogger("labkit")

#: Metric name in an SLA clause -> results column (design §7).
METRICS: dict[str, str] = {
    "max": "max_ms", "mean": "mean_ms", **{f"p{p}": f"p{p}_ms" for p in PERCENTILES},
}
OPERATORS = ("<", "<=")

_CLAUSE_RE = re.compile(r"(?P<metric>[A-Za-z]\w*)\s*(?P<op><=|>=|==|=<|<|>|=)\s*"
                        r"(?P<ms>[+-]?(?:\d+(?:\.\d*)?|\.\d+))\s*(?P<unit>ms)?$")
_CONFIG_COLUMNS = ("backend", "machine_type", "server", "workers")


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
            if ms < 0:
                raise SlaSyntaxError(f"negative bound in clause {token!r}")
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


def is_ok(df: pd.DataFrame) -> pd.Series:
    """Per row: ab completed it (not aborted) with no failed and no non-2xx requests.

    Only such a row can meet an SLA, and only its throughput measures the service
    (fast error responses inflate requests per second).
    """
    ok = ~df["aborted"].astype(bool)
    ok &= (df["failed"] == 0).fillna(False).astype(bool)
    ok &= (df["non_2xx"] == 0).fillna(False).astype(bool)
    return ok.rename("ok")


def as_sla(sla) -> Sla:
    """Accept an :class:`Sla` or its text form."""
    return sla if isinstance(sla, Sla) else Sla.parse(sla)


def point_table(df: pd.DataFrame, sla) -> pd.DataFrame:
    """One row per tested (nodes, concurrency): does the point meet the SLA, and why not.

    Columns: ``nodes``, ``concurrency``, ``runs`` (rows measured), ``passing``
    (rows that meet), ``meets`` (all rows meet — repeats must agree), ``aborted``
    (rows ab aborted), ``failed``/``non_2xx`` (summed), the worst (largest)
    value of ``mean_ms``, ``p98_ms``, ``max_ms`` and of every clause's metric
    across the completed rows, and ``reason`` (empty when the point meets,
    else what broke, e.g. ``"aborted; p98 312 > 300"``). Sorted by nodes then
    concurrency.
    """
    sla = as_sla(sla)
    _warn_mixed(df)
    metric_cols = list(dict.fromkeys(["mean_ms", "p98_ms", "max_ms", *(c.column for c in sla.clauses)]))
    work = df[["nodes", "concurrency", "aborted", "failed", "non_2xx", *metric_cols]].copy()
    work["meets"] = sla.meets(df)
    work["aborted"] = work["aborted"].astype(bool)
    completed = work[~work["aborted"]]
    grouped = work.groupby(["nodes", "concurrency"], sort=True)
    table = pd.DataFrame({
        "runs": grouped.size(),
        "passing": grouped["meets"].sum().astype("int64"),
        "aborted": grouped["aborted"].sum().astype("int64"),
        "failed": grouped["failed"].sum(min_count=1).astype("Int64"),
        "non_2xx": grouped["non_2xx"].sum(min_count=1).astype("Int64"),
    })
    table["meets"] = table["passing"] == table["runs"]
    worst = completed.groupby(["nodes", "concurrency"])[metric_cols].max()
    table = table.join(worst, how="left").reset_index()
    table["reason"] = [_reason(row, sla) for row in table.itertuples(index=False)]
    cols = ["nodes", "concurrency", "runs", "passing", "meets", "aborted", "failed", "non_2xx",
            *metric_cols, "reason"]
    return table[cols]


def _reason(row, sla: Sla) -> str:
    """Why a point fails, from its aggregated values ("" when it meets)."""
    if row.meets:
        return ""
    parts = []
    if row.aborted:
        parts.append(f"aborted ({row.aborted}/{row.runs} runs)" if row.runs > 1 else "aborted")
    if not pd.isna(row.failed) and row.failed > 0:
        parts.append(f"{row.failed} failed requests")
    if not pd.isna(row.non_2xx) and row.non_2xx > 0:
        parts.append(f"{row.non_2xx} non-2xx responses")
    values = row._asdict()
    for c in sla.clauses:
        v = values[c.column]
        if pd.isna(v):
            continue
        if not c.holds_value(v):
            parts.append(f"{c.metric} {v:g} {'>=' if c.strict else '>'} {c.ms:g}")
    return "; ".join(parts) or "fails"


def _warn_mixed(df: pd.DataFrame) -> None:
    """Say so when rows from different server configurations would be pooled as repeats."""
    cols = [c for c in _CONFIG_COLUMNS if c in df.columns]
    if cols and len(df) and len(df[cols].drop_duplicates()) > 1:
        log.warning("results mix several configurations (%s); their rows at the same "
                    "(nodes, concurrency) are treated as repeats — filter the DataFrame first "
                    "to answer for one configuration", ", ".join(cols))


def max_concurrency(df: pd.DataFrame, sla) -> dict[int, int | None]:
    """Per tested node count: the largest tested C with every tested level <= C meeting the SLA.

    ``None`` when the lowest tested level already fails. Non-monotone data
    (a pass above a fail) stops at the first failing level.
    """
    return max_concurrency_of_table(point_table(df, sla))


def max_concurrency_of_table(table: pd.DataFrame) -> dict[int, int | None]:
    """:func:`max_concurrency` from an already computed :func:`point_table`."""
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
