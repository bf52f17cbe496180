"""The ssh backend: the lab on existing Linux hosts reached with paramiko.

Which machine plays which role comes from a hosts file (:mod:`labkit.backends.ssh.hosts_file`,
``settings.ssh_hosts`` or ``--hosts``). Each server host runs the service through a
:class:`~labkit.backends.ssh.service.RemoteService` (installed in ``root``, a systemd unit
when the host has systemd, else a background process with a pid file); the balancer is
a :class:`~labkit.backends.ssh.nginx.RemoteNginx` (or the system nginx), configured like the
handout and validated with ``nginx -t`` before it replaces the running config. ab runs
on the tester with ``ulimit -n 10000`` and its ``-e``/``-g`` files are read back by SFTP.

Everything started is recorded as soon as it is started (``.labkit/ssh.json``, or the
gcp backend's own state when it drives this class), so ``labkit down --backend ssh``
from any shell stops it. The gcp backend provisions machines and then hands them to
this class, so there is one deploy path. All roles may share one host (tests put
everything on 127.0.0.1), so every server gets its own port when addresses collide.
The CPU counters and probes settling reads on these hosts: :mod:`labkit.backends.ssh.sampling`.
"""

from __future__ import annotations

import dataclasses
import logging
import shlex
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from labkit.backends.cpu_accounting import split_times, wrap_with_times
from labkit.errors import BackendError, ConfigError
from labkit.backends.ssh.hosts_file import HostSpec, load_hosts_file
from labkit.backends.ssh.connection import Connection
from labkit.backends.ssh.nginx import RemoteNginx, SystemNginx, from_record
from labkit.backends.ssh.service import SYSTEM_ROOT, RemoteService, hostport, install_packages
from labkit.service import wait_until_up
from labkit.backends.base import AB_NOFILE, AbRun, Backend, ClusterSpec
from labkit.backends.records import Record
from labkit.backends.ssh.hosts_file import OPTION_DEFAULTS, check_address, check_name, check_root
from labkit.backends.serving import SERVING_TIMEOUT, wait_round_robin
from labkit.backends.ssh.sampling import SshSampling

log = logging.getLogger("labkit")

AB_ULIMIT = f"ulimit -n {AB_NOFILE} 2>/dev/null || ulimit -n $(ulimit -Hn) 2>/dev/null || true; "
PATH_PREFIX = "PATH=$PATH:/usr/local/sbin:/usr/sbin:/sbin; "
OPTIONS = OPTION_DEFAULTS  # defined once, with the hosts file's types (labkit.backends.ssh.hosts_file)


@dataclasses.dataclass
class SshState(Record):
    """The ssh lab's record (``.labkit/ssh.json``, or inside the gcp backend's record)."""

    servers: list[HostSpec]  # restserver-0, -1, ... (never empty)
    balancer: HostSpec
    tester: HostSpec
    options: dict[str, Any]  # OPTIONS, as given
    running: dict[str, dict[str, Any]]  # server index -> what RemoteService.start recorded
    nginx: dict[str, Any] | None  # the balancer's record while it runs
    spec: ClusterSpec | None
    hosts_file: str | None = None
    more_testers: list[HostSpec] = dataclasses.field(default_factory=list)  # tester-1... (several ab processes)
    backend: str = "ssh"

    def check(self) -> None:
        """Names and addresses end up in remote shells and unit names: checked again when loaded."""
        if not self.servers:
            raise ValueError("servers: the list is empty")
        for i, h in enumerate(self.servers):
            check_name(h.name, server=not h.name or "-restserver-" not in h.name)  # gcp: <prefix>restserver-N
            check_address(h.host, f"servers[{i}].host")
            check_address(h.addr, f"servers[{i}].address")
        for role, h in [("balancer", self.balancer), ("tester", self.tester),
                        *((f"more_testers[{i}]", t) for i, t in enumerate(self.more_testers))]:
            check_name(h.name)
            check_address(h.host, f"{role}.host")
            check_address(h.addr, f"{role}.address")
        unknown = set(self.options) - set(OPTIONS)
        if unknown:
            raise ValueError(f"options: unknown key(s) {', '.join(sorted(unknown))}")
        if not isinstance(self.options.get("root"), str):
            raise ValueError("options.root must be a string")
        check_root(self.options["root"])


