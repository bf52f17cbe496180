"""How the gcp backend deletes its run, and why that is guaranteed and never touches another.

:class:`GcpTeardown` (a mixin of :class:`~labkit.backends.gcp.backend.GcpBackend`): every
resource carries the run id (labels; a firewall rule's description) and nothing whose
``labkit-run`` is not this run's is deleted. Teardown is guaranteed: ``down()``, the
context manager, SIGINT/SIGTERM handlers (inserts in flight are waited for, then
deleted), ``.labkit/gcp.json`` (every resource is recorded the moment its insert is
sent), ``down`` also finds the run's resources by label when the state lost track, and
:func:`labkit.backends.gcp.compute.gc` deletes whatever a crashed run left behind once its
expiry passed.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from labkit.errors import CloudError
from labkit.backends.gcp.compute import delete_resource, is_not_found, owner, run_resources, wait
from labkit.backends.base import state_field

log = logging.getLogger("labkit")


class GcpTeardown:
    """Deleting the run's resources (in parallel, stage by stage) and the signal handlers that do it."""

    # -- what the state says the run made ----------------------------------------------
    created = state_field("created", "Instance name -> zone, recorded when each insert is sent.")
    images = state_field("images", "Images this run made.")
    firewalls = state_field("firewalls", "Firewall rules this run made.")

    def _wait_inflight(self) -> None:
        """Wait (bounded by ``timeout``) until no instance insert is in flight."""
        deadline = time.monotonic() + self.timeout
        with self._inflight_done:
            while self._inflight and time.monotonic() < deadline:
                self._inflight_done.wait(0.2)
            if self._inflight:
                log.warning("inserts of %s still in flight after %g s", ", ".join(sorted(self._inflight)),
                            self.timeout)

    def _down(self) -> tuple[list[str], list[str]]:
        """Delete every instance, image and firewall rule of this run (in parallel). Safe twice.

        Inserts still in flight are waited for first (an interrupted ``up``), and the
        run's resources are also found by label, so what the state lost is deleted too.
        Nothing whose ``labkit-run`` is another run's is deleted. The services are not
        stopped first: they go with their machines. What could not be deleted stays in
        the state (another ``down`` retries it) and carries an expiry for ``labkit gc``.
        """
        with self._down_lock:
            self._closing = True
            try:
                return self._delete_all()
            finally:
                self._closing = False

    def _delete_all(self) -> tuple[list[str], list[str]]:
        self._wait_inflight()
        if self.ssh is not None:
            self.ssh.close()
        s = self._state
        s.ssh = None
        s.image = None
        errors, deleted = [], []
        targets = {("instance", n): z for n, z in s.created.items()}
        targets.update({("image", n): None for n in s.images})
        targets.update({("firewall", n): None for n in s.firewalls})
        labelled = set()
        if targets or s.spec or s.zones_checked:
            try:
                for kind, name, zone in run_resources(self.compute, self.project, self.run_id):
                    labelled.add((kind, name))
                    targets.setdefault((kind, name), zone)
            except CloudError as e:
                log.warning("could not list run %s's resources by label: %s", self.run_id, e)

        def delete(item) -> bool:
            (kind, name), zone = item
            try:
                if (kind, name) not in labelled:
                    who = owner(self.compute, self.project, kind, name, zone)
                    if who is None:
                        return True  # already gone
                    if who != self.run_id:
                        log.warning("not deleting %s %s: it belongs to %s, not to run %s", kind, name,
                                    f"run {who}" if who else "no labkit run", self.run_id)
                        return True  # never ours: forget it
                wait(delete_resource(self.compute, self.project, kind, name, zone),
                     f"delete {kind} {name}", self.timeout, zone)
            except Exception as e:  # noqa: BLE001 - keep deleting the rest; what failed stays recorded
                if isinstance(e, CloudError) and is_not_found(e):
                    return True
                errors.append(e)
                log.warning("could not delete %s %s: %s", kind, name, e)
                return False
            deleted.append(f"{kind} {name}")
            return True

        def stage(kind: str) -> list[str]:
            items = [(k, z) for k, z in targets.items() if k[0] == kind]
            if not items:
                return []
            with ThreadPoolExecutor(max_workers=min(8, len(items))) as pool:
                gone = list(pool.map(delete, items))
            return [k[1] for (k, _), ok in zip(items, gone) if not ok]

        left = stage("instance")  # disks go with them; then the image, then the rules
        with self._save_lock:
            s.created = {n: targets[("instance", n)] for n in left}
            self._save()
        s.images = stage("image")
        self._save()
        s.firewalls = stage("firewall")
        s.spec = None
        self._save()
        self._restore_signal_handlers()
        if errors:
            raise CloudError(f"could not delete everything of run {self.run_id} ({errors[0]}); "
                             f"`labkit down --backend gcp` retries, `labkit gc` deletes it after {self.expires}")
        shutil.rmtree(os.path.join(self.key_dir, self.run_id), ignore_errors=True)  # the run's SSH key
        return sorted(deleted), []

    def _install_signal_handlers(self) -> None:
        """Delete the run on SIGINT/SIGTERM: installed around the first provisioning only (``_deploy``)."""
        if threading.current_thread() is not threading.main_thread() or self._old_handlers:
            return

        def handler(signum, frame):
            log.warning("signal %d: deleting run %s before exiting", signum, self.run_id)
            old = self._old_handlers.get(signum)
            self.down()
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
            if callable(old):
                old(signum, frame)
            raise SystemExit(128 + signum)

        for sig in (signal.SIGINT, signal.SIGTERM):
            self._old_handlers[sig] = signal.signal(sig, handler)

    def _restore_signal_handlers(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for sig, old in self._old_handlers.items():
            signal.signal(sig, old if old is not None else signal.SIG_DFL)
        self._old_handlers = {}
