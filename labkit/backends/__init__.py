"""The places to run the lab: ``local`` (default), ``ssh`` and ``gcp``; see base.Backend."""

from __future__ import annotations

from ..errors import ConfigError
from .base import AbRun, Backend, ClusterSpec


def get_backend(name: str, **options) -> Backend:
    """The backend called ``name``, attached to its running lab if there is one."""
    if name == "local":
        from .local import LocalBackend

        return LocalBackend(**options)
    if name == "ssh":
        from .ssh import SshBackend

        return SshBackend.from_state_or_config(**options)
    if name == "gcp":
        from .gcp import GcpBackend

        return GcpBackend.from_state_or_config(**options)
    raise ConfigError(f"unknown backend {name!r}; choose local, ssh or gcp")


__all__ = ["AbRun", "Backend", "ClusterSpec", "get_backend"]
