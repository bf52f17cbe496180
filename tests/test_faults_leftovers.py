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
