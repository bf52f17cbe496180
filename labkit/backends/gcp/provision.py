"""How the gcp backend grows its lab: machines, firewall rules and the server image.

:class:`GcpProvisioning` (a mixin of :class:`~labkit.backends.gcp.backend.GcpBackend`) grows the
lab the handout's way, as far as the spec asks and no further: the first ``up`` creates
the firewall rules, restserver-0 and tester-0 (and loadbalancer-0 when the tester goes through
a balancer: nodes > 1, or one node ``balanced``) in parallel; the balancer is created when it is
first needed; the first time a second
server is needed, restserver-0 is prepared over SSH, stopped, imaged
(``lab02-restserver-<run id>``, steps 7-8) and started again, and ``restserver-N`` is
cloned from that image when N is first needed (in parallel with the balancer).
Shrinking takes servers out of nginx's upstream list and leaves their machines up until
``down``. Every machine's SSH host key is read from its guest attributes and pinned; the
machines are handed to :class:`~labkit.backends.ssh.backend.SshBackend` (one deploy path).

Every instance is recorded in the state the moment its insert is sent, and dropped
again when the insert failed (the name is then not this run's to delete); a 409
("already exists") ends ``up`` with one line naming the run that has the name.
"""

from __future__ import annotations

import logging
import os
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

from labkit.backends.gcp import api_requests as req
from labkit.errors import BackendError, CloudError
from labkit.backends.gcp.compute import (ConflictError, check_zones, create_instances, get_instance, host_keys, insert_firewall,
                           insert_image, owner, start_instance, stop_instance, wait)
from labkit.backends.ssh.hosts_file import HostSpec
from labkit.backends.base import ClusterSpec, state_field
from labkit.backends.ssh.backend import SshBackend

log = logging.getLogger("labkit")


def _generate_ssh_key(directory: str) -> tuple[str, str]:
    """A fresh ed25519 key pair for the run: (private key path, public key line).

    The folder (and the key folder above it) is private (0700): it holds the run's key.
    """
    path = os.path.join(directory, "id_ed25519")
    parent = os.path.dirname(directory)
    for d in (parent, directory):
        os.makedirs(d, mode=0o700, exist_ok=True)
        os.chmod(d, 0o700)
    if not os.path.exists(path):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "labkit", "-f", path],
                       check=True, capture_output=True)
    with open(path + ".pub") as f:
        return path, " ".join(f.read().split()[:2])


