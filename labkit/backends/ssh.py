"""The ssh backend: the lab on existing Linux hosts reached with paramiko.

Deploys ``service/restserver.py`` to ``root`` (``/opt/restserver``) on every
server with a virtualenv holding flask and gunicorn, runs it under systemd when
the host has it (so it survives reboots; the handout's ``nohup`` does not), or
else as a background process in its own session with a pid file. The balancer
is nginx configured like the handout (``worker_connections 4096``, an open-file
limit, ``upstream fibonacci`` + ``proxy_pass``), validated with ``nginx -t``
before it replaces the running config. ab runs on the tester with
``ulimit -n 10000`` and its ``-e``/``-g`` files are read back by SFTP.

Everything started is recorded as soon as it is started (the ``state`` hook:
``.labkit/ssh.json`` for a lab made by :meth:`SshBackend.from_state_or_config`,
the gcp backend's own state when it drives this class), so ``labkit down
--backend ssh`` from any shell stops it. The hosts file (TOML, see
:func:`load_hosts_file`) says which machines play which role.

The gcp backend provisions machines and then hands them to this class, so there
is one deploy path. All roles may share one host (tests put everything on
127.0.0.1), so every server gets its own port when addresses collide.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import posixpath
import shlex
import threading
import tomllib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from .. import state
from ..errors import BackendError, CommandError, ConfigError, NginxConfigError
from ..nginx_conf import render_nginx_conf
from ..remote import Connection
from ..service import SERVICE_DIR, service_command
from .base import AbRun, Backend, ClusterSpec

log = logging.getLogger("labkit")

PATH_PREFIX = "PATH=$PATH:/usr/local/sbin:/usr/sbin:/sbin; "
AB_ULIMIT = "ulimit -n 10000 2>/dev/null || ulimit -n $(ulimit -Hn) 2>/dev/null || true; "
STATE_NAME = "ssh"
HOSTS_ENV = "LABKIT_SSH_HOSTS"


@dataclasses.dataclass(frozen=True)
class HostSpec:
    """One machine: how to SSH to it and the address the other machines use to reach it."""

    host: str  # where labkit connects with SSH
    user: str = "root"
    port: int = 22  # SSH port
    key_filename: str | None = None
    known_hosts: str | None = None
    host_key: tuple | str | None = None  # pinned key(s) "TYPE BASE64"
    address: str | None = None  # internal address other roles use (default: host)
    name: str | None = None

    @property
    def addr(self) -> str:
        return self.address or self.host

    def connect(self) -> Connection:
        hk = list(self.host_key) if isinstance(self.host_key, tuple) else self.host_key
        return Connection(self.host, self.user, port=self.port, key_filename=self.key_filename,
                          known_hosts=self.known_hosts, host_key=hk)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> HostSpec:
        d = dict(d)
        if isinstance(d.get("host_key"), list):
            d["host_key"] = tuple(d["host_key"])
        return cls(**d)


# -- the hosts file -----------------------------------------------------------------

_HOST_KEYS = {"host": str, "user": str, "port": int, "key_filename": str, "known_hosts": str,
              "host_key": (str, list), "address": str, "name": str}
_DEFAULT_KEYS = {k: t for k, t in _HOST_KEYS.items() if k not in ("host", "address", "name")}
_OPTION_KEYS = {"root": str, "python": str, "balancer_port": int, "use_systemd": bool, "system_nginx": bool,
                "nginx_workers": (int, str), "cpu_limited": bool, "service_timeout": (int, float)}
_TYPE_NAMES = {str: "a string", int: "an integer", bool: "true or false", list: "a list of strings",
               float: "a number"}


def _check_table(path, where: str, table, known: dict) -> dict:
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: {where} must be a table")
    for key, value in table.items():
        if key not in known:
            raise ConfigError(f"{path}: {where}: unknown key {key!r} (known: {', '.join(known)})")
        types = known[key] if isinstance(known[key], tuple) else (known[key],)
        ok = isinstance(value, types) and not (isinstance(value, bool) and bool not in types)
        if isinstance(value, list):
            ok = ok and all(isinstance(v, str) for v in value)
        if not ok:
            want = " or ".join(_TYPE_NAMES[t] for t in types)
            raise ConfigError(f"{path}: {where}: key {key!r} must be {want}, not {value!r}")
    return dict(table)


def load_hosts_file(path) -> dict:
    """Read a hosts file into ``SshBackend`` arguments (``servers``, ``balancer``, ``tester``, options).

    The file is TOML::

        [defaults]                     # for every host; each host may override any of these
        user = "ubuntu"                # SSH user (default root; others need password-less sudo)
        key_filename = "~/.ssh/id_ed25519"
        known_hosts = "~/.ssh/known_hosts"   # host keys are checked against it, never accepted blindly
        port = 22

        [[servers]]                    # one table per server, restserver-0, -1, ...
        host = "10.0.0.11"             # where labkit connects
        address = "192.168.0.11"       # optional: the address the balancer/tester use (default: host)

        [balancer]
        host = "10.0.0.10"
        [tester]
        host = "10.0.0.12"
        host_key = "ssh-ed25519 AAAA..."     # optional: pin the key instead of known_hosts

        [options]                      # all optional
        root = "/opt/restserver"       # install folder on each server
        python = "/usr/bin/python3"    # an interpreter with flask+gunicorn (default: a venv in root)
        balancer_port = 80
        use_systemd = true             # default: when the host runs systemd and root is /opt/restserver
        nginx_workers = "auto"

    ``key_filename`` and ``known_hosts`` may start with ``~`` or be relative to
    the hosts file. Any mistake is one :class:`ConfigError` naming the file and
    the key.
    """
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"hosts file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read hosts file {path}: {e}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None
    for key in data:
        if key not in ("defaults", "servers", "balancer", "tester", "options"):
            raise ConfigError(f"{path}: unknown key {key!r} (known: defaults, servers, balancer, tester, options)")
    defaults = _check_table(path, "[defaults]", data.get("defaults", {}), _DEFAULT_KEYS)
    options = _check_table(path, "[options]", data.get("options", {}), _OPTION_KEYS)
    if isinstance(options.get("nginx_workers"), str) and options["nginx_workers"] != "auto":
        raise ConfigError(f"{path}: [options]: key 'nginx_workers' must be an integer or \"auto\"")

    def local_path(value: str) -> str:
        p = Path(os.path.expanduser(value))
        return str(p if p.is_absolute() else (path.parent / p).resolve())

    def host(where: str, table) -> HostSpec:
        t = {**defaults, **_check_table(path, where, table, _HOST_KEYS)}
        if not t.get("host"):
            raise ConfigError(f"{path}: {where}: missing key 'host'")
        for key in ("key_filename", "known_hosts"):
            if key in t:
                t[key] = local_path(t[key])
        if isinstance(t.get("host_key"), list):
            t["host_key"] = tuple(t["host_key"])
        return HostSpec(**t)

    servers = data.get("servers")
    if not isinstance(servers, list) or not servers:
        raise ConfigError(f"{path}: missing key 'servers': list at least one [[servers]] table with a host")
    for role in ("balancer", "tester"):
        if role not in data:
            raise ConfigError(f"{path}: missing key {role!r}: add a [{role}] table with a host")
    return {"servers": [host(f"[[servers]] #{i + 1}", s) for i, s in enumerate(servers)],
            "balancer": host("[balancer]", data["balancer"]), "tester": host("[tester]", data["tester"]),
            **options}


def _sudo(conn_user: str) -> str:
    return "" if conn_user == "root" else "sudo -n "


class SshBackend(Backend):
    """Backend over SSH: ``servers`` run the service, ``balancer`` nginx, ``tester`` ab.

    ``root`` is where the service is installed on each server (a temp dir in
    tests). ``python`` reuses an interpreter that already has flask and
    gunicorn instead of creating ``root/venv`` with pip. ``use_systemd`` and
    ``system_nginx`` default to auto-detection: systemd units and the system
    nginx (``/etc/nginx``, with a backup) only when the host runs systemd, the
    user is root and ``root`` is the system path ``/opt/restserver``.
    """

    name = "ssh"

    def __init__(self, servers: list[HostSpec], balancer: HostSpec, tester: HostSpec, *,
                 root: str = "/opt/restserver", python: str | None = None, balancer_port: int = 80,
                 use_systemd: bool | None = None, system_nginx: bool | None = None,
                 service_timeout: float = 30.0, cpu_limited: bool = True, nginx_workers: str | int = "auto",
                 state_name: str | None = None):
        if not servers:
            raise ConfigError("the ssh backend needs at least one server host")
        self.servers = [dataclasses.replace(s, name=s.name or f"restserver-{i}") for i, s in enumerate(servers)]
        self.balancer = dataclasses.replace(balancer, name=balancer.name or "loadbalancer-0")
        self.tester = dataclasses.replace(tester, name=tester.name or "tester-0")
        self.root = root.rstrip("/") or "/"
        self.python = python
        self.balancer_port = int(balancer_port)
        self.use_systemd = use_systemd
        self.system_nginx = system_nginx
        self.service_timeout = service_timeout
        self._cpu_limited = cpu_limited
        self.nginx_workers = nginx_workers
        self._spec: ClusterSpec | None = None
        self._running: dict[int, dict] = {}  # server index -> how it was started
        self._nginx: dict | None = None
        self._conns: dict[tuple, Connection] = {}
        self._lock = threading.Lock()
        self._deployed: set[tuple] = set()
        self._facts: dict[tuple, dict] = {}
        self.state_name = state_name  # save to .labkit/<state_name>.json after every change
        self.on_change = None  # or a callable, called after every change (the gcp backend saves its state)
        self.hosts_file: str | None = None
        self._state_lock = threading.Lock()

    # -- state: what is running, so `labkit down` works from another shell ----------

    def to_state(self) -> dict:
        """Everything needed to attach to this lab later (JSON-serialisable)."""
        return {
            "backend": "ssh", "hosts_file": self.hosts_file,
            "servers": [h.to_dict() for h in self.servers], "balancer": self.balancer.to_dict(),
            "tester": self.tester.to_dict(),
            "options": {"root": self.root, "python": self.python, "balancer_port": self.balancer_port,
                        "use_systemd": self.use_systemd, "system_nginx": self.system_nginx,
                        "service_timeout": self.service_timeout, "cpu_limited": self._cpu_limited,
                        "nginx_workers": self.nginx_workers},
            "spec": dataclasses.asdict(self._spec) if self._spec else None,
            "running": {str(i): dict(info) for i, info in sorted(self._running.items())},
            "nginx": dict(self._nginx) if self._nginx else None,
        }

    @classmethod
    def from_state(cls, saved: dict, **overrides) -> SshBackend:
        """A backend attached to the lab ``saved`` (from :meth:`to_state`) describes."""
        b = cls([HostSpec.from_dict(h) for h in saved["servers"]], HostSpec.from_dict(saved["balancer"]),
                HostSpec.from_dict(saved["tester"]), **{**saved.get("options", {}), **overrides})
        b.hosts_file = saved.get("hosts_file")
        b._spec = ClusterSpec(**saved["spec"]) if saved.get("spec") else None
        b._running = {int(i): info for i, info in saved.get("running", {}).items()}
        b._nginx = saved.get("nginx")
        return b

    @classmethod
    def from_state_or_config(cls, hosts=None, **kw) -> SshBackend:
        """Attach to the lab in ``.labkit/ssh.json``, or build a new one from the hosts file.

        ``hosts`` defaults to ``$LABKIT_SSH_HOSTS``. A new backend writes its state
        as soon as it starts anything, and forgets it once ``down()`` stopped everything.
        """
        hosts = hosts or os.environ.get(HOSTS_ENV) or None
        saved = state.load(STATE_NAME)
        if saved and hosts and not saved.get("running") and not saved.get("nginx"):
            saved = None  # nothing was started (e.g. an unknown host key): the hosts file, maybe fixed, wins
        if saved:
            if hosts and saved.get("hosts_file") and str(Path(hosts).resolve()) != saved["hosts_file"]:
                raise ConfigError(f"a lab from {saved['hosts_file']} is up; run `labkit down --backend ssh` "
                                  f"before using {hosts}")
            return cls.from_state(saved, state_name=STATE_NAME, **kw)
        if not hosts:
            raise ConfigError(f"the ssh backend needs a hosts file: --hosts FILE (or ${HOSTS_ENV}); "
                              "see README 'Running on your own hosts (ssh)'")
        b = cls(**{**load_hosts_file(hosts), **kw}, state_name=STATE_NAME)
        b.hosts_file = str(Path(hosts).resolve())
        return b

    def _changed(self) -> None:
        """Record the current state (called as soon as anything is started or stopped)."""
        with self._state_lock:
            if self.state_name:
                state.save(self.state_name, self.to_state())
            if self.on_change is not None:
                self.on_change()

    # -- connections and host facts -------------------------------------------------

    @staticmethod
    def _key(h: HostSpec) -> tuple:
        return (h.host, h.port, h.user)

    def conn(self, h: HostSpec) -> Connection:
        with self._lock:
            c = self._conns.get(self._key(h))
            if c is None:
                c = self._conns[self._key(h)] = h.connect()
            return c

    def _facts_of(self, h: HostSpec) -> dict:
        k = self._key(h)
        if k not in self._facts:
            r = self.conn(h).run("id -u; test -d /run/systemd/system && echo systemd || echo none")
            uid, init = r.stdout.split()
            self._facts[k] = {"root": uid == "0", "systemd": init == "systemd"}
        return self._facts[k]

    def _systemd(self, h: HostSpec) -> bool:
        if self.use_systemd is not None:
            return self.use_systemd
        f = self._facts_of(h)
        return f["systemd"] and self.root == "/opt/restserver"

    # -- servers --------------------------------------------------------------------

    def server_port(self, i: int) -> int:
        """Port of server ``i``: the spec's port, plus ``i`` when servers share an address."""
        port = (self._spec or ClusterSpec()).port
        addrs = [s.addr for s in self.servers]
        return port + i if addrs.count(self.servers[i].addr) > 1 else port

    def _python(self) -> str:
        return self.python or f"{self.root}/venv/bin/python"

    def _deploy_host(self, h: HostSpec) -> None:
        """Copy restserver.py and make sure the virtualenv exists (once per host)."""
        if self._key(h) in self._deployed:
            return
        c, sudo, root = self.conn(h), _sudo(h.user), shlex.quote(self.root)
        c.run(f"{sudo}mkdir -p {root}/run && {sudo}chown -R $(id -u) {root}")
        c.put((SERVICE_DIR / "restserver.py").read_bytes(), f"{self.root}/restserver.py")
        if self.python is None:
            venv = f"{root}/venv"
            if c.run(f"test -x {venv}/bin/python", check=False).exit_code != 0:
                if c.run(f"python3 -m venv {venv}", check=False).exit_code != 0:
                    log.info("%s: installing python3-venv", h.name)
                    c.run(f"{sudo}apt-get update -q && {sudo}env DEBIAN_FRONTEND=noninteractive "
                          f"apt-get install -y -q python3-venv", timeout=600)
                    c.run(f"rm -rf {venv}; python3 -m venv {venv}")
            c.run(f"{venv}/bin/python -m pip install -q flask gunicorn", timeout=600)
        self._deployed.add(self._key(h))

    def _unit_text(self, argv, env, i) -> str:
        template = SERVICE_DIR / "restserver.service"
        if template.exists():
            text = template.read_text()
            for key, value in {"@EXEC_START@": shlex.join(argv), "@INSTALL_DIR@": self.root,
                               "@NODE@": env["LABKIT_NODE"], "@FIB_MAX@": env["LABKIT_FIB_MAX"]}.items():
                text = text.replace(key, value)
            return text
        envs = "\n".join(f"Environment={k}={v}" for k, v in env.items())
        return (f"[Unit]\nDescription=labkit restserver {self.servers[i].name}\nAfter=network-online.target\n\n"
                f"[Service]\nWorkingDirectory={self.root}\n{envs}\nExecStart={shlex.join(argv)}\n"
                "Restart=always\nRestartSec=1\nLimitNOFILE=65536\n\n[Install]\nWantedBy=multi-user.target\n")

    def _start_server(self, i: int) -> None:
        h, spec = self.servers[i], self._spec
        self._deploy_host(h)
        c, sudo = self.conn(h), _sudo(h.user)
        port = self.server_port(i)
        argv, env = service_command(spec.server, h.addr, port, spec.workers, python=self._python(),
                                    service_dir=self.root, node=h.name, fib_max=spec.fib_max)
        if self._systemd(h):
            unit = f"{h.name}.service"
            c.put(self._unit_text(argv, env, i).encode(), f"{self.root}/run/{unit}")
            info = {"unit": unit, "port": port}
            self._running[i] = info  # recorded before it starts: a failed start is still stopped by down()
            self._changed()
            c.run(f"{sudo}mv {self.root}/run/{unit} /etc/systemd/system/{unit} && {sudo}systemctl daemon-reload"
                  f" && {sudo}systemctl enable {unit} && {sudo}systemctl restart {unit}")
        else:
            pidfile, logfile = f"{self.root}/run/{h.name}.pid", f"{self.root}/run/{h.name}.log"
            self._stop_pidfile(c, pidfile)
            envs = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
            info = {"pidfile": pidfile, "log": logfile, "port": port}
            self._running[i] = info
            self._changed()
            # `cd X && cmd &` would background a subshell and $! would not be the server's pid
            c.run(f"cd {shlex.quote(self.root)} || exit 1; {envs} exec nohup setsid {shlex.join(argv)} "
                  f"> {shlex.quote(logfile)} 2>&1 < /dev/null & echo $! > {shlex.quote(pidfile)}")
        info["pid"] = self._wait_up(h, port, info)
        self._changed()
        log.info("%s serving on %s:%d (pid %s)", h.name, h.addr, port, info["pid"])

    def _wait_up(self, h: HostSpec, port: int, info: dict) -> int | None:
        """Poll the server's /status on its own host until it answers; return its main pid."""
        script = (
            "import json,sys,time,urllib.request\n"
            "o=urllib.request.build_opener(urllib.request.ProxyHandler({}))\n"
            f"d=time.time()+{self.service_timeout}\n"
            "while True:\n"
            f"  try: print(o.open('http://{self._hostport(h.addr, port)}/status',timeout=2).read().decode()); break\n"
            "  except Exception as e:\n"
            "    if time.time()>d: sys.exit('not up: %s' % e)\n"
            "    time.sleep(0.1)\n")
        c = self.conn(h)
        try:
            c.run(f"{shlex.quote(self._python())} -c {shlex.quote(script)}", timeout=self.service_timeout + 10)
        except CommandError as e:
            tail = ""
            if "log" in info:
                tail = c.run(f"tail -n 20 {shlex.quote(info['log'])}", check=False).stdout
            raise BackendError(f"{h.name}: the service did not come up on port {port}: {e}\n{tail}") from None
        if "pidfile" in info:
            return int(c.get_text(info["pidfile"]).strip())
        r = c.run(f"systemctl show -p MainPID --value {info['unit']}", check=False)
        return int(r.stdout.strip() or 0) or None

    @staticmethod
    def _hostport(host: str, port: int) -> str:
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    @staticmethod
    def _stop_pidfile(c: Connection, pidfile: str) -> None:
        """Stop the process group whose leader's pid is in ``pidfile`` (TERM, then KILL)."""
        p = shlex.quote(pidfile)
        c.run(f"if [ -f {p} ]; then pid=$(cat {p}); "
              f"kill -TERM -- -$pid 2>/dev/null || kill -TERM $pid 2>/dev/null; "
              f"for n in $(seq 50); do kill -0 -- -$pid 2>/dev/null || break; sleep 0.1; done; "
              f"kill -KILL -- -$pid 2>/dev/null; rm -f {p}; fi; true")

    def _stop_server(self, i: int) -> None:
        info = self._running.get(i)
        if info is None:
            return
        h = self.servers[i]
        c = self.conn(h)
        if "unit" in info:
            sudo = _sudo(h.user)
            c.run(f"{sudo}systemctl disable --now {info['unit']}; {sudo}rm -f /etc/systemd/system/{info['unit']}; "
                  f"{sudo}systemctl daemon-reload", check=False)
        else:
            self._stop_pidfile(c, info["pidfile"])
        self._running.pop(i, None)
        self._changed()
        log.info("%s stopped", h.name)

    # -- balancer -------------------------------------------------------------------

    def _nginx_mode_system(self) -> bool:
        if self.system_nginx is not None:
            return self.system_nginx
        f = self._facts_of(self.balancer)
        return f["root"] and f["systemd"] and self.root == "/opt/restserver"

    def _configure_balancer(self, indexes: list[int]) -> None:
        b = self.balancer
        c, sudo = self.conn(b), _sudo(b.user)
        upstreams = [(self.servers[i].addr, self.server_port(i)) for i in indexes]
        if c.run(PATH_PREFIX + "command -v nginx", check=False).exit_code != 0:
            log.info("%s: installing nginx", b.name)
            c.run(f"{sudo}apt-get update -q && {sudo}env DEBIAN_FRONTEND=noninteractive apt-get install -y -q nginx",
                  timeout=600)
        if self._nginx_mode_system():
            self._configure_system_nginx(c, sudo, upstreams)
            return
        work = f"{self.root}/nginx-{b.name}"
        conf, new = f"{work}/nginx.conf", f"{work}/nginx.conf.new"
        text = render_nginx_conf(b.addr, self.balancer_port, upstreams, work,
                                 pid_path=f"{work}/nginx.pid", error_log=f"{work}/error.log",
                                 worker_processes=self.nginx_workers)
        c.run(f"mkdir -p {shlex.quote(work)}")
        c.put(text.encode(), new)
        base = f"{PATH_PREFIX}nginx -p {shlex.quote(work)}"
        r = c.run(f"{base} -t -c {shlex.quote(new)}", check=False)
        if r.exit_code != 0:
            c.run(f"rm -f {shlex.quote(new)}", check=False)
            raise NginxConfigError(f"{b.name}: generated nginx config failed validation; "
                                   f"the running one is untouched: {r.stderr.strip()}")
        c.run(f"mv {shlex.quote(new)} {shlex.quote(conf)}")
        pid = f"{work}/nginx.pid"
        running = c.run(f"test -f {pid} && kill -0 $(cat {pid}) 2>/dev/null", check=False).exit_code == 0
        if not running:
            self._nginx = {"mode": "process", "work": work, "conf": conf, "pidfile": pid, "pid": None}
            self._changed()
        c.run(f"{base} -c {shlex.quote(conf)}" + (" -s reload" if running else ""))
        self._nginx = {"mode": "process", "work": work, "conf": conf, "pidfile": pid,
                       "pid": self._read_pid(c, pid)}
        self._changed()

    def _read_pid(self, c: Connection, pidfile: str, tries: int = 50) -> int:
        r = c.run(f"for n in $(seq {tries}); do [ -s {pidfile} ] && cat {pidfile} && exit 0; sleep 0.1; done; exit 1")
        return int(r.stdout.strip())

    def _configure_system_nginx(self, c: Connection, sudo: str, upstreams) -> None:
        """The handout's steps 5-12 on /etc/nginx, with a backup and validation before reload."""
        text = render_nginx_conf(self.balancer.addr, self.balancer_port, upstreams, "/var/lib/nginx",
                                 pid_path="/run/nginx.pid", error_log="/var/log/nginx/error.log", user="www-data",
                                 worker_processes=self.nginx_workers)
        c.put(text.encode(), f"/tmp/labkit-nginx.conf.{self.balancer.name}")
        tmp = f"/tmp/labkit-nginx.conf.{self.balancer.name}"
        c.run(f"{sudo}test -f /etc/nginx/nginx.conf.labkit-backup || {sudo}cp -p /etc/nginx/nginx.conf "
              f"/etc/nginx/nginx.conf.labkit-backup")
        r = c.run(f"{PATH_PREFIX}{sudo}nginx -t -c {tmp}", check=False)
        if r.exit_code != 0:
            raise NginxConfigError(f"{self.balancer.name}: generated nginx config failed validation; "
                                   f"/etc/nginx/nginx.conf is untouched: {r.stderr.strip()}")
        if self._nginx is None:
            self._nginx = {"mode": "system", "pid": None}
            self._changed()
        c.run(f"{sudo}cp {tmp} /etc/nginx/nginx.conf && rm -f {tmp}")
        dropin = "[Service]\nLimitNOFILE=65536\n"
        have = c.run("cat /etc/systemd/system/nginx.service.d/local.conf 2>/dev/null", check=False).stdout
        if have != dropin:
            c.run(f"{sudo}mkdir -p /etc/systemd/system/nginx.service.d && printf %s {shlex.quote(dropin)} | "
                  f"{sudo}tee /etc/systemd/system/nginx.service.d/local.conf >/dev/null && "
                  f"{sudo}systemctl daemon-reload && {sudo}systemctl restart nginx")
        else:
            c.run(f"{sudo}systemctl reload-or-restart nginx")
        self._nginx = {"mode": "system", "pid": self._read_pid(c, "/run/nginx.pid")}
        self._changed()

    def _stop_balancer(self) -> None:
        info = self._nginx
        if info is None:
            return
        c, sudo = self.conn(self.balancer), _sudo(self.balancer.user)
        if info["mode"] == "system":
            c.run(f"{sudo}cp /etc/nginx/nginx.conf.labkit-backup /etc/nginx/nginx.conf && "
                  f"{sudo}systemctl reload-or-restart nginx", check=False)
        else:
            self._stop_pidfile(c, info["pidfile"])
            # nginx is not a session leader: stop the master by pid, it takes its workers along
            if info.get("pid"):
                pid = int(info["pid"])
                c.run(f"kill -QUIT {pid} 2>/dev/null; for n in $(seq 50); do kill -0 {pid} 2>/dev/null"
                      f" || exit 0; sleep 0.1; done; kill -KILL {pid} 2>/dev/null; true")
        self._nginx = None
        self._changed()
        log.info("%s stopped", self.balancer.name)

    # -- Backend --------------------------------------------------------------------

    def up(self, spec: ClusterSpec) -> None:
        if spec.nodes > len(self.servers):
            raise ConfigError(f"{spec.nodes} nodes asked for, but only {len(self.servers)} server hosts given")
        if self._spec is not None and dataclasses.replace(self._spec, nodes=spec.nodes) != spec:
            for i in list(self._running):  # server kind/port/workers changed: restart them all
                self._stop_server(i)
        self._spec = spec
        self._changed()
        self._apply(spec.nodes)

    def _apply(self, nodes: int) -> None:
        want = list(range(nodes))
        for i in [i for i in self._running if i not in want]:
            self._stop_server(i)
        todo = [i for i in want if i not in self._running]
        # servers on different hosts start in parallel; the same host deploys once
        for h in {self._key(self.servers[i]): self.servers[i] for i in todo}.values():
            self._deploy_host(h)
        if todo:
            with ThreadPoolExecutor(max_workers=min(8, len(todo))) as pool:
                list(pool.map(self._start_server, todo))
        if nodes > 1:
            self._configure_balancer(want)
        else:
            self._stop_balancer()

    def scale(self, nodes: int) -> None:
        if self._spec is None:
            raise BackendError("scale() before up()")
        self.up(dataclasses.replace(self._spec, nodes=nodes))

    @property
    def url(self) -> str:
        if self._spec is None:
            raise BackendError("the cluster is not up")
        if self._spec.nodes > 1:
            return f"http://{self._hostport(self.balancer.addr, self.balancer_port)}"
        return f"http://{self._hostport(self.servers[0].addr, self.server_port(0))}"

    @property
    def cpu_limited(self) -> bool:
        return self._cpu_limited

    def status(self) -> dict:
        out = {"backend": self.name, "spec": dataclasses.asdict(self._spec) if self._spec else None,
               "url": self.url if self._spec else None, "servers": [], "balancer": None,
               "tester": {"name": self.tester.name, "host": self.tester.host}}
        for i, info in sorted(self._running.items()):
            h = self.servers[i]
            entry = {"name": h.name, "host": h.host, "address": h.addr, **info}
            script = ("import urllib.request as u;print(u.build_opener(u.ProxyHandler({})).open("
                      f"'http://{self._hostport(h.addr, info['port'])}/status',timeout=5).read().decode())")
            r = self.conn(h).run(f"{shlex.quote(self._python())} -c {shlex.quote(script)}", check=False)
            try:
                entry["status"] = json.loads(r.stdout) if r.exit_code == 0 else {"error": r.stderr.strip()[-300:]}
            except ValueError:
                entry["status"] = {"error": r.stdout[-300:]}
            out["servers"].append(entry)
        if self._nginx:
            out["balancer"] = {"name": self.balancer.name, "host": self.balancer.host,
                               "address": self.balancer.addr, "port": self.balancer_port, **self._nginx}
        return out

    def _ensure_ab(self, c: Connection) -> None:
        """Install apache2-utils on the tester when ab is missing (a fresh GCE image has none)."""
        facts = self._facts.setdefault(("ab",) + self._key(self.tester), {})
        if facts.get("ab"):
            return
        if c.run(PATH_PREFIX + "command -v ab", check=False).exit_code != 0:
            sudo = _sudo(self.tester.user)
            log.info("%s: installing apache2-utils (ab)", self.tester.name)
            c.run(f"{sudo}apt-get update -q && {sudo}env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "
                  "apache2-utils", timeout=600)
        facts["ab"] = True

    def run_ab(self, argv: list[str], payload: bytes, timeout: float, progress=None) -> AbRun:
        c = self.conn(self.tester)
        if argv and argv[0] == "ab":
            self._ensure_ab(c)
        work = c.run("mktemp -d /tmp/labkit-ab.XXXXXX").stdout.strip()
        files = {"payload": f"{work}/payload.json", "percentiles": f"{work}/percentiles.csv",
                 "gnuplot": f"{work}/gnuplot.tsv"}
        try:
            c.put(payload, files["payload"])
            real = [a.replace("{payload}", files["payload"]).replace("{percentiles}", files["percentiles"])
                    .replace("{gnuplot}", files["gnuplot"]) for a in argv]
            r = c.run(AB_ULIMIT + shlex.join(real), check=False, timeout=timeout)
            got = {}
            for k in ("percentiles", "gnuplot"):
                got[k] = c.get_text(files[k]) if any(files[k] in a for a in real) and c.exists(files[k]) else None
            return AbRun(tuple(real), r.exit_code, r.stdout, r.stderr, got["percentiles"], got["gnuplot"])
        finally:
            c.run(f"rm -rf {shlex.quote(work)}", check=False)

    def close(self) -> None:
        """Close the SSH connections, stopping nothing (the gcp backend deletes the machines instead)."""
        with self._lock:
            conns, self._conns = list(self._conns.values()), {}
        for c in conns:
            c.close()

    def down(self) -> dict:
        """Stop the balancer and every server this lab started; forget the state. Safe twice."""
        errors, stopped = [], []
        steps = [(self.balancer.name, self._stop_balancer)] if self._nginx else []
        steps += [(self.servers[i].name, lambda i=i: self._stop_server(i)) for i in sorted(self._running)]
        for name, step in steps:
            try:
                step()
                stopped.append(name)
            except Exception as e:  # noqa: BLE001 - keep stopping the rest
                errors.append(e)
                log.warning("while stopping %s: %s", name, e)
        self.close()
        self._deployed.clear()
        self._facts.clear()
        if errors:  # keep the record of what is still running, so another `down` can retry
            self._changed()
            raise BackendError(f"down() could not stop everything: {errors[0]}")
        self._spec = None
        if self.state_name:
            state.clear(self.state_name)
        if self.on_change is not None:
            self.on_change()
        return {"backend": self.name, "stopped": stopped}
