"""ab on the local backend's tester: a process in the tester's cgroup, its files in the run folder.

:meth:`LocalAbRunner.run_ab` writes the payload into a fresh folder under the run's
``ab/``, starts ab there (in ``tester-0``'s cgroup, with ``ulimit -n`` raised to
:data:`~labkit.backends.base.AB_NOFILE`), records it in the state while it runs (so
``labkit down`` stops an interrupted one), streams its "Completed N requests" lines to
``progress``, stops it at ``timeout`` and reads the ``-e``/``-g`` files back. Several ab
processes for one point run as ``tester-0..k-1``, each on its own core (:class:`LocalAbRunner`). Without
cgroups the CPU ab used comes from its rusage (:meth:`LocalAbRunner._tester_cpu_seconds`).
"""

from __future__ import annotations

import re
import resource
import shutil
import subprocess
import threading
import time
import uuid

from labkit import processes
from labkit.ab_merge import combined_progress
from labkit.backends.local import cpu_affinity
from labkit.errors import MissingToolError
from labkit.backends.base import AB_NOFILE, AbRun


def _ab_binary() -> str:
    found = shutil.which("ab")
    if not found:
        raise MissingToolError("ab is not installed: run `sudo apt-get install -y apache2-utils` (or `make setup`)")
    return found


_COMPLETED = re.compile(rb"Completed (\d+) requests")


def _communicate(proc: subprocess.Popen, timeout: float | None, progress) -> tuple[bytes, bytes]:
    """Like ``proc.communicate`` but calls ``progress(n)`` for ab's "Completed n requests" lines."""
    if progress is None:
        return proc.communicate(timeout=timeout)
    chunks: dict[str, list[bytes]] = {"out": [], "err": []}

    def pump(stream, key, watch):
        for line in iter(stream.readline, b""):
            chunks[key].append(line)
            if watch and (m := _COMPLETED.search(line)):
                progress(int(m.group(1)))

    threads = [threading.Thread(target=pump, args=(proc.stdout, "out", False), daemon=True),
               threading.Thread(target=pump, args=(proc.stderr, "err", True), daemon=True)]
    for t in threads:
        t.start()
    # ab's pipes reach EOF the moment it exits: join the readers first, then reap it. (Popen.wait
    # with a timeout polls every 50 ms, which added ~25 ms to every point.)
    deadline = None if timeout is None else time.monotonic() + timeout
    for t in threads:
        t.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
    proc.wait(timeout=None if deadline is None else max(0.0, deadline - time.monotonic()))
    for t in threads:
        t.join()
    return b"".join(chunks["out"]), b"".join(chunks["err"])


class LocalAbRunner:
    """The local backend's tester: ab in the tester's cgroup, with its open-file limit raised.

    Several ab processes for one point (:meth:`_run_ab_together`) are the testers
    ``tester-0..k-1``: each its own cgroup of the tester's machine type, pinned to its own
    host CPU (the last CPU, the one before it, ...), all released at once by a barrier.
    """

    def max_testers(self) -> int:
        """One ab process per host CPU this process may use."""
        return len(cpu_affinity.available())

    def run_ab(self, command, timeout: float, progress=None) -> AbRun:
        return self._run_testers([command], timeout, [progress], pin_one_core=False)[0][0]

    def _run_ab_together(self, commands, timeout: float, progress=None) -> list[tuple[AbRun, float]]:
        return self._run_testers(commands, timeout, combined_progress(progress, len(commands)), pin_one_core=True)

    def _run_testers(self, commands, timeout: float, progresses, pin_one_core: bool) -> list[tuple[AbRun, float]]:
        cpus = cpu_affinity.available()
        barrier = threading.Barrier(len(commands))
        results: list = [None] * len(commands)
        errors: list[BaseException] = []
        children_before = resource.getrusage(resource.RUSAGE_CHILDREN)

        def one(i):
            try:
                only = {cpus[(-1 - i) % len(cpus)]} if pin_one_core else None
                results[i] = self._run_one(f"tester-{i}", commands[i], timeout, progresses[i], barrier, only)
            except BaseException as e:  # noqa: BLE001 - re-raised below, in this thread
                errors.append(e)
                barrier.abort()  # the others must not wait for a process that will never start

        try:
            if len(commands) == 1:
                one(0)
            else:
                threads = [threading.Thread(target=one, args=(i,), name=f"ab-tester-{i}") for i in range(len(commands))]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
        finally:
            after = resource.getrusage(resource.RUSAGE_CHILDREN)  # every ab was reaped just now
            self._ab_cpu += max(0.0, (after.ru_utime + after.ru_stime)
                                - (children_before.ru_utime + children_before.ru_stime))
        real = [e for e in errors if not isinstance(e, threading.BrokenBarrierError)]
        if real or errors:
            raise (real or errors)[0]
        return results

    def _run_one(self, role: str, command, timeout: float, progress, barrier: threading.Barrier,
                 only_cpu: set[int] | None) -> tuple[AbRun, float]:
        workdir = self.run_dir / "ab" / uuid.uuid4().hex[:8]
        workdir.mkdir(parents=True)
        files = {"payload": workdir / "payload.json", "percentiles": workdir / "percentiles.csv",
                 "gnuplot": workdir / "gnuplot.tsv"}
        files["payload"].write_bytes(command.payload)
        real = command.argv(payload=str(files["payload"]), percentiles=str(files["percentiles"]),
                            gnuplot=str(files["gnuplot"]), ab=_ab_binary())
        _, enter = self._machine(role, self._state.tester_machine_type, cpus=only_cpu)

        def preexec():
            enter()
            _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
            want = AB_NOFILE if hard == resource.RLIM_INFINITY else min(AB_NOFILE, hard)
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))

        barrier.wait()
        proc = subprocess.Popen(real, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                                start_new_session=True, preexec_fn=preexec, cwd=workdir)
        with self._save_lock:
            self._state.processes[role] = processes.ProcessRecord(
                role, proc.pid, processes.start_time_of(proc.pid) or 0, real)
            self._save()
        try:
            out, err = _communicate(proc, timeout, progress)
            ended = time.time()
            code = proc.returncode
        except subprocess.TimeoutExpired:
            processes.terminate(self._record(role), grace=1)
            out, err = _communicate(proc, None, None)
            ended = time.time()
            code = -9
            err += f"\nlabkit: ab did not finish within {timeout:.0f} s and was stopped".encode()
        finally:
            if proc.poll() is None:  # interrupted (e.g. KeyboardInterrupt): stop ab too
                processes.terminate(self._record(role), grace=1)
            with self._save_lock:
                self._state.processes.pop(role, None)
                self._save()

        def read(key):
            path = files[key]
            return path.read_text() if path.exists() and path.stat().st_size else None

        run = AbRun(tuple(real), code, out.decode(errors="replace"), err.decode(errors="replace"),
                    read("percentiles"), read("gnuplot"))
        shutil.rmtree(workdir, ignore_errors=True)
        return run, ended

    def _tester_cpu_seconds(self) -> float | None:
        """ab's CPU seconds: every tester's cgroup together (one per ab process), or ab's rusage."""
        if not self.cpu_limited:
            return self._ab_cpu
        found = []
        for role in [f"tester-{i}" for i in range(self.max_testers())]:
            try:
                found.append(self._groups().cpu_seconds(f"labkit/{self.run_id}/{role}"))
            except FileNotFoundError:  # that tester has not run yet: its group is made with its first ab
                found.append(0.0 if role == "tester-0" else None)
        if found[0] is None:  # tester-0's counter cannot be read: unknown
            return None
        return sum(v for v in found if v is not None)
