"""Measure one point: run ab through a backend, retry its early exits, return one results row.

The handout's advice for ab's ``apr_pollset_poll: The timeout specified has expired
(70007)`` is "try to run the test again". :func:`measure` does that for every early exit
(a non-zero exit, a timeout, ``Test aborted after 10 failures``, ``apr_socket_recv``
errors, ``Too many open files``, or no report at all) and, when every attempt aborted,
returns an *aborted* row holding what ab did report -- so a sweep never crashes on a
bad level and never silently skips one (design §6).
"""

from __future__ import annotations

import logging
import subprocess
import time

from . import ab as ab_mod
from .ab import AbCommand
from .backends.base import AbRun, Backend
from .errors import ConfigError

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
    """Return :func:`labkit.ab.parse_aborted`'s view of ``run`` if ab exited early, else None."""
    early = (run.exit_code != 0 or not ab_mod.has_report(run.stdout)
             or any(marker in run.stderr for marker in _ABORT_MARKERS))
    if not early:
        return None
    abort = ab_mod.parse_aborted(run.stdout, run.stderr)
    if abort["reason"] is None:
        abort["reason"] = (f"ab exited with code {run.exit_code}" if run.exit_code
                           else "ab printed no report")
    return abort


def measure(backend: Backend, command: AbCommand, retries: int = 2, timeout: float | None = None,
            retry_delay: float = 1.0, progress=None) -> dict:
    """Run ``command`` on ``backend`` and return its results columns plus ``attempts``.

    Success: :func:`labkit.ab.fields` of the report, the ``-e`` percentiles and the ``-g``
    per-request times, plus ``concurrency``, ``requests`` and ``attempts``.
    Early exit: retried up to ``retries`` more times (a warning logged each time, after
    ``retry_delay`` seconds so the server can drain its backlog); if every attempt
    aborted, an aborted row: ``aborted=True``, latency columns None, ``complete`` as ab
    reported it on the last attempt, ``attempts = retries + 1`` and ``abort_reason``.
    A run that outlives ``timeout`` (default :func:`default_timeout`) counts as an abort.

    ``progress`` (optional) is passed to the backend to report ab's requests done.

    Never raises for an ab abort; raises :class:`~labkit.errors.AbParseError` only when a
    run that looked successful printed a report that cannot be read.
    """
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise ConfigError(f"retries must be a non-negative integer, not {retries!r}")
    timeout = default_timeout(command) if timeout is None else timeout
    argv = command.argv()
    abort: dict = {}
    for attempt in range(1, retries + 2):
        try:
            extra = {"progress": progress} if progress is not None else {}
            run = backend.run_ab(argv, command.payload, timeout, **extra)
        except (subprocess.TimeoutExpired, TimeoutError):
            abort = {"complete": 0, "reason": f"ab did not finish within {timeout:g}s", "kind": "hung"}
        else:
            found = abort_of(run)
            if found is None:
                pct = ab_mod.parse_percentiles(run.percentiles_csv) if run.percentiles_csv else None
                gp = ab_mod.parse_gnuplot(run.gnuplot_tsv) if run.gnuplot_tsv else None
                row = ab_mod.fields(ab_mod.parse_report(run.stdout), pct, gp)
                row.update(concurrency=command.concurrency, requests=command.requests, attempts=attempt)
                return row
            abort = found
        if attempt <= retries:
            log.warning("ab aborted at concurrency %d (attempt %d of %d): %s; retrying",
                        command.concurrency, attempt, retries + 1, abort["reason"])
            if retry_delay > 0:
                time.sleep(retry_delay)
    log.warning("ab aborted at concurrency %d in all %d attempts; recording an aborted row: %s",
                command.concurrency, retries + 1, abort["reason"])
    row = ab_mod.aborted_fields(abort)
    row.update(concurrency=command.concurrency, requests=command.requests, attempts=retries + 1)
    return row