class GcpProvisioning:
    """Creating the run's resources (tested against the Compute stub); see the module docstring."""

    # -- what the state says about creating them ----------------------------------------
    zones = state_field("zones", "Zones to try, in order, when one has no capacity.")
    ssh_user = state_field("ssh_user", "The login created on every machine with the run's key.")
    key_dir = state_field("key_dir", "Where the run's SSH key pair is kept (key_dir/run_id).")
    max_nodes = state_field("max_nodes", "Servers to create up front (more are created when first needed anyway).")
    ssh_source_ranges = state_field("ssh_source_ranges", "Who may SSH in (--ssh-source).")

    # -- recording inserts: before they are sent, and their outcome ---------------------
    def _on_insert(self, name: str, zone: str) -> None:
        if self._closing:
            raise CloudError(f"not creating {name}: run {self.run_id} is being deleted")
        with self._inflight_done:
            self._inflight.add(name)
        with self._save_lock:
            self._state.created[name] = zone
            self._save()

    def _on_done(self, name: str, zone: str, created: bool | None) -> None:
        if created is False:  # the insert failed: the name is not ours to delete later
            with self._save_lock:
                if self._state.created.get(name) == zone:
                    del self._state.created[name]
                    self._save()
        with self._inflight_done:
            self._inflight.discard(name)
            self._inflight_done.notify_all()

    def _conflict(self, e: ConflictError, kind: str = "instance", zone: str | None = None) -> CloudError:
        """One line for a 409: who has the name and what to do."""
        try:
            other = owner(self.compute, self.project, kind, e.name, zone) if e.name else None
        except CloudError:
            other = None
        who = (f"labkit run {other}" if other else "something that is not a labkit run" if other == ""
               else "another run")
        return ConflictError(
            f"{kind} {e.name} already exists in project {self.project} and belongs to {who}, not to this run "
            f"({self.run_id}): bring that run down (`labkit down --backend gcp` in its folder, or `labkit gc` "
            "after its expiry), or give this run a name prefix (name_prefix=...)", e.name, other)

    # -- provisioning (tested against the stub) ---------------------------------------
    def _maker(self, name, role, machine_type, pub, source=req.IMAGE_FAMILY):
        return lambda zone: req.instance_body(name, zone, machine_type, self.run_id, self.expires, role,
                                              source_image=source, ssh_user=self.ssh_user, ssh_public_key=pub)

    def create_firewalls(self, service_port: int) -> None:
        """The run's three firewall rules (HTTP to the balancer, servers from inside, SSH), in parallel."""
        bodies = req.firewall_bodies(self.run_id, self.expires, service_port, self.ssh_source_ranges)
        for b in bodies:
            b["name"] = self.resource_name(b["name"])

        def insert(body):
            name = body["name"]
            with self._save_lock:
                self._state.firewalls.append(name)
                self._save()
            try:
                wait(insert_firewall(self.compute, self.project, body), f"create firewall {name}", self.timeout)
            except CloudError as e:
                with self._save_lock:  # not created: never ours to delete
                    if name in self._state.firewalls:
                        self._state.firewalls.remove(name)
                    self._save()
                if isinstance(e, ConflictError):
                    e.name = name
                    raise self._conflict(e, "firewall") from None
                raise

        with ThreadPoolExecutor(max_workers=len(bodies)) as pool:
            list(pool.map(insert, bodies))

    def create(self, makers: dict) -> dict:
        """Create instances (name -> body maker) in parallel; each is recorded when its insert is sent."""
        try:
            return create_instances(self.compute, self.project, self.zones, makers, self.timeout,
                                    on_insert=self._on_insert, on_done=self._on_done)
        except ConflictError as e:
            raise self._conflict(e, "instance", self.zones[0]) from None

    def _check_zones(self) -> None:
        """Before the first insert: drop unknown zones (one line if none is known; tells a disabled API)."""
        if not self._state.zones_checked:
            self._state.zones = check_zones(self.compute, self.project, self.zones)
            self._state.zones_checked = True

    def make_image(self, source: str | None = None) -> str:
        """The handout's steps 7-8: stop the prepared server, image its disk, start it again."""
        source = source or self.server_name(0)
        zone = self.created[source]
        body = req.image_body(zone, source, self.run_id, self.expires,
                              name=req.image_name(self.run_id, self.name_prefix))
        wait(stop_instance(self.compute, self.project, zone, source), f"stop {source}", self.timeout, zone)
        with self._save_lock:
            self._state.images.append(body["name"])
            self._save()
        try:
            wait(insert_image(self.compute, self.project, body), f"create image {body['name']}", self.timeout)
        except CloudError as e:
            with self._save_lock:
                self._state.images.remove(body["name"])
                self._save()
            if isinstance(e, ConflictError):
                e.name = body["name"]
                raise self._conflict(e, "image") from None
            raise
        finally:
            wait(start_instance(self.compute, self.project, zone, source), f"start {source}", self.timeout, zone)
        url = f"projects/{self.project}/global/images/{body['name']}"
        with self._save_lock:
            self._state.image = url
            self._save()
        return url

    def host_spec(self, name: str, key_path: str) -> HostSpec:
        """SSH to the external IP, pinning the host keys from guest attributes; others use the internal IP."""
        zone = self.created[name]
        inst = get_instance(self.compute, self.project, zone, name)
        nic = inst.network_interfaces[0]
        external = nic.access_configs[0].nat_i_p if nic.access_configs else nic.network_i_p
        keys = []
        deadline = time.monotonic() + self.timeout
        while not keys:  # the guest agent publishes them a little after boot
            keys = host_keys(self.compute, self.project, zone, name)
            if not keys:
                if time.monotonic() > deadline:
                    raise BackendError(f"{name}: no SSH host keys in guest attributes; refusing to trust blindly")
                time.sleep(2)
        return HostSpec(external, user=self.ssh_user, key_filename=key_path, host_key=tuple(keys),
                        address=nic.network_i_p, name=name)

    def _hosts(self, names: list[str], key_path: str) -> dict[str, HostSpec]:
        with ThreadPoolExecutor(max_workers=max(1, min(8, len(names)))) as pool:
            return dict(zip(names, pool.map(lambda n: self.host_spec(n, key_path), names)))

    def _key(self) -> tuple[str, str]:
        return _generate_ssh_key(os.path.join(self.key_dir, self.run_id))

    def _provision_first(self, spec: ClusterSpec, key_path: str, pub: str) -> None:
        """Firewall rules, restserver-0, tester-0 (and loadbalancer-0 when the spec is behind a balancer or
        ``max_nodes`` > 1), all in parallel."""
        self._check_zones()
        s0, t0, lb = self.server_name(0), self.tester_name, self.balancer_name
        makers = {s0: self._maker(s0, "server", spec.machine_type, pub),
                  t0: self._maker(t0, "tester", self._state.tester_machine_type or spec.machine_type, pub)}
        if spec.behind_balancer or (self.max_nodes or 1) > 1:
            makers[lb] = self._maker(lb, "balancer", spec.machine_type, pub)
        with ThreadPoolExecutor(max_workers=1) as pool:
            firewalls = pool.submit(self.create_firewalls, spec.port)
            try:
                self.create(makers)
            finally:
                firewalls.result()
        hosts = self._hosts(list(makers), key_path)
        options = dict(self._state.ssh_options)
        if self._state.tester_machine_type:
            options["tester_machine_type"] = self._state.tester_machine_type
        ssh = SshBackend(self.settings, persist=False, servers=[hosts[s0]], balancer=hosts.get(lb, hosts[s0]),
                         tester=hosts[t0], balancer_port=80, **options)
        with self._save_lock:
            self._state.ssh = ssh.record
            self._save()

    def _prepare_image(self, spec: ClusterSpec, key_path: str) -> str:
        """restserver-0 prepared (service + venv), stopped, imaged, started; its new address recorded."""
        ssh, s0 = self.ssh, self.server_name(0)
        if self.deploy:
            ssh.stop_server(0)  # the handout stops the VM; the service is started again below
            ssh.install(ssh.servers[0])
        ssh.close()
        image = self.make_image(s0)
        ssh.replace_host(s0, self.host_spec(s0, key_path))  # a new external IP after the restart
        return image

    def _grow(self, spec: ClusterSpec) -> None:
        """Create what ``spec`` needs and does not exist yet, the handout's way (module docstring)."""
        key_path, pub = self._key()
        if self.ssh is None:
            self._provision_first(spec, key_path, pub)
        ssh = self.ssh
        want = max(spec.nodes, self.max_nodes or 1)
        have = len(ssh.servers)
        lb = self.balancer_name
        balancer_wanted = want > 1 or spec.behind_balancer
        need_balancer = balancer_wanted and lb not in self.created
        if want <= have and not need_balancer:
            if balancer_wanted and ssh.balancer.name != lb:
                self._use_balancer(key_path)
            self._grow_testers(spec, key_path, pub)
            return
        with ThreadPoolExecutor(max_workers=1) as pool:
            balancer = pool.submit(self.create, {lb: self._maker(lb, "balancer", spec.machine_type, pub)}) \
                if need_balancer else None
            try:
                if want > have:
                    image = self._state.image or self._prepare_image(spec, key_path)
                    names = [self.server_name(i) for i in range(have, want)]
                    self.create({n: self._maker(n, "server", spec.machine_type, pub, source=image) for n in names})
                    hosts = self._hosts(names, key_path)
                    ssh.add_servers([hosts[n] for n in names])
            finally:
                if balancer is not None:
                    balancer.result()
        if balancer_wanted:
            self._use_balancer(key_path)
        self._grow_testers(spec, key_path, pub)

    def _grow_testers(self, spec: ClusterSpec, key_path: str, pub: str) -> None:
        """tester-1..k-1 (``testers``) like tester-0: created in parallel, labelled, then handed to ssh."""
        ssh = self.ssh
        have = {t.name for t in ssh.testers}
        names = [n for n in self.tester_names() if n not in have]
        if not names:
            return
        tester_type = self._state.tester_machine_type or spec.machine_type
        self.create({n: self._maker(n, "tester", tester_type, pub) for n in names if n not in self.created})
        hosts = self._hosts(names, key_path)
        ssh.add_testers([hosts[n] for n in names])

    def _use_balancer(self, key_path: str) -> None:
        ssh = self.ssh
        if ssh.balancer.name != self.balancer_name:
            ssh.use_balancer(self.host_spec(self.balancer_name, key_path))
