"""What every backend (local, ssh, gcp) provides.

A backend turns a :class:`ClusterSpec` into running machines: ``nodes`` servers
running the Fibonacci service, an nginx load balancer in front of them when
``nodes > 1`` (the handout's single-server part talks to the server directly),
and a tester that runs ``ab``. Sweeps, notebooks and the CLI only talk to this
interface, so the same lab runs on a laptop, on lab-room hosts or on GCE.
"""

from __future__ import annotations

import abc
import dataclasses
from typing import Literal

Server = Literal["flask", "gunicorn"]


@dataclasses.dataclass(frozen=True)
class ClusterSpec:
    """The shape of a cluster. ``workers`` is forced to 1 for the flask dev server."""

    nodes: int = 1
    machine_type: str = "f1-micro"
    server: Server = "flask"
    workers: int = 1
    port: int = 8080
    fib_max: int = 10000

    def __post_init__(self):
        from ..errors import ConfigError

        if self.server not in ("flask", "gunicorn"):
            raise ConfigError(f"server must be 'flask' or 'gunicorn', not {self.server!r}")
        if not 1 <= self.nodes <= 16:
            raise ConfigError(f"nodes must be between 1 and 16, not {self.nodes}")
        if self.workers < 1:
            raise ConfigError(f"workers must be at least 1, not {self.workers}")
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


class Backend(abc.ABC):
    """A place to run the lab. Implementations: local, ssh, gcp."""

    name: str

    @abc.abstractmethod
    def up(self, spec: ClusterSpec) -> None:
        """Start (or reconfigure to) ``spec``. Idempotent."""

    @abc.abstractmethod
    def scale(self, nodes: int) -> None:
        """Change the number of servers behind the balancer, keeping the rest."""

    @abc.abstractmethod
    def status(self) -> dict:
        """Machines, addresses, pids/instances, and each server's ``/status``."""

    @property
    def spec(self) -> ClusterSpec | None:
        """The cluster shape now running, or None when nothing is up."""
        return getattr(self, "_spec", None)

    @property
    @abc.abstractmethod
    def url(self) -> str:
        """Base URL the tester benchmarks: the balancer, or the single server."""

    @property
    @abc.abstractmethod
    def cpu_limited(self) -> bool:
        """False when the machine types are not really enforced (recorded in results)."""

    @abc.abstractmethod
    def run_ab(self, argv: list[str], payload: bytes, timeout: float, progress=None) -> AbRun:
        """Run ab on the tester with its open-file limit raised.

        ``argv`` uses the placeholders ``{payload}``, ``{percentiles}`` and
        ``{gnuplot}`` for the files; the backend substitutes tester-side paths
        and reads the files back. ``progress``, when given, is called with the
        number of requests ab reports done ("Completed N requests") as it
        goes; backends that cannot stream ab's output may ignore it.
        """

    @abc.abstractmethod
    def down(self) -> dict:
        """Stop and delete everything this backend started; say what. Safe to call twice."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.down()
        return False
