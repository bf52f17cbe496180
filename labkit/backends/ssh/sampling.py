"""The ssh backend's measurement-hygiene hooks: CPU counters, queues and probes over SSH.

What :class:`~labkit.backends.hygiene.MeasurementHygiene` (settle, CPU per role) asks
a backend for, read on the lab's hosts: every server's and the balancer's cumulative
CPU seconds (its systemd unit's or its pid file's process tree,
:func:`labkit.backends.cpu_accounting.remote_script`) and the connections still queued for each
server (``ss``), one command per host with the hosts in parallel; ``/status`` probes
through each server's own host, and through the tester for the balancer. ab's own CPU
is what the tester's shell reported for it (:meth:`SshBackend.run_ab`).
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

from labkit import machine_types
from labkit.backends.cpu_accounting import SS_COMMAND, parse_remote, pending_from_ss, remote_script
from labkit.backends.ssh.service import hostport
from labkit.service import get_status

SAMPLE_TIMEOUT = 10.0  # s: one CPU-counter command on a host


class SshSampling:
    """CPU counters, pending connections and ``/status`` probes of an :class:`SshBackend`'s hosts."""

    def _counters(self) -> dict:
        """Host key -> (host, {sample key: how to read its CPU counter}) for what runs now."""
        spec, servers, hosts = self.spec, self.servers, {}
        for key, info in self._running.items():
            i = int(key)
            if spec is None or i >= spec.nodes:
                continue
            h = servers[i]
            how = {"unit": info["unit"]} if "unit" in info else {"pidfile": info["pidfile"]}
            hosts.setdefault(h.key, (h, {}))[1][f"server:{h.name}"] = how
        nginx = self._state.nginx
        if nginx and spec is not None and spec.behind_balancer:
            b = self.balancer
            how = {"unit": "nginx.service"} if nginx.get("mode") == "system" else {"pidfile": nginx["pidfile"]}
            hosts.setdefault(b.key, (b, {}))[1][f"balancer:{b.name}"] = how
        return hosts

    def _cpu_sample(self):
        """Every server's and the balancer's CPU counter: ONE command per host, hosts in parallel."""
        spec = self.spec
        if spec is None:
            return None
        hosts = self._counters()

        def read(item):
            h, entries = item
            r = self.conn(h).run(remote_script(entries), check=False, timeout=SAMPLE_TIMEOUT)
            return parse_remote(r.stdout)

        found = {}
        for part in self._on_hosts(read, list(hosts.values())):
            found.update(part)
        vcpu = {"server": machine_types.get(spec.machine_type).vcpu,
                "balancer": machine_types.get(self._balancer_type(spec)).vcpu}
        return {name: (found.get(name), vcpu[name.split(":")[0]])
                for _, entries in hosts.values() for name in entries}

    @staticmethod
    def _on_hosts(read, items: list) -> list:
        """``read(item)`` for every host's item, hosts in parallel threads."""
        if len(items) <= 1:
            return [read(i) for i in items]
        with ThreadPoolExecutor(max_workers=min(8, len(items))) as pool:
            return list(pool.map(read, items))

    def _pending(self) -> dict[str, int] | None:
        """Connections still queued for each running server, from ``ss`` on its host (one command per host)."""
        spec, servers, hosts = self.spec, self.servers, {}
        for key in self._running:
            i = int(key)
            if spec is not None and i < spec.nodes:
                h = servers[i]
                hosts.setdefault(h.key, (h, {}))[1][h.name] = (h.addr, self.server_port(i))

        def read(item):
            h, listening = item
            r = self.conn(h).run(SS_COMMAND, check=False, timeout=SAMPLE_TIMEOUT)
            return pending_from_ss(r.stdout, listening) if r.ok else {}

        out: dict[str, int] = {}
        for part in self._on_hosts(read, list(hosts.values())):
            out.update(part)
        return out

    def _tester_cpu_seconds(self) -> float | None:
        return self._ab_cpu

    def _status_probes(self) -> dict:
        spec, servers = self._require_spec(), self.servers

        def probe(i):
            h = servers[i]
            url = f"http://{hostport(h.addr, self.server_port(i))}"

            def run(timeout: float) -> float:
                t0 = time.monotonic()
                get_status(url, timeout=timeout, via=self.conn(h))
                return time.monotonic() - t0
            return run

        return {servers[i].name: probe(i) for i in range(spec.nodes)}

    def _balancer_probe(self):
        spec = self.spec
        if spec is None or not spec.behind_balancer:
            return None
        url, via = self.url, self.conn(self.tester)
        return lambda timeout: get_status(url, timeout=timeout, via=via)
