"""Sweep profiles: how much of the handout's grid to measure.

``full`` is the handout exactly (10,000 requests per level, all 13 concurrency
levels, 1-5 nodes, ``-s 10``). ``quick`` covers both questions while the whole
lab (all notebooks) takes about five minutes of lab time on a 2-core machine
(design §6): levels below the knee (1, 2, 5) and around part 1's answer, whose
boundary it refines at one node (design §8: the handout's levels jump from 20
to 50 users); five requests per user at every level and at least 500 (ten
requests above a p98 bound, so one stall does not decide it), so a level is
not mostly ab's ramp-up; node counts 1, 2, 3 and 5 up to 1,000 users, and
part 2's 2,000 users at 5 nodes; one node behind nginx at 1 and 20 users (beside
the same node reached directly: what the balancer itself costs); a 2-vCPU
machine in the vertical part. What it
skips of the handout's grid is said next to every table (:func:`skipped_text`).
``tiny`` exists for the test suite.
"""

from __future__ import annotations

import dataclasses

from labkit.errors import ConfigError

HANDOUT_CONCURRENCY = (10, 20, 50, 100, 200, 500, 700, 1000, 1200, 1500, 2000, 2500, 3000)
HANDOUT_NODES = (1, 2, 3, 4, 5)
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
    requests_per_user: int = 0  # a level c gets max(requests, requests_per_user * c) requests
    scale_concurrency: tuple[int, ...] | None = None  # levels at 2+ nodes (None: ``concurrency``)
    largest_concurrency: tuple[int, ...] = ()  # levels measured at the largest node count only
    balancer_levels: tuple[int, ...] = ()  # one node behind nginx at these levels (notebook 02's balancer cost)

    def levels_at(self, nodes: int) -> tuple[int, ...]:
        """The concurrency levels this profile measures at ``nodes`` (notebooks 01 and 02)."""
        levels = set(self.concurrency if nodes == 1 else (self.scale_concurrency or self.concurrency))
        if self.largest_concurrency and nodes == max(self.nodes):
            levels |= set(self.largest_concurrency)
        return tuple(sorted(levels))


PROFILES: dict[str, Profile] = {
    p.name: p
    for p in [
        Profile("full", 10000, HANDOUT_CONCURRENCY, (1, 2, 3, 4, 5), balancer_levels=(10, 100),
                vertical_concurrency=(10, 50, 100, 200, 500),
                vertical=(("f1-micro", "flask", 1), ("e2-small", "flask", 1), ("e2-medium", "flask", 1),
                          ("e2-standard-2", "flask", 1), ("e2-small", "gunicorn", 2),
                          ("e2-medium", "gunicorn", 3), ("e2-standard-2", "gunicorn", 5))),
        Profile("quick", 500, (1, 2, 5, 10, 20, 50, 100, 200), (1, 2, 3, 5), retries=1,
                refine=PART1_SLA, refine_nodes=(1,), requests_per_user=5,
                scale_concurrency=(10, 50, 200, 500, 1000), largest_concurrency=(2000,), balancer_levels=(1, 20),
                vertical_concurrency=(10, 100),
                vertical=(("f1-micro", "flask", 1), ("e2-medium", "flask", 1), ("e2-standard-2", "flask", 1),
                          ("e2-standard-2", "gunicorn", 5))),
        Profile("tiny", 100, (10, 50), (1, 2), retries=1, vertical_concurrency=(10,), balancer_levels=(10,),
                vertical=(("f1-micro", "flask", 1), ("e2-medium", "gunicorn", 3))),
    ]
}


def get(name: str) -> Profile:
    """The profile called ``name``; a clear error lists the known ones."""
    try:
        return PROFILES[name]
    except KeyError:
        raise ConfigError(f"unknown profile {name!r}; known: {', '.join(PROFILES)}") from None


def skipped(profile: str | Profile, nodes: int) -> dict:
    """What ``profile`` leaves out of the handout's grid at ``nodes``: ``{"levels": [...], "nodes": [...]}``
    (the handout's concurrency levels not measured at that node count; its node counts 1-5 not measured)."""
    p = get(profile) if isinstance(profile, str) else profile
    have = set(p.levels_at(nodes)) if nodes in p.nodes else set()
    return {"levels": [c for c in HANDOUT_CONCURRENCY if c not in have],
            "nodes": [n for n in HANDOUT_NODES if n not in p.nodes]}


def skipped_text(profile: str | Profile, nodes: int) -> str:
    """One line for under a table: which of the handout's levels (and node counts) ``profile`` skipped."""
    p = get(profile) if isinstance(profile, str) else profile
    s = skipped(p, nodes)
    if not s["levels"] and not s["nodes"]:
        return f"Profile {p.name}: every handout level measured at {nodes} node(s)."
    parts = []
    if s["levels"]:
        parts.append(f"handout levels not measured at {nodes} node(s): {', '.join(map(str, s['levels']))}")
    if s["nodes"]:
        parts.append(f"handout node counts not measured: {', '.join(map(str, s['nodes']))}")
    extra = [c for c in p.levels_at(nodes) if c not in HANDOUT_CONCURRENCY]
    if extra:
        parts.append(f"levels added below or between the handout's: {', '.join(map(str, extra))}")
    return f"Profile {p.name}: " + "; ".join(parts) + " (not tested, not extrapolated)."


def profiles_table():
    """Every profile as a DataFrame row: its grid size, repeats, refinement and the number of ab requests the
    lab makes with it (before the refinement's probes: at most a few levels, up to 3 runs each)."""
    import pandas as pd

    rows = []
    for p in PROFILES.values():
        def n_at(c: int) -> int:
            return max(p.requests, p.requests_per_user * c)

        grid = [(n, c) for n in p.nodes for c in p.levels_at(n)]
        vertical = len(p.vertical) * len(p.vertical_concurrency)
        total = ((sum(n_at(c) for _, c in grid) + sum(n_at(c) for c in p.balancer_levels)) * p.repeats
                 + len(p.vertical) * sum(n_at(c) for c in p.vertical_concurrency))
        levels = ", ".join(map(str, p.concurrency))
        if p.scale_concurrency:
            levels = f"1 node: {levels}; more: {', '.join(map(str, p.scale_concurrency))}"
        if p.largest_concurrency:
            levels += f"; {max(p.nodes)} nodes also: {', '.join(map(str, p.largest_concurrency))}"
        rows.append({"profile": p.name,
                     "requests per point": (f"max({p.requests}, {p.requests_per_user} × users)"
                                            if p.requests_per_user else p.requests),
                     "concurrency levels": levels,
                     "nodes": ", ".join(map(str, p.nodes)), "repeats": p.repeats,
                     "refines": (f"{p.refine} at {', '.join(map(str, p.refine_nodes))} node(s)" if p.refine
                                 else ""),
                     "points (01+02)": len(grid),
                     "1 node behind nginx": ", ".join(map(str, p.balancer_levels)),
                     "points (03)": vertical, "requests in total": total})
    return pd.DataFrame(rows)
