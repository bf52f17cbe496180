"""The local nginx load balancer: a generated config, validated before every change.

nginx runs as an ordinary foreground process (``daemon off``) from a config in
the run's folder. Every change of the server list goes through
:meth:`LocalNginx.apply`: the new config is written beside the live one,
checked with ``nginx -t``, and only then moved into place and loaded with a
reload signal (SIGHUP). A config that fails validation raises
:class:`~labkit.errors.NginxConfigError` with nginx's own reason and leaves the
running balancer, and its config file, exactly as they were.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

from labkit.errors import MissingToolError, NginxConfigError
from labkit.nginx_conf import render_nginx_conf

log = logging.getLogger("labkit")


def nginx_binary() -> str:
    """Path of the nginx executable, or a MissingToolError saying how to install it."""
    found = shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(p, os.X_OK)), None)
    if not found:
        raise MissingToolError("nginx is not installed: run `sudo apt-get install -y nginx` (or `make setup`)")
    return found


class LocalNginx:
    """One nginx balancer listening on ``host:port`` with its files under ``prefix``."""

    def __init__(self, prefix: Path, host: str, port: int, workers: int | str = "auto"):
        """``workers`` is nginx's ``worker_processes``: the local backend passes one per vCPU of the
        emulated balancer (an f1-micro balancer runs one worker and so alternates strictly, as the
        real machine would), not nginx's ``auto`` (one per core of *this* machine)."""
        self.prefix = Path(prefix)
        self.host, self.port = host, port
        self.workers = workers
        self.conf = self.conf_path(self.prefix)
        self.pid_file = self.prefix / "nginx.pid"
        (self.prefix / "logs").mkdir(parents=True, exist_ok=True)

    @staticmethod
    def conf_path(prefix: Path) -> Path:
        """Where the live config of the balancer under ``prefix`` is (to read it without touching it)."""
        return Path(prefix) / "nginx.conf"

    def render(self, upstreams: list[tuple[str, int]]) -> str:
        return render_nginx_conf(
            self.host, self.port, upstreams, prefix=str(self.prefix),
            pid_path=str(self.pid_file), error_log=str(self.prefix / "logs" / "error.log"),
            worker_processes=self.workers,
        )

    def validate(self, conf_path: Path) -> None:
        """Run ``nginx -t`` on ``conf_path``; raise NginxConfigError with nginx's reason."""
        res = subprocess.run(
            [nginx_binary(), "-t", "-q", "-p", str(self.prefix), "-c", str(conf_path)],
            capture_output=True, text=True,
        )
        if res.returncode != 0:
            # "2026/11/28 13:09:53 [emerg] 14578#14578: invalid number ..." -> "invalid number ..."
            reason = " ".join(re.sub(r"^.*?\[(emerg|error|crit|alert)\] \d+#\d+: ", "", line)
                              for line in res.stderr.splitlines() if re.search(r"\[(emerg|error|crit|alert)\]", line))
            raise NginxConfigError(
                f"nginx rejected the new configuration ({reason or res.stderr.strip()}); "
                "the running balancer was left unchanged"
            )

    def apply(self, upstreams: list[tuple[str, int]] | None = None, text: str | None = None) -> bool:
        """Validate and install a config for ``upstreams`` (or the literal ``text``).

        Returns True when a running nginx must be reloaded (the caller signals it),
        False when the config is unchanged.
        """
        new = text if text is not None else self.render(upstreams or [])
        if self.conf.exists() and self.conf.read_text() == new:
            return False
        candidate = self.prefix / "nginx.conf.new"
        candidate.write_text(new)
        try:
            self.validate(candidate)
        except NginxConfigError:
            candidate.unlink(missing_ok=True)
            raise
        if self.conf.exists():
            shutil.copy2(self.conf, self.prefix / "nginx.conf.previous")
        os.replace(candidate, self.conf)
        return True

    def argv(self) -> list[str]:
        """Command line that runs this balancer in the foreground."""
        return [nginx_binary(), "-p", str(self.prefix), "-c", str(self.conf), "-g", "daemon off;"]

    def reload(self, master_pid: int) -> None:
        """Ask the running master to load the new config (what ``service nginx reload`` does)."""
        os.kill(master_pid, signal.SIGHUP)

    def wait_listening(self, timeout: float = 10.0) -> None:
        """Wait until nginx has written its pid file and accepts connections."""
        import socket

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with socket.create_connection((self.host, self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        log_file = self.prefix / "logs" / "error.log"
        tail = log_file.read_text()[-500:] if log_file.exists() else ""
        raise NginxConfigError(f"nginx did not start listening on {self.host}:{self.port}: {tail.strip()}")
