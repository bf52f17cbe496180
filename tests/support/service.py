"""The fixture that runs the REAL Fibonacci service (service/restserver.py) on loopback.

``service_proc(server="flask"|"gunicorn", workers=1, env=None)`` starts the service as a
subprocess on 127.0.0.1 and a free port, waits for ``/status`` and returns the base URL;
every service it started is stopped (by its own pid) when the test ends. Its output goes to
a log file in the test's tmp_path, shown in the failure message when start-up fails.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from labkit.errors import BackendError
from labkit.service import service_command, wait_until_up
from tests.support.ports import free_port
from tests.support.processes import stop_process


@pytest.fixture
def service_proc(tmp_path):
    """Factory: ``url = service_proc("gunicorn", workers=2, env={"LABKIT_NODE": "n1"})``."""
    started: list[subprocess.Popen] = []

    def start(server: str = "flask", workers: int = 1, env: dict | None = None,
              host: str = "127.0.0.1") -> str:
        port = free_port(host)
        argv, extra_env = service_command(server, host, port, workers, python=sys.executable)
        full_env = {**os.environ, **extra_env, **(env or {})}
        log_path = tmp_path / f"service-{server}-{port}.log"
        with open(log_path, "wb") as log_file:
            proc = subprocess.Popen(argv, env=full_env, stdout=log_file,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        started.append(proc)
        url = f"http://{host}:{port}"
        try:
            wait_until_up(url, timeout=30, proc=proc)
        except BackendError as exc:
            stop_process(proc)
            pytest.fail(f"{exc}\n--- service log ---\n{log_path.read_text(errors='replace')}")
        return url

    yield start
    for proc in started:
        stop_process(proc)
