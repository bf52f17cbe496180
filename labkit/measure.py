"""Measure one point: run ab through a backend, retry its early exits, return one record.

The handout's advice for ab's ``apr_pollset_poll: The timeout specified has expired
(70007)`` is "try to run the test again". :func:`measure` does that for every early exit
(a non-zero exit, a timeout, ``Test aborted after 10 failures``, ``apr_socket_recv``
errors, ``Too many open files``, or no report at all) and, when every attempt aborted,
returns an *aborted* record holding what ab did report -- so a sweep never crashes on a
bad level and never silently skips one (design §6).

Each attempt measures the system it names, not the backlog of the one before (design §6):
it first waits for the lab to be idle (:meth:`Backend.settle`, recorded as ``settle_s``),
and the CPU every role used during ab's run is read around it
(:meth:`Backend.cpu_seconds_by_role`: ``server_cpu_s``, ``balancer_cpu_s``, ``tester_cpu_s``,
design §7) together with the balancer's and the tester's machine types.
"""

from __future__ import annotations

import logging
import subprocess
import time

from labkit import ab_merge, ab_parse
from labkit.ab import AbCommand, aborted_measurement, measurement
from labkit.backends.base import AbRun, Backend
from labkit.errors import AbParseError, CommandTimeout, ConfigError
from labkit.record import Measurement

log = logging.getLogger("labkit")

_ABORT_MARKERS = ("(70007)", "Test aborted after", "apr_socket_recv", "Too many open files",
                  "apr_pollset_poll", "apr_socket_connect")


def default_timeout(command: AbCommand) -> float:
    """A generous wall-clock bound for one ab run, so a wedged tester cannot hang a sweep.

    Two minutes, plus three socket timeouts, plus 0.1 s per request (10,000 requests:
    about 19 minutes, far beyond what even a saturated micro server needs).
    """
    return 120.0 + 3 * command.timeout_s + 0.1 * command.requests


def abort_of(run: AbRun) -> dict | None:
    """Return :func:`labkit.ab_parse.parse_aborted`'s view of ``run`` if ab exited early, else None."""
    early = (run.exit_code != 0 or not ab_parse.has_report(run.stdout)
             or any(marker in run.stderr for marker in _ABORT_MARKERS))
    if not early:
        return None
    abort = ab_parse.parse_aborted(run.stdout, run.stderr)
    if abort["reason"] is None:
        abort["reason"] = (f"ab exited with code {run.exit_code}" if run.exit_code
                           else "ab printed no report")
    return abort


def _first_abort(runs: list[tuple[AbRun, float]]) -> dict | None:
    """The abort of the first ab process that exited early (all of them counted), or None."""
    aborts = [abort_of(run) for run, _ in runs]
    if all(a is None for a in aborts):
        return None
    if len(runs) == 1:
        return aborts[0]
    i, first = next((i, a) for i, a in enumerate(aborts) if a is not None)
    complete = sum((a or {}).get("complete", 0) if a is not None else
                   ab_parse.parse_report(run.stdout)["complete"] for (run, _), a in zip(runs, aborts))
    return {**first, "complete": complete, "reason": f"ab process {i + 1} of {len(runs)}: {first['reason']}"}


def _record(runs: list[tuple[AbRun, float]]) -> Measurement:
    """One successful run as its record, or several merged exactly (:mod:`labkit.ab_merge`)."""
    if len(runs) == 1:
        run = runs[0][0]
        pct = ab_parse.parse_percentiles(run.percentiles_csv) if run.percentiles_csv else None
        gp = ab_parse.parse_gnuplot(run.gnuplot_tsv) if run.gnuplot_tsv else None
        return measurement(ab_parse.parse_report(run.stdout), pct, gp)
    parts = []
    for i, (run, ended) in enumerate(runs):
        if not run.gnuplot_tsv:
            raise AbParseError("gnuplot file", f"ab process {i + 1} of {len(runs)} wrote no -g file: "
                               "several processes can only be merged from their per-request times")
        parts.append(ab_merge.Part(ab_parse.parse_report(run.stdout), ab_parse.parse_gnuplot(run.gnuplot_tsv), ended))
    merged = ab_merge.merge(parts)
    log.info("%d ab processes merged: %d requests, start skew %.1f ms", len(parts), merged.row.complete,
             merged.skew_s * 1000)
    return merged.row


