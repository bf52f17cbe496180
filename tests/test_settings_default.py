"""One settings default: ``settings=None`` means the environment's (``Settings.from_env()``), as in the CLI.

Notebook 00's doctor table, ``labkit doctor`` and provenance all report the cgroups that
``LABKIT_CGROUPS`` / ``LABKIT_CGROUP_ROOT`` choose. A fake cgroup v2 hierarchy in a temp folder
makes the answer differ from this machine's own, so the test sees which settings were used.
"""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from labkit import provenance
from labkit.cli import cli
from labkit.settings import Settings, resolve
from labkit.setup_checks import doctor_table


@pytest.fixture
def fake_v2_root(tmp_path, monkeypatch):
    """A writable cgroup v2 root with the cpu and memory controllers, named by LABKIT_CGROUP_ROOT.

    The doctor also reports the host's speed, which it measures with ab once per process; these
    tests are about the cgroups row, so that measurement is given (whatever ran before in the
    process, the doctor then starts no ab).
    """
    from labkit import calibration
    from labkit.backends.local import cgroups

    monkeypatch.setattr(calibration, "_cached", calibration.Calibration(
        cpu_ms_per_request=1.0, requests=500, concurrency=10, steal_pct=0.0,
        measured_at="2026-12-05T00:00:00+00:00", wall_s=1.0))

    base = tmp_path / cgroups._own_path(None)
    base.mkdir(parents=True, exist_ok=True)
    (tmp_path / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    (base / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    monkeypatch.setenv("LABKIT_CGROUP_ROOT", str(tmp_path))
    monkeypatch.delenv("LABKIT_CGROUPS", raising=False)
    return tmp_path


def _cgroups_row(table) -> str:
    return table.set_index("name").loc["cgroups", "detail"]


def _cli_doctor() -> dict:
    res = CliRunner().invoke(cli, ["doctor", "--json"], catch_exceptions=False)
    return {c["name"]: c["detail"] for c in json.loads(res.output)}


def test_resolve_is_the_environment_unless_settings_are_given(monkeypatch, tmp_path):
    monkeypatch.setenv("LABKIT_CGROUPS", "off")
    monkeypatch.setenv("LABKIT_LOCAL_NET", "127.0.77")
    assert resolve(None) == Settings.from_env() and resolve(None).cgroups == "off"
    given = Settings(state_dir=tmp_path)
    assert resolve(given) is given


def test_doctor_table_cli_and_provenance_follow_labkit_cgroup_root(fake_v2_root):
    assert _cgroups_row(doctor_table()) == "v2"
    assert _cli_doctor()["cgroups"] == "v2"
    assert provenance.collect([])["cgroups"] == "v2"


def test_doctor_table_cli_and_provenance_follow_labkit_cgroups_off(fake_v2_root, monkeypatch):
    monkeypatch.setenv("LABKIT_CGROUPS", "off")
    assert _cgroups_row(doctor_table()) == "unlimited"
    assert _cli_doctor()["cgroups"] == "unlimited"
    assert provenance.collect([])["cgroups"] == "unlimited"
    # settings handed in win over the environment
    on = Settings.from_env().replace(cgroups="auto")
    assert _cgroups_row(doctor_table(on)) == "v2"
