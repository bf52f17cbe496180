"""The session's own leftovers check (tests/support/leftovers.py) really finds what it should.

The check itself runs after the last test (``pytest_sessionfinish``) and fails the
session when anything is left; these tests prove it sees a leaked process and a leaked
run folder, and that it ignores processes that are not this session's.
"""

from __future__ import annotations

import os
import subprocess
import sys

from tests.support import leftovers as lo


def test_the_check_finds_a_leaked_process_and_run_folder(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], cwd=tmp_path,
                            start_new_session=True)
    folder = tmp_path / ".labkit" / "local-20260101T000000-abcdef"
    folder.mkdir(parents=True)
    try:
        left = lo.find_leftovers(wait=0)
        assert proc.pid in [pid for pid, *_ in left["processes"]]
        assert str(folder) in left["folders"]
    finally:
        proc.kill()
        proc.wait()
        folder.rmdir()
    left = lo.find_leftovers(wait=0)
    assert proc.pid not in [pid for pid, *_ in left["processes"]]
    assert str(folder) not in left["folders"]


def test_the_check_ignores_processes_that_are_not_this_sessions(tmp_path):
    """A process started outside this session (detached, other cwd, no session token)."""
    env = {k: v for k, v in os.environ.items() if k != "LABKIT_TEST_SESSION"}
    # a double fork: the grandchild is re-parented away from pytest, like someone else's process
    out = subprocess.run([sys.executable, "-c",
                          "import subprocess, sys; p = subprocess.Popen([sys.executable, '-c', "
                          "'import time; time.sleep(30)'], cwd='/', start_new_session=True, "
                          "stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL); print(p.pid)"],
                         env=env, cwd="/", capture_output=True, text=True, timeout=30)
    pid = int(out.stdout)
    try:
        assert pid not in [p for p, *_ in lo.find_leftovers(wait=0)["processes"]]
    finally:
        os.kill(pid, 9)


LEAKY_TEST = '''
import subprocess, sys

def test_leaks_a_process(tmp_path):
    subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], cwd=tmp_path)

def test_other():
    pass
'''


def test_under_xdist_a_workers_leftover_fails_the_whole_run(tmp_path):
    """``make test`` runs on pytest-xdist workers, whose own exit status is not the run's: a leak found
    by a worker must still fail the run and be named (the controller reads the workers' reports)."""
    (tmp_path / "conftest.py").write_text('pytest_plugins = ["tests.support.leftovers"]\n')
    (tmp_path / "test_leaky.py").write_text(LEAKY_TEST)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(lo.Path(__file__).resolve().parents[1]),
                                                         os.environ.get("PYTHONPATH", "")])}
    env.pop("PYTEST_XDIST_WORKER", None)
    env.pop("LABKIT_TEST_SESSION", None)
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "1",
                          "--basetemp", str(tmp_path / "base"), "-c", os.devnull, "--rootdir", str(tmp_path),
                          str(tmp_path)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert "2 passed" in run.stdout, run.stdout + run.stderr
    assert run.returncode == 1, run.stdout + run.stderr
    assert "labkit leftovers check: the test suite left these behind:" in run.stdout
    assert "time.sleep(60)" in run.stdout
    # and the leaked process was stopped by the worker that found it
    def cwd(pid):
        try:
            return os.readlink(f"/proc/{pid}/cwd")
        except OSError:
            return ""

    assert not [p for p in lo._pids() if "time.sleep(60)" in lo._cmdline(p) and cwd(p).startswith(str(tmp_path))]
