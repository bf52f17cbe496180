"""labkit: Lab No. 02 (Scaling) as software.

The notebook-facing API is re-exported here; everything else lives in small
modules named for what they do (see the README's module map). The re-exports
are resolved lazily (PEP 562), so ``import labkit`` - and every ``labkit``
command - does not pay for pandas, seaborn or scipy until they are used.
"""

import importlib
import logging

from .errors import LabkitError

__version__ = "0.1.0"

logging.getLogger("labkit").addHandler(logging.NullHandler())

_EXPORTS = {
    "load_results": "results", "handout_table": "results",
    "Sla": "sla", "max_concurrency": "sla", "nodes_needed": "sla",
    "build_report": "report", "format_report": "report",
    "get_backend": "backends", "ClusterSpec": "backends.base",
    "Grid": "sweep", "run_sweep": "sweep",
    "AbCommand": "ab", "measure": "measure",
    "SlaExplorer": "widgets",
}

__all__ = ["LabkitError", "__version__", *_EXPORTS]


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'labkit' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
