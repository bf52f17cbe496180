"""The nginx load balancer on a remote host, validated before every change (like LocalNginx).

Two ways to run it, one interface (the mirror of :class:`labkit.backends.local.nginx.LocalNginx`:
``render`` / ``validate`` / ``apply`` / ``stop`` / ``config_text``):

* :class:`RemoteNginx` -- nginx as a process from a work folder of its own (hosts you
  share, or tests): ``nginx -p WORK -c WORK/nginx.conf``.
* :class:`SystemNginx` -- the handout's steps 5-12 on ``/etc/nginx``: the original
  config backed up once, an open-file limit as a systemd drop-in, reload through systemd.

Either way the new config is written beside the live one, checked with ``nginx -t``, and
only then moved into place; a config that fails raises
:class:`~labkit.errors.NginxConfigError` and leaves the running balancer untouched.
What is running is described by a small JSON record (``mode``, ``conf``, ``pid``...) that
the backend keeps in its state, so another shell can stop it (:func:`from_record`).
"""

from __future__ import annotations

import logging
import shlex

from labkit.errors import NginxConfigError
from labkit.nginx_conf import render_nginx_conf
from labkit.backends.ssh.connection import Connection
from labkit.backends.ssh.service import install_packages

log = logging.getLogger("labkit")

PATH_PREFIX = "PATH=$PATH:/usr/local/sbin:/usr/sbin:/sbin; "  # nginx lives in sbin


class RemoteNginx:
    """nginx listening on ``host:port`` with its files in ``work`` on the host behind ``conn``."""

    mode = "process"

    def __init__(self, conn: Connection, name: str, host: str, port: int, work: str,
                 workers: str | int = "auto"):
        self.conn, self.name, self.host, self.port = conn, name, host, int(port)
        self.work, self.workers = work, workers
        self.conf, self.pid_file = f"{work}/nginx.conf", f"{work}/nginx.pid"

    def ensure_installed(self) -> None:
        """Install nginx when the host has none."""
        if not self.conn.run(PATH_PREFIX + "command -v nginx", check=False).ok:
            install_packages(self.conn, self.name, "nginx")

    def render(self, upstreams: list[tuple[str, int]]) -> str:
        """The complete nginx.conf for ``upstreams`` (see :func:`labkit.nginx_conf.render_nginx_conf`)."""
        return render_nginx_conf(self.host, self.port, upstreams, self.work, pid_path=self.pid_file,
                                 error_log=f"{self.work}/error.log", worker_processes=self.workers)

    def _nginx(self, args: str) -> str:
        return f"{PATH_PREFIX}nginx -p {shlex.quote(self.work)} {args}"

    def validate(self, path: str) -> None:
        """Run ``nginx -t`` on ``path``; raise NginxConfigError with nginx's reason (and remove ``path``)."""
        # the process-mode balancer runs as the login user; the system one needs root
        run = self.conn.sudo if self.mode == "system" else self.conn.run
        r = run(self._nginx(f"-t -c {shlex.quote(path)}"), check=False)
        if not r.ok:
            self.conn.run(f"rm -f {shlex.quote(path)}", check=False)
            raise NginxConfigError(f"{self.name}: generated nginx config failed validation; "
                                   f"the running one is untouched: {r.stderr.strip()}")

    def _upload(self, text: str) -> str:
        self.conn.run(f"mkdir -p {shlex.quote(self.work)}")
        new = f"{self.work}/nginx.conf.new"
        self.conn.put(text.encode(), new)
        return new

    def running(self) -> bool:
        p = shlex.quote(self.pid_file)
        return self.conn.run(f"test -f {p} && kill -0 $(cat {p}) 2>/dev/null", check=False).ok

    def record(self, pid: int | None = None) -> dict:
        """What the backend keeps in its state to find (and stop) this balancer later."""
        return {"mode": self.mode, "work": self.work, "conf": self.conf, "pidfile": self.pid_file, "pid": pid}

    def apply(self, upstreams: list[tuple[str, int]], record) -> dict:
        """Validate and install a config for ``upstreams``, then start nginx or reload it.

        ``record(info)`` is called before nginx is started (so a failed start is still
        stopped by ``down``) and with the final record, which is also returned.
        """
        self.ensure_installed()
        new = self._upload(self.render(upstreams))
        self.validate(new)
        self.conn.run(f"mv {shlex.quote(new)} {shlex.quote(self.conf)}")
        running = self.running()
        if not running:
            record(self.record())
        self.conn.run(self._nginx(f"-c {shlex.quote(self.conf)}") + (" -s reload" if running else ""))
        info = self.record(self.conn.read_pidfile(self.pid_file))
        record(info)
        return info

    def stop(self, info: dict) -> None:
        """Stop the nginx ``info`` describes (TERM the group, then QUIT/KILL the master by pid)."""
        self.conn.stop_pidfile(info["pidfile"], expect="nginx")
        # nginx is not a session leader: stop the master by pid, it takes its workers along
        if info.get("pid"):
            pid = int(info["pid"])  # only while that pid is still an nginx (it may have been reused)
            self.conn.run(f"grep -qs nginx /proc/{pid}/cmdline || exit 0; "
                          f"kill -QUIT {pid} 2>/dev/null; for n in $(seq 50); do kill -0 {pid} 2>/dev/null"
                          f" || exit 0; sleep 0.1; done; kill -KILL {pid} 2>/dev/null; true")
        log.info("%s stopped", self.name)

    def config_text(self) -> str:
        """The nginx.conf the balancer runs, read back from the host."""
        return self.conn.get_text(self.conf)


