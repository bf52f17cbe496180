"""The class view: one page an instructor reads before opening formgrader (design §13).

``labkit grade`` writes it beside the grades: ``class-report.html`` and its PNGs
(seaborn charts drawn by Agg) in the grading folder. From each submission's notebooks
and results CSV (the copies nbgrader graded) it gathers

* **the answers** -- ``part1_max_users``, ``part2_nodes``, ``part2_balancer``, read from
  the solution cells' literal assignments with :mod:`ast` (student code is never run here);
* **the data** -- per-server rps (the highest rps / nodes over clean rows, the capacity
  answer's ``per_server_rps``) and the part-1 limit the student's own CSV gives (the
  handout's rows, :func:`labkit.grading.checks.expected_part1`);
* **far from the class** -- a value more than :data:`FAR` robust standard deviations
  (1.4826 × the median absolute deviation) from the class median, or, when most of the
  class agrees exactly (MAD 0), more than :data:`FAR_RELATIVE` away from it; the reason
  names the value, the median and how far;
* **copies** -- CSVs with the same SHA-256 (an identical file), and CSVs sharing measured
  rows with another student's (the same numbers in every measured column), by pairs;
* **flags** -- each student's grading flags, by kind.

Charts: the distribution of each answer, of per-server rps and of the part-1 limit, and
the flags per student. :func:`class_data` is the data (tested on its own),
:func:`write_class_report` the page.
"""

from __future__ import annotations

import ast
import hashlib
import json
import logging
import math
from pathlib import Path

import pandas as pd

log = logging.getLogger("labkit")

REPORT_NAME = "class-report.html"
#: The answer variables of the graded solution cells, in the order the page shows them.
ANSWERS = ("part1_max_users", "part2_nodes", "part2_balancer")
#: Robust z-score (|x - median| / (1.4826 MAD)) beyond which a submission is far from the class.
FAR = 3.5
#: With MAD 0 (most of the class agrees exactly): relative distance from the median beyond which it is far.
FAR_RELATIVE = 0.5
#: Fewer values than this: no one is called far from the class.
MIN_CLASS = 3
#: The measured columns two copied rows share exactly (as the reference-copy flag).
MEASURED = ("time_taken_s", "rps", "mean_ms", "p50_ms", "p66_ms", "p75_ms", "p80_ms", "p90_ms", "p95_ms",
            "p98_ms", "p99_ms", "max_ms")


# -- one submission ------------------------------------------------------------------------------
def notebook_answers(folder: Path) -> dict:
    """The literal answer assignments (:data:`ANSWERS`) in the solution cells of ``folder``'s notebooks.

    Only literals count (``part2_nodes = 4``, ``part2_balancer = "e2-standard-2"``); an
    answer computed by code is reported as the text of its expression.
    """
    import nbformat

    found: dict = {}
    for path in sorted(Path(folder).glob("*.ipynb")):
        try:
            nb = nbformat.read(str(path), as_version=4)
        except Exception as exc:  # nbformat raises several kinds for a broken file; grading flags it
            log.info("class report: %s does not read as a notebook: %s", path, str(exc).splitlines()[0])
            continue
        for cell in nb.cells:
            if cell.cell_type != "code" or not cell.metadata.get("nbgrader", {}).get("solution"):
                continue
            try:
                tree = ast.parse(cell.source)
            except SyntaxError:
                continue
            for node in tree.body:
                if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name) \
                        and node.targets[0].id in ANSWERS:
                    try:
                        found[node.targets[0].id] = ast.literal_eval(node.value)
                    except ValueError:
                        found[node.targets[0].id] = ast.unparse(node.value)
    return found


