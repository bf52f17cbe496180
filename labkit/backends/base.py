"""What every backend (local, ssh, gcp) provides, and the parts they share.

A backend turns a :class:`ClusterSpec` into running machines: ``nodes`` servers
running the Fibonacci service, an nginx load balancer in front of them when
``nodes > 1`` or ``balanced`` (the handout's single-server part talks to the
server directly; one node behind nginx measures what the balancer itself costs),
and a tester that runs ``ab``. Sweeps, notebooks and the CLI only talk to this
interface, so the same lab runs on a laptop, on lab-room hosts or on GCE.

Defined once here, not per backend:

* **settings** -- every backend keeps the :class:`~labkit.settings.Settings` it was
  given (``Settings.from_env()`` when none was);
* **the state and attaching** -- a backend's whole record is one typed dataclass
  (``self._state``, the backend's :attr:`Backend.record_class`, a
  :class:`~labkit.backends.records.Record` checked field by field when loaded) saved to
  ``.labkit/<name>.json`` after every change, under the folder's lock; making a
  backend in a folder where its lab is running *attaches* to it (``labkit status``
  or ``down`` from another shell), :meth:`Backend.to_state` / :meth:`Backend.from_state`
  round-trip it;
* **re-deploying** -- :meth:`Backend.up` is a template method: validate, stop the
  servers when anything but ``nodes`` changed, record the spec, deploy;
  :meth:`Backend.ensure` re-deploys only when the running spec differs and
  :meth:`Backend.scale` changes ``nodes`` only;
* **the shape of down()** -- ``{"backend", "stopped", "left"}`` everywhere;
* **measurement hygiene** (design §6, §7) -- ``settle``, ``warm_up`` (which the ``up``
  template does after every reconfiguration) and ``cpu_seconds_by_role``, from the
  :class:`~labkit.backends.hygiene.MeasurementHygiene` mixin, built on small hooks a
  backend provides; a backend that drives another one (gcp drives ssh) hands all of it
  to that one (``inner()``).
"""

from __future__ import annotations

import abc
import contextlib
import copy
import dataclasses
import logging
import numbers
import threading
import time
from typing import TYPE_CHECKING, Literal

from labkit import state
from labkit.errors import BackendError, ConfigError
from labkit.settings import Settings
from labkit.backends.hygiene import MeasurementHygiene
from labkit.backends.records import Record

if TYPE_CHECKING:
    from labkit.ab import AbCommand

log = logging.getLogger("labkit")

Server = Literal["flask", "gunicorn"]


@dataclasses.dataclass(frozen=True)
class ClusterSpec:
    """The shape of a cluster. ``workers`` is forced to 1 for the flask dev server.

    ``balanced``: put the nginx balancer in front of a single node too (with more nodes it
    always is). One node behind nginx, beside the same node reached directly, is the point
    that separates what the balancer costs from what the servers deliver (issue 20).
    """

    nodes: int = 1
    machine_type: str = "f1-micro"
    server: Server = "flask"
    workers: int = 1
    port: int = 8080
    fib_max: int = 10000
    balanced: bool = False

    @property
    def behind_balancer(self) -> bool:
        """Whether the tester reaches the servers through nginx (more than one node, or ``balanced``)."""
        return self.nodes > 1 or self.balanced

    def __post_init__(self):
        if self.server not in ("flask", "gunicorn"):
            raise ConfigError(f"server must be 'flask' or 'gunicorn', not {self.server!r}")
        for name in ("nodes", "workers", "port", "fib_max"):  # ints, before anything starts
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral):
                raise ConfigError(f"{name} must be an integer, not {value!r}")
            object.__setattr__(self, name, int(value))  # numpy ints from a notebook become ints
        if not 1 <= self.nodes <= 16:
            raise ConfigError(f"nodes must be between 1 and 16, not {self.nodes}")
        if self.workers < 1:
            raise ConfigError(f"workers must be at least 1, not {self.workers}")
        if not 1 <= self.port <= 65535:
            raise ConfigError(f"port must be between 1 and 65535, not {self.port}")
        if self.fib_max < 1:
            raise ConfigError(f"fib_max must be at least 1, not {self.fib_max}")
        if not isinstance(self.balanced, bool):
            raise ConfigError(f"balanced must be true or false, not {self.balanced!r}")
        if self.server == "flask" and self.workers != 1:
            object.__setattr__(self, "workers", 1)


@dataclasses.dataclass(frozen=True)
class AbRun:
    """What one ab execution left behind, read back from the tester."""

    argv: tuple[str, ...]
    exit_code: int
    stdout: str
    stderr: str
    percentiles_csv: str | None  # the -e file, None when ab did not write it
    gnuplot_tsv: str | None  # the -g file, None when ab did not write it


AB_NOFILE = 10000  # the handout's `ulimit -n 10000` for ab


def state_field(key: str, doc: str) -> property:
    """A read-only attribute showing field ``key`` of a backend's saved record (``self._state``)."""
    return property(lambda self: getattr(self._state, key), doc=doc)


