"""``labkit lab``: run the five notebooks headless with papermill into ``reports/<timestamp>/``.

The executed notebooks are the lab write-up; a headless run is how an
instructor (or CI) checks the whole lab still works, and how ``make lab``
produces its report. Every notebook gets the same parameters (backend,
profile, machine type, and a results CSV and charts folder inside the report
folder), so notebooks 01-03 append to one CSV and 04 re-analyses it. The
run's :class:`~labkit.settings.Settings` reach the notebook kernels as their
environment (``Settings.to_env``), the one way a kernel's ``get_backend`` sees
them. When the notebooks are done, the report answers are recomputed from that
CSV into ``summary.json`` — the same functions the notebooks' autograder cells
use (:mod:`labkit.handout`) — and whatever the run brought up is taken down,
even when a notebook failed.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import time
from pathlib import Path

from labkit import profiles
from labkit.errors import LabkitError, MissingToolError
from labkit.settings import ENV, Settings

log = logging.getLogger("labkit")

NOTEBOOKS = ("00_setup", "01_single_server", "02_load_balancer", "03_vertical_scaling", "04_reanalysis")
#: The notebooks shipped with the project (``notebooks/`` beside the package).
NOTEBOOKS_DIR = Path(__file__).resolve().parent.parent / "notebooks"


class NotebookError(LabkitError):
    """A notebook failed while the lab ran. ``notebook`` names it, ``output`` is the executed copy."""

    def __init__(self, notebook: str, output: Path, detail: str):
        self.notebook, self.output = notebook, output
        super().__init__(f"notebook {notebook} failed: {detail} (executed copy: {output})")


def _report_dir(out_root: Path) -> Path:
    """A new ``out_root/<timestamp>`` folder (a suffix keeps two runs in one second apart)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for i in range(1, 100):
        path = out_root / (stamp if i == 1 else f"{stamp}-{i}")
        try:
            path.mkdir(parents=True)
            return path
        except FileExistsError:
            continue
    raise LabkitError(f"cannot create a report folder in {out_root}")


def kernel_environment(settings: Settings) -> dict[str, str]:
    """The environment of the notebook kernels: this process's, with ``settings`` as the only LABKIT_* values.

    Inherited ``LABKIT_*`` settings variables are dropped first, so a kernel's
    ``Settings.from_env()`` gives exactly ``settings``; ``MPLBACKEND=Agg`` lets
    a headless kernel draw charts; ``LABKIT_PROGRESS=0`` keeps progress bars out of the saved notebooks.
    """
    inherited = {k: v for k, v in os.environ.items() if k not in ENV.values()}
    # LABKIT_PROGRESS=0: no progress bars in the saved notebooks (a headless run's bar is frozen at "0%")
    return {**inherited, **settings.to_env(), "MPLBACKEND": "Agg", "LABKIT_PROGRESS": "0"}


def _kernel_manager_class(env: dict[str, str]) -> type:
    """A jupyter kernel manager class that starts its kernels with ``env`` as their environment.

    Why a class: papermill hands its keyword arguments to nbclient's
    ``NotebookClient``, whose ``kernel_manager_class`` is the one hook that
    reaches the kernel's start; nothing is written to this process's
    ``os.environ``.
    """
    from jupyter_client import AsyncKernelManager

    class LabKernelManager(AsyncKernelManager):
        async def start_kernel(self, **kw):
            await super().start_kernel(**{**kw, "env": dict(env)})

    return LabKernelManager


