"""How fast this host is: the service's CPU cost per request on one core, and the CPU steal.

Two machines "of the same kind" gave part 1 = 13 and 20-27 users: one f1-micro quota buys
as many requests as the host's core is fast. So before a sweep (and in ``labkit doctor``)
:func:`host_calibration` runs a short, fixed calibration -- the real service (the Flask
development server, as the handout runs it) started on one otherwise unconstrained core
of this host, the handout's payload ``{"fibonacci_number": 20}`` posted by ab at
:data:`CONCURRENCY` concurrent requests, a warm-up and then :data:`REQUESTS` requests,
about two seconds -- and divides the CPU time the service used (from a cgroup of its own,
else ``/proc/<pid>/stat``) by the requests it answered.

Why c=10 and not one request at a time: at c=1 the server sleeps between requests and
each one also pays for waking it (1.2-1.4 CPU ms per request here, against 0.69-0.76 ms
at c=10, measured side by side; bench/RESULTS.md), which the servers of a sweep, busy at
every measured level, do not pay -- their ``server_cpu_s / complete`` at c=10 was
0.69-0.78 ms in the same hour. c=10 measures what a sweep's rows measure, which is also
how the reference's figure below is defined, and takes a third of the time.

The figure (``host_cpu_ms_per_request``) goes into the provenance (its ``calibration``
entry) and every results row, with the host's CPU steal (``/proc/stat``) over each ab
run (``steal_pct``), so CSVs from different hosts can be compared on it:
:func:`host_speed_notes` says "this host's core is 1.9x slower per request than the
reference's". It is measured once per process (:func:`host_calibration` caches it).

The reference's figure, :data:`REFERENCE_CPU_MS_PER_REQUEST`, comes from
``data/reference.csv``, measured before this calibration existed: the median server CPU
per completed request (``server_cpu_s / complete``) over its clean rows where each server
saw at most 10 concurrent requests (``concurrency / nodes <= 10``), the nearest it has to
the calibration's one server at c=10 (:func:`cost_from_rows`; 1.048 ms, 14 rows). A CSV
that carries ``host_cpu_ms_per_request`` is compared on that column instead.

``--calibrate reference`` multiplies every role's CPU quota by a scale so that an emulated
f1-micro answers as many requests per second as the reference host's did: first (this
host's cost / the reference's) (:func:`reference_scale`), then refined on a real
quota-limited f1-micro at c=10 until it answers the reference's 186 requests/s
(:func:`match_reference`), because a smaller quota makes each request dearer and the
first guess alone overshoots (bench/RESULTS.md, "Host speed and bursting").
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import logging
import math
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from labkit.ab import AbCommand
from labkit.ab_parse import parse_report
from labkit.backends.cpu_accounting import proc_tree_seconds
from labkit.backends.local import cgroups, cpu_affinity
from labkit import machine_types
from labkit.errors import BackendError, ConfigError, MissingToolError
from labkit.service import service_command, wait_until_up
from labkit.settings import Settings

log = logging.getLogger("labkit")

#: The reference host's CPU ms per request (``data/reference.csv``, see the module docstring).
REFERENCE_CPU_MS_PER_REQUEST = 1.05
#: What one f1-micro answered there at c=10 (``data/reference.csv``, nodes=1, c=10: 186.09 req/s).
REFERENCE_F1_MICRO_RPS = 186.09
F1_MICRO_VCPU = machine_types.get("f1-micro").vcpu
#: Requests measured (after :data:`WARMUP` unmeasured ones), one at a time.
REQUESTS = 400
WARMUP = 40
#: ab's concurrency for the calibration (see the module docstring).
CONCURRENCY = 10
#: Hosts whose figures differ by less than this factor are called "about as fast".
SAME_SPEED = 1.10
_STAT_FIELDS = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")


# -- steal time ------------------------------------------------------------------------------------
def cpu_times(text: str | None = None) -> tuple[int, int] | None:
    """(steal, total) jiffies of all CPUs from ``/proc/stat`` (or ``text``); None where it has no steal field."""
    if text is None:
        try:
            text = Path("/proc/stat").read_text()
        except OSError:
            return None
    for line in text.splitlines():
        parts = line.split()
        if parts and parts[0] == "cpu":
            values = [int(v) for v in parts[1:len(_STAT_FIELDS) + 1]]
            if len(values) < len(_STAT_FIELDS):
                return None
            return values[_STAT_FIELDS.index("steal")], sum(values)
    return None


def steal_pct(before: tuple[int, int] | None, after: tuple[int, int] | None) -> float | None:
    """The share (%) of CPU time stolen by the hypervisor between two :func:`cpu_times` samples."""
    if before is None or after is None or after[1] <= before[1]:
        return None
    return round(100.0 * max(0, after[0] - before[0]) / (after[1] - before[1]), 3)


# -- the calibration ---------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Calibration:
    """One calibration of this host (see the module docstring); ``to_json`` is the provenance entry."""

    cpu_ms_per_request: float
    requests: int
    concurrency: int
    steal_pct: float | None
    measured_at: str
    wall_s: float
    server: str = "flask"
    cpu_source: str = "/proc/<pid>/stat"
    reference_cpu_ms_per_request: float = REFERENCE_CPU_MS_PER_REQUEST

    @property
    def vs_reference(self) -> float:
        """This host's cost / the reference's: 1.9 means this core is 1.9x slower per request."""
        return self.cpu_ms_per_request / self.reference_cpu_ms_per_request

    def to_json(self) -> dict:
        return {**dataclasses.asdict(self), "vs_reference": round(self.vs_reference, 3),
                "method": f"the {self.server} service on one unconstrained core, ab -c {self.concurrency} "
                          f"-n {self.requests} (after {WARMUP} unmeasured) posting {{\"fibonacci_number\": 20}}; "
                          f"the CPU time of the service (from {self.cpu_source}) per request answered",
                "reference_method": "data/reference.csv: median server_cpu_s/complete over clean rows with "
                                    "concurrency/nodes <= 10"}


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _ab(command: AbCommand, folder: Path, cpu: int) -> str:
    """Run ``command`` with ab pinned to ``cpu``; its report (raises when it did not complete cleanly)."""
    from shutil import which

    ab = which("ab")
    if not ab:
        raise MissingToolError("ab is not installed: run `sudo apt-get install -y apache2-utils` (or `make setup`)")
    payload = folder / "payload.json"
    payload.write_bytes(command.payload)
    argv = command.argv(str(payload), str(folder / "e.csv"), str(folder / "g.tsv"), ab=ab)
    res = subprocess.run(argv, capture_output=True, text=True, timeout=60,
                         preexec_fn=cpu_affinity.pin_preexec({cpu}))
    if res.returncode != 0:
        raise BackendError(f"calibration: ab failed ({res.returncode}): {res.stderr.strip()[-200:]}")
    return res.stdout


class _CpuMeter:
    """The service's CPU seconds: from a cgroup of its own where cgroups can be written (nanoseconds),
    else from ``/proc/<pid>/stat`` (clock ticks, 10 ms)."""

    def __init__(self, settings: Settings | None):
        self.groups = cgroups.detect(settings)
        self.rel = f"labkit/calibration-{os.getpid()}-{time.monotonic_ns()}"
        self.made: list[str] = []
        self.pid: int | None = None
        self.source = "/proc/<pid>/stat"
        if self.groups.version != "unlimited":
            try:
                self.made = self.groups.create(self.rel, cgroups.Limits(vcpu=len(cpu_affinity.available()),
                                                                        memory_bytes=2 * 1024**3))
                self.groups.set_cpu(self.rel, None)  # no quota: one whole core
                self.source = f"its cgroup ({self.groups.version})"
            except OSError as exc:  # a hierarchy that detect() found but that refuses a group: /proc instead
                log.info("calibration: no cgroup of its own (%s); CPU time from /proc", exc)
                cgroups.remove(self.made)
                self.made, self.groups = [], cgroups.Cgroups()

    def preexec(self, cpu: int):
        join, pin = self.groups.join_preexec(self.rel), cpu_affinity.pin_preexec({cpu})

        def enter():
            join()
            pin()
        return enter

    def seconds(self) -> float | None:
        if self.made:
            return self.groups.cpu_seconds(self.rel)
        return proc_tree_seconds(self.pid) if self.pid else None

    def close(self) -> None:
        if self.made:
            cgroups.remove(self.made)


@contextlib.contextmanager
def _running_service(settings: Settings | None, host: str = "127.0.0.1"):
    """The Flask service on this process's first CPU (in a cgroup of its own where cgroups can be written),
    answering; yields ``(url, meter)``. Stops it and removes its cgroup afterwards."""
    cpus = cpu_affinity.available()
    port = _free_port(host)
    argv, env = service_command("flask", host, port, python=sys.executable)
    meter = _CpuMeter(settings)
    try:
        proc = subprocess.Popen(argv, env={**os.environ, **env, "LABKIT_NODE": "calibration"},
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                                preexec_fn=meter.preexec(cpus[0]))
    except BaseException:
        meter.close()
        raise
    meter.pid = proc.pid
    try:
        url = f"http://{host}:{port}"
        try:
            wait_until_up(url, timeout=30)
        except Exception as exc:
            raise BackendError(f"calibration: the service did not start: {exc}") from exc
        yield url, meter
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        meter.close()


def _clean(report: dict) -> int:
    """Requests ``report`` completed; raises unless every one of them was a 2xx answer."""
    done, failed, non_2xx = report["complete"] or 0, report["failed"], report.get("non_2xx", 0)
    if done == 0 or failed or non_2xx:
        raise BackendError(f"calibration: no clean measurement ({done} complete, {failed} failed, "
                           f"{non_2xx} non-2xx)")
    return done


def measure_host(requests: int = REQUESTS, warmup: int = WARMUP, host: str = "127.0.0.1",
                 settings: Settings | None = None, concurrency: int = CONCURRENCY) -> Calibration:
    """Start the service on one core, post ``requests`` requests with ab at ``concurrency``, return its
    CPU per request.

    The service runs on this process's first CPU, ab on its last (the same CPU on a
    one-core host); neither has a quota. The service's CPU time comes from a cgroup of its
    own where ``settings`` allow cgroups, else from its ``/proc`` entry. Stops the
    service (and removes its cgroup) before returning.
    """
    if requests < 50:
        raise ConfigError(f"a calibration needs at least 50 requests, not {requests}")
    last = cpu_affinity.available()[-1]
    t0 = time.monotonic()
    with _running_service(settings, host) as (url, meter), \
            tempfile.TemporaryDirectory(prefix="labkit-calibration-") as folder:
        _ab(AbCommand(url, concurrency, warmup), Path(folder), last)
        cpu0, times0 = meter.seconds(), cpu_times()
        report = parse_report(_ab(AbCommand(url, concurrency, requests), Path(folder), last))
        cpu1, times1 = meter.seconds(), cpu_times()
    done = _clean(report)
    if cpu0 is None or cpu1 is None:
        raise BackendError("calibration: the service's CPU time could not be read")
    cal = Calibration(cpu_ms_per_request=round(1000.0 * (cpu1 - cpu0) / done, 4), requests=done,
                      concurrency=concurrency, steal_pct=steal_pct(times0, times1),
                      measured_at=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                      wall_s=round(time.monotonic() - t0, 2), cpu_source=meter.source)
    log.info("host calibration: %.3f CPU ms per request (%.2fx the reference's %.2f ms), steal %s %%",
             cal.cpu_ms_per_request, cal.vs_reference, cal.reference_cpu_ms_per_request, cal.steal_pct)
    return cal


def _next_scale(seen: list[dict]) -> float:
    """The scale to try next: proportional after one measurement; after two, the power law r = a s^k
    through the last two (requests/s grow faster than the quota: k was 1.8 here), solved for the target."""
    last = seen[-1]
    ratio = REFERENCE_F1_MICRO_RPS / last["rps"]
    if len(seen) > 1:
        prev = seen[-2]
        if prev["cpu_scale"] != last["cpu_scale"] and prev["rps"] != last["rps"] and prev["rps"] > 0:
            k = math.log(last["rps"] / prev["rps"]) / math.log(last["cpu_scale"] / prev["cpu_scale"])
            if 0.5 <= k <= 4:  # a sane slope; noise otherwise: fall back to proportional
                return last["cpu_scale"] * ratio ** (1 / k)
    return last["cpu_scale"] * ratio


def match_reference(first_scale: float, settings: Settings | None = None, rounds: int = 3,
                    requests: int = REQUESTS, host: str = "127.0.0.1") -> dict:
    """Refine ``--calibrate reference``'s quota scale on a real f1-micro until it answers the reference's
    :data:`REFERENCE_F1_MICRO_RPS` at c=10: the scale from the CPU costs (:func:`reference_scale`) is not
    enough, because a smaller quota makes each request dearer (bench/RESULTS.md: 0.79 -> 1.34 CPU ms
    per request at c=10 when the quota went from 0.2 to 0.12 vCPU).

    The service runs on one core in a cgroup with an f1-micro's quota times the scale (no burst: the
    reference had none); each round posts ``requests`` requests at c=10 and moves the scale towards
    the reference's requests/s (:func:`_next_scale`). Returns ``{"cpu_scale", "rounds": [{"cpu_scale",
    "rps"}...]}``; needs cgroups (ConfigError without: there is no quota to scale).
    """
    groups = cgroups.detect(settings)
    if groups.version == "unlimited":
        raise ConfigError("--calibrate reference needs cgroups (CPU quotas) on this machine; `labkit doctor` "
                          "says why they cannot be written")
    scale, seen = float(first_scale), []
    last = cpu_affinity.available()[-1]
    with _running_service(settings, host) as (url, meter), \
            tempfile.TemporaryDirectory(prefix="labkit-calibration-") as folder:
        if not meter.made:
            raise ConfigError("--calibrate reference needs cgroups (CPU quotas), and this machine refused one "
                              "(`labkit doctor` says more)")
        _ab(AbCommand(url, CONCURRENCY, WARMUP), Path(folder), last)
        for _ in range(rounds):
            meter.groups.set_cpu(meter.rel, F1_MICRO_VCPU * scale)
            _ab(AbCommand(url, CONCURRENCY, WARMUP), Path(folder), last)  # settle at the new quota
            report = parse_report(_ab(AbCommand(url, CONCURRENCY, requests), Path(folder), last))
            _clean(report)
            seen.append({"cpu_scale": round(scale, 3), "rps": report["rps"]})
            scale = min(1 / F1_MICRO_VCPU, max(0.05, _next_scale(seen)))
    log.info("--calibrate reference: quota scale %.3f (from %.3f; f1-micro at c=10: %s req/s, the reference's %.0f)",
             scale, first_scale, ", ".join(f"{r['rps']:.0f}" for r in seen), REFERENCE_F1_MICRO_RPS)
    return {"cpu_scale": round(scale, 3), "first_scale": round(float(first_scale), 3), "rounds": seen,
            "target_rps": REFERENCE_F1_MICRO_RPS}


_cached: Calibration | None = None


def host_calibration(settings: Settings | None = None, refresh: bool = False) -> Calibration:
    """This host's :class:`Calibration`, measured once per process (``refresh`` measures again)."""
    global _cached
    if _cached is None or refresh:
        _cached = measure_host(settings=settings)
    return _cached


