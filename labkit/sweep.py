"""Sweeps: a grid of node counts x concurrency levels, one CSV row per point.

Each point's row is appended (and fsync'ed) to the results CSV the moment it
is measured, so an interrupted sweep - Ctrl-C, a notebook interrupt, a crash -
keeps every point it finished, and ``resume=True`` measures only the points
the CSV does not hold yet. A lock file beside the CSV keeps two sweeps from
writing into the same file at once.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import fcntl
import logging
import os
import signal
import threading
import uuid
from pathlib import Path

from tqdm.auto import tqdm

from . import profiles, provenance
from .ab import AbCommand
from .backends.base import Backend, ClusterSpec
from .errors import ConfigError, LockError
from .measure import measure
from .record import Measurement
from .results import append_row

log = logging.getLogger("labkit")

#: The fields that name a point: a results row with the same values measured it already.
POINT_KEY = ("machine_type", "server", "workers", "nodes", "concurrency", "requests")


def point_key(m: Measurement) -> tuple:
    """``m``'s values of :data:`POINT_KEY`."""
    return tuple(getattr(m, k) for k in POINT_KEY)


@dataclasses.dataclass(frozen=True)
class Grid:
    """What to measure: node counts x concurrency levels, ``requests`` each, on ``spec``'s machines."""

    spec: ClusterSpec
    nodes: tuple[int, ...]
    concurrency: tuple[int, ...]
    requests: int
    timeout_s: int = 10
    retries: int = 2

    def __post_init__(self):
        if not self.nodes or not self.concurrency:
            raise ConfigError("a sweep needs at least one node count and one concurrency level")
        bad = [c for c in self.concurrency if c < 1 or c > self.requests]
        if bad:
            raise ConfigError(f"concurrency levels {bad} must be between 1 and --requests ({self.requests})")
        if any(n < 1 for n in self.nodes):
            raise ConfigError("node counts must be at least 1")

    def points(self) -> list[Measurement]:
        """The grid in measuring order (node counts outer: one scale step each; levels inner),
        each point a record holding its configuration, to be completed by measuring it."""
        base = Measurement(machine_type=self.spec.machine_type, server=self.spec.server,
                           workers=self.spec.workers, requests=self.requests)
        return [base.replace(nodes=n, concurrency=c)
                for n in sorted(set(self.nodes)) for c in sorted(set(self.concurrency))]


def profiles_grid(profile: str | profiles.Profile, spec: ClusterSpec, nodes=None, concurrency=None,
                  requests=None) -> Grid:
    """The grid of ``profile`` (a name or a :class:`~labkit.profiles.Profile`) on ``spec``'s machines.

    ``nodes``, ``concurrency`` and ``requests`` override the profile's (``None`` keeps
    it): the CLI's flags and the notebooks' parameters. ``spec.nodes`` is ignored (the
    grid scales it). The profile's ab timeout and retries always apply.
    """
    p = profiles.get(profile) if isinstance(profile, str) else profile
    return Grid(spec=spec, nodes=tuple(nodes or p.nodes), concurrency=tuple(concurrency or p.concurrency),
                requests=int(requests or p.requests), timeout_s=p.timeout_s, retries=p.retries)


@contextlib.contextmanager
def interrupt_noted():
    """Yield a list that records every SIGINT while the sweep runs; the interrupt is still raised.

    Python ignores an exception raised inside its fork handlers, so a Ctrl-C that
    lands while ``subprocess`` forks ab can vanish. The sweep checks this record
    after each point and stops there, so an interrupt is never lost. Only the
    main thread may set signal handlers; elsewhere nothing is installed.
    """
    seen: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield seen
        return

    def handler(signum, frame):
        seen.append(signum)
        signal.default_int_handler(signum, frame)

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield seen
    finally:
        signal.signal(signal.SIGINT, previous)