class SystemNginx(RemoteNginx):
    """The system nginx (``/etc/nginx``, run by systemd), as the handout configures it.

    ``down`` undoes exactly what ``apply`` changed: the host's own nginx.conf (backed up
    from the live file whenever that is not a labkit config, so a backup left by an
    earlier run never wins over a newer config) is put back and the backup removed; the
    ``LimitNOFILE`` drop-in labkit wrote (marked) is removed, and a drop-in of the
    host's own that it replaced is put back.
    """

    mode = "system"
    BACKUP = "/etc/nginx/nginx.conf.labkit-backup"
    DROPIN = "/etc/systemd/system/nginx.service.d/local.conf"
    MARK = "# written by labkit"
    LIMITS = f"{MARK} (labkit down removes it)\n[Service]\nLimitNOFILE=65536\n"
    OLD_LIMITS = "[Service]\nLimitNOFILE=65536\n"  # what labkit wrote before it marked the file
    GENERATED = "# Generated by labkit"  # first line of every config labkit renders

    def __init__(self, conn: Connection, name: str, host: str, port: int, workers: str | int = "auto"):
        super().__init__(conn, name, host, port, "/var/lib/nginx", workers)
        self.conf, self.pid_file = "/etc/nginx/nginx.conf", "/run/nginx.pid"

    def render(self, upstreams: list[tuple[str, int]]) -> str:
        return render_nginx_conf(self.host, self.port, upstreams, self.work, pid_path=self.pid_file,
                                 error_log="/var/log/nginx/error.log", user="www-data",
                                 worker_processes=self.workers)

    def _nginx(self, args: str) -> str:
        return f"{PATH_PREFIX}nginx {args}"

    def _upload(self, text: str) -> str:
        new = self.conn.mktemp("labkit-nginx")  # random name, 0600: root copies it into /etc/nginx
        self.conn.put(text.encode(), new)
        return new

    def record(self, pid: int | None = None) -> dict:
        return {"mode": self.mode, "conf": self.conf, "pid": pid}

    def apply(self, upstreams: list[tuple[str, int]], record) -> dict:
        self.ensure_installed()
        new = self._upload(self.render(upstreams))
        q = shlex.quote
        conf, backup, dropin = q(self.conf), q(self.BACKUP), q(self.DROPIN)
        # the host's config is the live one unless that is labkit's (a run that never came down)
        self.conn.sudo(f"if [ -f {conf} ] && ! head -n 1 {conf} | grep -qF {q(self.GENERATED)}; then "
                       f"cp -p {conf} {backup}; fi")
        self.validate(new)
        record(self.record())
        self.conn.sudo(f"cp {q(new)} {conf} && rm -f {q(new)}")
        have = self.conn.run(f"cat {dropin} 2>/dev/null", check=False).stdout
        if have != self.LIMITS:
            keep = q(self.DROPIN + ".labkit-backup")  # a drop-in of the host's own: put back by down
            self.conn.sudo(f"mkdir -p {q(self.DROPIN.rsplit('/', 1)[0])} && "
                           f"if [ -f {dropin} ] && ! grep -qsF {q(self.MARK)} {dropin} && "
                           f"! printf %s {q(self.OLD_LIMITS)} | cmp -s - {dropin}; then mv {dropin} {keep}; fi && "
                           f"printf %s {q(self.LIMITS)} > {dropin} && systemctl daemon-reload && systemctl restart nginx")
        else:
            self.conn.sudo("systemctl reload-or-restart nginx")
        info = self.record(self.conn.read_pidfile(self.pid_file))
        record(info)
        return info

    def stop(self, info: dict) -> None:
        """Put the host's nginx.conf (and its own drop-in) back, remove labkit's drop-in, restart."""
        q = shlex.quote
        conf, backup, dropin = q(self.conf), q(self.BACKUP), q(self.DROPIN)
        keep = q(self.DROPIN + ".labkit-backup")
        self.conn.sudo(f"if [ -f {backup} ]; then cp -p {backup} {conf} && rm -f {backup}; fi; "
                       f"if grep -qsF {q(self.MARK)} {dropin}; then rm -f {dropin}; "
                       f"if [ -f {keep} ]; then mv {keep} {dropin}; fi; "
                       f"rmdir {q(self.DROPIN.rsplit('/', 1)[0])} 2>/dev/null; "
                       "systemctl daemon-reload; systemctl restart nginx; "
                       "else systemctl reload-or-restart nginx; fi", check=False)
        log.info("%s: the original nginx configuration is back", self.name)


def from_record(conn: Connection, name: str, host: str, port: int, info: dict,
                workers: str | int = "auto") -> RemoteNginx:
    """The balancer a saved record describes (to stop it, or read its config, from another shell)."""
    if info["mode"] == "system":
        return SystemNginx(conn, name, host, port, workers)
    return RemoteNginx(conn, name, host, port, info["work"], workers)
