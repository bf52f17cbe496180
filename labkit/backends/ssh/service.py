"""The Fibonacci service on one remote host: install it, start it, wait for it, stop it.

The ssh backend (and, through it, the gcp backend) runs one :class:`RemoteService`
per host. It copies ``service/restserver.py`` to ``root`` with a virtualenv holding
flask and gunicorn (or uses a given interpreter), and starts each server either as a
systemd unit rendered by :func:`labkit.service.unit_text` (it survives reboots; the
handout's ``nohup`` does not) or as a background process in its own session with a
pid file. Readiness and ``/status`` go through :func:`labkit.service.get_status`
over an SSH tunnel from the host itself, so servers on internal addresses are
reached the same way the balancer reaches them.

Every start is *recorded before it happens* (the ``record`` callback), so a server
that never answers is still stopped by ``labkit down``.
"""

from __future__ import annotations

import logging
import shlex

from labkit.errors import BackendError
from labkit.backends.ssh.hosts_file import SYSTEM_ROOT, check_name
from labkit.backends.ssh.connection import Connection
from labkit.service import SERVICE_DIR, get_status, service_command, unit_text, wait_until_up

log = logging.getLogger("labkit")

UNIT_MARK = "labkit Fibonacci REST service"  # in every unit labkit writes (service/restserver.service)


