"""The five notebooks, run headless with the tiny profile through :func:`labkit.lab.run_lab`.

One real run (real Flask servers, nginx, ab on the local backend) into a
temporary reports folder; the tests then read what it produced: executed
notebooks without error outputs, the PNG charts, the results CSV and a
``summary.json`` whose answers agree with :func:`labkit.analysis.report.build_report`
on that CSV. The committed notebooks are checked for being output-free,
parameterised, and in sync with their jupytext scripts.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
from pathlib import Path

import jupytext
import nbformat
import pytest

import labkit
from labkit import profiles, state
from labkit.handout import PART1_SLA, PART2_SLA, PART2_USERS
from labkit.lab import NOTEBOOKS, NOTEBOOKS_DIR, declared_parameters, kernel_environment, run_lab
from labkit.analysis.report import build_report
from labkit.results import load_results
from labkit.settings import Settings
from tests.support.local import session_net

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _as_json(data):
    """``data`` as it reads back from a JSON file."""
    return json.loads(json.dumps(data, default=str))


def _errors(nb) -> list[dict]:
    return [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o["output_type"] == "error"]


def test_report_folder_is_timestamped_under_out_root(lab_report):
    report = lab_report["dir"]
    assert report.parent == lab_report["root"].resolve()
    assert len(report.name) >= 15 and report.name[8] == "-" and report.name[:8].isdigit()


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_every_notebook_executed_without_error_output(lab_report, name):
    nb = nbformat.read(lab_report["dir"] / f"{name}.ipynb", as_version=4)
    assert _errors(nb) == []
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(c.execution_count is not None for c in code), "every code cell ran"
    injected = [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(injected) == 1
    declared = declared_parameters(NOTEBOOKS_DIR / f"{name}.ipynb")
    given = [t.id for node in ast.parse(injected[0].source).body for t in node.targets]
    assert set(given) <= set(declared), "labkit lab passes a notebook only the parameters it declares"
    assert ("profile" in declared) == ('profile = "tiny"' in injected[0].source)
    assert nb.cells[0].metadata.get("tags") == ["labkit-reference"] and "Instructor's reference run" in nb.cells[0].source


def test_saved_notebooks_hold_no_progress_bar(lab_report):
    for name in NOTEBOOKS:
        text = (lab_report["dir"] / f"{name}.ipynb").read_text()
        assert "0%|" not in text and "it/s]" not in text, name
        if name in ("01_single_server", "02_load_balancer", "03_vertical_scaling"):  # 04's dashboard is a widget
            assert "application/vnd.jupyter.widget-view+json" not in text, name


def test_executed_notebooks_pass_the_consistency_check(lab_report):
    """Every number a sentence quotes is in a table or JSON (or said to be a model), one value per point,
    headings agree with what is under them; labkit lab recorded the same in summary.json."""
    from labkit.teaching.consistency import check_report

    found = check_report(lab_report["dir"])
    assert set(found) == {f"{n}.ipynb" for n in NOTEBOOKS}
    assert found == {n: [] for n in found}
    summary = json.loads((lab_report["dir"] / "summary.json").read_text())
    assert summary["consistency"] == found
    assert "Consistency check (sentences vs tables): no problem found" in (lab_report["dir"] / "summary.txt").read_text()


def test_source_notebooks_pass_their_own_autograder_cells(lab_report):
    graded = 0
    for name in NOTEBOOKS:
        nb = nbformat.read(lab_report["dir"] / f"{name}.ipynb", as_version=4)
        for cell in nb.cells:
            meta = cell.metadata.get("nbgrader", {})
            if meta.get("grade") and cell.cell_type == "code":
                graded += 1
                assert cell.execution_count is not None
                assert not [o for o in cell.outputs if o["output_type"] == "error"], meta["grade_id"]
    assert graded == 4  # part 1 answer + justification, part 2 answer + justification


def test_at_least_four_png_charts(lab_report):
    pngs = sorted(lab_report["dir"].glob("*.png"))
    assert len(pngs) >= 4
    digests = [hashlib.sha256(p.read_bytes()).hexdigest() for p in pngs]
    assert len(set(digests)) == len(digests), "one PNG per chart: no chart saved twice"
    assert {"01_latency_one_server.png", "02_mean_latency.png", "02_sla_heatmap.png",
            "03_vertical_scaling.png"} <= {p.name for p in pngs}
    for p in pngs:
        data = p.read_bytes()
        assert data[:8] == PNG_MAGIC and len(data) > 10_000, p.name


def test_results_csv_holds_every_point_of_the_tiny_profile(lab_report):
    df = load_results(lab_report["dir"] / "results.csv")
    tiny = profiles.get("tiny")
    got = sorted(zip(df["machine_type"], df["server"], df["workers"].astype(int), df["nodes"], df["concurrency"]))
    horizontal = [("f1-micro", "flask", 1, n, c) for n in tiny.nodes for c in tiny.concurrency]
    vertical = [(m, s, w, 1, c) for m, s, w in tiny.vertical for c in tiny.vertical_concurrency]
    assert got == sorted(set(horizontal) | set(vertical)), "01-03 share one CSV; nothing measured twice"
    assert (df["requests"] == tiny.requests).all()
    assert (df["complete"] == tiny.requests).all() and not df["aborted"].any()
    assert tiny.requests_per_user == 0 and not tiny.largest_concurrency


def test_summary_answers_agree_with_build_report_on_the_csv(lab_report):
    report = lab_report["dir"]
    summary = json.loads((report / "summary.json").read_text())
    assert summary["profile"] == "tiny" and summary["backend"] == "local"
    assert summary["notebooks"] == [f"{n}.ipynb" for n in NOTEBOOKS]
    assert summary["charts"] == sorted(p.name for p in report.glob("*.png"))

    df = load_results(report / "results.csv")
    handout = df[(df["machine_type"] == "f1-micro") & (df["server"] == "flask")]
    r1 = build_report(handout, PART1_SLA)
    r2 = build_report(handout, PART2_SLA, PART2_USERS)

    r1, r2 = _as_json(r1), _as_json(r2)  # summary.json is JSON: node-count keys are strings there

    p1 = summary["part1"]
    assert p1["sla"] == "max<=1500 mean<200 p98<=300" and p1["nodes"] == 1
    assert p1["max_concurrency"] == r1["max_concurrency"]["1"]
    assert p1["max_concurrency_by_nodes"] == r1["max_concurrency"]
    assert isinstance(p1["justification"], str) and p1["justification"]

    p2 = summary["part2"]
    assert p2["sla"] == "max<=1000 mean<300 p98<400" and p2["users"] == 2000
    assert p2["nodes_needed"] == r2["nodes_needed"]
    assert p2["max_concurrency"] == r2["max_concurrency"]
    assert p2["extrapolation"] == r2["extrapolation"]
    if r2["nodes_needed"] is not None:
        assert (p2["answer"], p2["answer_source"]) == (r2["nodes_needed"], "measured")
    else:
        # The tiny profile tops out at 50 users, so no tested node count serves 2000: the answer is the
        # model's plan (design §8), servers_min only its lower bound; no plan, no answer.
        assert p2["capacity"] == r2["capacity"]
        plan = r2["capacity"].get("plan") or {}
        if plan.get("servers") is not None:
            assert (p2["answer"], p2["answer_source"]) == (plan["servers"], "model plan")
            assert p2["servers_min_lower_bound"] == r2["capacity"]["servers_min"] <= p2["answer"]
        else:
            assert p2["answer"] is None and p2["answer_source"].startswith("unanswered")


def test_summary_text_prints_tables_and_both_answers(lab_report):
    text = (lab_report["dir"] / "summary.txt").read_text()
    assert text.splitlines()[1].startswith("Instructor's reference run: the answers are the model solution's")
    assert "Mean Request Time (ms)" in text and "1 node(s)" in text and "2 node(s)" in text
    summary = json.loads((lab_report["dir"] / "summary.json").read_text())
    assert f"one server supports {summary['part1']['max_concurrency']} concurrent users" in text
    assert "Part 2 (max<=1000 mean<300 p98<400, 2000 users)" in text


def _stream_text(nb) -> str:
    return "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code"
                   for o in c.get("outputs", []) if o.get("output_type") == "stream")


def test_executed_02_gives_the_part2_answer_summary_gives(lab_report):
    """One answer, said once: the executed 02 prints the same part-2 answer and headline as
    summary.txt/summary.json (the measured count, else the model's plan; never servers_min)."""
    summary = json.loads((lab_report["dir"] / "summary.json").read_text())
    p2 = summary["part2"]
    printed = _stream_text(nbformat.read(lab_report["dir"] / "02_load_balancer.ipynb", as_version=4))
    balancer = (p2["plan"] or {}).get("balancer", {}).get("machine_type") if p2["answer_source"] == "model plan" else None
    line = f"part 2: {p2['answer']} nodes " + (f"and a {balancer} balancer" if balancer else "")
    assert line in printed, (line, [ln for ln in printed.splitlines() if ln.startswith("part 2:")])
    assert p2["justification"] in printed
    text = (lab_report["dir"] / "summary.txt").read_text()
    assert (p2["headline"] or str(p2["answer"])) in text


def test_executed_02_measures_one_node_behind_nginx_apart_and_explains_it(lab_report):
    """Issue 20: the balancer-cost point is measured (tiny: c=10), written beside results.csv in its own CSV,
    and 02 shows the table with the numbers of both CSVs."""
    report = lab_report["dir"]
    behind = load_results(report / "balancer.csv")
    assert list(zip(behind["nodes"], behind["concurrency"])) == [(1, c) for c in profiles.get("tiny").balancer_levels]
    assert (behind["balancer_machine_type"] == "f1-micro").all() and (behind["balancer_cpu_s"] >= 0).all()
    assert not behind["aborted"].any() and (behind["complete"] == behind["requests"]).all()
    direct = load_results(report / "results.csv")
    one = direct[(direct["nodes"] == 1) & (direct["concurrency"] == 10) & (direct["machine_type"] == "f1-micro")]
    assert len(one) == 1 and one["balancer_machine_type"].isna().all()
    nb = nbformat.read(report / "02_load_balancer.ipynb", as_version=4)
    shown = "\n".join(o.get("data", {}).get("text/markdown", "") for c in nb.cells if c.cell_type == "code"
                      for o in c.get("outputs", []))
    row = f"| 10 | {one['rps'].iloc[0]:,.1f} | {behind['rps'].iloc[0]:,.1f} |"
    assert "reached directly and behind the f1-micro nginx balancer" in shown and row in shown, row
    faster = behind["mean_ms"].iloc[0] < one["mean_ms"].iloc[0]  # the words follow the sign of the difference
    assert ("**Faster behind nginx.** At 10 users" if faster else "**The hop.** At 10 users, going through nginx") \
        in shown


def test_lab_is_down_afterwards(lab_report):
    assert lab_report["left_up"] is None


# -- the committed notebooks ------------------------------------------------------------------------
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_committed_notebook_has_no_outputs_and_one_parameters_cell(name):
    nb = nbformat.read(NOTEBOOKS_DIR / f"{name}.ipynb", as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.outputs == [] and c.execution_count is None for c in code)
    params = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1
    declared = declared_parameters(NOTEBOOKS_DIR / f"{name}.ipynb")
    assert declared, "a parameters cell that assigns the notebook's parameters"
    rest = "\n".join(c.source for c in code if c is not params[0])
    used = {n.id for n in ast.walk(ast.parse(rest)) if isinstance(n, ast.Name)}
    assert [v for v in declared if v not in used] == [], "every parameter is used by the notebook"
    assert nb.metadata["jupytext"]["formats"] == "ipynb,py:percent"


def pair_differences(ipynb: Path, script: Path) -> list[str]:
    """Where a notebook and its jupytext percent script disagree (cell types, sources, cell metadata)."""
    if not script.is_file():
        return [f"{script.name} is missing"]
    a = jupytext.read(ipynb)
    b = jupytext.read(script, fmt="py:percent")
    diffs = []
    if len(a.cells) != len(b.cells):
        diffs.append(f"{len(a.cells)} cells in {ipynb.name}, {len(b.cells)} in {script.name}")
    for i, (x, y) in enumerate(zip(a.cells, b.cells)):
        if x.cell_type != y.cell_type or x.source.strip() != y.source.strip():
            diffs.append(f"cell {i + 1} differs")
        elif dict(x.metadata) != dict(y.metadata):
            diffs.append(f"cell {i + 1} metadata differs")
    return diffs


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_jupytext_pair_in_sync(name):
    assert pair_differences(NOTEBOOKS_DIR / f"{name}.ipynb", NOTEBOOKS_DIR / f"{name}.py") == []


def test_pair_check_detects_an_edit_on_either_side(tmp_path):
    for side in ("py", "ipynb"):
        for ext in ("py", "ipynb"):
            (tmp_path / f"n.{ext}").write_bytes((NOTEBOOKS_DIR / f"01_single_server.{ext}").read_bytes())
        edited = tmp_path / f"n.{side}"
        edited.write_text(edited.read_text().replace("part1_max_users = UNANSWERED",
                                                     "part1_max_users = 0", 1))
        diffs = pair_differences(tmp_path / "n.ipynb", tmp_path / "n.py")
        assert len(diffs) == 1 and diffs[0].startswith("cell ") and diffs[0].endswith(" differs"), (side, diffs)
    (tmp_path / "n.py").unlink()
    assert pair_differences(tmp_path / "n.ipynb", tmp_path / "n.py") == ["n.py is missing"]


@pytest.mark.kernel
def test_a_failing_notebook_stops_the_run_names_itself_and_the_lab_still_goes_down(tmp_path, monkeypatch):
    from labkit.lab import NotebookError

    settings = Settings.from_env().replace(state_dir=tmp_path / ".labkit", local_net=session_net(205),
                                           cgroups="off")
    monkeypatch.chdir(tmp_path)
    environ_before = dict(os.environ)
    broken = tmp_path / "notebooks"
    broken.mkdir()
    for name in NOTEBOOKS:
        nb = nbformat.read(NOTEBOOKS_DIR / f"{name}.ipynb", as_version=4)
        for cell in nb.cells:  # fail right after the server is up (the curl step)
            if "answer = fibonacci(lab.url, 20)" in cell.source and name == "01_single_server":
                cell.source = 'raise RuntimeError("boom")'
        nbformat.write(nb, broken / f"{name}.ipynb")
    with pytest.raises(NotebookError, match=r"notebook 01_single_server failed: cell \d+: RuntimeError: boom") as err:
        run_lab("tiny", out_root=tmp_path / "reports", notebooks_dir=broken, settings=settings)
    assert err.value.output.is_file() and err.value.output.name == "01_single_server.ipynb"
    assert not (err.value.output.parent / "02_load_balancer.ipynb").exists()
    assert state.load(settings, "local") is None, "the server 01 started was taken down"
    assert dict(os.environ) == environ_before, "run_lab hands settings to the kernels without touching os.environ"


def test_kernel_environment_carries_exactly_the_settings(monkeypatch, tmp_path):
    monkeypatch.setenv("LABKIT_SSH_HOSTS", "/elsewhere/hosts")
    monkeypatch.setenv("LABKIT_LOCAL_NET", "127.0.9")
    settings = Settings(state_dir=tmp_path, local_net="127.0.203")
    env = kernel_environment(settings)
    assert Settings.from_env(env) == settings
    assert "LABKIT_SSH_HOSTS" not in env, "an inherited setting the run did not choose is dropped"
    assert env["MPLBACKEND"] == "Agg" and env["PATH"] == os.environ["PATH"]


def test_every_public_name_resolves():
    assert [n for n in labkit.__all__ if getattr(labkit, n, None) is None] == []


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebooks_import_from_the_public_surface_and_use_what_they_import(name):
    tree = ast.parse((NOTEBOOKS_DIR / f"{name}.py").read_text())
    imported = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module.split(".")[0] == "labkit":
            assert node.module == "labkit", f"{name} imports from {node.module}, not from labkit"
            assert {a.name for a in node.names} <= set(labkit.__all__)
        if isinstance(node, ast.Import):
            assert not any(a.name.startswith("labkit") for a in node.names)
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            imported += [(a.asname or a.name).split(".")[0] for a in node.names]
    used = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    assert [n for n in imported if n not in used] == []
