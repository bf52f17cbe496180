"""Sweep profiles: how much of the handout's grid to measure.

``full`` is the handout exactly (10,000 requests per level, all 13 concurrency
levels, 1-5 nodes, ``-s 10``). ``quick`` keeps the shape of every chart and
both SLA answers meaningful while the whole lab (all notebooks) finishes in
about five minutes on a 2-core machine, and refines part 1's boundary at one
node (design §8: the handout's levels jump from 20 to 50 users, and one
f1-micro server's limit lies between). ``tiny`` exists for the test suite.
"""

from __future__ import annotations

import dataclasses

from labkit.errors import ConfigError

HANDOUT_CONCURRENCY = (10, 20, 50, 100, 200, 500, 700, 1000, 1200, 1500, 2000, 2500, 3000)
#: Handout part 1's SLA (the same text as :data:`labkit.handout.PART1_SLA`; a test keeps them equal).
PART1_SLA = "max<=1500 mean<200 p98<=300"


@dataclasses.dataclass(frozen=True)
class Profile:
    """A sweep grid plus ab settings. ``vertical`` lists (machine type, server, workers) for notebook 03.

    ``repeats``: rows per point (the handout's grid is 1). ``refine``: an SLA whose
    boundary the sweep bisects after the grid at the node counts ``refine_nodes``
    (see :mod:`labkit.refine`), or None.
    """

    name: str
    requests: int
    concurrency: tuple[int, ...]
    nodes: tuple[int, ...]
    timeout_s: int = 10
    retries: int = 2
    repeats: int = 1
    refine: str | None = None
    refine_nodes: tuple[int, ...] = (1,)
    vertical_concurrency: tuple[int, ...] = (10, 100)
    vertical: tuple[tuple[str, str, int], ...] = ()


PROFILES: dict[str, Profile] = {
    p.name: p
    for p in [
        Profile("full", 10000, HANDOUT_CONCURRENCY, (1, 2, 3, 4, 5),
                vertical_concurrency=(10, 50, 100, 200, 500),
                vertical=(("f1-micro", "flask", 1), ("e2-small", "flask", 1), ("e2-medium", "flask", 1),
                          ("e2-standard-2", "flask", 1), ("e2-small", "gunicorn", 2),
                          ("e2-medium", "gunicorn", 3), ("e2-standard-2", "gunicorn", 5))),
        Profile("quick", 2000, (10, 20, 50, 100, 200, 500, 1000), (1, 2, 3, 4, 5), retries=1,
                refine=PART1_SLA, refine_nodes=(1,),
                vertical_concurrency=(10, 100),
                vertical=(("f1-micro", "flask", 1), ("e2-medium", "flask", 1),
                          ("e2-medium", "gunicorn", 3))),
        Profile("tiny", 100, (10, 50), (1, 2), retries=1, vertical_concurrency=(10,),
                vertical=(("f1-micro", "flask", 1), ("e2-medium", "gunicorn", 3))),
    ]
}


def get(name: str) -> Profile:
    """The profile called ``name``; a clear error lists the known ones."""
    try:
        return PROFILES[name]
    except KeyError:
        raise ConfigError(f"unknown profile {name!r}; known: {', '.join(PROFILES)}") from None


def profiles_table():
    """Every profile as a DataFrame row: its grid size, repeats, refinement and the number of ab requests the
    lab makes with it (before the refinement's probes: at most a few levels, up to 3 runs each)."""
    import pandas as pd

    rows = []
    for p in PROFILES.values():
        horizontal = len(p.nodes) * len(p.concurrency)
        vertical = len(p.vertical) * len(p.vertical_concurrency)
        rows.append({"profile": p.name, "requests per point": p.requests,
                     "concurrency levels": ", ".join(map(str, p.concurrency)),
                     "nodes": ", ".join(map(str, p.nodes)), "repeats": p.repeats,
                     "refines": (f"{p.refine} at {', '.join(map(str, p.refine_nodes))} node(s)" if p.refine
                                 else ""),
                     "points (01+02)": horizontal,
                     "points (03)": vertical, "requests in total": (horizontal * p.repeats + vertical) * p.requests})
    return pd.DataFrame(rows)