class Backend(MeasurementHygiene, abc.ABC):
    """A place to run the lab. Implementations: local, ssh, gcp.

    ``Backend(settings, **options)`` attaches to the lab recorded in the state
    folder when there is one (``options`` may then only adjust it, see
    :meth:`_attached`), else prepares a new one from ``options``
    (:meth:`_new_state`); nothing is started before :meth:`up`. ``persist=False``
    keeps the record in memory only (the gcp backend embeds an ssh backend so).
    """

    name: str
    record_class: type[Record]  # the backend's typed record (its state file's schema)
    warms_up = False  # whether up() runs warm_up() (backends with real machines: local, ssh)

    def __init__(self, settings: Settings | None = None, *, persist: bool = True,
                 saved: dict | Record | None = None, **options):
        self.settings = settings if settings is not None else Settings.from_env()
        self.persist = persist
        self.on_change = None  # or a callable run after every save (the gcp backend saves its own state)
        self._save_lock = threading.RLock()  # re-entrant: a signal handler may save while saving
        if saved is None and persist:
            saved = self.load_record(self.settings)
            if saved is not None and not self._resumes(saved, options):
                saved = None
        if saved is not None:
            self._state = self.record_class.from_json(saved)  # a record given is shared, not copied
            self._runtime()
            self._attached(**options)
        else:
            self._state = self._new_state(**options)
            self._runtime()

    @classmethod
    def load_record(cls, settings: Settings) -> Record | None:
        """The record saved in ``settings``' state folder, checked (types, then where it points), or None.

        A state file with wrong types, missing keys or paths outside its folder is one
        :class:`~labkit.errors.StateError` naming the file.
        """
        data = state.load(settings, cls.name)
        if data is None:
            return None
        where = state.folder(settings, create=False)
        record = cls.record_class.from_json(data, where / f"{cls.name}.json")
        record.check_folder(where)
        return record

    # -- hooks for the subclasses ----------------------------------------------------
    @abc.abstractmethod
    def _new_state(self, **options) -> Record:
        """The record of a new lab made from ``options`` (validated; nothing started)."""

    def _runtime(self) -> None:
        """Set up what is not saved (connections, locks, caches); called after ``_state`` is set."""

    def _resumes(self, saved: Record, options: dict) -> bool:
        """Whether the saved lab is the one to attach to (raise ConfigError if it is in the way)."""
        return True

    def _attached(self, **options) -> None:
        """Apply ``options`` to a lab just attached to (by default they must not be given)."""
        if options:
            raise ConfigError(f"a {self.name} lab is up; run `labkit down --backend {self.name}` before "
                              f"changing {', '.join(sorted(options))}")

    def _check(self, spec: ClusterSpec) -> None:
        """Raise ConfigError when this backend cannot run ``spec``."""

    @abc.abstractmethod
    def _stop_servers(self) -> None:
        """Stop every server (the server kind, port or workers changed)."""

    @abc.abstractmethod
    def _deploy(self, spec: ClusterSpec) -> None:
        """Make the machines match ``spec`` (already recorded): start, stop, configure the balancer."""

    @abc.abstractmethod
    def _down(self) -> tuple[list[str], list[str]]:
        """Stop everything; return (what was stopped, what is left on purpose). Raise if it could not."""

    def _keep_state(self) -> bool:
        """Whether there is anything worth recording (else the state file is removed)."""
        return True

    # -- the state ---------------------------------------------------------------------
    @property
    def record(self) -> Record:
        """This lab's typed record itself (shared, not a copy): what a backend driving this one
        embeds in its own record (gcp embeds its ssh backend's)."""
        return self._state

    def to_state(self) -> dict:
        """Everything needed to attach to this lab later (a JSON-ready copy)."""
        with self._save_lock:
            return self._state.to_json()

    @classmethod
    def from_state(cls, saved: dict, settings: Settings | None = None, **kw) -> Backend:
        """A backend attached to the lab ``saved`` (from :meth:`to_state`) describes, kept in memory."""
        record = cls.record_class.from_json(copy.deepcopy(saved) if isinstance(saved, dict) else saved)
        return cls(settings, persist=kw.pop("persist", False), saved=record, **kw)

    def _locked(self, command: str):
        """The lab folder's lock while ``command`` changes this lab (re-entrant within this process);
        nothing for a backend kept in memory."""
        if not self.persist:
            return contextlib.nullcontext()
        return state.lab_locked(self.settings, command)

    def _save(self) -> None:
        """Record the current state (called as soon as anything is started or stopped), under the lock."""
        with self._save_lock:
            if self.persist:
                with self._locked(f"{self.name} state write"):
                    if self._keep_state():
                        state.save(self.settings, self.name, self.to_state())
                    else:
                        state.clear(self.settings, self.name)
            if self.on_change is not None:
                self.on_change()

    # -- the Backend API -----------------------------------------------------------------
    @property
    def spec(self) -> ClusterSpec | None:
        """The cluster shape now running, or None when nothing is up."""
        return self._state.spec

    def _require_spec(self) -> ClusterSpec:
        spec = self.spec
        if spec is None:
            raise BackendError(f"the {self.name} lab is not up: run `labkit up --backend {self.name}` first")
        return spec

    def up(self, spec: ClusterSpec) -> None:
        """Start (or reconfigure to) ``spec``. Idempotent.

        Anything but ``nodes`` and ``balanced`` changed (server kind, workers, port,
        machine type) restarts the servers; a change of ``nodes`` only starts or stops
        the difference and re-points the balancer (``balanced``: starts or stops it).
        """
        with self._locked(f"{self.name} up"):
            self._up(spec)

    def _up(self, spec: ClusterSpec) -> None:
        self._check(spec)
        old = self.spec
        if old is not None and dataclasses.replace(old, nodes=spec.nodes, balanced=spec.balanced) != spec:
            log.info("%s: server configuration changed; restarting the servers", self.name)
            self._stop_servers()
        self._state.spec = spec
        self._warmed = None
        self._save()
        self._deploy(spec)
        # warm up once per reconfiguration: a backend deploying through another one (gcp
        # through ssh) finds that one already warmed by its own up()
        target = self.inner() or self
        if target.spec is not None and getattr(target, "_warmed", None) != target.spec:
            target.warm_up()

    def ensure(self, spec: ClusterSpec) -> None:
        """Re-deploy only when the running lab is not ``spec`` (what a sweep calls before a point)."""
        if self.spec != spec:
            self.up(spec)

    def scale(self, nodes: int) -> None:
        """Change the number of servers behind the balancer, keeping the rest."""
        self.up(dataclasses.replace(self._require_spec(), nodes=nodes))

    @abc.abstractmethod
    def status(self) -> dict:
        """Machines, addresses, pids/instances, and each server's ``/status``."""

    @property
    @abc.abstractmethod
    def url(self) -> str:
        """Base URL the tester benchmarks: the balancer, or the single server."""

    @property
    @abc.abstractmethod
    def cpu_limited(self) -> bool:
        """False when the machine types are not really enforced (recorded in results)."""

    @abc.abstractmethod
    def run_ab(self, command: AbCommand, timeout: float, progress=None) -> AbRun:
        """Run ``command`` on the tester with its open-file limit raised; return the run.

        The backend writes ``command.payload`` to a file on the tester, builds the
        argv with ``command.argv(payload=..., percentiles=..., gnuplot=...)`` and
        reads the ``-e``/``-g`` files back. ``progress``, when given, is called with
        the number of requests ab reports done ("Completed N requests") as it goes;
        backends that cannot stream ab's output may ignore it.
        """

    def max_testers(self) -> int:
        """How many ab processes this backend can start together for one point (one per tester
        core locally, one per tester machine remotely); 1 unless the backend says more."""
        return 1

    def ensure_testers(self, k: int) -> None:
        """Be able to measure a point with ``k`` ab processes, or raise ConfigError saying why not
        (the gcp backend creates the missing tester machines)."""
        if k > self.max_testers():
            raise ConfigError(f"the {self.name} lab has {self.max_testers()} tester(s) for ab; "
                              f"{k} ab processes were asked for (--testers)")

    def run_ab_together(self, commands: list[AbCommand], timeout: float, progress=None) -> list[tuple[AbRun, float]]:
        """Start ``commands`` together, one ab process per tester (core or machine), and return each
        one's run with the epoch time it ended (as observed here), in ``commands``' order.

        ``progress`` receives the requests done by all of them together. One command is
        :meth:`run_ab`; more need a backend that has that many testers (:meth:`max_testers`).
        """
        if len(commands) > self.max_testers():
            raise ConfigError(f"the {self.name} lab has {self.max_testers()} tester(s); "
                              f"{len(commands)} ab processes were asked for")
        if len(commands) == 1:
            run = self.run_ab(commands[0], timeout, progress)
            return [(run, time.time())]
        return self._run_ab_together(commands, timeout, progress)

    def _run_ab_together(self, commands: list[AbCommand], timeout: float, progress) -> list[tuple[AbRun, float]]:
        """The k > 1 case of :meth:`run_ab_together` (a backend with several testers provides it)."""
        raise ConfigError(f"the {self.name} backend runs one ab process per point")

    @abc.abstractmethod
    def balancer_config(self) -> str:
        """The nginx.conf text the balancer runs, or one line saying why there is none here."""

    def down(self) -> dict:
        """Stop and delete everything this backend started; say what. Safe to call twice.

        Returns ``{"backend": name, "stopped": [...], "left": [...]}``: ``left`` is what
        stays on purpose (e.g. the installed service on hosts you own). What could
        not be stopped raises, and stays recorded so another ``down`` retries it.
        """
        with self._locked(f"{self.name} down"):
            return self._down_locked()

    def _down_locked(self) -> dict:
        stopped, left = self._down()
        with self._save_lock:
            self._state.spec = None
            if self.persist:
                state.clear(self.settings, self.name)
            if self.on_change is not None:
                self.on_change()
        log.info("%s lab down: stopped %s", self.name, ", ".join(stopped) or "nothing")
        return {"backend": self.name, "stopped": stopped, "left": left}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.down()
        return False
