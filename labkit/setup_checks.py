"""Notebook 00's environment check: ``labkit doctor`` as a table, and a stop when a tool is missing."""

from __future__ import annotations

import dataclasses

from labkit.doctor import healthy, run_checks
from labkit.errors import MissingToolError


def doctor_table():
    """``labkit doctor`` as a DataFrame (name, ok, required, detail, fix)."""
    import pandas as pd

    return pd.DataFrame([dataclasses.asdict(c) for c in run_checks()])[["name", "ok", "required", "detail", "fix"]]


def require_healthy(backend: str = "local") -> None:
    """Stop with the fix commands when a tool the ``local`` backend needs is missing.

    Remote backends install nginx and ab on their own machines, so only the
    local backend needs them here.
    """
    if backend != "local":
        return
    checks = run_checks()
    if not healthy(checks):
        missing = "; ".join(f"{c.name}: {c.fix}" for c in checks if c.required and not c.ok)
        raise MissingToolError(f"required tools are missing — {missing}")