def data_figures(csv: Path, machine_type: str = "f1-micro") -> dict:
    """Per-server rps, the part-1 limit and the measured-row keys of one results CSV (Nones if it does not load)."""
    from labkit.analysis.sla import is_ok
    from labkit.errors import LabkitError
    from labkit.grading.checks import expected_part1
    from labkit.handout import handout_rows
    from labkit.results import load_results

    out = {"per_server_rps": None, "part1_limit": None, "rows": set(), "sha256": None}
    if not csv.is_file():
        return out
    out["sha256"] = hashlib.sha256(csv.read_bytes()).hexdigest()
    try:
        df = load_results(csv)
    except (LabkitError, OSError, ValueError) as exc:
        log.info("class report: %s does not load: %s", csv, exc)
        return out
    done = df[~df["aborted"].astype(bool) & df["rps"].notna()]
    ok = done[is_ok(done)]
    if not ok.empty:
        out["per_server_rps"] = round(float((ok["rps"].astype("float64") / ok["nodes"].astype("float64")).max()), 1)
    hand = handout_rows(df, machine_type)
    if not hand.empty and (hand["nodes"] == 1).any():
        out["part1_limit"] = expected_part1(hand)
    sub = done[list(MEASURED)].astype("float64").round(3)
    out["rows"] = {tuple(v) for v in sub.itertuples(index=False, name=None) if not any(pd.isna(x) for x in v)}
    return out


# -- the class -------------------------------------------------------------------------------------
def far_from_class(values: dict[str, float | None], what: str) -> dict[str, str]:
    """Student -> why their ``what`` is far from the class (module docstring's rule); others absent."""
    have = {s: float(v) for s, v in values.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
            and math.isfinite(float(v))}
    if len(have) < MIN_CLASS:
        return {}
    series = pd.Series(have)
    median = float(series.median())
    mad = float((series - median).abs().median())
    out = {}
    for s, v in have.items():
        if mad > 0:
            z = abs(v - median) / (1.4826 * mad)
            if z > FAR:
                out[s] = (f"{what} {v:g} is {z:.1f} robust SDs {'above' if v > median else 'below'} "
                          f"the class median {median:g}")
        elif median and abs(v - median) / abs(median) > FAR_RELATIVE:
            out[s] = (f"{what} {v:g} is {abs(v - median) / abs(median):.0%} {'above' if v > median else 'below'} "
                      f"the class median {median:g} (most of the class has exactly {median:g})")
        elif not median and v:
            out[s] = f"{what} {v:g} where most of the class has 0"
    return out


def copies(figures: dict[str, dict]) -> list[dict]:
    """Pairs of students whose CSVs are the same file (SHA-256) or share measured rows."""
    found = []
    names = sorted(figures)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            fa, fb = figures[a], figures[b]
            if fa["sha256"] and fa["sha256"] == fb["sha256"]:
                found.append({"students": [a, b], "kind": "identical file",
                              "detail": f"sha256 {fa['sha256'][:12]}…", "rows": len(fa["rows"])})
                continue
            shared = fa["rows"] & fb["rows"]
            if shared:
                found.append({"students": [a, b], "kind": "shared rows",
                              "detail": f"{len(shared)} measured row(s) identical in every measured column",
                              "rows": len(shared)})
    return found


def _flag_kind(flag: str) -> str:
    return flag.split(":", 1)[0].strip()


def class_data(grades: dict[str, dict], course: Path, submitted: Path | None = None,
               assignment: str = "lab02") -> dict:
    """Everything the page shows, as plain data: ``students`` (per student: score, answers, per-server rps,
    part-1 limit, CSV hash, flags), ``far`` (student -> reasons), ``copies`` and ``flag_kinds``."""
    from labkit.grading.release import RESULTS_NAME

    course = Path(course)
    students, figures = {}, {}
    for student, g in grades.items():
        folder = course / "submitted" / student / assignment
        if not folder.is_dir() and submitted is not None:
            folder = Path(submitted) / student / assignment
        answers = notebook_answers(folder) if folder.is_dir() else {}
        fig = data_figures(folder / RESULTS_NAME)
        figures[student] = fig
        students[student] = {"score": g.get("score"), "max_score": g.get("max_score"),
                             **{k: answers.get(k) for k in ANSWERS},
                             "per_server_rps": fig["per_server_rps"], "part1_limit": fig["part1_limit"],
                             "csv_sha256": fig["sha256"], "flags": list(g.get("flags", []))}
    far: dict[str, list[str]] = {}
    for key, what in (("per_server_rps", "per-server rps"), ("part1_limit", "part-1 limit from the data"),
                      ("part1_max_users", "part-1 answer"), ("part2_nodes", "part-2 nodes")):
        for s, why in far_from_class({s: v[key] for s, v in students.items()}, what).items():
            far.setdefault(s, []).append(why)
    for s, v in students.items():  # an answer that is not what the student's own data gives
        if v["part1_limit"] is not None and isinstance(v["part1_max_users"], int) \
                and v["part1_max_users"] != v["part1_limit"]:
            far.setdefault(s, []).append(f"part-1 answer {v['part1_max_users']} but their own data gives "
                                         f"{v['part1_limit']}")
    kinds = sorted({_flag_kind(f) for v in students.values() for f in v["flags"]})
    return {"students": students, "far": far, "copies": copies(figures), "flag_kinds": kinds}