def reference_scale(cal: Calibration) -> float:
    """``--calibrate reference``'s factor for every role's CPU quota: this host's cost / the reference's.

    A host whose core needs 2.1 ms per request where the reference's needed 1.05 gives
    each f1-micro 2x its 0.2 vCPU, so it answers the reference's requests per second.
    """
    return round(cal.vs_reference, 3)


# -- comparing results from different hosts -----------------------------------------------------------
def cost_from_rows(df) -> float | None:
    """A results DataFrame's host CPU ms per request: the median ``host_cpu_ms_per_request`` when the rows
    carry it, else derived like the reference's (median ``server_cpu_s / complete`` x 1000 over clean
    rows with ``concurrency / nodes <= 10``); None when neither can be had."""
    if "host_cpu_ms_per_request" in df and df["host_cpu_ms_per_request"].notna().any():
        return float(df["host_cpu_ms_per_request"].dropna().median())
    if not {"server_cpu_s", "complete", "nodes", "concurrency"} <= set(df.columns):
        return None
    clean = df[~df["aborted"].astype(bool) & (df["failed"] == 0) & (df["non_2xx"] == 0)
               & df["server_cpu_s"].notna() & (df["complete"] > 0)
               & (df["concurrency"] / df["nodes"] <= 10)]
    if clean.empty:
        return None
    return float((1000.0 * clean["server_cpu_s"] / clean["complete"]).median())


