"""labkit.teaching.consistency: an executed notebook's sentences against its own tables.

Crafted notebooks (nbformat objects with the outputs a kernel would save) for each rule, the
sentences that issue 20 found in a real run among them; then every teaching text rendered over
data/reference.csv (a full-profile lab's data) must pass when shown beside the tables they come from.
"""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest

from labkit.handout import PART1_SLA, PART2_SLA, PART2_USERS, load_handout, tables_by_nodes
from labkit.teaching import consistency
from labkit.teaching.render import use_table_format

REFERENCE = Path(__file__).resolve().parent.parent / "data" / "reference.csv"


def _nb(*cells) -> nbformat.NotebookNode:
    """cells: ("md", source) for a Markdown cell, or ("out", {mime: text} | "stream text") for a code cell."""
    nb = nbformat.v4.new_notebook()
    for kind, value in cells:
        if kind == "md":
            nb.cells.append(nbformat.v4.new_markdown_cell(value))
            continue
        cell = nbformat.v4.new_code_cell("x")
        if isinstance(value, str):
            cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=value)]
        else:
            cell.outputs = [nbformat.v4.new_output("display_data", data=value)]
        nb.cells.append(cell)
    return nb


TABLE = {"text/html": "<table><tr><th>c</th><th>mean</th><th>rps</th></tr>"
                      "<tr><td>15</td><td>231.4</td><td>64.8</td></tr></table>"}


def test_a_quoted_number_must_be_in_a_table_unless_it_is_a_model():
    nb = _nb(("out", TABLE), ("out", {"text/markdown": "- c=15: mean 231 ms, 65 req/s\n"}))
    assert consistency.quoted_numbers(nb) == []
    nb = _nb(("out", TABLE), ("out", "c=50: 217 rps × 0.230 s = 49.9 ≈ 50\n"))
    (p,) = consistency.quoted_numbers(nb)
    assert p.rule == "quoted-number" and p.cell == 1 and "217 rps" in p.detail
    nb = _nb(("out", TABLE), ("out", "model R = 50 / 65 req/s = 769 ms\n"))
    assert consistency.quoted_numbers(nb) == [], "a model's number is labelled, not measured"
    # a Markdown table is a table; JSON counts too
    nb = _nb(("out", {"text/markdown": "| c=20 | 89.2 |\n\npeak 89 req/s\n"}))
    assert consistency.quoted_numbers(nb) == []
    assert consistency.quoted_numbers(_nb(("out", "peak 1,099 req/s\n")), [{"rps": 1098.7}]) == []


def test_two_cells_may_not_state_different_values_for_one_point():
    nb = _nb(("out", TABLE), ("out", "- 2 nodes, c=500: mean 1,600 ms\n"), ("out", "2 nodes, c=500: mean 1,200 ms\n"))
    (p,) = consistency.two_values(nb)
    assert p.rule == "two-values" and p.cell == 2 and "1200 here, 1600 in cell 1" in p.detail
    # the report's layout ("nodes=2   c=50 …", continuation lines under a label) names the same points
    report = _nb(("out", "- 2 nodes, c=50: p98 322 ms\n"),
                 ("out", "Borderline points\n  nodes=1   c=50     p98 280 ms\n  nodes=2   c=50     p98 301 ms\n"))
    (p,) = consistency.two_values(report)
    assert "p98 at 2 node(s), c=50: 301 here, 322 in cell 0" in p.detail
    same = _nb(("out", "- c=15: p98 319.5 ms\n"), ("out", "c=15: p98 320 ms\n"))
    assert consistency.two_values(same) == [], "the same value at another precision"


def test_headings_agree_with_the_conclusion_under_them():
    # issue 20: 03 headed "Why a bigger machine does not help" over "vCPU ×5.0, throughput ×7.42 … scaled"
    nb = _nb(("md", "## Why a bigger machine does not help a single-process server"),
             ("out", "flask: f1-micro → e2-medium: vCPU ×5.0, throughput ×7.42 (89 → 660 rps): scaled with the machine\n"))
    (p,) = consistency.headings(nb)
    assert p.rule == "heading" and "does not help" in p.text
    rendered = "### Your numbers: flask ×1.10 throughput for ×2.0 vCPU (did not keep up)\n\n- flask: a → b: did not keep up.\n"
    assert consistency.headings(_nb(("out", {"text/markdown": rendered}))) == []
    wrong = rendered.replace("- flask: a → b: did not keep up.", "- flask: a → b: scaled.")
    (p,) = consistency.headings(_nb(("out", {"text/markdown": wrong})))
    assert "flask … did not keep up" in p.detail


def test_every_teaching_text_over_reference_data_passes(tmp_path):
    """The texts the notebooks render, over a full lab's data, shown beside the tables they quote."""
    from labkit.teaching.interpret import bottleneck_text, littles_law_text, noise_text
    from labkit.teaching.network import backlog_text
    from labkit.vertical import vertical_text

    use_table_format()
    df = load_handout(REFERENCE, "f1-micro")
    tables = [{"text/html": t.to_html()} for t in tables_by_nodes(df).values()]
    from labkit.teaching.findings import points

    pts = {"text/html": points(df).to_html()}
    texts = [littles_law_text(df, nodes=1, k=20), littles_law_text(df, k=6), backlog_text(df),
             noise_text(df[df["nodes"] == 1], PART1_SLA), noise_text(df, PART2_SLA),
             bottleneck_text(df, PART2_SLA, PART2_USERS), vertical_text(df)]
    nb = _nb(*[("out", t) for t in tables], ("out", pts), *[("out", {"text/markdown": str(t)}) for t in texts])
    path = tmp_path / "nb.ipynb"
    nbformat.write(nb, path)
    assert consistency.check_notebook(path) == []


def test_check_report_reads_every_executed_notebook(tmp_path):
    nbformat.write(_nb(("out", "peak 42 req/s\n")), tmp_path / "01_x.ipynb")
    nbformat.write(_nb(("out", TABLE)), tmp_path / "02_y.ipynb")
    found = consistency.check_report(tmp_path)
    assert list(found) == ["01_x.ipynb", "02_y.ipynb"] and found["02_y.ipynb"] == []
    assert len(found["01_x.ipynb"]) == 1 and "42 req/s is in no table" in found["01_x.ipynb"][0]
    (tmp_path / "summary.json").write_text(json.dumps({"part1": {"rps": 42.0}}))
    assert consistency.check_report(tmp_path)["01_x.ipynb"] == []
