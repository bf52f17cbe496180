"""One settings object, handed down from the CLI or the notebook to the backends.

Every ``LABKIT_*`` knob that changes where labkit keeps state or how it reaches
machines lives here, and :meth:`Settings.from_env` is the one place the
environment is read (locust's ``Environment``, PerfKitBenchmarker's flags).
A function whose ``settings`` argument is None uses :func:`resolve` — the one
default, ``Settings.from_env()`` — so the CLI, ``labkit doctor``, notebook 00's
check table and provenance all see the same ``LABKIT_*`` values.
Modules take a ``Settings`` (or the one value they need from it) as an
argument, so a test or a notebook can run two configurations side by side
without touching ``os.environ``.

``LABKIT_NODE`` / ``LABKIT_FIB_MAX`` are not settings: they are the *service's*
own environment (``service/restserver.py``), set by whoever starts it.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path

# field name -> environment variable; the order is the order of ``to_env``.
ENV = {
    "state_dir": "LABKIT_STATE_DIR",
    "local_net": "LABKIT_LOCAL_NET",
    "cgroup_root": "LABKIT_CGROUP_ROOT",
    "cfs_period_us": "LABKIT_CFS_PERIOD_US",
    "cgroups": "LABKIT_CGROUPS",
    "ssh_hosts": "LABKIT_SSH_HOSTS",
    "gcp_project": "LABKIT_GCP_PROJECT",
    "gcp_zone": "LABKIT_GCP_ZONE",
    "gcp_api_endpoint": "LABKIT_GCP_API_ENDPOINT",
}


def _find_state_folder(cwd: Path) -> Path:
    """The first ``.labkit/`` from ``cwd`` upwards, searching no higher than the project root (a
    folder with ``.git`` or ``pyproject.toml``) or ``$HOME``; else ``cwd/.labkit``. A folder
    planted above them (``shared/.labkit``) is never picked up by a student's ``down``."""
    home = Path(os.path.expanduser("~")).resolve()
    for p in (cwd, *cwd.parents):
        if (p / ".labkit").is_dir():
            return p / ".labkit"
        if p.resolve() == home or (p / ".git").exists() or (p / "pyproject.toml").exists():
            break
    return cwd / ".labkit"


@dataclasses.dataclass(frozen=True)
class Settings:
    """Where state lives and how machines are reached (see the module docstring).

    ``state_dir`` None means: walk up from the current directory to the first
    ``.labkit/`` (so a shell in a sub-folder of the project finds it), else
    ``./.labkit``. ``cgroups`` is ``"auto"`` (use cgroup v2 CPU limits when the
    machine allows it) or ``"off"`` (never; ``cpu_limited`` is then False).
    """

    state_dir: Path | None = None
    local_net: str = "127.0.1"
    cgroup_root: Path = Path("/sys/fs/cgroup")
    cfs_period_us: int = 10000
    cgroups: str = "auto"
    ssh_hosts: str | None = None
    gcp_project: str | None = None
    gcp_zone: str | None = None
    gcp_api_endpoint: str | None = None

    def __post_init__(self) -> None:
        # Accept strings for the paths (from a notebook or a test) and keep Paths.
        if self.state_dir is not None and not isinstance(self.state_dir, Path):
            object.__setattr__(self, "state_dir", Path(self.state_dir))
        if not isinstance(self.cgroup_root, Path):
            object.__setattr__(self, "cgroup_root", Path(self.cgroup_root))
        object.__setattr__(self, "cfs_period_us", int(self.cfs_period_us))
        if self.cgroups not in ("auto", "off"):
            raise ValueError(f"cgroups must be 'auto' or 'off', not {self.cgroups!r}")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Settings from ``LABKIT_*`` variables (``environ`` defaults to ``os.environ``).

        The only place labkit reads its environment; an unset or empty variable
        keeps the default.
        """
        environ = os.environ if environ is None else environ
        values = {field: environ[var] for field, var in ENV.items() if environ.get(var)}
        return cls(**values)

    def replace(self, **kw) -> Settings:
        """A copy with some fields changed (``dataclasses.replace``)."""
        return dataclasses.replace(self, **kw)

    def state_folder(self, create: bool = True) -> Path:
        """The ``.labkit`` folder these settings point at (see the class docstring)."""
        if self.state_dir is not None:
            path = self.state_dir
        else:
            path = _find_state_folder(Path.cwd())
        if create:
            path.mkdir(parents=True, exist_ok=True)
        return path

    def to_env(self) -> dict[str, str]:
        """The ``LABKIT_*`` variables that reproduce these settings in a child process.

        Only fields that are set (not None) are exported; the defaults are
        exported too so a child does not pick up a different parent environment.
        """
        return {var: str(getattr(self, field)) for field, var in ENV.items()
                if getattr(self, field) is not None}


def resolve(settings: Settings | None) -> Settings:
    """``settings``, or when None the one default: :meth:`Settings.from_env` (what the CLI uses).

    Every ``settings=None`` parameter in labkit means this, never a bare ``Settings()``:
    a bare one would ignore ``LABKIT_CGROUPS`` / ``LABKIT_CGROUP_ROOT`` where the CLI obeys them.
    """
    return settings if settings is not None else Settings.from_env()