@contextlib.contextmanager
def locked(out: Path, refusal: str | None = None):
    """Hold an exclusive lock on ``out`` for the duration; refuse at once if another sweep has it."""
    out.parent.mkdir(parents=True, exist_ok=True)
    lock_path = out.with_name(f".{out.name}.lock")
    fh = open(lock_path, "a+")
    try:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "another process"
            raise LockError((refusal or f"{out} is being written by another sweep ({{holder}}); "
                             "wait for it or use another --out").replace("{holder}", holder)) from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()}")
        fh.flush()
        yield
        lock_path.unlink(missing_ok=True)
    finally:
        fh.close()


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


def _measured(out: Path) -> set[tuple]:
    """Keys of the points ``out`` already holds (read strictly: a corrupt CSV is an error)."""
    if not out.exists() or out.stat().st_size == 0:
        return set()
    from .results import check_line_end, load_results

    keys = load_results(out)[list(POINT_KEY)]
    check_line_end(out)  # refuse before measuring, not when appending the first new row
    # typed by the loader; as Python objects (None for empty) they compare with point_key()
    return set(keys.astype(object).where(keys.notna(), None).itertuples(index=False, name=None))


def run_sweep(backend: Backend, grid: Grid, out: str | os.PathLike, *, resume: bool = False,
              run_id: str | None = None, progress: bool = True) -> Path:
    """Measure every point of ``grid`` on ``backend`` (already up), appending rows to ``out``.

    Without ``resume`` an existing, non-empty ``out`` is refused (nothing is
    overwritten); with it, points already in ``out`` are skipped. A new ``out`` gets
    its provenance (machine, tools, command, grid) beside it, see :mod:`labkit.provenance`.
    """
    out = Path(out)
    folder = folder_locked(backend.settings) if backend.name in STATEFUL_BACKENDS else contextlib.nullcontext()
    with folder, locked(out):
        fresh = not out.exists() or out.stat().st_size == 0
        if not fresh and not resume:
            raise ConfigError(f"{out} already holds results; pass --resume to complete it, or choose another --out")
        done = _measured(out) if resume else set()
        todo = [p for p in grid.points() if point_key(p) not in done]
        if done:
            log.info("resuming %s: %d points already measured, %d to go", out, len(done), len(todo))
        run_id = run_id or dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:4]
        if fresh:  # where the numbers come from, beside them (a resumed file already has it)
            provenance.write_beside(out, backend.settings, run_id=run_id, backend=backend.name,
                                    grid=dataclasses.asdict(grid))
        bar = tqdm(total=len(todo), desc="sweep", unit="point", disable=not progress)
        ab_bar = tqdm(total=grid.requests, desc="ab", unit="req", leave=False, disable=not progress)

        def ab_progress(done: int) -> None:
            ab_bar.update(done - ab_bar.n)

        with interrupt_noted() as interrupts:
            try:
                for point in todo:
                    # Every row records its configuration, so the machines must really be in it:
                    # a lab left up with another machine type or server is re-deployed first.
                    backend.ensure(dataclasses.replace(grid.spec, nodes=point.nodes))
                    bar.set_postfix(nodes=point.nodes, c=point.concurrency)
                    started = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
                    command = AbCommand(backend.url, point.concurrency, point.requests, timeout_s=grid.timeout_s)
                    ab_bar.reset(total=point.requests)
                    measured = measure(backend, command, retries=grid.retries,
                                       progress=ab_progress if progress else None)
                    row = measured.replace(run_id=run_id, started_at=started, backend=backend.name,
                                           machine_type=point.machine_type, server=point.server,
                                           workers=point.workers, nodes=point.nodes,
                                           cpu_limited=backend.cpu_limited)
                    append_row(out, row)
                    if row.aborted:
                        log.warning("nodes=%d c=%d aborted after %d attempts: %s", row.nodes,
                                    row.concurrency, row.attempts, row.abort_reason)
                    bar.update(1)
                    if interrupts:  # a Ctrl-C swallowed during a fork: stop now that the row is safe
                        raise KeyboardInterrupt
            finally:
                ab_bar.close()
                bar.close()
    return out
