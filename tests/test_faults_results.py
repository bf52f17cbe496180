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

from labkit import provenance, results, state
from labkit.backends.local import nginx as loadbalancer
from labkit.backends.base import ClusterSpec
from labkit.backends.local.backend import LocalBackend
from labkit.errors import NginxConfigError, ResultsError
from labkit.backends.local.nginx import LocalNginx
from labkit.record import COLUMNS, EXTRA_COLUMNS, PERCENTILES, Measurement
from labkit.service import get_status
from labkit.sweep import Grid, run_sweep
from tests.support.backend_doubles import ScriptedBackend


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
    results.append_row(path, _row(20).replace(aborted=True, mean_ms=None, cpu_scale=1234.5,
                                              abort_reason="apr_pollset_poll: The timeout specified has expired (70007)"))
    assert path.read_bytes().endswith(b",1234.5\r\n")  # the last cell: cpu_scale
    path.write_bytes(path.read_bytes().rstrip(b"\r\n")[:-len(b"1234.5")] + b"123")  # a cut, field count kept
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


# -- issue 15: the lab folder's lock, unreadable state, one-line errors, input checked up front ------

import json  # noqa: E402
import os  # noqa: E402
import signal  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def _labkit(*args, env: dict, cwd, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "labkit.cli", *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=timeout)


def _cli_env(local_env) -> dict:
    return {**os.environ, "LABKIT_STATE_DIR": str(local_env["state_dir"]), "LABKIT_LOCAL_NET": local_env["net"]}


def _one_line(p: subprocess.CompletedProcess) -> str:
    assert p.returncode == 2, (p.returncode, p.stdout, p.stderr)
    assert "Traceback" not in p.stderr, p.stderr
    lines = [line for line in p.stderr.strip().splitlines() if not line.startswith("INFO ")]  # progress logs
    assert len(lines) == 1 and lines[0].startswith("labkit: error: "), p.stderr
    return lines[0]