# -- the charts and the page ------------------------------------------------------------------------
def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    return path


def charts(data: dict, folder: Path) -> dict[str, Path]:
    """The class's PNGs in ``folder``: answers, per-server rps, part-1 limit, flags per student."""
    import seaborn as sns
    from matplotlib.figure import Figure

    sns.set_theme(style="whitegrid")
    folder.mkdir(parents=True, exist_ok=True)
    df = pd.DataFrame.from_dict(data["students"], orient="index")
    df.index.name = "student"
    out = {}

    fig = Figure(figsize=(11, 3.4))
    for ax, key in zip(fig.subplots(1, len(ANSWERS)), ANSWERS):
        # from the dict, not the frame: pandas would turn None into NaN and 20 into 20.0
        values = pd.Series(["(none)" if v[key] is None else str(v[key]) for v in data["students"].values()])
        order = sorted(values.unique(), key=lambda x: (x == "(none)", len(x), x))
        sns.countplot(x=values, order=order, ax=ax, color="#4c72b0")
        ax.set_title(key)
        ax.set_xlabel("answer")
        ax.set_ylabel("students")
    out["answers"] = _save(fig, folder / "class-answers.png")

    far = data["far"]
    for key, title, name in (("per_server_rps", "per-server rps (best clean row, rps / nodes)", "class-per-server-rps.png"),
                             ("part1_limit", "part-1 limit from each student's own data (users)",
                              "class-part1-limit.png")):
        fig = Figure(figsize=(8, 3.2))
        ax = fig.subplots()
        values = df[key].dropna().astype("float64")
        if len(values):
            sns.histplot(values, ax=ax, bins=min(20, max(5, len(values))), color="#4c72b0")
            outliers = values[[s in far and any(w.startswith(("per-server", "part-1 limit")) for w in far[s])
                               for s in values.index]]
            sns.rugplot(values, ax=ax, height=0.08, color="#333333")
            for s, v in outliers.items():
                ax.axvline(v, color="#c44e52", ls="--")
                ax.annotate(s, (v, ax.get_ylim()[1] * 0.9), color="#c44e52", rotation=90, ha="right", va="top")
        else:
            ax.text(0.5, 0.5, "no readable results", ha="center", va="center", transform=ax.transAxes)
        ax.set_title(title)
        ax.set_xlabel(key)
        ax.set_ylabel("students")
        out[key] = _save(fig, folder / name)

    kinds = data["flag_kinds"]
    fig = Figure(figsize=(max(6, 1.1 * len(kinds) + 3), max(2.5, 0.35 * len(df) + 1.5)))
    ax = fig.subplots()
    if kinds:
        counts = pd.DataFrame([[sum(_flag_kind(f) == k for f in flags) for k in kinds] for flags in df["flags"]],
                              index=df.index, columns=kinds)
        sns.heatmap(counts, annot=True, fmt="d", cbar=False, cmap="Reds", ax=ax, linewidths=0.5, vmin=0)
        ax.set_xlabel("flag")
    else:
        ax.text(0.5, 0.5, "no flags", ha="center", va="center", transform=ax.transAxes)
    ax.set_title("flags per student")
    out["flags"] = _save(fig, folder / "class-flags.png")
    return out


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{ title }}</title>
<style>
body { font-family: sans-serif; margin: 1.5em; max-width: 1200px; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.5em; text-align: left; vertical-align: top; font-size: 0.9em; }
th { background: #f0f0f0; } td.num { text-align: right; } tr.far td { background: #fff0f0; }
img { max-width: 100%; border: 1px solid #ddd; margin: 0.3em 0; } .flag { color: #a00; } code { font-size: 0.85em; }
</style></head><body>
<h1>{{ title }}</h1>
<p>{{ students|length }} submission(s); {{ far|length }} far from the class; {{ copies|length }} copy pair(s);
{{ flagged }} student(s) with flags. Thresholds: far = more than {{ far_z }} robust SDs from the class median
(or {{ far_rel }} away when most of the class agrees exactly).</p>
<h2 id="answers">Answers</h2>
<img id="chart-answers" src="{{ images.answers }}" alt="distribution of each answer">
<h2 id="data">Each student's data</h2>
<img id="chart-per-server-rps" src="{{ images.per_server_rps }}" alt="per-server rps">
<img id="chart-part1-limit" src="{{ images.part1_limit }}" alt="part-1 limit">
<h2 id="far">Far from the class</h2>
{% if far %}<table id="far-table"><tr><th>student</th><th>why</th></tr>
{% for s, why in far.items() %}<tr><td>{{ s }}</td><td>{{ why|join("; ") }}</td></tr>{% endfor %}</table>
{% else %}<p>No submission is far from the class.</p>{% endif %}
<h2 id="copies">Copied CSVs</h2>
{% if copies %}<table id="copies-table"><tr><th>students</th><th>what</th><th>detail</th></tr>
{% for c in copies %}<tr><td>{{ c.students|join(" & ") }}</td><td>{{ c.kind }}</td><td>{{ c.detail }}</td></tr>{% endfor %}
</table>{% else %}<p>No two CSVs share a hash or a measured row.</p>{% endif %}
<h2 id="flags">Flags per student</h2>
<img id="chart-flags" src="{{ images.flags }}" alt="flags per student">
<table id="students-table"><tr><th>student</th><th>score</th>{% for a in answers %}<th>{{ a }}</th>{% endfor %}
<th>per-server rps</th><th>part-1 limit (data)</th><th>CSV sha256</th><th>flags</th></tr>
{% for s, v in students.items() %}<tr class="{{ 'far' if s in far else '' }}"><td>{{ s }}</td>
<td class="num">{{ v.score }} / {{ v.max_score }}</td>{% for a in answers %}<td>{{ v[a] }}</td>{% endfor %}
<td class="num">{{ v.per_server_rps }}</td><td class="num">{{ v.part1_limit }}</td>
<td><code>{{ (v.csv_sha256 or "")[:12] }}</code></td>
<td>{% for f in v.flags %}<div class="flag">{{ f }}</div>{% endfor %}</td></tr>{% endfor %}
</table>
</body></html>
"""


def write_class_report(grades: dict[str, dict], course: Path, submitted: Path | None = None,
                       assignment: str = "lab02") -> Path:
    """Write ``course/class-report.html``, its PNGs and ``class-report.json``; return the page's path."""
    import jinja2

    course = Path(course)
    data = class_data(grades, course, submitted, assignment)
    images = {k: p.name for k, p in charts(data, course).items()}
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    page = env.from_string(_PAGE).render(
        title=f"{assignment}: the class", students=data["students"], far=data["far"], copies=data["copies"],
        images=images, answers=ANSWERS, flagged=sum(bool(v["flags"]) for v in data["students"].values()),
        far_z=FAR, far_rel=f"{FAR_RELATIVE:.0%}")
    path = course / REPORT_NAME
    path.write_text(page)
    (course / "class-report.json").write_text(json.dumps(data, indent=2, default=str) + "\n")
    log.info("class report: %s", path)
    return path


__all__ = ["class_data", "charts", "copies", "far_from_class", "notebook_answers", "write_class_report"]
