"""The places to run the lab: ``local`` (default), ``ssh`` and ``gcp``; see base.Backend."""

from __future__ import annotations

from labkit.errors import ConfigError
from labkit.settings import Settings
from labkit.backends.base import AbRun, Backend, ClusterSpec

NAMES = ("local", "ssh", "gcp")


def get_backend(name: str, settings: Settings | None = None, **options) -> Backend:
    """The backend called ``name``, attached to its running lab if there is one.

    ``settings`` None means ``Settings.from_env()`` (the one place the environment
    is read); ``options`` are the backend's own (e.g. ``hosts`` for ssh,
    ``project``/``zone`` for gcp, ``tester_machine_type`` for local).
    """
    if name == "local":
        from labkit.backends.local.backend import LocalBackend as cls
    elif name == "ssh":
        from labkit.backends.ssh.backend import SshBackend as cls
    elif name == "gcp":
        from labkit.backends.gcp.backend import GcpBackend as cls
    else:
        raise ConfigError(f"unknown backend {name!r}; choose {', '.join(NAMES)}")
    return cls(settings if settings is not None else Settings.from_env(), **options)


__all__ = ["AbRun", "Backend", "ClusterSpec", "NAMES", "get_backend"]
