"""An interactive SLA explorer for the notebooks (ipywidgets).

Students change the SLA bounds (max, mean, p98 — each on/off, ``<`` or
``<=``; with ``all_percentiles=True`` every percentile clause p50 … p99) and the
expected user count; the explorer recomputes, from the same functions the report
uses (:mod:`labkit.analysis.sla`, :mod:`labkit.analysis.capacity`), a highlighted per-point table
(status, throughput, connect time, Little's-law check and the busiest role), the
pass/fail heatmap, the two answers (maximum concurrency per node count, nodes
needed) and the capacity model's answer with its bottleneck. All logic lives in
plain methods, so tests drive it by setting widget ``.value``s and reading
:attr:`SlaExplorer.answers_text`.
"""

from __future__ import annotations

import html
import logging

import pandas as pd

from labkit.errors import ConfigError, LabkitError
from labkit.handout import PART1_SLA, PART2_USERS
from labkit.record import PERCENTILES
from labkit.analysis.sla import Clause, Sla, as_sla, max_concurrency_of_table, nodes_needed_of, point_table

log = logging.getLogger("labkit")

EDITABLE = ("max", "mean", "p98")
#: Every clause the SLA grammar knows: what ``all_percentiles=True`` lets the student edit.
ALL_EDITABLE = ("max", "mean", *(f"p{p}" for p in PERCENTILES))
#: The bounds a clause that is switched on starts from: the handout's part-1 SLA.
DEFAULT_SLA = PART1_SLA
_PASS_BG, _FAIL_BG, _MAX_BG = "#d9f2d9", "#f8d7d7", "#9ed99e"


