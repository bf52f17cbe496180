"""Why the max concurrency goes *down* from one node count to a larger one, in words.

More servers behind a balancer should never support fewer users. When a results table
says they do, the student deserves the cause, not just the numbers (issue 11). Two
causes are told apart from the measured points alone:

- **resolution**: the larger node count was never tested at the level the smaller one
  met. A part-1 refinement probe at 27 users on one node, with two nodes tested only
  at 20 (met) and 50 (failed), reads as "27 then 20" although two nodes were not shown
  to fail anywhere below 50;
- **a measured failure**: the larger node count failed at a level the smaller one met.
  The failing point's own reason (:func:`labkit.analysis.sla.point_table`) names what broke,
  e.g. a tail of 1-2 % slow requests, SYN retransmissions, errors or an abort.
"""

from __future__ import annotations

import pandas as pd

from labkit.analysis.points import utilisation


def steps_down(table: pd.DataFrame, max_conc: dict[int, int | None], df: pd.DataFrame | None = None) -> list[str]:
    """One sentence per node count whose max concurrency is below a smaller node count's.

    ``table`` is a :func:`labkit.analysis.sla.point_table`, ``max_conc`` its
    :func:`labkit.analysis.sla.max_concurrency_of_table`. With the results ``df`` and their CPU
    columns, a measured failure also names each machine's utilisation at that point
    beside the smaller node count's at the same level. Empty when the answers never decrease.
    """
    out: list[str] = []
    best_n, best_c = None, None
    for n, c in sorted(max_conc.items()):
        if best_c is not None and (c is None or c < best_c):
            out.append(_why(table[table["nodes"] == n], int(n), c, int(best_n), int(best_c), df))
            continue
        if c is not None:  # not below the best so far (that continued above): the new best
            best_n, best_c = n, c
    return out


def _why(rows: pd.DataFrame, n: int, c: int | None, best_n: int, best_c: int, df: pd.DataFrame | None) -> str:
    """The sentence for node count ``n`` (answer ``c``) against ``best_n`` nodes' ``best_c``."""
    fails = rows[~rows["meets"]].sort_values("concurrency")
    said = f"{n} nodes support fewer users ({c if c is not None else 'none'}) than {best_n} node(s) ({best_c})"
    if fails.empty:  # cannot happen for a table's own answers; said plainly rather than guessed
        return f"{said}: no failing point at {n} nodes explains it."
    first = fails.iloc[0]
    f = int(first["concurrency"])
    if f > best_c:
        return (f"{said} only on paper, a difference of resolution: {n} nodes were tested at "
                f"{c if c is not None else 'no level that met'} and {f} (failed) and never in between, "
                f"where {best_n} node(s) met {best_c}.")
    runs = int(first["runs"])
    again = " in one run; `--repeats` shows whether it recurs" if runs == 1 else f" in {runs} runs"
    busy = _busy(df, n, best_n, f) if df is not None else ""
    return (f"{said}: at {f} users, which {best_n} node(s) met, {n} nodes failed{again} "
            f"({first['reason']}){busy}.")


def _busy(df: pd.DataFrame, n: int, best_n: int, c: int) -> str:
    """"; busiest machine: ..." at (n, c) against (best_n, c) from the CPU columns, or "" without them."""
    def mean_use(nodes):
        rows = df[(df["nodes"] == nodes) & (df["concurrency"] == c)]
        return utilisation(rows).mean(skipna=True).dropna() if len(rows) else pd.Series(dtype="float64")

    here, there = mean_use(n), mean_use(best_n)
    if here.empty:
        return ""
    role = str(here.idxmax())
    text = f"; the busiest machine there was the {role} at {here[role]:.0%} of its CPU"
    if role in there:
        text += f" (at {best_n} node(s): {there[role]:.0%})"
    return text
