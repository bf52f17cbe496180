"""How to start the Fibonacci service on a host, and how to tell it is up (design §4).

Backends (local, ssh, gcp) call :func:`service_command` for the command line and the
environment, then start it their own way (a subprocess in a cgroup, a remote shell, a
systemd unit rendered by :func:`unit_text`). :func:`get_status` is the one ``/status``
client (directly, or through an SSH tunnel); :func:`wait_until_up` polls it.

Two servers:

* ``flask`` -- the Flask development server with threads, as the handout runs it. One
  Python process: it cannot use a second core, whatever the machine.
* ``gunicorn`` -- W *sync* workers (each handles one request at a time, so W is also the
  node's concurrency; extra connections wait in the listen backlog, raised to 2048).
  ``--preload`` imports the app once in the master before forking, which is what lets the
  workers share the exact ``/status`` request counter (see ``service/restserver.py``).
"""

from __future__ import annotations

import http.client
import json
import logging
import shlex
import socket
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

from labkit.errors import BackendError, ConfigError

log = logging.getLogger("labkit")

SERVICE_DIR = Path(__file__).resolve().parent.parent / "service"
"""The repository's ``service/`` folder: restserver.py, its systemd unit, nginx templates."""

UNIT_TEMPLATE = SERVICE_DIR / "restserver.service"

SERVERS = ("flask", "gunicorn")


def service_command(server: str, host: str, port: int, workers: int = 1,
                    python: str = sys.executable, service_dir: Path | str = SERVICE_DIR,
                    *, node: str | None = None, fib_max: int | None = None,
                    ) -> tuple[list[str], dict[str, str]]:
    """Return ``(argv, env)`` that start the service listening on ``host:port``.

    ``env`` holds only the variables to *add* to the host's environment (the caller
    merges it with ``os.environ`` locally, or exports it remotely): unbuffered output
    so logs arrive promptly, and ``LABKIT_NODE`` / ``LABKIT_FIB_MAX`` when given.
    ``workers`` is ignored by the flask dev server (one process, one thread per request).
    ``python`` is the interpreter of the environment that has flask/gunicorn installed.
    """
    if server not in SERVERS:
        raise ConfigError(f"server must be 'flask' or 'gunicorn', not {server!r}")
    if not isinstance(port, int) or not 0 < port < 65536:
        raise ConfigError(f"port must be between 1 and 65535, not {port!r}")
    if not isinstance(workers, int) or workers < 1:
        raise ConfigError(f"workers must be at least 1, not {workers!r}")
    if not host:
        raise ConfigError("host must not be empty")
    service_dir = Path(service_dir)
    if server == "flask":
        argv = [python, "-m", "flask", "--app", str(service_dir / "restserver.py"),
                "run", "--host", host, "--port", str(port), "--with-threads"]
    else:
        bind = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        argv = [python, "-m", "gunicorn", "--preload", "-w", str(workers), "-b", bind,
                "--chdir", str(service_dir), "--backlog", "2048", "restserver:app"]
    env = {"PYTHONUNBUFFERED": "1"}
    if node is not None:
        env["LABKIT_NODE"] = str(node)
    if fib_max is not None:
        if not isinstance(fib_max, int) or fib_max < 1:
            raise ConfigError(f"fib_max must be a positive integer, not {fib_max!r}")
        env["LABKIT_FIB_MAX"] = str(fib_max)
    return argv, env


def unit_text(server: str, host: str, port: int, workers: int = 1, *, node: str,
              fib_max: int = 10000, install_dir: str = "/opt/restserver", python: str | None = None) -> str:
    """Render ``service/restserver.service``: the unit the ssh and gcp backends install.

    The service runs from ``install_dir`` with ``python`` (default: the virtualenv
    ``install_dir/venv``) and listens on ``host:port`` only -- the address the
    balancer and the tester use to reach the machine, as ``service_command`` does
    for every other way of starting it.
    """
    python = python or f"{install_dir}/venv/bin/python"
    argv, env = service_command(server, host, port, workers, python=python,
                                service_dir=install_dir, node=node, fib_max=fib_max)
    for value in (node, install_dir, python, host):
        if any(ch in value for ch in " \n\"'\\%$"):
            raise ConfigError(f"{value!r} cannot be used in a systemd unit")
    values = {"@EXEC_START@": shlex.join(argv), "@INSTALL_DIR@": install_dir,
              "@NODE@": node, "@FIB_MAX@": str(fib_max)}
    lines = []
    for line in UNIT_TEMPLATE.read_text().splitlines(keepends=True):
        if not line.startswith("#"):  # the header comment documents the placeholders
            for key, value in values.items():
                line = line.replace(key, value)
        lines.append(line)
    return "".join(lines)


def _status_url(url: str) -> str:
    url = url.rstrip("/")
    return url if url.endswith("/status") else url + "/status"


def get_status(url: str, timeout: float = 5.0, via=None) -> dict:
    """GET ``url``/status and return its JSON: the one ``/status`` client of every backend.

    Talks HTTP/1.1 on a socket of its own, so no HTTP proxy ever sits between
    labkit and a server. With ``via`` (a :class:`labkit.backends.ssh.connection.Connection`) the
    TCP stream starts on that host (an SSH tunnel), which reaches servers that
    only their own network can see. Raises ``OSError`` (refused, reset, a
    non-200 answer) or ``ValueError`` (not JSON).
    """
    parts = urllib.parse.urlsplit(_status_url(url))
    if parts.scheme != "http" or not parts.hostname:
        raise ValueError(f"the service's URL must be http://HOST:PORT, not {url!r}")
    host, port = parts.hostname, parts.port or 80
    sock = via.tunnel(host, port, timeout=timeout) if via is not None else \
        socket.create_connection((host, port), timeout=timeout)
    try:
        sock.sendall(f"GET {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\nAccept: application/json\r\n"
                     "Connection: close\r\n\r\n".encode())
        response = http.client.HTTPResponse(sock)
        response.begin()
        body = response.read()
    except http.client.HTTPException as exc:  # a garbled answer is a failed attempt, like a reset
        raise ConnectionError(f"{parts.geturl()}: {exc!r}") from None
    finally:
        sock.close()
    if response.status != 200:
        raise ConnectionError(f"{parts.geturl()} answered HTTP {response.status}")
    return json.loads(body)


def wait_until_up(url: str, timeout: float = 15.0, proc: subprocess.Popen | None = None, via=None) -> dict:
    """Poll ``url``/status until it answers 200 with JSON; return that status.

    ``url`` is the service's base URL (``http://127.0.0.1:8080``). When ``proc`` is the
    process that should be serving, its early exit fails fast instead of waiting out the
    timeout. ``via`` polls through an SSH connection (see :func:`get_status`).
    Raises :class:`BackendError` naming the URL and the last error.
    """
    deadline = time.monotonic() + timeout
    last_error = "no attempt made"
    while True:
        if proc is not None and proc.poll() is not None:
            raise BackendError(f"service for {url} exited with code {proc.returncode} before answering")
        try:
            return get_status(url, timeout=max(0.2, min(2.0, deadline - time.monotonic())), via=via)
        except (OSError, ValueError) as exc:
            last_error = str(exc)
        if time.monotonic() >= deadline:
            raise BackendError(f"{_status_url(url)} did not answer within {timeout:g}s: {last_error}")
        time.sleep(0.1)