def test_commands_that_change_the_lab_are_refused_while_a_sweep_holds_the_folder(local_env):
    """`labkit scale` (or up, down) in another shell during a sweep would change the lab under it and
    lose state: refused at once with one line naming the holder, nothing touched."""
    env = _cli_env(local_env)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import time\nfrom labkit.settings import Settings\nfrom labkit.sweep import "
         "folder_locked\nwith folder_locked(Settings.from_env()):\n    print('held', flush=True)\n    time.sleep(120)"],
        env=env, cwd=local_env["tmp"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        for args in (["scale", "2"], ["up", "--nodes", "2"], ["down"],
                     ["up", "--backend", "ssh", "--hosts", str(local_env["tmp"] / "nope.toml")]):
            line = _one_line(_labkit(*args, env=env, cwd=local_env["tmp"]))
            assert "another labkit command" in line and f"pid {holder.pid}" in line, line
        assert state.load(local_env["settings"], "local") is None  # nothing started, nothing recorded
        assert not list(local_env["state_dir"].glob("local-*"))
    finally:
        holder.kill()
        holder.wait()
    # once the sweep is gone the same commands run (down of nothing is fine)
    ok = _labkit("down", env=env, cwd=local_env["tmp"])
    assert ok.returncode == 0, ok.stderr


def test_state_is_fsynced_before_the_rename(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        return real_fsync(fd)

    def replace(src, dst):
        events.append(("replace", str(src)))
        return real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    path = state.save(tmp_path, "local", {"backend": "local", "x": 1})
    kinds = [e[0] for e in events]
    assert "replace" in kinds and "fsync" in kinds[: kinds.index("replace")]
    synced = events[kinds.index("fsync")][1]
    assert synced == events[kinds.index("replace")][1]  # the temp file's data, before it replaces the state
    assert json.loads(path.read_text()) == {"backend": "local", "x": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["local.json"]  # no temp file left


@pytest.mark.parametrize("damage", ["cut", "garbage", "partial-keys"])
def test_an_unreadable_state_file_is_one_line_and_down_still_stops_what_it_can_find(local_env, damage):
    from labkit import processes

    env = _cli_env(local_env)
    local_env["state_dir"].mkdir(parents=True, exist_ok=True)
    server = subprocess.Popen(["sleep", "300"], start_new_session=True)  # a "server" the lab recorded
    decoy = subprocess.Popen(["sleep", "301"], start_new_session=True)  # recorded pid, other start time
    run_dir = local_env["state_dir"] / "local-20260101T000000-abcdef"
    (run_dir / "logs").mkdir(parents=True)
    try:
        start = processes.start_time_of(server.pid)
        full = {"backend": "local", "spec": {"nodes": 1}, "run_id": "20260101T000000-abcdef",
                "net": local_env["net"], "run_dir": str(run_dir), "cgroups": "unlimited", "cgroup_dirs": [],
                "processes": {
                    "restserver-0": {"role": "restserver-0", "pid": server.pid, "start_time": start,
                                     "argv": ["sleep", "300"], "log_path": None},
                    "restserver-1": {"role": "restserver-1", "pid": decoy.pid, "start_time": 1,
                                     "argv": ["sleep", "301"], "log_path": None}}}
        text = json.dumps(full, indent=2)
        path = local_env["state_dir"] / "local.json"
        if damage == "cut":
            path.write_text(text[: text.index('"restserver-1"') + 40])  # a crash in the middle of a write
        elif damage == "garbage":
            path.write_bytes(b"\x00\xff" + text.encode()[:-1])
        else:
            path.write_text(json.dumps({k: v for k, v in full.items() if k != "net"}, indent=2))
        for command in (["status"], ["scale", "2"]):
            line = _one_line(_labkit(*command, env=env, cwd=local_env["tmp"]))
            assert str(path) in line and "state file" in line, line
        down = _labkit("down", env=env, cwd=local_env["tmp"])
        line = _one_line(down)
        assert str(path) in line
        report = json.loads(down.stdout)
        assert report["stopped"] == [f"restserver-0 (pid {server.pid})"]
        assert server.wait(10) is not None  # stopped by its recorded pid and start time
        assert decoy.poll() is None  # a pid whose start time does not match is never signalled
        assert not path.exists() and Path(report["moved_to"]).exists()
        assert not run_dir.exists()
        status = _labkit("status", env=env, cwd=local_env["tmp"])
        assert status.returncode == 0 and json.loads(status.stdout)["up"] is False, status.stderr
    finally:
        for p in (server, decoy):
            if p.poll() is None:
                p.kill()
                p.wait()


def test_file_system_and_input_faults_are_one_line_not_a_traceback(local_env, cli_run):
    reference = str(REPO / "data" / "reference.csv")
    cases = [
        (["report", reference, "--sla", "max<=1500", "--charts", "/proc/nope/charts"], "/proc/nope"),
        (["parse-ab", str(REPO / "tests" / "data" / "ab" / "keepalive.stdout"), "--percentiles", sys.executable],
         "not a text file"),
        (["sweep", "--profile", "tiny", "--out", "/proc/nope/r.csv"], "/proc/nope"),
        (["report", reference, "--sla", "max<=-0"], "a bound must be > 0"),
        (["report", reference, "--sla", "mean<0"], "a bound must be > 0"),
    ]
    for args, expect in cases:
        line = _one_line(cli_run(*args))
        assert expect in line, (args, line)
    assert state.load(local_env["settings"], "local") is None  # the failed sweep left nothing up


def test_a_full_disk_while_appending_a_row_is_a_results_error_naming_the_file():
    with pytest.raises(ResultsError, match="/dev/full: cannot append the row: No space left on device"):
        results.append_row("/dev/full", _row(10))


@pytest.mark.parametrize("args, expect", [
    (["sweep", "--nodes", "1,40", "--concurrency", "10"], "nodes must be between 1 and 16, not 40"),
    (["sweep", "--nodes", "1", "--concurrency", "30000", "--requests", "40000"], "ab's limit of 20000"),
    (["sweep", "--nodes", "1", "--concurrency", "10", "--timeout", "-1"], "timeout_s must be an integer >= 1"),
    (["sweep", "--nodes", "1", "--concurrency", "10", "--timeout", "0"], "timeout_s must be an integer >= 1"),
    (["sweep", "--nodes", "1", "--concurrency", "10", "--requests", "0"], "requests must be an integer >= 1"),
    (["sweep", "--nodes", "1", "--concurrency", "10", "--port", "70000"], "port must be between 1 and 65535"),
    (["up", "--port", "0"], "port must be between 1 and 65535, not 0"),
    (["up", "--port", "-1"], "port must be between 1 and 65535, not -1"),
    (["up", "--nodes", "40"], "nodes must be between 1 and 16"),
])
def test_bad_grids_and_cluster_specs_are_refused_before_anything_starts(local_env, cli_run, args, expect):
    out = local_env["tmp"] / "never.csv"
    full = [*args, "--out", str(out)] if args[0] == "sweep" else args
    line = _one_line(cli_run(*full))
    assert expect in line, line
    assert not out.exists() and state.load(local_env["settings"], "local") is None
    assert not list(local_env["state_dir"].glob("local-*"))


def test_the_grid_refuses_retries_below_zero_and_keeps_an_explicit_zero():
    import dataclasses

    from labkit.errors import ConfigError
    from labkit.sweep import profiles_grid

    grid = profiles_grid("quick", ClusterSpec())
    with pytest.raises(ConfigError, match="retries"):
        dataclasses.replace(grid, retries=-1)
    with pytest.raises(ConfigError, match="requests must be an integer >= 1, not 0"):
        profiles_grid("quick", ClusterSpec(), requests=0)  # not silently the profile's value


def test_sigterm_during_a_sweep_tears_down_like_ctrl_c(local_env):
    from labkit import processes

    out = local_env["tmp"] / "term.csv"
    proc = subprocess.Popen([sys.executable, "-m", "labkit.cli", "sweep", "--nodes", "1", "--concurrency",
                             "10,20,30,40", "--requests", "300", "--out", str(out)], env=_cli_env(local_env),
                            cwd=local_env["tmp"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (out.exists() and len(out.read_text().splitlines()) >= 2):
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read() if proc.poll() else ""
            time.sleep(0.1)
        saved = state.load(local_env["settings"], "local")
        records = [processes.ProcessRecord(**r) for r in saved["processes"].values()]
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130 and "interrupted" in err and "Traceback" not in err, (proc.returncode, err)
    assert records and not any(r.alive() for r in records)
    assert state.load(local_env["settings"], "local") is None
    assert not list(local_env["state_dir"].glob("local-*"))
    assert len(results.load_results(out)) >= 1