def hostport(host: str, port: int) -> str:
    """``host:port``, with brackets around an IPv6 address."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def install_packages(conn: Connection, name: str, packages: str) -> None:
    """``apt-get install`` ``packages`` on a Debian/Ubuntu host (a fresh GCE image lacks them)."""
    log.info("%s: installing %s", name, packages)
    conn.sudo(f"apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q {packages}",
              timeout=600)


class RemoteService:
    """The service on the host behind ``conn``, installed in ``root``.

    ``python`` is an interpreter that already has flask and gunicorn (default:
    ``root/venv``, created on first :meth:`install`). ``use_systemd`` None means:
    when the host runs systemd and ``root`` is the system path ``/opt/restserver``.
    """

    def __init__(self, conn: Connection, name: str, *, root: str = SYSTEM_ROOT, python: str | None = None,
                 use_systemd: bool | None = None, timeout: float = 30.0):
        self.conn, self.name, self.root = conn, name, root
        self.python = python or f"{root}/venv/bin/python"
        self._own_venv = python is None
        self.use_systemd = use_systemd
        self.timeout = timeout
        self._facts: dict | None = None
        self._installed = False

    def facts(self) -> dict:
        """``uid`` of the login and whether the host runs ``systemd`` (asked once)."""
        if self._facts is None:
            r = self.conn.run("id -u; test -d /run/systemd/system && echo systemd || echo none")
            uid, init = r.stdout.split()
            self._facts = {"uid": uid, "root": uid == "0", "systemd": init == "systemd"}
        return self._facts

    @property
    def systemd(self) -> bool:
        """Whether servers on this host run as systemd units."""
        if self.use_systemd is not None:
            return self.use_systemd
        return self.facts()["systemd"] and self.root == SYSTEM_ROOT

    def install(self) -> None:
        """Copy restserver.py and make sure the virtualenv exists (once per object)."""
        if self._installed:
            return
        root = shlex.quote(self.root)
        # only a folder labkit made (its marker) or a new/empty one is chowned to the login
        mine = self.conn.sudo(f"test ! -e {root} || test -e {root}/.labkit-root || test -z \"$(ls -A {root})\"",
                              check=False)
        if not mine.ok:
            raise BackendError(f"{self.name}: root {self.root} exists, is not empty and was not made by labkit "
                               "(no .labkit-root in it); choose a new folder for `root`")
        self.conn.sudo(f"mkdir -p {root}/run && touch {root}/.labkit-root && chown -R {self.facts()['uid']} {root}")
        self.conn.put((SERVICE_DIR / "restserver.py").read_bytes(), f"{self.root}/restserver.py")
        if self._own_venv:
            venv = f"{root}/venv"
            if not self.conn.run(f"test -x {venv}/bin/python", check=False).ok:
                if not self.conn.run(f"python3 -m venv {venv}", check=False).ok:
                    install_packages(self.conn, self.name, "python3-venv")
                    self.conn.run(f"rm -rf {venv}; python3 -m venv {venv}")
            self.conn.run(f"{venv}/bin/python -m pip install -q flask gunicorn", timeout=600)
        self._installed = True

    def unit_text(self, spec, node: str, address: str, port: int) -> str:
        """The systemd unit :meth:`start` installs for ``node`` (one renderer: ``service.unit_text``)."""
        return unit_text(spec.server, address, port, spec.workers, node=node, fib_max=spec.fib_max,
                         install_dir=self.root, python=self.python)

    def start(self, spec, node: str, address: str, port: int, record) -> dict:
        """Start server ``node`` on ``address:port``; return how (``unit`` or ``pidfile``) plus its pid.

        ``record(info)`` is called with the start's record before the server is
        started, and again once it answers ``/status``.
        """
        self.install()
        check_name(node)  # it names files and the unit: never shell text
        if self.systemd:
            unit = f"{node}.service"
            self.conn.put(self.unit_text(spec, node, address, port).encode(), f"{self.root}/run/{unit}")
            info = {"unit": unit, "port": port}
            u, f = shlex.quote(unit), shlex.quote(f"/etc/systemd/system/{unit}")
            # never replace (or shadow) a unit of the host's own, e.g. ssh.service
            self.conn.sudo(f"if systemctl cat {u} >/dev/null 2>&1 && ! grep -qs {shlex.quote(UNIT_MARK)} {f}; then "
                           f"echo {u} is a unit labkit did not write: refusing to replace it >&2; exit 3; fi")
            record(info)  # recorded before it starts: a failed start is still stopped by down()
            self.conn.sudo(f"mv {shlex.quote(f'{self.root}/run/{unit}')} {f} && systemctl daemon-reload"
                           f" && systemctl enable {u} && systemctl restart {u}")
        else:
            argv, env = service_command(spec.server, address, port, spec.workers, python=self.python,
                                        service_dir=self.root, node=node, fib_max=spec.fib_max)
            pidfile, logfile = f"{self.root}/run/{node}.pid", f"{self.root}/run/{node}.log"
            self.conn.stop_pidfile(pidfile)
            envs = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
            info = {"pidfile": pidfile, "log": logfile, "port": port}
            record(info)
            # `cd X && cmd &` would background a subshell and $! would not be the server's pid
            self.conn.run(f"cd {shlex.quote(self.root)} || exit 1; {envs} exec nohup setsid {shlex.join(argv)} "
                          f"> {shlex.quote(logfile)} 2>&1 < /dev/null & echo $! > {shlex.quote(pidfile)}")
        info["pid"] = self._wait_up(address, info)
        record(info)
        log.info("%s serving on %s (pid %s)", node, hostport(address, port), info["pid"])
        return info

    def _wait_up(self, address: str, info: dict) -> int | None:
        """Poll the server's /status from its own host until it answers; return its main pid."""
        try:
            wait_until_up(f"http://{hostport(address, info['port'])}", timeout=self.timeout, via=self.conn)
        except BackendError as e:
            tail = self.conn.run(f"tail -n 20 {shlex.quote(info['log'])}", check=False).stdout if "log" in info else ""
            raise BackendError(f"{self.name}: the service did not come up on port {info['port']}: {e}\n{tail}") from None
        if "pidfile" in info:
            return self.conn.read_pidfile(info["pidfile"], tries=1)
        r = self.conn.run(f"systemctl show -p MainPID --value {shlex.quote(info['unit'])}", check=False)
        return int(r.stdout.strip() or 0) or None

    def status(self, address: str, info: dict) -> dict:
        """The server's ``/status``, or ``{"error": ...}`` when it does not answer."""
        try:
            return get_status(f"http://{hostport(address, info['port'])}", via=self.conn)
        except (OSError, ValueError) as e:
            return {"error": str(e)[-300:]}

    def stop(self, info: dict) -> None:
        """Stop the server ``info`` (from :meth:`start`) describes; a gone server is fine."""
        if "unit" in info:
            u, f = shlex.quote(info["unit"]), shlex.quote(f"/etc/systemd/system/{info['unit']}")
            # only a unit labkit wrote (a tampered state must not disable the host's ssh.service)
            self.conn.sudo(f"if grep -qs {shlex.quote(UNIT_MARK)} {f}; then systemctl disable --now {u}; rm -f {f}; "
                           "systemctl daemon-reload; fi", check=False)
        else:
            self.conn.stop_pidfile(info["pidfile"])
