"""The Fibonacci service (service/restserver.py) for tests: in-process, or as a real server on loopback.

``service_app(env=None)`` imports a fresh copy of ``restserver`` with ``env`` set (its
``LABKIT_*`` knobs are read at import) and returns its Flask ``test_client()``: the
service's own code, request by request, without a process or a port. Use it for what the
app answers; use ``service_proc`` for what needs a real server (flask run, gunicorn's
workers sharing one counter, a service a lab or ab talks to).

``service_proc(server="flask"|"gunicorn", workers=1, env=None)`` starts the service as a
subprocess on 127.0.0.1 and a free port, waits for ``/status`` and returns the base URL;
every service it started is stopped (by its own pid) when the test ends. Its output goes to
a log file in the test's tmp_path, shown in the failure message when start-up fails.
"""

from __future__ import annotations

import importlib.util
import itertools
import os
import subprocess
import sys

import pytest

from labkit.errors import BackendError
from labkit.service import SERVICE_DIR, service_command, wait_until_up
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


_copies = itertools.count()


@pytest.fixture
def service_app(monkeypatch):
    """Factory: ``client = service_app({"LABKIT_NODE": "n1"})``, a test client of a fresh restserver import.

    Each call imports the module anew (own counter, cache and bounds). The import may raise
    Python's int->str digit limit (a large ``LABKIT_FIB_MAX``); it is put back afterwards.
    """
    digits = sys.get_int_max_str_digits()

    def load(env: dict | None = None):
        for key in ("LABKIT_NODE", "LABKIT_FIB_MAX", "LABKIT_MAX_BODY"):
            monkeypatch.delenv(key, raising=False)
        for key, value in (env or {}).items():
            monkeypatch.setenv(key, value)
        spec = importlib.util.spec_from_file_location(f"restserver_copy_{next(_copies)}",
                                                      SERVICE_DIR / "restserver.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module.app.test_client()

    yield load
    sys.set_int_max_str_digits(digits)
