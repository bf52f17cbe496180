"""Fixtures for the local backend: an isolated state folder and loopback network per test."""

from __future__ import annotations

import itertools
import os

import pytest

_nets = itertools.count(40)
# The second octet differs between test sessions, so two suites running at once on one
# machine (e.g. several people's `make test`) never share a loopback address and port.
_SESSION_OCTET = 1 + os.getpid() % 250


def session_net(n: int) -> str:
    """``127.S.n``: a /24 of this test session's own (``S`` as in ``local_env``), for a fixture that
    brings up a lab outside ``local_env``; pick ``n`` >= 200 (``local_env`` counts up from 40)."""
    return f"127.{_SESSION_OCTET}.{n}"


@pytest.fixture
def local_env(request, tmp_path, monkeypatch):
    """Point labkit's state at ``tmp_path/.labkit`` and give the test its own 127.S.N.0/24.

    CPU limits are off (``LABKIT_CGROUPS=off``: machines run at the host's speed, so a lab
    whose logic is under test measures in a fraction of the time) unless the test is marked
    ``@pytest.mark.cgroups`` (it checks limits or per-role CPU accounting). Whatever the test
    leaves up is torn down afterwards, so one failing test cannot leak processes or cgroups
    into the next.
    """
    from labkit import state
    from labkit.backends.local.backend import LocalBackend
    from labkit.settings import Settings

    net = f"127.{_SESSION_OCTET}.{next(_nets)}"
    # The environment is for the CLI processes a test starts; in-process code gets ``settings``.
    monkeypatch.setenv("LABKIT_STATE_DIR", str(tmp_path / ".labkit"))
    monkeypatch.setenv("LABKIT_LOCAL_NET", net)
    if request.node.get_closest_marker("cgroups") is None:
        monkeypatch.setenv("LABKIT_CGROUPS", "off")
    else:
        monkeypatch.delenv("LABKIT_CGROUPS", raising=False)
    monkeypatch.chdir(tmp_path)
    settings = Settings.from_env()
    yield {"net": net, "state_dir": tmp_path / ".labkit", "tmp": tmp_path, "settings": settings}
    if state.load(settings, "local"):
        LocalBackend(settings).down()


def labkit_cgroups(state_dir=None) -> list[str]:
    """Labkit cgroup directories below this process's cgroups (v1 or v2).

    With ``state_dir``, only those of runs made from that ``.labkit`` folder
    (other labs may be running on the same machine at the same time).
    """
    from labkit.backends.local.backend import folder_tag

    tag = folder_tag(state_dir) if state_dir else None
    from labkit.backends.local import cgroups
    from labkit.settings import Settings

    found = []
    for controller in (None, *cgroups.V1_CONTROLLERS):
        base = Settings.from_env().cgroup_root / (controller or "") / cgroups._own_path(controller)
        root = base / "labkit"
        if root.is_dir():
            found += [os.path.join(d, n) for d, dirs, _ in os.walk(root) for n in dirs
                      if tag is None or tag in os.path.relpath(os.path.join(d, n), root).split("/")[0]]
    return found
