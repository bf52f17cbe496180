"""Notebook 04 for the analyst: which results to open, overlaying several, and the dashboard.

- :func:`reanalysis_csv`: the CSV notebook 04 opens by default — the student's own
  latest results, the reference data only when there are none.
- :func:`candidate_csvs`, :func:`load_sources`, :func:`provenance_text`: what the
  picker offers, several CSVs as one DataFrame with a ``source`` column, and where
  each came from (``<csv>.provenance.json``, :mod:`labkit.provenance`).
- :func:`overlay_chart`: mean latency vs concurrency of several sources on one chart.
- :class:`ReanalysisDashboard`: the picker, server / machine-type selectors, the SLA
  explorer with every percentile clause and the capacity answer, provenance, and
  export of the filtered rows — served by Voilà as a stand-alone dashboard.
"""

from __future__ import annotations

import base64
import html
import json
import logging
from pathlib import Path

import pandas as pd

from labkit.analysis.configurations import config_labels
from labkit.analysis.points import one_node_behind_balancer
from labkit.errors import ConfigError, LabkitError

log = logging.getLogger("labkit")
ALL = "(all)"


def _own_results(root: Path, fallback=None) -> list[Path]:
    found = [p for p in root.glob("reports/*/results.csv") if p.is_file()]
    if fallback and Path(fallback).is_file():
        found.append(Path(fallback))
    return sorted(found, key=lambda p: (p.stat().st_mtime, str(p)), reverse=True)


def reanalysis_csv(csv=None, fallback=None, root="..") -> Path:
    """The CSV notebook 04 opens: ``csv`` when given; else the student's own newest results
    (``ROOT/reports/*/results.csv`` or ``fallback``, the notebooks' results CSV, whichever was
    written last); else ``ROOT/data/reference.csv``.

    Why this order: a student who has run the lab re-analyses their own numbers; the
    reference data is there for whoever has none yet (and stays one click away in the picker).
    """
    if csv:
        return Path(csv)
    root = Path(root)
    own = _own_results(root, fallback)
    if own:
        return own[0]
    reference = root / "data" / "reference.csv"
    if reference.is_file():
        return reference
    raise ConfigError(f"no results to re-analyse: no {root / 'reports/*/results.csv'}"
                      + (f", no {fallback}" if fallback else "") + f", no {reference}"
                      + " — run the lab first, or pass csv=")