def _how(ms: float, label: str, other: float, other_label: str) -> str:
    ratio = ms / other
    if 1 / SAME_SPEED < ratio < SAME_SPEED:
        return f"{label}'s core is about as fast per request as {other_label}'s ({ms:.2f} vs {other:.2f} CPU ms)"
    word, factor = ("slower", ratio) if ratio > 1 else ("faster", 1 / ratio)
    return (f"{label}'s core is {factor:.1f}x {word} per request than {other_label}'s "
            f"({ms:.2f} vs {other:.2f} CPU ms per request)")


def host_speed_notes(df, by: str = "run_id") -> list[str]:
    """Sentences comparing the hosts behind ``df``'s groups (``by``: ``run_id``, or 04's ``source``) with the
    reference and, when they differ, with each other: what a report or 04's overlay says before their answers
    are compared. Each group's figure is :func:`cost_from_rows`'s."""
    if df is None or df.empty or by not in df:
        return []
    costs = {}
    for name, rows in df.groupby(df[by].astype(str), sort=False):
        ms = cost_from_rows(rows)
        if ms is not None:
            costs[f"run {name}" if by == "run_id" else str(name)] = ms
    notes = [_how(ms, label, REFERENCE_CPU_MS_PER_REQUEST, "the reference") for label, ms in costs.items()]
    if len(costs) > 1:
        fast, slow = min(costs, key=costs.get), max(costs, key=costs.get)
        if costs[slow] / costs[fast] >= SAME_SPEED:
            notes.append("these results come from hosts of different speed: "
                         + _how(costs[slow], slow, costs[fast], fast)
                         + "; compare their answers with that in mind (or measure with --calibrate reference)")
    return notes
