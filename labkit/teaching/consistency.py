"""Check an executed notebook against itself: its sentences must agree with its tables (design §12).

Three rules, each giving a :class:`Problem` (nothing is fixed here; ``labkit lab`` lists them):

- **quoted numbers** — every latency (``… ms``) or throughput (``… req/s`` / ``… rps``) a sentence
  quotes appears, at the precision it is written, in one of the notebook's tables (HTML tables,
  Markdown tables) or JSON (``summary.json``, JSON outputs), or the sentence says ``model`` (or
  quotes a fitted curve, ``fit``: a model too);
- **one value per point** — no two cells state different values of the same metric at the same
  point (``2 nodes, c=500: mean 1,600 ms`` in one cell and ``mean 1,200 ms`` in another);
- **headings agree** — a heading that states a verdict (``flask ×1.90 … (did not keep up)``) is
  followed by the same verdict in the lines under it, and a fixed heading that says a bigger machine
  does not help is not followed by a measured ``scaled``.

Sentences are the text of Markdown and printed (stream) outputs of code cells, line by line;
Markdown table rows are tables, not sentences. Only outputs are checked: the notebook's own
Markdown cells are fixed text that quotes no data.
"""

from __future__ import annotations

import html
import json
import re
from dataclasses import dataclass
from pathlib import Path

#: A number as the notebooks write one: 1,012 / 8.4 / 250.
_NUM = r"(\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?)"
_QUOTED = re.compile(_NUM + r"\s*(ms|req/s|rps)\b")
_POINT = re.compile(r"(?:(\d+) nodes?, |nodes=(\d+)\s+)?c=(\d+)")  # "2 nodes, c=50" or "nodes=2   c=50"
_METRIC = re.compile(r"(?<!connect )\b(mean|max|p98|p99|longest request)\s+" + _NUM + r"\s*ms")
_RPS = re.compile(_NUM + r"\s*(?:req/s|rps)\b")
_CELL = re.compile(r"<t[dh][^>]*>(.*?)</t[dh]>", re.S)
_ANY_NUM = re.compile(r"-?" + _NUM)
_VERDICTS = ("did not keep up", "scaled partly", "scaled")
_NO_HELP = re.compile(r"does not help|no gain|stays flat|flat beyond", re.I)


@dataclass(frozen=True)
class Problem:
    rule: str  # "quoted-number" | "two-values" | "heading"
    cell: int  # the code cell's index among the notebook's cells
    text: str  # the sentence (or heading) concerned
    detail: str

    def __str__(self) -> str:
        return f"[{self.rule}] cell {self.cell}: {self.detail} — {self.text[:160]}"


def _value(token: str) -> float:
    return float(token.replace(",", ""))


def _decimals(token: str) -> int:
    return len(token.split(".")[1]) if "." in token else 0


def _numbers_in(text: str) -> list[float]:
    return [_value(m.group(1)) for m in _ANY_NUM.finditer(text)]


def _json_numbers(data) -> list[float]:
    if isinstance(data, bool):
        return []
    if isinstance(data, (int, float)):
        return [float(data)]
    if isinstance(data, dict):
        return [v for x in data.values() for v in _json_numbers(x)]
    if isinstance(data, (list, tuple)):
        return [v for x in data for v in _json_numbers(x)]
    if isinstance(data, str):
        return _numbers_in(data) if _ANY_NUM.fullmatch(data.strip() or "x") else []
    return []


def _outputs(nb) -> list[tuple[int, str, str]]:
    """(cell index, kind, text) for every output: kind is "markdown", "stream", "html" or "json"."""
    out = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        for o in cell.get("outputs", []):
            if o.get("output_type") == "stream":
                out.append((i, "stream", o.get("text", "")))
                continue
            data = o.get("data", {})
            if "text/markdown" in data:
                out.append((i, "markdown", data["text/markdown"]))
            if "text/html" in data:
                out.append((i, "html", data["text/html"]))
            if "application/json" in data:
                out.append((i, "json", json.dumps(data["application/json"])))
    return out


def _is_table_row(line: str) -> bool:
    return line.strip().startswith("|")


def table_values(nb, extra_json=()) -> list[float]:
    """Every number in the notebook's tables (HTML and Markdown) and JSON, plus ``extra_json`` objects."""
    values: list[float] = []
    for _, kind, text in _outputs(nb):
        if kind == "html":
            for cell in _CELL.findall(text):
                values += _numbers_in(html.unescape(re.sub(r"<[^>]+>", "", cell)))
        elif kind == "markdown":
            for line in text.splitlines():
                if _is_table_row(line):
                    values += _numbers_in(line)
        elif kind == "json":
            values += _json_numbers(json.loads(text))
    for obj in extra_json:
        values += _json_numbers(obj)
    return values


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _sentences(nb) -> list[tuple[int, str]]:
    """(cell, sentence): each non-table line of Markdown and printed outputs; a printed line indented
    deeper than the one before it continues that one (a report's wrapped detail belongs to its label)."""
    out: list[tuple[int, str]] = []
    for i, kind, text in _outputs(nb):
        if kind not in ("markdown", "stream"):
            continue
        prev = None
        for line in text.splitlines():
            if not line.strip() or _is_table_row(line):
                prev = None
                continue
            if kind == "stream" and prev is not None and _indent(line) > _indent(prev) and out:
                out[-1] = (i, out[-1][1] + "; " + line.strip())  # "; ": each continuation its own claim
            else:
                out.append((i, line))
                prev = line
    return out