#: what a spreadsheet reads as a formula at the start of a cell (=HYPERLINK(...), +cmd, -2+3, @SUM)
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with every text cell a spreadsheet would run as a formula made plain text (a leading ``'``,
    OWASP's advice for CSV injection); numbers, negative ones included, are left as they are."""
    out = df.copy()
    for col in out.columns:
        if out[col].dtype == object or pd.api.types.is_string_dtype(out[col]):
            out[col] = out[col].map(lambda v: "'" + v if isinstance(v, str) and v.startswith(FORMULA_START) else v)
    return out


def candidate_csvs(root="..", fallback=None, extra=()) -> list[Path]:
    """Every results CSV the picker offers: own results (newest first), ``runs/*.csv``, ``data/*.csv``, ``extra``."""
    root = Path(root)
    seen: dict[str, Path] = {}
    for p in [*_own_results(root, fallback), *sorted(root.glob("runs/*.csv")), *sorted(root.glob("data/*.csv")),
              *map(Path, extra)]:
        if p.is_file():
            seen.setdefault(str(p.resolve()), p)
    return list(seen.values())


def describe_results(df, source) -> str:
    """One line saying what a results DataFrame holds: file, rows, node counts, levels, configuration."""
    nodes = ", ".join(str(int(n)) for n in sorted(df["nodes"].unique()))
    levels = ", ".join(str(int(c)) for c in sorted(df["concurrency"].unique()))
    configs = ", ".join(sorted({f"{m}/{s}" for m, s in zip(df["machine_type"], df["server"])}))
    via = int(one_node_behind_balancer(df).sum())
    behind = f"; {via} row(s) of one node behind nginx (notebook 02's balancer cost)" if via else ""
    return f"{source}: {len(df)} rows of {configs}; node counts {nodes}; concurrency {levels}{behind}"


def provenance_text(csv) -> str:
    """Where ``csv`` came from, in one line, from the ``.provenance.json`` beside it (or say there is none)."""
    from labkit.provenance import path_beside

    path = path_beside(csv)
    if not path.is_file():
        return f"{Path(csv).name}: no provenance file beside it ({path.name})"
    try:
        p = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        return f"{Path(csv).name}: unreadable provenance {path.name} ({exc})"
    parts = [p.get("date"), p.get("command") and f"`{p['command']}`",
             p.get("cpu") and f"{p['cpu']} ({p.get('cores', '?')} cores)", p.get("kernel") and f"kernel {p['kernel']}",
             p.get("cgroups") and f"cgroups {p['cgroups']}", p.get("labkit") and f"labkit {p['labkit']}",
             p.get("conditions")]
    return f"{Path(csv).name}: " + "; ".join(str(x) for x in parts if x)


def source_name(path, root="..") -> str:
    """A short label for a CSV: its path relative to ``root`` when inside it."""
    try:
        return str(Path(path).resolve().relative_to(Path(root).resolve()))
    except ValueError:
        return str(path)


def load_sources(paths, root="..") -> pd.DataFrame:
    """Several results CSVs as one DataFrame with a ``source`` column (see :func:`source_name`)."""
    from labkit.results import load_results

    frames = [load_results(p).assign(source=source_name(p, root)) for p in paths]
    if not frames:
        raise ConfigError("no results CSV chosen")
    return pd.concat(frames, ignore_index=True)


def overlay_chart(df: pd.DataFrame, sla=None):
    """Mean response time vs concurrency, one colour per ``source`` (and configuration, when the rows hold
    several: :func:`labkit.analysis.configurations.config_labels`) and one line style per node count."""
    import seaborn as sns

    from labkit.analysis.plots import _plotted_points, _figure, _log_concurrency_axis, _margins, _threshold_lines

    fig, ax = _figure()
    # one line per source and configuration: an e2-small's points are not a repeat of the f1-micro's
    labels = config_labels(df)
    several = labels.nunique() > 1
    means = pd.concat([_plotted_points(g, ["mean_ms"]).assign(source=f"{s} · {cfg}" if several else s)
                       for (s, cfg), g in df.groupby([df["source"], labels], sort=False)], ignore_index=True)
    means["nodes"] = means["nodes"].map(lambda n: f"{n} node{'s' if n != 1 else ''}")
    sns.lineplot(data=means, x="concurrency", y="mean_ms", hue="source", style="nodes", markers=True, ax=ax)
    _threshold_lines(ax, sla, {"mean": "0.3"})
    _log_concurrency_axis(ax, means["concurrency"].unique())
    ax.set_yscale("log")
    ax.set_ylabel("mean response time (ms), log scale")
    ax.set_title("Mean response time vs concurrent users, results overlaid")
    ax.legend(fontsize=7, ncol=2)
    _margins(fig, bottom=1.0)
    return fig


class ReanalysisDashboard:
    """Notebook 04's dashboard; show it as a cell's result (or ``dashboard.widget``).

    ``csv`` is the results opened first (see :func:`reanalysis_csv`); ``root`` the
    project folder searched for more (``reports/``, ``runs/``, ``data/``);
    ``fallback`` the notebooks' results CSV; ``export_dir`` where the export writes.
    Tests drive it like the explorer: set ``.value`` on the widgets, read the attributes.
    """

    def __init__(self, csv, root="..", fallback=None, sla=None, users: int | None = None,
                 machine_type: str | None = None, server: str | None = None, export_dir=".", allowed=()):
        import ipywidgets as w

        from labkit.handout import HANDOUT_SERVER, PART2_SLA, PART2_USERS

        self.root, self.export_dir = Path(root), Path(export_dir)
        #: the folders "add CSV" may read from: the project and those the user names (``allowed``)
        self.allowed = [Path(p).resolve() for p in (root, *allowed)]
        self.sla, self.users = sla or PART2_SLA, users or PART2_USERS
        options = candidate_csvs(root, fallback, extra=[csv])
        self._paths = {source_name(p, root): p for p in options}
        first = source_name(csv, root)
        self.picker = w.SelectMultiple(options=list(self._paths), value=[first], description="results",
                                       rows=min(6, max(2, len(self._paths))), layout=w.Layout(width="640px"))
        self.add_path = w.Text(placeholder="another results CSV (path)", layout=w.Layout(width="420px"))
        self.add_button = w.Button(description="add CSV")
        self.primary = w.Dropdown(description="answers for", layout=w.Layout(width="640px"))
        self.machine = w.Dropdown(description="machine type")
        self.server = w.Dropdown(description="server")
        self.status = w.HTML()
        self.provenance = w.HTML()
        self.overlay = w.Image(format="png")
        self.explorer_box = w.VBox()
        self.export_button = w.Button(description="export filtered rows", icon="download")
        self.export_link = w.HTML()
        self._initial = (machine_type, server or HANDOUT_SERVER)
        self.df = self.filtered = None
        self.explorer = None
        self.exported: Path | None = None
        self.widget = w.VBox([
            w.HTML("<b>Results</b> (ctrl/shift-click to overlay several)"), self.picker,
            w.HBox([self.add_path, self.add_button]), self.status, self.provenance,
            w.HBox([self.primary]), w.HBox([self.machine, self.server]),
            w.HBox([self.overlay]), self.explorer_box, w.HBox([self.export_button, self.export_link]),
        ])
        self.picker.observe(lambda _c: self.load(), names="value")
        for widget in (self.primary, self.machine, self.server):
            widget.observe(lambda _c: self.refresh(), names="value")
        self.add_button.on_click(lambda _b: self.add(self.add_path.value))
        self.export_button.on_click(lambda _b: self.export())
        self._busy = False
        self.load()

    def _ipython_display_(self):
        from IPython.display import display

        display(self.widget)

    def add(self, path: str) -> None:
        """Add a CSV to the picker and to the selection."""
        path = (path or "").strip()
        if not path:
            return
        real = Path(path).expanduser().resolve()
        if not any(real == d or d in real.parents for d in self.allowed):
            self.status.value = (f"<span style='color:#b00'>not added: {html.escape(path)} is outside the project "
                                 f"({html.escape(str(self.allowed[0]))}) and the folders given as allowed=</span>")
            return
        if real.suffix.lower() != ".csv" or not real.is_file():
            self.status.value = f"<span style='color:#b00'>no such file (a .csv): {html.escape(path)}</span>"
            return
        name = source_name(path, self.root)
        self._paths[name] = Path(path)
        self.picker.options = list(self._paths)
        self.picker.value = tuple(dict.fromkeys([*self.picker.value, name]))

    def load(self) -> None:
        """Read the selected CSVs; reset the selectors to what they hold."""
        chosen = list(self.picker.value)
        try:
            self.df = load_sources([self._paths[s] for s in chosen], self.root)
        except LabkitError as exc:
            self.status.value = f"<span style='color:#b00'>{html.escape(str(exc))}</span>"
            return
        self.provenance.value = "<br>".join(
            "<small>provenance — " + html.escape(provenance_text(self._paths[s])) + "</small>" for s in chosen)
        self._busy = True
        try:
            self.primary.options = chosen
            self.primary.value = chosen[0]
            types = sorted(self.df["machine_type"].dropna().unique())
            servers = sorted(self.df["server"].dropna().unique())
            self.machine.options = [ALL, *types]
            want_type, want_server = self._initial
            self.machine.value = want_type if want_type in types else (types[0] if len(types) == 1 else
                                                                      ("f1-micro" if "f1-micro" in types else ALL))
            self.server.options = [ALL, *servers]
            self.server.value = want_server if want_server in servers else ALL
        finally:
            self._busy = False
        self.refresh()

    def refresh(self) -> None:
        """Filter by machine type and server; redraw the overlay; rebuild the explorer on the primary source."""
        if self._busy or self.df is None:
            return
        from labkit.dashboard.widgets import SlaExplorer

        df = self.df
        if self.machine.value not in (None, ALL):
            df = df[df["machine_type"] == self.machine.value]
        if self.server.value not in (None, ALL):
            df = df[df["server"] == self.server.value]
        self.filtered = df.reset_index(drop=True)
        self.status.value = "<br>".join(html.escape(describe_results(g, s)) for s, g in
                                        self.filtered.groupby("source", sort=False)) or \
            "<span style='color:#b00'>no rows for this machine type and server</span>"
        if self.filtered["source"].nunique() > 1:  # overlaid: say first whether the hosts were as fast
            from labkit.calibration import host_speed_notes

            self.status.value += "".join(f"<br><i>host speed — {html.escape(n)}</i>"
                                         for n in host_speed_notes(self.filtered, by="source"))
        if self.filtered.empty:
            self.overlay.value, self.explorer_box.children, self.explorer = b"", (), None
            return
        if self.explorer is not None and self.explorer.sla is not None:
            self.sla, self.users = self.explorer.sla, int(self.explorer.users.value)
        self.overlay.value = overlay_chart(self.filtered, self.sla)._repr_png_()
        mine = self.filtered[self.filtered["source"] == self.primary.value].drop(columns="source")
        if mine.empty:
            self.explorer_box.children, self.explorer = (), None
            return
        held = config_labels(mine).unique()
        if len(held) > 1:  # the SLA answers are per configuration (labkit.analysis.points refuses to pool)
            self.explorer_box.children, self.explorer = (), None
            self.status.value += (f"<br><i>{html.escape(self.primary.value)} holds {len(held)} configurations "
                                  f"({html.escape(', '.join(sorted(held)))}): choose one machine type and server "
                                  "to answer the SLA</i>")
            return
        self.explorer = SlaExplorer(mine.reset_index(drop=True), sla=self.sla, users=self.users, all_percentiles=True)
        self.explorer_box.children = (self.explorer.widget,)

    def export(self, path=None) -> Path:
        """Write the filtered rows (every selected source, with its ``source``) as CSV; offer a download link."""
        path = Path(path) if path else self.export_dir / "reanalysis_filtered.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        data = spreadsheet_safe(self.filtered).to_csv(index=False)
        path.write_text(data)
        link = base64.b64encode(data.encode()).decode()
        self.export_link.value = (f"wrote {html.escape(str(path))} ({len(self.filtered)} rows) · "
                                  f"<a download='{path.name}' href='data:text/csv;base64,{link}'>download</a>")
        self.exported = path
        log.info("exported %d rows to %s", len(self.filtered), path)
        return path
