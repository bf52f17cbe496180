"""Notebook 00's environment check: ``labkit doctor`` as a table, and a stop when a tool is missing.

Both take ``settings`` like the CLI does: None means the environment's (``LABKIT_*``, via
:func:`labkit.settings.resolve`), so the table a notebook shows is the one ``labkit doctor`` prints.
"""

from __future__ import annotations

import dataclasses

from labkit.doctor import healthy, run_checks
from labkit.errors import MissingToolError
from labkit.settings import Settings


def doctor_table(settings: Settings | None = None):
    """``labkit doctor`` as a DataFrame (name, ok, required, detail, fix)."""
    import pandas as pd

    rows = [dataclasses.asdict(c) for c in run_checks(settings)]
    return pd.DataFrame(rows)[["name", "ok", "required", "detail", "fix"]]


def require_healthy(backend: str = "local", settings: Settings | None = None) -> None:
    """Stop with the fix commands when a tool the ``local`` backend needs is missing.

    Remote backends install nginx and ab on their own machines, so only the
    local backend needs them here.
    """
    if backend != "local":
        return
    checks = run_checks(settings)
    if not healthy(checks):
        missing = "; ".join(f"{c.name}: {c.fix}" for c in checks if c.required and not c.ok)
        raise MissingToolError(f"required tools are missing — {missing}")