def declared_parameters(notebook: Path) -> list[str]:
    """The names the ``parameters`` cell of ``notebook`` assigns, in order."""
    import ast

    import nbformat

    nb = nbformat.read(notebook, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code" and "parameters" in cell.metadata.get("tags", []):
            return [t.id for node in ast.parse(cell.source).body if isinstance(node, ast.Assign)
                    for t in node.targets if isinstance(t, ast.Name)]
    return []


def notebook_parameters(name: str, report: Path, profile: str, backend: str, machine_type: str,
                        declared=None) -> dict:
    """The papermill parameters for notebook ``name`` in a run writing into ``report``: of the run's
    values, only those the notebook declares (``declared``, default: every one)."""
    params = {"backend": backend, "profile": profile, "machine_type": machine_type,
              "results_csv": str(report / "results.csv"), "balancer_csv": str(report / "balancer.csv"),
              "charts_dir": str(report)}
    if name == "04_reanalysis":
        params["csv"] = str(report / "results.csv")
    return params if declared is None else {k: v for k, v in params.items() if k in declared}


def _execute(src: Path, dst: Path, params: dict, cwd: Path, cell_timeout: int | None, env: dict[str, str]) -> None:
    try:
        import papermill
        from papermill.exceptions import PapermillExecutionError
    except ImportError:
        raise MissingToolError("papermill is not installed: pip install -e '.[notebooks]'") from None
    log.info("running %s", src.name)
    started = time.monotonic()
    try:
        papermill.execute_notebook(str(src), str(dst), parameters=params, cwd=str(cwd), kernel_name="python3",
                                   progress_bar=False, log_output=False, execution_timeout=cell_timeout,
                                   kernel_manager_class=_kernel_manager_class(env))
    except PapermillExecutionError as exc:
        raise NotebookError(src.stem, dst, f"cell {exc.exec_count}: {exc.ename}: {exc.evalue}") from None
    log.info("%s done in %.0f s", src.name, time.monotonic() - started)
    _mark_reference(dst)


#: The first cell of every notebook a ``labkit lab`` run executes: what the reader is looking at.
REFERENCE_NOTE = ("**Instructor's reference run** (`labkit lab`). The answer cells are filled by the model "
                  "solution from this run's own `results.csv`; the manually graded cells show the grading "
                  "rubric, not a student's answer. Students get these notebooks without either "
                  "(`labkit release`).")


def _mark_reference(path: Path) -> None:
    """Put :data:`REFERENCE_NOTE` at the top of the executed notebook ``path``."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    nb.cells.insert(0, nbformat.v4.new_markdown_cell(REFERENCE_NOTE, metadata={"tags": ["labkit-reference"]}))
    nbformat.write(nb, path)


def _bring_down(backend: str, settings: Settings) -> None:
    """Stop whatever the notebooks left running on ``backend`` (notebook 03 normally has)."""
    from labkit.backends import get_backend

    try:
        b = get_backend(backend, settings)
        if b.spec is not None:
            log.info("bringing the %s lab down", backend)
            b.down()
    except LabkitError as exc:
        log.error("could not bring the %s lab down: %s (run `labkit down --backend %s`)", backend, exc, backend)


def run_lab(profile: str = "quick", backend: str = "local", out_root="reports", notebooks_dir=None,
            machine_type: str = "f1-micro", cell_timeout: int | None = None,
            settings: Settings | None = None) -> Path:
    """Run the five notebooks with papermill; return the report folder.

    The folder ``out_root/<timestamp>/`` gets the executed notebooks, the PNG
    charts the notebooks saved, ``results.csv`` and ``summary.json`` (see
    :func:`summarize`). A failing notebook stops the run with
    :class:`NotebookError` (its executed copy, error included, is kept); the lab
    is brought down in every case. ``settings`` (default: from the
    environment) are handed to the notebook kernels, see :func:`kernel_environment`.
    """
    profiles.get(profile)  # an unknown profile fails before anything starts
    notebooks_dir = Path(notebooks_dir) if notebooks_dir else NOTEBOOKS_DIR
    missing = [n for n in NOTEBOOKS if not (notebooks_dir / f"{n}.ipynb").is_file()]
    if missing:
        raise LabkitError(f"notebooks missing from {notebooks_dir}: {', '.join(missing)}")
    report = _report_dir(Path(out_root)).resolve()
    started = dt.datetime.now(dt.timezone.utc)
    log.info("lab: profile %s on %s into %s", profile, backend, report)
    # The kernels run in notebooks_dir; they must find the same .labkit state as this process
    # so that the final down() stops what they started: the state folder is made absolute.
    settings = settings or Settings.from_env()
    settings = settings.replace(state_dir=settings.state_folder().resolve())
    env = kernel_environment(settings)
    try:
        for name in NOTEBOOKS:
            src = notebooks_dir / f"{name}.ipynb"
            _execute(src, report / f"{name}.ipynb",
                     notebook_parameters(name, report, profile, backend, machine_type, declared_parameters(src)),
                     notebooks_dir, cell_timeout, env)
    finally:
        _bring_down(backend, settings)
    summary = summarize(report, profile=profile, backend=backend, machine_type=machine_type, started=started)
    (report / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    from labkit.teaching.consistency import check_report

    summary["consistency"] = check_report(report)
    for name, problems in summary["consistency"].items():
        for p in problems:
            log.warning("consistency %s: %s", name, p)
    (report / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    (report / "summary.txt").write_text(format_summary(report, summary))
    log.info("lab finished in %.0f s: %s", summary["duration_s"], report)
    return report


def summarize(report: Path, profile: str, backend: str, machine_type: str, started: dt.datetime) -> dict:
    """``summary.json``: the run's configuration, its files and both SLA answers.

    ``part1.max_concurrency`` and ``part2.nodes_needed`` are exactly what
    :func:`labkit.analysis.report.build_report` gives for the handout's rows of
    ``results.csv``; ``part2.answer`` is ``nodes_needed``, or the USL
    extrapolation's node count (``answer_source`` says which) when no tested
    node count meets the SLA.
    """
    from labkit import handout

    a = handout.answers(report / "results.csv", machine_type)
    df = handout.load_handout(report / "results.csv", machine_type)
    r1, r2 = a["report1"], a["report2"]
    finished = dt.datetime.now(dt.timezone.utc)
    return {
        "profile": profile, "backend": backend, "machine_type": machine_type, "server": handout.HANDOUT_SERVER,
        "started_at": started.isoformat(timespec="seconds"), "finished_at": finished.isoformat(timespec="seconds"),
        "duration_s": round((finished - started).total_seconds(), 1),
        "notebooks": [f"{n}.ipynb" for n in NOTEBOOKS],
        "charts": sorted(p.name for p in report.glob("*.png")),
        "results_csv": "results.csv",
        "part1": {"question": handout.PART1_QUESTION, "sla": r1["sla"], "nodes": 1,
                  "max_concurrency": a["part1"], "max_concurrency_by_nodes": r1["max_concurrency"],
                  "max_concurrency_handout_levels": r1.get("max_concurrency_handout_levels", {}).get(1),
                  "justification": handout.justify_part1(df, a["part1"])},
        "part2": {"question": handout.PART2_QUESTION, "sla": r2["sla"], "users": r2["users"],
                  "nodes_needed": r2["nodes_needed"], "answer": a["part2"], "answer_source": a["part2_source"],
                  "headline": a["part2_answer"]["headline"], "plan": a["part2_answer"]["plan"],
                  "servers_min_lower_bound": a["part2_answer"]["servers_min"],
                  "max_concurrency": r2["max_concurrency"], "extrapolation": r2["extrapolation"],
                  "capacity": r2.get("capacity"),
                  "justification": handout.justify_part2(r2)},
    }


def format_summary(report: Path, summary: dict) -> str:
    """The handout's tables (one per node count) and both answers, as text for a terminal."""
    from labkit import handout

    df = handout.load_handout(report / "results.csv", summary["machine_type"])
    lines = [f"Lab 02 report: {report}",
             "Instructor's reference run: the answers are the model solution's, computed from this run's "
             "results.csv; the executed notebooks show the grading rubric (students get neither).",
             f"profile {summary['profile']}, backend {summary['backend']}, "
             f"{summary['machine_type']} servers, {summary['duration_s']:.0f} s", ""]
    for n, table in handout.tables_by_nodes(df).items():
        lines.append(f"{n} node(s)")
        lines.append(table.to_string(index=False, float_format=lambda v: f"{v:.1f}"))
        lines.append("")
    p1, p2 = summary["part1"], summary["part2"]
    lines.append(f"Part 1 ({p1['sla']}): one server supports {p1['max_concurrency']} concurrent users")
    lines.append(f"  {p1['justification']}")
    if p2["answer"] is None:
        lines.append(f"Part 2 ({p2['sla']}, {p2['users']} users): no answer from these results")
    else:
        lines.append(f"Part 2 ({p2['sla']}, {p2['users']} users): {p2.get('headline') or p2['answer']}")
    lines.append(f"  {p2['justification']}")
    lines.append(f"Charts: {', '.join(summary['charts'])}")
    problems = [f"  {name}: {p}" for name, ps in (summary.get("consistency") or {}).items() for p in ps]
    lines.append("Consistency check (sentences vs tables): " + ("no problem found" if not problems
                                                                 else f"{len(problems)} problem(s)"))
    lines.extend(problems)
    return "\n".join(lines) + "\n"
