"""Which configuration (server machine type, server, workers) a results CSV's rows measured, and
choosing one to analyse.

A lab's ``results.csv`` holds the handout's f1-micro Flask rows at 1–5 nodes and, from notebook 03,
one node of bigger machines and gunicorn at a few levels. The per-point analysis must not pool
them (an e2-standard-2 at c=10 is not a repeat of an f1-micro at c=10: it would count its
1,392 req/s as the f1-micro's), so :func:`labkit.analysis.points.points` refuses, and
:func:`select` picks the configuration the SLA questions are about: the one given, or the one
behind the balancer (horizontal scaling is measured with the handout's configuration only), and
says which rows it left out.
"""

from __future__ import annotations

import pandas as pd

from labkit.errors import ConfigError


def config_labels(df: pd.DataFrame) -> pd.Series:
    """Per row: "f1-micro/flask" or "e2-standard-2/gunicorn×5" (the workers shown for gunicorn only)."""
    workers = pd.to_numeric(df["workers"], errors="coerce").fillna(1).astype(int) if "workers" in df.columns \
        else pd.Series(1, index=df.index)
    server = df["server"].astype(str) if "server" in df.columns else pd.Series("flask", index=df.index)
    return pd.Series([f"{m}/{s}" + (f"×{w}" if s == "gunicorn" else "")
                      for m, s, w in zip(df["machine_type"].astype(str), server, workers)],
                     index=df.index, name="configuration")


def select(df: pd.DataFrame, machine_type: str | None = None, server: str | None = None) -> tuple[pd.DataFrame, str]:
    """The rows of one configuration and a note saying what was left out ("" when nothing was).

    With ``machine_type`` / ``server`` given, those rows (a one-line ConfigError naming what the CSV
    holds when there are none). Otherwise, when the rows hold one configuration, all of them; when
    several, the one measured behind the balancer (nodes > 1) if exactly one was; else a ConfigError
    asking for ``--machine-type`` / ``--server``.
    """
    labels = config_labels(df)
    held = labels.value_counts()
    keep = pd.Series(True, index=df.index)
    if machine_type is not None:
        keep &= df["machine_type"].astype(str) == machine_type
    if server is not None:
        keep &= df["server"].astype(str) == server
    if machine_type is None and server is None:
        if len(held) < 2:
            return df, ""
        scaled = labels[df["nodes"] > 1].unique()
        if len(scaled) != 1:
            raise ConfigError(f"these results hold {len(held)} configurations ({listing(held)}): choose one "
                              "with --machine-type and --server")
        keep = labels == scaled[0]
        why = f"{scaled[0]}, the configuration measured behind the balancer"
    else:
        if not keep.any():
            raise ConfigError(f"no {machine_type or '*'}/{server or '*'} rows in these results "
                              f"(they hold: {listing(held)})")
        if labels[keep].nunique() > 1:
            raise ConfigError(f"{machine_type or '*'}/{server or '*'} still matches {labels[keep].nunique()} "
                              f"configurations ({listing(labels[keep].value_counts())}): give both options")
        why = labels[keep].iloc[0]
    left = labels[~keep].value_counts()
    note = (f"analysed {why}; left out {int(left.sum())} row(s) of other configurations ({listing(left)}), "
            "e.g. notebook 03's vertical scaling" if len(left) else "")
    return df[keep].reset_index(drop=True), note


def listing(counts: pd.Series) -> str:
    """'f1-micro/flask: 31 rows, e2-medium/flask: 2 rows' from label counts (``value_counts()``)."""
    return ", ".join(f"{label}: {int(n)} row{'s' if n != 1 else ''}" for label, n in counts.items())