class SlaExplorer:
    """Widgets to explore an SLA over a results DataFrame; show ``explorer.widget``.

    ``sla`` sets the initial bounds (clauses on metrics other than max, mean
    and p98 are kept fixed); ``users`` the initial user count;
    ``show_heatmap=False`` skips drawing (faster when only the answers matter);
    ``all_percentiles=True`` offers every percentile clause, not only p98;
    ``capacity=False`` leaves out the capacity model's line.
    """

    def __init__(self, df: pd.DataFrame, sla=DEFAULT_SLA, users: int = PART2_USERS, show_heatmap: bool = True,
                 all_percentiles: bool = False, capacity: bool = True):
        import ipywidgets as w

        if df.empty:
            raise ConfigError("no results rows to explore")
        self.df = df
        self.show_heatmap = show_heatmap
        self.show_capacity = capacity
        self.editable = ALL_EDITABLE if all_percentiles else EDITABLE
        initial = as_sla(sla)
        by_metric = {c.metric: c for c in initial.clauses}
        self.fixed_clauses = tuple(c for c in initial.clauses if c.metric not in self.editable)
        defaults = {c.metric: c for c in Sla.parse(DEFAULT_SLA).clauses}
        self.enabled: dict[str, w.Checkbox] = {}
        self.ops: dict[str, w.Dropdown] = {}
        self.bounds: dict[str, w.BoundedFloatText] = {}
        self.capacity: dict | None = None
        rows = []
        for m in self.editable:
            clause = by_metric.get(m) or defaults.get(m) or Clause(m, "<=", 300.0)
            self.enabled[m] = w.Checkbox(value=m in by_metric, description=m, indent=False,
                                         layout=w.Layout(width="70px"))
            self.ops[m] = w.Dropdown(options=["<", "<="], value=clause.op, layout=w.Layout(width="65px"))
            self.bounds[m] = w.BoundedFloatText(value=clause.ms, min=0, max=1e7, step=10,
                                                continuous_update=False, layout=w.Layout(width="110px"))
            rows.append(w.HBox([self.enabled[m], self.ops[m], self.bounds[m], w.Label("ms")]))
        self.users = w.BoundedIntText(value=users, min=1, max=10**7, step=100, description="users",
                                      continuous_update=False)
        self.answers = w.HTML()
        self.table = w.HTML()
        self.heatmap = w.Image(format="png")
        self.answers_text = ""
        self.widget = w.VBox([
            w.HTML("<b>SLA</b> (each clause: on/off, operator, bound)"), *rows, self.users,
            self.answers, w.HBox([self.heatmap]),
            w.Box([self.table], layout=w.Layout(max_height="420px", overflow="auto")),
        ])
        for widget in [*self.enabled.values(), *self.ops.values(), *self.bounds.values(), self.users]:
            widget.observe(self._on_change, names="value")
        self.update()

    def _ipython_display_(self):  # shows the widget when the explorer is a cell's result
        from IPython.display import display

        display(self.widget)

    def _on_change(self, _change) -> None:
        self.update()

    def current_sla(self) -> Sla:
        """The SLA the widgets describe (raises SlaSyntaxError when no clause is on)."""
        clauses = [Clause(m, self.ops[m].value, float(self.bounds[m].value))
                   for m in self.editable if self.enabled[m].value]
        return Sla((*clauses, *self.fixed_clauses))

    def update(self) -> None:
        """Recompute the answers, table and heatmap from the current widget values."""
        try:
            sla = self.current_sla()
        except LabkitError as exc:
            self._show_error(str(exc))
            return
        users = int(self.users.value)
        table = point_table(self.df, sla)
        mc = max_concurrency_of_table(table)
        needed = nodes_needed_of(mc, users)
        self.sla, self.max_concurrency, self.nodes_needed = sla, mc, needed
        lines = [
            "Max concurrency within the SLA: " + ", ".join(
                f"{n} node{'s' if n != 1 else ''}: {c if c is not None else 'none'}" for n, c in mc.items()),
            f"Nodes needed for {users} users: " + (
                str(needed) if needed is not None
                else f"none of the tested node counts ({', '.join(str(n) for n in mc)})"),
        ]
        if needed is None:
            lines.append(self._extrapolation_text(sla, users))
        if self.show_capacity:
            lines.append(self._capacity_text(sla, users))
        self.answers_text = "\n".join(lines)
        self.answers.value = f"<div><b>SLA {html.escape(str(sla))}</b><br>" + "<br>".join(
            html.escape(x) for x in lines) + "</div>"
        self.point_rows = self.with_point_columns(table, self.df)
        self.table.value = self.table_html(self.point_rows, mc)
        if self.show_heatmap:
            from labkit.analysis.plots import sla_heatmap

            self.heatmap.value = sla_heatmap(self.df, sla)._repr_png_()

    def _extrapolation_text(self, sla: Sla, users: int) -> str:
        from labkit.analysis.usl import predict_nodes

        try:
            ex = predict_nodes(self.df, sla, users)
        except ConfigError as exc:
            return f"Extrapolation (USL fit) refused: {exc}"
        answer = f"{ex.nodes} nodes" if ex.nodes is not None else "not reachable by adding nodes"
        return f"{ex.label}: {answer} ({ex.note})"

    def _capacity_text(self, sla: Sla, users: int) -> str:
        """The capacity model in one line, the bottleneck named (design §8)."""
        from labkit.analysis.capacity import capacity_answer

        try:
            self.capacity = capacity_answer(self.df, sla, users, model=False)  # the widget redraws per change: no simulation
        except ConfigError as exc:
            self.capacity = None
            return f"Capacity (model): not available — {exc}"
        a = self.capacity
        bottleneck = a["bottleneck"] or "not measured (no per-role CPU columns)"
        return f"Capacity (model, Little's law): {a['conclusion']}. Bottleneck: {bottleneck}"

    @staticmethod
    def with_point_columns(table: pd.DataFrame, df: pd.DataFrame) -> pd.DataFrame:
        """The point table as shown: :func:`~labkit.analysis.sla.point_table` already carries ``status``,
        ``rps``, ``connect_mean_ms``, ``littles_law`` and ``bottleneck`` from the analysis core
        (:func:`labkit.analysis.points.points`); nothing is recomputed here. ``df`` is unused (kept for callers)."""
        return table

    def _show_error(self, message: str) -> None:
        self.sla = None
        self.capacity = None
        self.max_concurrency, self.nodes_needed = {}, None
        self.answers_text = f"Invalid SLA: {message}"
        self.answers.value = f"<div style='color:#b00'>{html.escape(self.answers_text)}</div>"
        self.table.value = ""
        self.heatmap.value = b""

    @staticmethod
    def table_html(table: pd.DataFrame, mc: dict[int, int | None]) -> str:
        """The per-point table as HTML: green rows meet the SLA, red ones do not (with why);
        the row that sets each node count's maximum concurrency is darker and marked."""
        extra = [c for c in ("status", "rps", "connect_mean_ms", "littles_law", "bottleneck") if c in table.columns]
        titles = {"status": "status", "rps": "req/s", "connect_mean_ms": "connect (ms)",
                  "littles_law": "X·R/N", "bottleneck": "busiest role"}
        head = ("<tr><th>nodes</th><th>concurrency</th><th>runs</th>"
                + "".join(f"<th>{titles[c]}</th>" for c in extra[:3])
                + "<th>mean (ms)</th><th>p98 (ms)</th><th>max (ms)</th>"
                + "".join(f"<th>{titles[c]}</th>" for c in extra[3:])
                + "<th>SLA</th><th>why not</th></tr>")
        body = []
        for r in table.itertuples(index=False):
            is_max = mc.get(int(r.nodes)) == int(r.concurrency)
            bg = _MAX_BG if is_max else (_PASS_BG if r.meets else _FAIL_BG)
            verdict = ("pass ← max" if is_max else "pass") if r.meets else "FAIL"
            values = r._asdict()
            shown = {"status": values.get("status"), "rps": _num(values.get("rps"), 0),
                     "connect_mean_ms": _ms(values.get("connect_mean_ms")),
                     "littles_law": _num(values.get("littles_law"), 2),
                     "bottleneck": "" if values.get("bottleneck") is None or pd.isna(values.get("bottleneck"))
                     else values.get("bottleneck")}
            cells = [r.nodes, r.concurrency, r.runs, *(shown[c] for c in extra[:3]), _ms(r.mean_ms), _ms(r.p98_ms),
                     _ms(r.max_ms), *(shown[c] for c in extra[3:]), verdict, r.reason]
            body.append(f"<tr style='background:{bg}' class='{'pass' if r.meets else 'fail'}'>"
                        + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + "</tr>")
        return ("<table style='border-collapse:collapse;font-size:12px' border='1' cellpadding='3'>"
                + head + "".join(body) + "</table>")


def _ms(v) -> str:
    return "" if v is None or pd.isna(v) else f"{v:.1f}"


def _num(v, digits: int) -> str:
    return "" if v is None or pd.isna(v) else f"{v:,.{digits}f}"
