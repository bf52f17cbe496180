"""Sweeps: a grid of node counts x concurrency levels, one CSV row per point.

Each point's row is appended (and fsync'ed) to the results CSV the moment it
is measured, so an interrupted sweep - Ctrl-C, a notebook interrupt, a crash -
keeps every point it finished, and ``resume=True`` measures only the points
the CSV does not hold yet (a point's repeats are separate points). A lock file
beside the CSV keeps two sweeps from writing into the same file at once.

Design §6's retry policy: ab's early exits are retried, except at a level above one
that aborted in every attempt (same configuration, same node count): it will abort
again, so it is tried once (``attempts == 1``, logged) -- still measured, never
dropped. Design §8's refinement (``Grid.refine``) bisects the SLA boundary after the
grid, see :mod:`labkit.refine`. A library error while reconfiguring the lab for a point
stops the sweep with one line of advice (every measured row kept), never a traceback.

On the local backend every row also says how fast the host was (:mod:`labkit.calibration`,
measured once per process before the first point): ``host_cpu_ms_per_request``, the CPU
steal during the point's ab run (``steal_pct``), whether shared-core bursting was emulated
(``burst``) and the quota scale of ``--calibrate`` (``cpu_scale``); the provenance's
``calibration`` entry holds the same with the steal over the whole sweep.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import logging
import numbers
import os
import signal
import sys
import threading
import uuid
from pathlib import Path

from tqdm.auto import tqdm

from labkit import calibration, profiles, provenance, refine, state
from labkit.ab import MAX_CONCURRENCY, AbCommand
from labkit.backends.base import Backend, ClusterSpec
from labkit.errors import AbParseError, BackendError, ConfigError, LabkitError
from labkit.measure import measure
from labkit.record import Measurement
from labkit.results import append_row

log = logging.getLogger("labkit")

#: The fields that name a point: a results row with the same values measured it already.
#: Each repeat is its own point (a row without a ``repeat``, from before repeats, is repeat 0).
POINT_KEY = ("machine_type", "server", "workers", "nodes", "concurrency", "requests", "repeat")
#: The fields that name a configuration at a node count (the retry policy's scope).
_LADDER = ("machine_type", "server", "workers", "nodes")


def point_key(m: Measurement) -> tuple:
    """``m``'s values of :data:`POINT_KEY` (``repeat`` None counts as 0)."""
    return tuple((getattr(m, k) or 0) if k == "repeat" else getattr(m, k) for k in POINT_KEY)


def check_repeats(value) -> int:
    """``value`` as a repeat count (a positive integer; digits in a string are accepted), or one clear error."""
    given = value
    if isinstance(value, str) and value.strip().lstrip("+").isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"--repeats must be a positive integer (times to measure each point), got {given!r}")
    return value