def _matches(token: str, values: list[float]) -> bool:
    v, d = _value(token), _decimals(token)
    tol = 0.5 * 10 ** -d + 1e-9
    return any(abs(t - v) <= tol for t in values)


def _is_model(line: str) -> bool:
    """A sentence that says its numbers are a model's (a fitted curve is one)."""
    return bool(re.search(r"\bmodel\b|\bfit\b", line, re.I))


def quoted_numbers(nb, extra_json=()) -> list[Problem]:
    """Numbers with a unit in a sentence that no table or JSON of the notebook holds (unless a model)."""
    values = table_values(nb, extra_json)
    problems = []
    for i, line in _sentences(nb):
        if _is_model(line):
            continue
        for m in _QUOTED.finditer(line):
            if not _matches(m.group(1), values):
                problems.append(Problem("quoted-number", i, line.strip(),
                                        f"{m.group(0)} is in no table or JSON of this notebook"))
    return problems


def _point_claims(line: str):
    """(nodes, concurrency, metric, value) for each "point: metric value" a line states."""
    for seg in re.split(r";|\(|\)|\. ", line):
        p = _POINT.search(seg)
        if not p:
            continue
        nodes, c = int(p.group(1) or p.group(2) or 1), int(p.group(3))
        rest = seg[p.end():]
        for m in _METRIC.finditer(rest):
            metric = "max" if m.group(1) == "longest request" else m.group(1)
            yield nodes, c, metric, _value(m.group(2)), _decimals(m.group(2))
        for m in _RPS.finditer(rest):
            yield nodes, c, "rps", _value(m.group(1)), _decimals(m.group(1))


def two_values(nb) -> list[Problem]:
    """The same metric at the same point stated with values that differ beyond their rounding."""
    seen: dict[tuple, tuple[float, int, int, str]] = {}
    problems = []
    for i, line in _sentences(nb):
        if _is_model(line):
            continue
        for nodes, c, metric, v, d in _point_claims(line):
            key = (nodes, c, metric)
            if key in seen:
                v0, d0, i0, line0 = seen[key]
                tol = 0.5 * 10 ** -min(d, d0) + 1e-9
                if abs(v - v0) > max(tol, 0.005 * max(abs(v), abs(v0))):
                    problems.append(Problem("two-values", i, line.strip(),
                                            f"{metric} at {nodes} node(s), c={c}: {v:g} here, {v0:g} in cell {i0}"))
            else:
                seen[key] = (v, d, i, line)
    return problems


def headings(nb) -> list[Problem]:
    """A heading's verdict must be repeated under it; a "does not help" heading must not precede "scaled"."""
    problems = []
    for i, kind, text in _outputs(nb):
        if kind != "markdown":
            continue
        lines = text.splitlines()
        for j, line in enumerate(lines):
            if not line.startswith("#"):
                continue
            body = "\n".join(lines[j + 1:])
            claims = line.split(":", 1)[1] if ":" in line else line
            for seg in claims.split(";"):
                m = re.match(r"\s*(\w+)\b.*\(([^()]*)\)\s*$", seg)
                if not m:
                    continue
                subject, verdict = m.groups()
                if verdict in _VERDICTS and not re.search(rf"^- {re.escape(subject)}\b.*: {re.escape(verdict)}\b",
                                                          body, re.M):
                    problems.append(Problem("heading", i, line, f"'{subject} … {verdict}' is not what the lines "
                                                                 "under the heading conclude"))
    # fixed Markdown headings against the first output after them
    last_heading = None
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.startswith("#"):
                    last_heading = line
        elif last_heading and _NO_HELP.search(last_heading):
            for o in cell.get("outputs", []):
                text = o.get("text", "") or o.get("data", {}).get("text/markdown", "")
                if re.search(r"\(scaled\)|: scaled\b|scaled with the machine", text):
                    problems.append(Problem("heading", i, last_heading,
                                            "the heading says a bigger machine does not help; the output under "
                                            "it says the server scaled"))
                    last_heading = None
                    break
    return problems


def check_notebook(path, extra_json=()) -> list[Problem]:
    """Every problem of the executed notebook at ``path`` (``extra_json``: objects its tables may quote)."""
    import nbformat

    nb = nbformat.read(Path(path), as_version=4)
    return quoted_numbers(nb, extra_json) + two_values(nb) + headings(nb)


def check_report(report) -> dict[str, list[str]]:
    """:func:`check_notebook` on every executed notebook of a ``labkit lab`` report folder (its
    ``summary.json`` counts as JSON of every notebook); ``{notebook: [problem, ...]}``."""
    report = Path(report)
    summary = report / "summary.json"
    extra = [json.loads(summary.read_text())] if summary.is_file() else []
    return {p.name: [str(x) for x in check_notebook(p, extra)] for p in sorted(report.glob("0*.ipynb"))}