def _cpu_by_role(backend: Backend) -> dict:
    return backend.cpu_seconds_by_role() or {}


def _used(before: dict, after: dict, role: str) -> float | None:
    b, a = before.get(role), after.get(role)
    return None if a is None or b is None else max(0.0, a - b)


def measure(backend: Backend, command: AbCommand, retries: int = 2, timeout: float | None = None,
            retry_delay: float = 1.0, progress=None, *, settle: bool = True,
            settle_timeout: float = 30.0, testers: int = 1) -> Measurement:
    """Run ``command`` on ``backend`` and return its :class:`~labkit.record.Measurement`.

    Success: :func:`labkit.ab.measurement` of the report, the ``-e`` percentiles and the
    ``-g`` per-request times, with ``concurrency``, ``requests`` and ``attempts`` set.
    Early exit: retried up to ``retries`` more times (a warning logged each time, once the
    lab settled, or after ``retry_delay`` seconds without settling); if every attempt
    aborted, an aborted record: ``aborted=True``, latency columns None, ``complete`` as
    ab reported it on the last attempt, ``attempts = retries + 1`` and ``abort_reason``.
    A run that outlives ``timeout`` (default :func:`default_timeout`) counts as an abort.
    The configuration fields (run, backend, machines, nodes) are the caller's to add.

    ``progress`` (optional) is passed to the backend to report ab's requests done.

    With ``settle`` (the default) every attempt starts once the lab is idle
    (:meth:`Backend.settle`, at most ``settle_timeout`` seconds; their sum is ``settle_s``)
    instead of after ``retry_delay``. The CPU columns hold what each role used during the
    returned attempt's ab run (None where the backend cannot read a counter; the balancer's
    None with one node), and ``cpu_limited``, ``balancer_machine_type`` and
    ``tester_machine_type`` what the backend says.

    ``testers`` > 1 measures the point with that many ab processes started together, each
    with its share of the users and requests (:func:`labkit.ab_merge.split`, run by
    :meth:`Backend.run_ab_together`), merged exactly into one row (:func:`labkit.ab_merge.merge`,
    ``testers`` set to their number; the start skew is logged). When any of them exits early
    the attempt is an abort, its reason naming which one.

    Never raises for an ab abort; raises :class:`~labkit.errors.AbParseError` only when a
    run that looked successful printed a report that cannot be read.
    """
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise ConfigError(f"retries must be a non-negative integer, not {retries!r}")
    timeout = default_timeout(command) if timeout is None else timeout
    commands = ab_merge.split(command, testers)
    abort: dict = {}
    settled = 0.0 if settle else None
    for attempt in range(1, retries + 2):
        if settle:
            settled += backend.settle(settle_timeout)
        before = _cpu_by_role(backend)
        try:
            runs = backend.run_ab_together(commands, timeout, progress=progress)
        except (subprocess.TimeoutExpired, TimeoutError, CommandTimeout):  # hung, here or on a host
            runs = None
            abort = {"complete": 0, "reason": f"ab did not finish within {timeout:g}s", "kind": "hung"}
        after = _cpu_by_role(backend)
        context = dict(settle_s=settled, cpu_limited=backend.cpu_limited,
                       balancer_machine_type=backend.balancer_machine_type,
                       tester_machine_type=backend.tester_machine_type,
                       server_cpu_s=_used(before, after, "server"), balancer_cpu_s=_used(before, after, "balancer"),
                       tester_cpu_s=_used(before, after, "tester"), testers=len(commands))
        if runs is not None:
            found = _first_abort(runs)
            if found is None:
                return _record(runs).replace(concurrency=command.concurrency, requests=command.requests,
                                             attempts=attempt, **context)
            abort = found
        if attempt <= retries:
            log.warning("ab aborted at concurrency %d (attempt %d of %d): %s; retrying",
                        command.concurrency, attempt, retries + 1, abort["reason"])
            if retry_delay > 0 and not settle:  # settling waits for the backlog to drain instead
                time.sleep(retry_delay)
    log.warning("ab aborted at concurrency %d in all %d attempts; recording an aborted row: %s",
                command.concurrency, retries + 1, abort["reason"])
    return aborted_measurement(abort, command).replace(attempts=retries + 1, **context)
