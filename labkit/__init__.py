"""labkit: Lab No. 02 (Scaling) as software.

The notebook-facing API is re-exported here; everything else lives in small
modules named for what they do (see the README's module map). The re-exports
are resolved lazily (PEP 562), so ``import labkit`` - and every ``labkit``
command - does not pay for pandas, seaborn or scipy until they are used.
"""

import importlib
import logging

from labkit.errors import LabkitError

__version__ = "0.1.0"

logging.getLogger("labkit").addHandler(logging.NullHandler())

#: The notebook-facing API, grouped by the handout step that uses it: name -> module.
_EXPORTS = {
    # 00 setup: the machine, the profiles, what a cloud run costs
    "doctor_table": "setup_checks", "require_healthy": "setup_checks",
    "MACHINE_TYPES": "machine_types", "PRICES_AS_OF": "machine_types",
    "get_profile": "profiles", "profiles_table": "profiles", "cost_table": "pricing",
    # deploying and measuring (01-03)
    "Settings": "settings", "get_backend": "backends", "ClusterSpec": "backends.base",
    "fibonacci": "client", "round_robin_table": "client",
    "AbCommand": "ab", "measure": "measure",
    "Grid": "sweep", "profiles_grid": "sweep", "run_sweep": "sweep",
    "vertical_grids": "vertical", "vertical_backend": "vertical", "run_vertical": "vertical",
    "vertical_table": "vertical",
    # the handout's questions and their answers (01, 02, 04)
    "PART1_SLA": "handout", "PART2_SLA": "handout", "PART2_USERS": "handout", "handout_spec": "handout",
    "UNANSWERED": "handout", "require_answer": "handout", "answers": "handout",
    # the autograder's hidden checks (01, 02): the answers against the student's own CSV
    "check_part1": "grading.checks", "check_part2": "grading.checks",
    "load_handout": "handout", "tables_by_nodes": "handout", "part2_from_report": "handout",
    "justify_part1": "handout", "justify_part2": "handout", "part2_answer": "handout",
    # analysis
    "load_results": "results", "handout_table": "results",
    "Sla": "analysis.sla", "max_concurrency": "analysis.sla", "nodes_needed": "analysis.sla",
    "build_report": "analysis.report", "format_report": "analysis.report",
    "mean_latency_chart": "analysis.plots", "percentiles_chart": "analysis.plots", "sla_heatmap": "analysis.plots",
    "throughput_chart": "analysis.plots", "vertical_chart": "analysis.plots", "save_chart": "analysis.plots",
    "reanalysis_csv": "dashboard.reanalysis", "describe_results": "dashboard.reanalysis",
    "provenance_text": "dashboard.reanalysis", "ReanalysisDashboard": "dashboard.reanalysis",
    "SlaExplorer": "dashboard.widgets",
    # the capacity model and the bottleneck (design §8)
    "points": "analysis.points", "service_demand": "analysis.demand",
    "capacity_answer": "analysis.capacity", "part2_accepts": "analysis.capacity", "role_utilisation_chart": "analysis.plots_roles",
    # "Interpret your results" (01-03): explanations printed from the student's own numbers
    "littles_law_text": "teaching.interpret", "bottleneck_text": "teaching.interpret", "noise_text": "teaching.interpret",
    "usl_text": "teaching.interpret", "backlog_text": "teaching.network", "round_robin_text": "teaching.network",
    "nginx_limits_text": "teaching.network", "balancer_cost_text": "teaching.network",
    "balancer_cost": "analysis.balancer_cost", "balancer_grid": "sweep", "first_ab_run": "teaching.first_run",
    "payload_text": "teaching.first_run", "handout_bug_text": "teaching.first_run", "vertical_text": "vertical",
    # the handout's hands-on steps, one cell each (01, 02)
    "image_step": "teaching.steps", "internal_ip_test": "teaching.steps", "step14_curls": "teaching.steps",
    "nginx_change": "teaching.steps", "use_table_format": "teaching.render", "deciding_table": "teaching.findings",
    "skipped_text": "profiles", "scale_grids": "sweep",
}
#: Names whose module attribute is called something else.
_RENAMED = {"get_profile": "get"}

__all__ = ["LabkitError", "__version__", *_EXPORTS]


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'labkit' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), _RENAMED.get(name, name))
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