class SshBackend(SshSampling, Backend):
    """Backend over SSH: ``servers`` run the service, ``balancer`` nginx, ``tester`` ab.

    Made from a hosts file (``hosts=PATH``, default ``settings.ssh_hosts``) or from
    :class:`HostSpec` values (``servers=[...], balancer=..., tester=...``), with the
    options of the hosts file's ``[options]`` table as keywords: ``root`` is where
    the service is installed on each server (a temp dir in tests); ``python`` reuses
    an interpreter that already has flask and gunicorn instead of creating
    ``root/venv``; ``use_systemd`` and ``system_nginx`` default to auto-detection
    (systemd units and the system nginx only when the host runs systemd, the user is
    root and ``root`` is the system path ``/opt/restserver``).
    """

    name = "ssh"
    record_class = SshState
    warms_up = True
    _state: SshState

    # -- making one, attaching to one ------------------------------------------------
    def _new_state(self, hosts: str | None = None, servers: list[HostSpec] | None = None,
                   balancer: HostSpec | None = None, tester: HostSpec | None = None,
                   more_testers: list[HostSpec] | None = None, **options) -> SshState:
        hosts_file = None
        if servers is None:
            hosts = hosts or self.settings.ssh_hosts
            if not hosts:
                raise ConfigError("the ssh backend needs a hosts file: --hosts FILE (or $LABKIT_SSH_HOSTS); "
                                  "see README 'Running on your own hosts (ssh)'")
            args = load_hosts_file(hosts)
            servers, balancer, tester = args.pop("servers"), args.pop("balancer"), args.pop("tester")
            more_testers = args.pop("more_testers", None) or more_testers
            options = {**args, **options}
            hosts_file = str(Path(hosts).resolve())
        if not servers:
            raise ConfigError("the ssh backend needs at least one server host")
        unknown = set(options) - set(OPTIONS)
        if unknown:
            raise ConfigError(f"unknown ssh backend option(s): {', '.join(sorted(unknown))}")
        opts = {**OPTIONS, **options}
        opts["root"] = opts["root"].rstrip("/") or "/"
        opts["balancer_port"] = int(opts["balancer_port"])
        named = [dataclasses.replace(s, name=s.name or f"restserver-{i}") for i, s in enumerate(servers)]
        record = SshState(servers=named, balancer=dataclasses.replace(balancer, name=balancer.name or "loadbalancer-0"),
                          tester=dataclasses.replace(tester, name=tester.name or "tester-0"), options=opts,
                          running={}, nginx=None, spec=None, hosts_file=hosts_file,
                          more_testers=[dataclasses.replace(t, name=t.name or f"tester-{i + 1}")
                                        for i, t in enumerate(more_testers or [])])
        try:
            record.check()
        except ValueError as e:
            raise ConfigError(str(e)) from None
        return record

    def _resumes(self, saved: SshState, options: dict) -> bool:
        hosts = options.get("hosts") or self.settings.ssh_hosts
        if hosts and not saved.running and not saved.nginx:
            return False  # nothing was started (e.g. an unknown host key): the hosts file, maybe fixed, wins
        if hosts and saved.hosts_file and str(Path(hosts).resolve()) != saved.hosts_file:
            raise ConfigError(f"a lab from {saved.hosts_file} is up; run `labkit down --backend ssh` "
                              f"before using {hosts}")
        return True

    def _attached(self, hosts: str | None = None, **options) -> None:
        super()._attached(**options)  # the hosts file was checked by _resumes

    def _runtime(self) -> None:
        self._conns: dict[tuple, Connection] = {}
        self._services: dict[tuple, RemoteService] = {}
        self._lock = threading.Lock()
        self._ab_ready: set = set()  # the testers where ab is known to be installed
        self._ab_cpu: float | None = 0.0  # CPU seconds ab used on the testers (their shells' `times`)
        self._ab_cpu_lock = threading.Lock()

    # -- what the state says ---------------------------------------------------------
    @property
    def servers(self) -> list[HostSpec]:
        return list(self._state.servers)

    @property
    def balancer(self) -> HostSpec:
        return self._state.balancer

    @property
    def tester(self) -> HostSpec:
        return self._state.tester

    # -- what a backend driving this one (gcp) changes -------------------------------------
    def replace_host(self, name: str, host: HostSpec) -> None:
        """Record ``host`` for the machine named ``name`` (server or balancer), e.g. its new
        address after a restart; saved at once."""
        with self._save_lock:
            s = self._state
            s.servers = [host if h.name == name else h for h in s.servers]
            if s.balancer.name == name:
                s.balancer = host
            if s.tester.name == name:
                s.tester = host
            self._save()

    def add_servers(self, hosts: list[HostSpec]) -> None:
        """Append server machines (restserver-N...) the lab may now use; saved at once."""
        with self._save_lock:
            self._state.servers = [*self._state.servers, *hosts]
            self._save()

    def use_balancer(self, host: HostSpec) -> None:
        """Make ``host`` the balancer machine (it was the first server until nodes exceeded 1)."""
        with self._save_lock:
            self._state.balancer = host
            self._save()

    def stop_server(self, i: int) -> None:
        """Stop server ``i``'s service (the machine stays): e.g. before its disk is imaged."""
        self._stop_server(i)

    @property
    def testers(self) -> list[HostSpec]:
        """tester-0 and the further testers (``more_testers``): one ab process each for a point
        measured by several load generators."""
        return [self.tester] + list(self._state.more_testers)

    def add_testers(self, hosts: list[HostSpec]) -> None:
        """Record further tester hosts (the gcp backend creates tester-1..k-1 on demand)."""
        with self._save_lock:
            self._state.more_testers = [*self._state.more_testers, *hosts]
            self._save()

    def max_testers(self) -> int:
        return len(self.testers)

    @property
    def hosts_file(self) -> str | None:
        return self._state.hosts_file

    @property
    def options(self) -> dict:
        return self._state.options

    @property
    def balancer_port(self) -> int:
        return self.options["balancer_port"]

    @property
    def _running(self) -> dict[str, dict]:
        return self._state.running

    def _record_server(self, i: int, info: dict) -> None:
        with self._save_lock:
            self._running[str(i)] = info
            self._save()

    def _record_nginx(self, info: dict | None) -> None:
        with self._save_lock:
            self._state.nginx = info
            self._save()

    # -- connections, services, the balancer ---------------------------------------------
    def conn(self, h: HostSpec) -> Connection:
        """The one SSH connection to ``h``'s login, opened on first use."""
        with self._lock:
            c = self._conns.get(h.key)
            if c is None:
                c = self._conns[h.key] = h.connect()
            return c

    def service(self, h: HostSpec) -> RemoteService:
        """The service on host ``h`` (one per login: servers sharing a host install once)."""
        conn = self.conn(h)
        with self._lock:
            s = self._services.get(h.key)
            if s is None:
                s = self._services[h.key] = RemoteService(
                    conn, h.name, root=self.options["root"], python=self.options["python"],
                    use_systemd=self.options["use_systemd"], timeout=self.options["service_timeout"])
            return s

    def nginx(self, info: dict | None = None) -> RemoteNginx:
        """The balancer: the one ``info`` (a saved record) describes, or the one to start."""
        b, workers = self.balancer, self.options["nginx_workers"]
        if workers == "auto" and self.spec is not None:  # one worker per vCPU of the balancer's type
            from labkit import machine_types
            from labkit.nginx_conf import workers_for

            mt = self._balancer_type(self.spec)
            workers = workers_for(mt) if mt in machine_types.MACHINE_TYPES else "auto"
        if info is not None:
            return from_record(self.conn(b), b.name, b.addr, self.balancer_port, info, workers)
        system = self.options["system_nginx"]
        if system is None:
            facts = self.service(b).facts()
            system = facts["root"] and facts["systemd"] and self.options["root"] == SYSTEM_ROOT
        if system:
            return SystemNginx(self.conn(b), b.name, b.addr, self.balancer_port, workers)
        return RemoteNginx(self.conn(b), b.name, b.addr, self.balancer_port,
                           f"{self.options['root']}/nginx-{b.name}", workers)

    def server_port(self, i: int) -> int:
        """Port of server ``i``: the spec's port, plus ``i`` when servers share an address."""
        port = (self.spec or ClusterSpec()).port
        addrs = [s.addr for s in self.servers]
        return port + i if addrs.count(addrs[i]) > 1 else port

    def install(self, h: HostSpec) -> None:
        """Install the service on ``h`` without starting it (the gcp backend images a prepared server)."""
        self.service(h).install()

    def unit_text(self, i: int) -> str:
        """The systemd unit server ``i`` runs under when its host uses systemd (what is installed)."""
        h, spec = self.servers[i], self._require_spec()
        return self.service(h).unit_text(spec, h.name, h.addr, self.server_port(i))

    # -- the Backend steps ---------------------------------------------------------------
    def _check(self, spec: ClusterSpec) -> None:
        if spec.nodes > len(self.servers):
            raise ConfigError(f"{spec.nodes} nodes asked for, but only {len(self.servers)} server hosts given")

    def _stop_servers(self) -> None:
        for i in sorted(int(k) for k in self._running):
            self._stop_server(i)

    def _start_server(self, i: int) -> None:
        h = self.servers[i]
        self.service(h).start(self.spec, h.name, h.addr, self.server_port(i),
                              record=lambda info: self._record_server(i, info))

    def _stop_server(self, i: int) -> None:
        info = self._running.get(str(i))
        if info is not None:
            h = self.servers[i]
            self.service(h).stop(info)
            with self._save_lock:
                self._running.pop(str(i), None)
                self._save()
            log.info("%s stopped", h.name)

    def _deploy(self, spec: ClusterSpec) -> None:
        want = list(range(spec.nodes))
        for i in [int(k) for k in list(self._running) if int(k) not in want]:
            self._stop_server(i)
        todo = [i for i in want if str(i) not in self._running]
        servers = self.servers
        for h in {servers[i].key: servers[i] for i in todo}.values():  # the same host installs once
            self.install(h)
        if todo:  # servers on different hosts start in parallel
            with ThreadPoolExecutor(max_workers=min(8, len(todo))) as pool:
                list(pool.map(self._start_server, todo))
        if spec.behind_balancer:
            upstreams = [(servers[i].addr, self.server_port(i)) for i in want]
            self.nginx().apply(upstreams, record=self._record_nginx)
        else:
            self._stop_balancer()
        self._wait_serving(spec)

    def _wait_serving(self, spec: ClusterSpec) -> None:
        """Wait until the machines are idle, every server answers ``/status`` from its own host,
        then (behind the balancer) until the balancer answers from exactly those servers, as the tester
        sees it. After an overloaded point nginx keeps servers marked down for its
        ``fail_timeout`` (502s meanwhile): waited out, bounded, then a one-line BackendError."""
        deadline = time.monotonic() + SERVING_TIMEOUT
        self.settle(timeout=max(1.0, min(30.0, deadline - time.monotonic())))
        servers = self.servers
        for i in range(spec.nodes):
            h = servers[i]
            url = f"http://{hostport(h.addr, self.server_port(i))}"
            try:
                wait_until_up(url, timeout=max(1.0, deadline - time.monotonic()), via=self.conn(h))
            except BackendError as exc:
                raise BackendError(f"{h.name} ({h.host}) does not answer at {url}: {exc}") from None
        if not spec.behind_balancer:
            return
        wait_round_robin(self.url, [servers[i].name for i in range(spec.nodes)], deadline,
                         balancer=self.balancer.name, waited=SERVING_TIMEOUT, via=self.conn(self.tester))

    def _stop_balancer(self) -> None:
        info = self._state.nginx
        if info is not None:
            self.nginx(info).stop(info)
            self._record_nginx(None)

    @property
    def url(self) -> str:
        spec = self._require_spec()
        if spec.behind_balancer:
            return f"http://{hostport(self.balancer.addr, self.balancer_port)}"
        return f"http://{hostport(self.servers[0].addr, self.server_port(0))}"

    @property
    def cpu_limited(self) -> bool:
        return self.options["cpu_limited"]

    def status(self) -> dict:
        spec = self.spec
        tester = self.tester
        out = {"backend": self.name, "spec": dataclasses.asdict(spec) if spec else None,
               "url": self.url if spec else None, "servers": [], "balancer": None,
               "tester": {"name": tester.name, "host": tester.host}}
        servers = self.servers
        for key, info in sorted(self._running.items(), key=lambda kv: int(kv[0])):
            h = servers[int(key)]
            out["servers"].append({"name": h.name, "host": h.host, "address": h.addr, **info,
                                   "status": self.service(h).status(h.addr, info)})
        if self._state.nginx:
            b = self.balancer
            out["balancer"] = {"name": b.name, "host": b.host, "address": b.addr, "port": self.balancer_port,
                               **self._state.nginx}
        return out

    def balancer_config(self) -> str:
        """The nginx.conf installed on the balancer host, read over SSH."""
        info = self._state.nginx
        if not info:
            return "(no balancer is running: with one node the tester talks to the server directly)"
        return self.nginx(info).config_text()

    def run_ab(self, command, timeout: float, progress=None) -> AbRun:
        return self._run_ab_on(self.tester, command, timeout)[0]

    def _run_ab_together(self, commands, timeout: float, progress=None) -> list[tuple[AbRun, float]]:
        """One ab process per tester host, all released at once (ab's progress is not streamed over SSH)."""
        hosts = self.testers[:len(commands)]
        barrier = threading.Barrier(len(commands))
        with ThreadPoolExecutor(max_workers=len(commands)) as pool:
            futures = [pool.submit(self._released_ab_on, h, cmd, timeout, barrier) for h, cmd in zip(hosts, commands)]
            return [f.result() for f in futures]

    def _released_ab_on(self, host: HostSpec, command, timeout: float, barrier) -> tuple[AbRun, float]:
        try:
            return self._run_ab_on(host, command, timeout, barrier)
        except BaseException:
            barrier.abort()  # the other hosts must not wait for one that failed before starting ab
            raise

    def _run_ab_on(self, host: HostSpec, command, timeout: float, barrier=None) -> tuple[AbRun, float]:
        """ab on ``host`` (installed there first if missing): its run and when it ended (epoch s, here)."""
        c = self.conn(host)
        if host.key not in self._ab_ready:  # a fresh GCE image has no ab
            if not c.run(PATH_PREFIX + "command -v ab", check=False).ok:
                install_packages(c, host.name, "apache2-utils")
            self._ab_ready.add(host.key)
        work = c.run("mktemp -d /tmp/labkit-ab.XXXXXX").stdout.strip()
        files = {"payload": f"{work}/payload.json", "percentiles": f"{work}/percentiles.csv",
                 "gnuplot": f"{work}/gnuplot.tsv"}
        try:
            c.put(command.payload, files["payload"])
            argv = command.argv(payload=files["payload"], percentiles=files["percentiles"],
                                gnuplot=files["gnuplot"])
            # killed on the tester at the limit (a closed channel would leave it running); the
            # shell reports the CPU ab used (`times`) after it
            if barrier is not None:
                barrier.wait()
            try:
                r = c.run_bounded(wrap_with_times(AB_ULIMIT + shlex.join(argv)), timeout)
                ended = time.time()
            except BaseException:
                self._ab_cpu = None  # unknown from here on
                raise
            stderr, used = split_times(r.stderr)
            with self._ab_cpu_lock:
                self._ab_cpu = None if used is None else (self._ab_cpu or 0.0) + used
            got = {k: c.get_text(files[k]) if c.exists(files[k]) else None for k in ("percentiles", "gnuplot")}
            return AbRun(tuple(argv), r.exit_code, r.stdout, stderr,
                         got["percentiles"] or None, got["gnuplot"] or None), ended
        finally:
            c.run(f"rm -rf {shlex.quote(work)}", check=False)

    def _balancer_type(self, spec: ClusterSpec) -> str:
        return self.options.get("balancer_machine_type") or spec.machine_type

    @property
    def tester_machine_type(self) -> str | None:
        spec = self.spec
        return self.options.get("tester_machine_type") or (spec.machine_type if spec else None)

    def close(self) -> None:
        """Close the SSH connections, stopping nothing (the gcp backend deletes the machines instead)."""
        with self._lock:
            conns, self._conns, self._services = list(self._conns.values()), {}, {}
        for c in conns:
            c.close()
        self._ab_ready = set()

    def _down(self) -> tuple[list[str], list[str]]:
        """Stop the balancer and every server this lab started. Safe twice."""
        errors, stopped = [], []
        steps = [(self.balancer.name, self._stop_balancer)] if self._state.nginx else []
        steps += [(self.servers[int(k)].name, lambda i=int(k): self._stop_server(i))
                  for k in sorted(self._running, key=int)]
        for name, step in steps:
            try:
                step()
                stopped.append(name)
            except Exception as e:  # noqa: BLE001 - keep stopping the rest
                errors.append(e)
                log.warning("while stopping %s: %s", name, e)
        installed = sorted({f"{h.name}:{self.options['root']}" for h in self.servers} if stopped else set())
        self.close()
        if errors:  # keep the record of what is still running, so another `down` can retry
            self._save()
            raise BackendError(f"down() could not stop everything: {errors[0]}")
        return stopped, installed
