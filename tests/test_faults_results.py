"""Fault injection on results files and the balancer's configuration.

A truncated or corrupted results CSV is a clear error naming the row, and nothing is
overwritten or appended to it; an nginx change that fails validation keeps the old
configuration serving and says why.
"""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from labkit import loadbalancer, provenance, results, state
from labkit.backends.base import ClusterSpec
from labkit.backends.local import LocalBackend
from labkit.errors import NginxConfigError, ResultsError
from labkit.loadbalancer import LocalNginx
from labkit.record import COLUMNS, EXTRA_COLUMNS, PERCENTILES, Measurement
from labkit.service import get_status
from labkit.sweep import Grid, run_sweep
from tests.test_faults_sweep import ScriptedBackend


def _row(c: int) -> Measurement:
    return Measurement(**{"run_id": "r1", "started_at": "2026-11-28T10:00:00+00:00", "backend": "local",
            "machine_type": "f1-micro", "server": "flask", "workers": 1, "nodes": 1, "concurrency": c,
            "requests": 200, "complete": 200, "failed": 0, "non_2xx": 0, "aborted": False, "attempts": 1,
            "time_taken_s": 0.5, "rps": 400.0, "mean_ms": 25.0, "ab_mean_ms": 25.0,
            **{f"p{p}_ms": 20.0 + p / 10 for p in PERCENTILES}, "max_ms": 40.0,
            "connect_mean_ms": 0.0, "cpu_limited": True, "abort_reason": None})


@pytest.fixture
def good_csv(tmp_path):
    path = tmp_path / "results.csv"
    for c in (10, 20, 30):
        results.append_row(path, _row(c))
    assert len(results.load_results(path)) == 3
    return path


def _grid():
    return Grid(ClusterSpec(), nodes=(1,), concurrency=(10, 20, 30, 40), requests=200, retries=0)


def _refused_everywhere(path, match, monkeypatch):
    """load, resume, a fresh sweep, append and the CLI all refuse ``path`` and leave it byte for byte."""
    before = path.read_bytes()
    with pytest.raises(ResultsError, match=match):
        results.load_results(path)
    backend = ScriptedBackend({40: ["success"]})
    with pytest.raises(ResultsError, match=match):
        run_sweep(backend, _grid(), path, resume=True, progress=False)
    assert backend.calls == []  # refused before measuring anything
    with pytest.raises(Exception, match="--resume"):
        run_sweep(backend, _grid(), path, progress=False)  # and never overwritten
    res = subprocess.run([sys.executable, "-m", "labkit.cli", "report", str(path), "--sla", "max<=1500"],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 2
    assert len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.stderr
    assert path.read_bytes() == before
    assert not provenance.path_beside(path).exists()  # a refused sweep writes nothing beside it either
    return res.stderr


def test_a_truncated_csv_names_the_row_and_is_not_touched(good_csv, monkeypatch):
    data = good_csv.read_bytes()
    good_csv.write_bytes(data[: len(data) - 60])  # cut in the middle of the last row
    width = len(COLUMNS) + len(EXTRA_COLUMNS)
    err = _refused_everywhere(good_csv, rf"row 3.*has \d+ fields, the header has {width}", monkeypatch)
    assert f"{good_csv}, row 3" in err


def test_a_csv_cut_inside_its_last_cell_is_refused_not_appended_to(tmp_path, monkeypatch):
    """A cut inside the last cell keeps the field count; the missing line end still gives it away."""
    path = tmp_path / "cut.csv"
    results.append_row(path, _row(10))
    results.append_row(path, _row(20).replace(aborted=True, mean_ms=None, tester_cpu_s=1234.5,
                                              abort_reason="apr_pollset_poll: The timeout specified has expired (70007)"))
    assert path.read_bytes().endswith(b",1234.5\r\n")  # the last cell
    path.write_bytes(path.read_bytes().rstrip(b"\r\n")[:-3])  # "1234.5" -> "123"
    before = path.read_bytes()
    with pytest.raises(ResultsError, match=r"row 2: ends in the middle of a row"):
        results.append_row(path, _row(30))
    backend = ScriptedBackend({30: ["success"]})
    grid = Grid(ClusterSpec(), nodes=(1,), concurrency=(10, 20, 30), requests=200, retries=0)
    with pytest.raises(ResultsError, match=r"row 2: ends in the middle of a row"):
        run_sweep(backend, grid, path, resume=True, progress=False)
    assert backend.calls == []  # refused before measuring
    assert path.read_bytes() == before


@pytest.mark.parametrize("old, new, row, column", [
    (b"400.0", b"4x0.0", 1, "rps"),
    (b",20,200,", b",twenty,200,", 2, "concurrency"),
    (b",false,1,", b",maybe,1,", 1, "aborted"),
])
def test_a_corrupted_cell_names_row_and_column(good_csv, monkeypatch, old, new, row, column):
    data = good_csv.read_bytes()
    assert old in data
    good_csv.write_bytes(data.replace(old, new, 1))
    err = _refused_everywhere(good_csv, rf"row {row}, column '{column}'", monkeypatch)
    assert f"row {row}, column '{column}'" in err


def test_binary_garbage_and_a_foreign_header_are_refused(tmp_path, monkeypatch):
    garbage = tmp_path / "garbage.csv"
    garbage.write_bytes(b"\xff\xfe\x00garbage\x00\n\x80\x81")
    with pytest.raises(ResultsError, match="cannot read"):
        results.load_results(garbage)
    foreign = tmp_path / "foreign.csv"
    foreign.write_text("a,b,c\n1,2,3\n")
    before = foreign.read_bytes()
    with pytest.raises(ResultsError, match="not a labkit results header"):
        results.append_row(foreign, _row(10))
    with pytest.raises(ResultsError, match="missing column"):
        run_sweep(ScriptedBackend({}), _grid(), foreign, resume=True, progress=False)
    assert foreign.read_bytes() == before


# -- an nginx upstream change that fails validation -------------------------------------------

def test_a_balancer_change_that_fails_validation_keeps_the_old_config_serving(local_env, monkeypatch):
    b = LocalBackend()
    b.up(ClusterSpec(nodes=2))
    try:
        nginx = LocalNginx(b.run_dir / "nginx", b.address("loadbalancer-0"), 8080)
        before = nginx.conf.read_text()
        master = state.load(local_env["settings"], "local")["processes"]["loadbalancer-0"]["pid"]
        real_render = loadbalancer.render_nginx_conf

        def broken_render(*args, **kw):  # e.g. a bad template or a hand-edited upstream option
            return re.sub(r"(\n\s+server [0-9.]+:\d+);", r"\1 max_fails=often;", real_render(*args, **kw), count=1)

        monkeypatch.setattr(loadbalancer, "render_nginx_conf", broken_render)
        with pytest.raises(NginxConfigError) as info:
            b.scale(3)
        msg = str(info.value)
        assert 'invalid parameter "max_fails=often"' in msg and "left unchanged" in msg
        # the old configuration is in place, the same master serves it, from the old servers
        assert nginx.conf.read_text() == before
        assert not (nginx.prefix / "nginx.conf.new").exists()
        assert state.load(local_env["settings"], "local")["processes"]["loadbalancer-0"]["pid"] == master
        assert {get_status(b.url)["node"] for _ in range(6)} == {"restserver-0", "restserver-1"}
        # and a later valid change still goes through
        monkeypatch.setattr(loadbalancer, "render_nginx_conf", real_render)
        b.scale(3)
        assert {get_status(b.url)["node"] for _ in range(9)} == {"restserver-0", "restserver-1", "restserver-2"}
    finally:
        b.down()
