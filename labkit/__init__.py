"""labkit: Lab No. 02 (Scaling) as software.

The notebook-facing API is re-exported here; everything else lives in small
modules named for what they do (see the README's module map).
"""

import logging

from .errors import LabkitError

__version__ = "0.1.0"

logging.getLogger("labkit").addHandler(logging.NullHandler())

__all__ = ["LabkitError", "__version__"]

from .results import load_results  # noqa: E402
from .sla import Sla, max_concurrency, nodes_needed  # noqa: E402

__all__ += ["load_results", "Sla", "max_concurrency", "nodes_needed"]
