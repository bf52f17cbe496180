"""Notebook 04: which results CSV to re-open, and a line saying what it holds."""

from __future__ import annotations

from pathlib import Path

from .errors import ConfigError


def reanalysis_csv(csv=None, fallback=None, root="..") -> Path:
    """The CSV notebook 04 opens: ``csv`` when given, else ``ROOT/data/reference.csv``,
    else the newest ``ROOT/reports/*/results.csv``, else ``fallback`` (the notebooks' results_csv).

    Why this order: analysts re-open the reference data by default; a student
    who has run the lab gets their own latest results.
    """
    if csv:
        return Path(csv)
    root = Path(root)
    candidates = [root / "data" / "reference.csv",
                  *sorted(root.glob("reports/*/results.csv"), reverse=True)]
    if fallback:
        candidates.append(Path(fallback))
    for c in candidates:
        if c.is_file():
            return c
    raise ConfigError(f"no results to re-analyse: no {root / 'data/reference.csv'}, no "
                      f"{root / 'reports/*/results.csv'}" + (f", no {fallback}" if fallback else "")
                      + " — run the lab first, or pass csv=")


def describe_results(df, source) -> str:
    """One line saying what a results DataFrame holds: file, rows, node counts, levels, configuration."""
    nodes = ", ".join(str(int(n)) for n in sorted(df["nodes"].unique()))
    levels = ", ".join(str(int(c)) for c in sorted(df["concurrency"].unique()))
    configs = ", ".join(sorted({f"{m}/{s}" for m, s in zip(df["machine_type"], df["server"])}))
    return f"{source}: {len(df)} rows of {configs}; node counts {nodes}; concurrency {levels}"