@dataclasses.dataclass(frozen=True)
class Grid:
    """What to measure: node counts x concurrency levels, ``requests`` each, on ``spec``'s machines."""

    spec: ClusterSpec
    nodes: tuple[int, ...]
    concurrency: tuple[int, ...]
    requests: int
    timeout_s: int = 10
    retries: int = 2
    repeats: int = 1
    refine: str | None = None  # an SLA: after the grid, bisect its boundary (design §8)
    refine_nodes: tuple[int, ...] | None = None  # node counts to refine at; None: every one of the grid
    testers: int = 1  # ab processes per point, merged exactly (labkit.ab_merge); each needs a user
    requests_per_user: int = 0  # a level c gets max(requests, requests_per_user * c) requests (0: requests)

    def __post_init__(self):
        object.__setattr__(self, "repeats", check_repeats(self.repeats))
        if self.refine:
            from labkit.analysis.sla import Sla

            object.__setattr__(self, "refine", str(Sla.parse(self.refine)))  # a bad SLA fails before measuring
        else:
            object.__setattr__(self, "refine", None)
        if self.refine_nodes is not None:
            object.__setattr__(self, "refine_nodes", tuple(int(n) for n in self.refine_nodes))
        if not self.nodes or not self.concurrency:
            raise ConfigError("a sweep needs at least one node count and one concurrency level")
        # everything a point would refuse is refused now, before anything starts
        for name, least in (("requests", 1), ("timeout_s", 1), ("retries", 0), ("testers", 1),
                            ("requests_per_user", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < least:
                raise ConfigError(f"{name} must be an integer >= {least}, not {value!r}")
            object.__setattr__(self, name, int(value))
        for n in self.nodes:
            dataclasses.replace(self.spec, nodes=n)  # ClusterSpec's own bounds (nodes 1..16)
        over = [c for c in self.concurrency if c > MAX_CONCURRENCY]
        if over:
            raise ConfigError(f"concurrency levels {over} exceed ab's limit of {MAX_CONCURRENCY}")
        bad = [c for c in self.concurrency if c < 1 or c > self.requests_at(c)]
        if bad:
            raise ConfigError(f"concurrency levels {bad} must be between 1 and --requests ({self.requests})")
        few = [c for c in self.concurrency if c < self.testers]
        if few:
            raise ConfigError(f"concurrency levels {few} are below --testers {self.testers}: "
                              "each ab process needs at least one user")
        if any(n < 1 for n in self.nodes):
            raise ConfigError("node counts must be at least 1")

    def requests_at(self, concurrency: int) -> int:
        """ab's ``-n`` at ``concurrency``: ``requests``, or ``requests_per_user`` per user when that is more
        (a level of 1,000 users measured with 2,000 requests is mostly ab's ramp-up and ramp-down)."""
        return max(self.requests, self.requests_per_user * int(concurrency))

    def base(self) -> Measurement:
        """A record holding the grid's configuration (no node count or level yet)."""
        return Measurement(machine_type=self.spec.machine_type, server=self.spec.server,
                           workers=self.spec.workers, requests=self.requests)

    def points(self) -> list[Measurement]:
        """The grid in measuring order (node counts outer: one scale step each; levels, then
        repeats, inner), each point a record holding its configuration, to be completed by
        measuring it."""
        base = self.base()
        return [base.replace(nodes=n, concurrency=c, repeat=r, requests=self.requests_at(c))
                for n in sorted(set(self.nodes)) for c in sorted(set(self.concurrency))
                for r in range(self.repeats)]

    def refined_nodes(self) -> tuple[int, ...]:
        """The node counts whose SLA boundary is refined after the grid (none without ``refine``)."""
        if not self.refine:
            return ()
        grid_nodes = sorted(set(self.nodes))
        return tuple(n for n in grid_nodes if self.refine_nodes is None or n in self.refine_nodes)


def profiles_grid(profile: str | profiles.Profile, spec: ClusterSpec, nodes=None, concurrency=None,
                  requests=None, repeats=None, refine=None, testers=1) -> Grid:
    """The grid of ``profile`` (a name or a :class:`~labkit.profiles.Profile`) on ``spec``'s machines.

    ``nodes``, ``concurrency``, ``requests`` and ``repeats`` override the profile's
    (``None`` keeps it): the CLI's flags and the notebooks' parameters. ``testers``: ab
    processes per point (``--testers``). ``spec.nodes`` is
    ignored (the grid scales it). The profile's ab timeout and retries always apply.

    ``refine``: an SLA whose boundary to refine at every node count of the grid; ``None``
    keeps the profile's (the quick profile refines part 1 at one node) as long as the
    profile's own levels are measured; ``""`` or ``False`` refines nothing.
    """
    p = profiles.get(profile) if isinstance(profile, str) else profile
    if refine is None:
        refine, refine_nodes = (p.refine, p.refine_nodes) if concurrency is None else (None, None)
    else:
        refine, refine_nodes = (refine or None), None
    return Grid(spec=spec, nodes=tuple(p.nodes if nodes is None else nodes),
                concurrency=tuple(p.concurrency if concurrency is None else concurrency),
                requests=p.requests if requests is None else requests, timeout_s=p.timeout_s, retries=p.retries,
                repeats=p.repeats if repeats is None else repeats, refine=refine, refine_nodes=refine_nodes,
                testers=testers, requests_per_user=p.requests_per_user if requests is None else 0)


def scale_grids(profile: str | profiles.Profile, spec: ClusterSpec, nodes=None, concurrency=None,
                requests=None, repeats=None, refine=None, testers=1) -> list[Grid]:
    """Notebook 02's grids: one node at the profile's part-1 levels (notebook 01's, resumed), the other
    node counts at its ``scale_concurrency``, and its ``largest_concurrency`` (part 2's 2,000 users) at
    the largest node count only. ``concurrency`` given: that one grid over every node count.
    ``refine`` as for :func:`profiles_grid` (``None``: the profile's, at one node: a resumed run finds
    notebook 01's probes already measured); ``testers`` for every grid."""
    p = profiles.get(profile) if isinstance(profile, str) else profile
    counts = sorted(set(p.nodes if nodes is None else nodes))
    if concurrency is not None:
        return [profiles_grid(p, spec, counts, concurrency, requests, repeats, refine, testers)]
    grids = []
    if 1 in counts:
        grids.append(profiles_grid(p, spec, [1], None, requests, repeats, refine, testers))
    if more := [n for n in counts if n > 1]:
        grids.append(profiles_grid(p, spec, more, p.scale_concurrency or p.concurrency, requests, repeats,
                                   refine or "", testers))
    if p.largest_concurrency:
        grids.append(profiles_grid(p, spec, [counts[-1]], p.largest_concurrency, requests, repeats,
                                   refine or "", testers))
    return grids


def balancer_grid(profile: str | profiles.Profile, spec: ClusterSpec, concurrency=None, requests=None,
                  repeats=None) -> Grid:
    """Notebook 02's balancer-cost grid: one node **behind nginx** (``spec`` made ``balanced``) at the
    profile's ``balancer_levels`` (or ``concurrency``), to set beside the same node reached directly.
    Its rows record the balancer's machine type and CPU; they belong in a CSV of their own (the
    per-point analysis refuses to pool them with the direct single-server rows)."""
    p = profiles.get(profile) if isinstance(profile, str) else profile
    levels = tuple(p.balancer_levels if concurrency is None else concurrency)
    if not levels:
        raise ConfigError(f"profile {p.name} measures no point of one node behind nginx; give concurrency levels")
    return profiles_grid(p, dataclasses.replace(spec, nodes=1, balanced=True), [1], levels, requests, repeats,
                         refine="")


@contextlib.contextmanager
def interrupt_noted():
    """Yield a list that records every interrupt while the sweep runs; the interrupt is still raised.

    Python ignores an exception raised inside its fork handlers, so a Ctrl-C that
    lands while ``subprocess`` forks ab can vanish. The sweep checks this record
    after each point and stops there, so an interrupt is never lost. Recorded: SIGINT,
    and SIGTERM where it already raises an interrupt (the CLI's
    :func:`labkit.processes.sigterm_as_interrupt`); elsewhere SIGTERM keeps its default.
    Only the main thread may set signal handlers; elsewhere nothing is installed.
    """
    seen: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield seen
        return

    def noting(raise_it):
        def handler(signum, frame):
            seen.append(signum)
            raise_it(signum, frame)
        return handler

    def unraisable(report):
        # Python reports the KeyboardInterrupt it drops in a fork handler as "Exception
        # ignored ... Traceback"; it is already in ``seen`` and the sweep stops on it.
        if isinstance(report.exc_value, KeyboardInterrupt) and seen:
            log.info("an interrupt arrived while a process was starting; the sweep stops after this point")
            return
        previous_hook(report)

    previous = {signal.SIGINT: signal.signal(signal.SIGINT, noting(signal.default_int_handler))}
    term = signal.getsignal(signal.SIGTERM)
    if callable(term):
        previous[signal.SIGTERM] = signal.signal(signal.SIGTERM, noting(term))
    previous_hook, sys.unraisablehook = sys.unraisablehook, unraisable
    try:
        yield seen
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        sys.unraisablehook = previous_hook


@contextlib.contextmanager
def locked(out: Path, refusal: str | None = None):
    """Hold an exclusive lock on ``out`` for the duration; refuse at once if another sweep has it."""
    out.parent.mkdir(parents=True, exist_ok=True)
    refusal = refusal or f"{out} is being written by another sweep ({{holder}}); wait for it or use another --out"
    with state.exclusive(out.with_name(f".{out.name}.lock"), lambda holder: refusal.replace("{holder}", holder),
                         f"pid {os.getpid()}", remove=True):
        yield


#: Backends whose running lab is recorded in the folder's ``.labkit/`` (one lab per folder).
STATEFUL_BACKENDS = ("local", "ssh", "gcp")
_folder = threading.local()


@contextlib.contextmanager
def folder_locked(settings):
    """One sweep at a time per lab folder (``.labkit/.sweep.lock``; the folder is ``settings``'s).

    Two sweeps in the same folder would drive the same lab -- its state is per folder --
    and scale it under each other, mixing their measurements even with different CSVs.
    The second one is refused at once. Re-entrant within a thread, so the CLI can hold it
    before it attaches to the lab and :func:`run_sweep` take it again inside.
    """
    if getattr(_folder, "depth", 0):
        _folder.depth += 1
        try:
            yield
        finally:
            _folder.depth -= 1
        return
    where = settings.state_folder()
    with locked(where / "sweep", f"another sweep is running in this folder ({{holder}}, lock in {where}); "
                                 "wait for it to finish"):
        _folder.depth = 1
        try:
            yield
        finally:
            _folder.depth = 0


def _load_existing(out: Path):
    """The rows ``out`` already holds as a DataFrame, or None (read strictly: a corrupt CSV is an error)."""
    if not out.exists() or out.stat().st_size == 0:
        return None
    from labkit.results import check_line_end, load_results

    df = load_results(out)
    check_line_end(out)  # refuse before measuring, not when appending the first new row
    return df


def _keys(df, cols) -> list[tuple]:
    """``df``'s values of ``cols`` as Python tuples (None for empty, ``repeat`` None as 0)."""
    if df is None or df.empty:
        return []
    keys = df[list(cols)].astype(object)
    keys = keys.where(df[list(cols)].notna(), None)
    if "repeat" in cols:
        keys["repeat"] = keys["repeat"].map(lambda r: 0 if r is None else int(r))
    return list(keys.itertuples(index=False, name=None))


def _measured(out: Path) -> set[tuple]:
    """Keys of the points ``out`` already holds (read strictly: a corrupt CSV is an error)."""
    return set(_keys(_load_existing(out), POINT_KEY))


class _Policy:
    """Design §6's retry policy: above a level that aborted in every attempt, try once.

    Keyed by configuration and node count (:data:`_LADDER`); remembers the lowest such
    level, from the rows already in the CSV (a resumed sweep) and from every row measured.
    """

    def __init__(self, retries: int, df=None):
        self.retries = retries
        self.lowest_abort: dict[tuple, int] = {}
        if df is not None and not df.empty:
            aborted = df[df["aborted"].astype(bool)]
            for key, c in zip(_keys(aborted, _LADDER), aborted["concurrency"]):
                self._note(key, int(c))

    def _note(self, ladder: tuple, c: int) -> None:
        self.lowest_abort[ladder] = min(c, self.lowest_abort.get(ladder, c))

    def retries_for(self, point: Measurement) -> int:
        below = self.lowest_abort.get(tuple(getattr(point, k) for k in _LADDER))
        if below is not None and point.concurrency > below and self.retries > 0:
            log.info("nodes=%d c=%d: tried once, not retried (c=%d aborted in every attempt at %d node(s))",
                     point.nodes, point.concurrency, below, point.nodes)
            return 0
        return self.retries

    def record(self, row: Measurement) -> None:
        if row.aborted:
            self._note(tuple(getattr(row, k) for k in _LADDER), row.concurrency)


def run_sweep(backend: Backend, grid: Grid, out: str | os.PathLike, *, resume: bool = False,
              run_id: str | None = None, progress: bool | None = None) -> Path:
    """Measure every point of ``grid`` on ``backend`` (already up), appending rows to ``out``.

    Without ``resume`` an existing, non-empty ``out`` is refused (nothing is
    overwritten); with it, points already in ``out`` are skipped. A new ``out`` gets
    its provenance (machine, tools, command, grid) beside it, see :mod:`labkit.provenance`.
    With ``grid.refine`` the SLA boundary is then bisected at the grid's refined node
    counts (:mod:`labkit.refine`); probes are ordinary rows of ``out``.

    A :class:`~labkit.errors.LabkitError` (or a network error) while reconfiguring the
    lab for a point raises a :class:`~labkit.errors.BackendError` with one line of advice;
    every row measured before it stays in ``out``.
    """
    out = Path(out)
    if progress is None:  # a headless run (``labkit lab``) saves no progress bar frozen at its first frame
        progress = os.environ.get("LABKIT_PROGRESS", "1") != "0"
    folder = folder_locked(backend.settings) if backend.name in STATEFUL_BACKENDS else contextlib.nullcontext()
    with folder, locked(out):
        fresh = not out.exists() or out.stat().st_size == 0
        if not fresh and not resume:
            raise ConfigError(f"{out} already holds results; pass --resume to complete it, or choose another --out")
        existing = _load_existing(out) if resume else None
        done = set(_keys(existing, POINT_KEY))
        policy = _Policy(grid.retries, existing)
        todo = [p for p in grid.points() if point_key(p) not in done]
        if done:
            log.info("resuming %s: %d points already measured, %d to go", out, len(done), len(todo))
        run_id = run_id or dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:4]
        host = _host_record(backend) if todo else None
        if fresh:  # where the numbers come from, beside them (a resumed file already has it)
            provenance.write_beside(out, backend.settings, run_id=run_id, backend=backend.name,
                                    grid=dataclasses.asdict(grid))
        if host:  # this host's speed, and the quota scale and bursting its rows were measured with
            provenance.add_calibration(out, run_id, host)
        steal_start = calibration.cpu_times()
        if grid.testers > 1:
            backend.ensure_testers(grid.testers)  # before anything is measured (gcp creates the machines)
        bar = tqdm(total=len(todo), desc="sweep", unit="point", disable=not progress)
        ab_bar = tqdm(total=grid.requests, desc="ab", unit="req", leave=False, disable=not progress)
        measured: list[Measurement] = []

        def ab_progress(n_done: int) -> None:
            ab_bar.update(n_done - ab_bar.n)

        def measure_point(point: Measurement) -> Measurement:
            """Reconfigure for ``point``, measure it, append its row; return the row."""
            # Every row records its configuration, so the machines must really be in it:
            # a lab left up with another machine type or server is re-deployed first.
            try:
                backend.ensure(dataclasses.replace(grid.spec, nodes=point.nodes))
            except (LabkitError, OSError) as exc:
                raise BackendError(_stopped_advice(out, point, exc, len(measured))) from None
            bar.set_postfix(nodes=point.nodes, c=point.concurrency, **({"r": point.repeat} if grid.repeats > 1
                                                                        or point.repeat else {}))
            started = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
            command = AbCommand(backend.url, point.concurrency, point.requests, timeout_s=grid.timeout_s)
            ab_bar.reset(total=point.requests)
            times = calibration.cpu_times()
            try:
                result = measure(backend, command, retries=policy.retries_for(point),
                                 progress=ab_progress if progress else None, testers=grid.testers)
            except AbParseError as exc:  # a report ab printed but nobody can read: the point's row says so
                result = Measurement(concurrency=point.concurrency, requests=point.requests, complete=0,
                                     aborted=True, attempts=1, abort_reason=f"unreadable ab report: {exc}")
            except (LabkitError, OSError) as exc:
                raise BackendError(_stopped_advice(out, point, exc, len(measured), measuring=True)) from None
            row = result.replace(run_id=run_id, started_at=started, backend=backend.name,
                                 machine_type=point.machine_type, server=point.server,
                                 workers=point.workers, nodes=point.nodes, repeat=point.repeat or 0,
                                 cpu_limited=backend.cpu_limited, steal_pct=calibration.steal_pct(
                                     times, calibration.cpu_times()), **_host_columns(backend, host))
            append_row(out, row)
            measured.append(row)
            policy.record(row)
            if row.aborted:
                log.warning("nodes=%d c=%d aborted after %d attempt(s): %s", row.nodes,
                            row.concurrency, row.attempts, row.abort_reason)
            bar.update(1)
            if interrupts:  # an interrupt swallowed during a fork: stop now that the row is safe
                raise KeyboardInterrupt
            return row

        with interrupt_noted() as interrupts:
            try:
                for point in todo:
                    measure_point(point)
                for n in grid.refined_nodes():
                    _refine_nodes(grid, n, out, measure_point, bar)
            finally:
                ab_bar.close()
                bar.close()
                if host and measured:
                    provenance.add_calibration(out, run_id, {
                        **host, **_host_columns(backend, host),
                        "steal_pct_over_sweep": calibration.steal_pct(steal_start, calibration.cpu_times())})
    return out


def _host_record(backend: Backend) -> dict | None:
    """The provenance's ``calibration`` entry for a sweep on ``backend``: this host's calibration (local
    only: elsewhere the servers are other machines), the quota scale and whether bursting is emulated."""
    if backend.name != "local":
        return None
    cal = calibration.host_calibration(backend.settings)
    return {**cal.to_json(), "cpu_scale": getattr(backend, "cpu_scale", 1.0), "burst": getattr(backend, "burst", None),
            "calibrate_reference": getattr(backend, "calibrated", None)}


def _host_columns(backend: Backend, host: dict | None) -> dict:
    """The row's ``host_cpu_ms_per_request``, ``burst`` and ``cpu_scale`` (empty off the local backend)."""
    if not host:
        return {}
    return {"host_cpu_ms_per_request": host["cpu_ms_per_request"], "burst": getattr(backend, "burst", None),
            "cpu_scale": getattr(backend, "cpu_scale", None)}


def _stopped_advice(out: Path, point: Measurement, exc: BaseException, rows: int, measuring: bool = False) -> str:
    """One line: what failed for which point, that the rows are kept, and what to do."""
    what = "measuring" if measuring else f"setting up {point.nodes} node(s) for"
    detail = " ".join(str(exc).split()) or type(exc).__name__
    return (f"sweep stopped while {what} nodes={point.nodes} c={point.concurrency}: {detail}; "
            f"the {rows} row(s) measured in this run are kept in {out}. Check the lab (`labkit status`), "
            f"then run the same sweep with --resume (in a notebook: run the cell again) to measure the rest")


def _refine_nodes(grid: Grid, nodes: int, out: Path, measure_point, bar) -> None:
    """Bisect ``grid.refine``'s boundary at ``nodes`` between the grid's own levels (design §8).

    The bracket comes from the grid's levels only (probes from an earlier, interrupted run
    are found again as the same bisection re-walks them: their rows are reused, only
    missing repeats are measured). Each probe needs :data:`labkit.refine.PROBE_REPEATS`
    meeting rows; the first that does not decides it.
    """
    import pandas as pd

    from labkit.results import load_results
    from labkit.analysis.sla import as_sla, point_table

    sla = grid.refine
    df = load_results(out)
    config = grid.base()
    mine = df[(df["machine_type"] == config.machine_type) & (df["server"] == config.server)
              & (df["workers"] == config.workers) & (df["nodes"] == nodes)]
    on_grid = mine[mine["concurrency"].isin(list(grid.concurrency))]
    if on_grid.empty:
        return
    table = point_table(on_grid, sla)
    found = refine.bracket(zip(table["concurrency"].astype(int), table["meets"].astype(bool)))
    if found is None:
        log.info("refine %s at %d node(s): nothing to refine (no level met it, or none failed)", sla, nodes)
        return
    lo, hi = found
    clauses = as_sla(sla)

    def meets(c: int) -> bool:
        had = mine[(mine["concurrency"] == c) & (mine["requests"] == grid.requests_at(c))]
        by_repeat = {0 if pd.isna(r) else int(r): row for r, row in zip(had["repeat"], had.to_dict("records"))}
        for r in range(refine.PROBE_REPEATS):
            row = by_repeat.get(r)
            if row is None:
                bar.total += 1
                bar.refresh()
                row = measure_point(config.replace(nodes=nodes, concurrency=c, repeat=r,
                                                   requests=grid.requests_at(c))).to_json()
            if not _row_meets(clauses, row):
                return False
        return True

    lo, hi, probes = refine.bisect(lo, hi, meets)
    log.info("refined %s at %d node(s): meets at %d, fails at %d (%d probe level(s))", sla, nodes, lo, hi,
             len(probes))


def _row_meets(sla, row: dict) -> bool:
    """One row (a dict of columns) meets ``sla``: clean (not aborted, no failed or non-2xx) and every clause."""
    if row.get("aborted") or row.get("failed") != 0 or row.get("non_2xx") != 0:
        return False
    return all(c.holds_value(row.get(c.column)) for c in sla.clauses)
