"""ApacheBench: the command labkit runs, and its output as one :class:`~labkit.record.Measurement`.

:class:`AbCommand` is a frozen configuration that builds ab's argv (sweeps derive
variants with :func:`dataclasses.replace`). The text parsers live in
:mod:`labkit.ab_parse`; this module maps what they read to the results record:

* :func:`measurement` -- a report (+ optional -e/-g data) as a record (design §7);
* :func:`aborted_measurement` -- an early exit as an aborted record;
* :func:`parse_file` -- the same from saved files, for ``labkit parse-ab``.
"""

from __future__ import annotations

import dataclasses
import statistics
from pathlib import Path
from urllib.parse import urlsplit

from labkit.ab_parse import has_report, parse_aborted, parse_gnuplot, parse_percentiles, parse_report
from labkit.errors import AbParseError, ConfigError
from labkit.record import PERCENTILES, Measurement

DEFAULT_PAYLOAD = b'{"fibonacci_number": 20}\n'
MAX_CONCURRENCY = 20000  # ab's compiled-in limit (MAX_CONCURRENCY in ab.c)


@dataclasses.dataclass(frozen=True)
class AbCommand:
    """One ab invocation as in the handout: ``ab -p payload.json -T application/json -m POST
    -c C -n N -s S -r URL`` plus ``-e``/``-g`` for exact percentiles and per-request times.

    ``url`` is the base URL (``http://10.0.0.2`` or ``http://127.0.1.1:8080``); ``path``
    is appended to it. ``-r`` keeps ab going on socket receive errors (they become
    failed requests instead of an abort).
    """

    url: str
    concurrency: int
    requests: int
    timeout_s: int = 10
    keepalive: bool = False
    path: str = "/fibonacci"
    payload: bytes = DEFAULT_PAYLOAD

    def __post_init__(self):
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"ab needs an http:// or https:// URL with a host, not {self.url!r}")
        if parts.path not in ("", "/") or parts.query:
            raise ConfigError(f"give the base URL without a path (path is separate), not {self.url!r}")
        if not self.path.startswith("/"):
            raise ConfigError(f"path must start with '/', not {self.path!r}")
        for name in ("concurrency", "requests", "timeout_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, not {value!r}")
        if self.concurrency > self.requests:
            raise ConfigError(f"concurrency ({self.concurrency}) cannot exceed requests ({self.requests}): "
                              "ab refuses it")
        if self.concurrency > MAX_CONCURRENCY:
            raise ConfigError(f"ab supports at most {MAX_CONCURRENCY} concurrent connections, not {self.concurrency}")
        if not isinstance(self.payload, bytes) or not self.payload:
            raise ConfigError("payload must be non-empty bytes (ab -p posts it)")

    @property
    def target(self) -> str:
        """The full URL ab requests."""
        return self.url.rstrip("/") + self.path

    def __str__(self) -> str:
        """The handout's command line for this run (``ab -p payload.json -T application/json -m POST -c C
        -n N -s S -r URL``), as a student types it on the tester; the ``-e``/``-g`` files labkit adds to
        read exact percentiles are the backend's business and not shown."""
        keep = " -k" if self.keepalive else ""
        return (f"ab -p payload.json -T application/json -m POST -c {self.concurrency} -n {self.requests} "
                f"-s {self.timeout_s} -r{keep} {self.target}")

    def argv(self, payload: str, percentiles: str, gnuplot: str, ab: str = "ab") -> list[str]:
        """ab's argv, given where the tester keeps the payload and where ab writes its -e and -g files.

        The backend chooses those paths (on the tester's file system) and ``ab`` (the
        program, e.g. a full path); everything else comes from this command.
        """
        argv = [ab, "-p", payload, "-T", "application/json", "-m", "POST",
                "-c", str(self.concurrency), "-n", str(self.requests), "-s", str(self.timeout_s), "-r",
                "-e", percentiles, "-g", gnuplot]
        if self.keepalive:
            argv.append("-k")
        argv.append(self.target)
        return argv


# --- the record ----------------------------------------------------------------------------

def measurement(report: dict, percentiles: dict[float, float] | None = None,
                gnuplot: list[dict] | None = None) -> Measurement:
    """A parsed report (and optional -e / -g data) as a results record (design §7).

    * ``mean_ms``: the mean of the ``-g`` per-request total times when ``gnuplot`` is
      given (each rounded to whole ms by ab, so their mean keeps sub-ms resolution);
      otherwise the Connection Times ``Total`` mean, which ab itself rounds to whole ms.
    * ``ab_mean_ms``: ab's ``Time per request (mean)`` = c*T/n, the figure students quote.
    * ``p50_ms``..``p99_ms``, ``max_ms``: from the ``-e`` file (0.001 ms) when given,
      else from the report's percentile table (whole ms). The -e rows ab computed past
      the end of its data are replaced first, see :func:`clamp_percentiles`.

    The fields ab does not know (run, backend, machines, ``requests``, ``attempts``) keep
    the record's defaults; :func:`labkit.measure.measure` and the sweep fill them in.
    """
    table = percentiles if percentiles is not None else report.get("percentiles")
    if percentiles is not None and report["complete"] > 0:
        table = clamp_percentiles(percentiles, report["complete"])
    conn = report.get("connection_times")
    if gnuplot:
        mean_ms = round(statistics.fmean(r["ttime"] for r in gnuplot), 3)
    else:
        mean_ms = float(conn["total"]["mean"]) if conn else None
    return Measurement(
        concurrency=report["concurrency"], complete=report["complete"], failed=report["failed"],
        non_2xx=report["non_2xx"], aborted=False, time_taken_s=report["time_taken_s"], rps=report["rps"],
        mean_ms=mean_ms, ab_mean_ms=report["time_per_request_ms"],
        **{f"p{p}_ms": (table[float(p)] if table else None) for p in PERCENTILES},
        max_ms=table[100.0] if table else None,
        connect_mean_ms=float(conn["connect"]["mean"]) if conn else None,
    )


def clamp_percentiles(table: dict[float, float], complete: int) -> dict[float, float]:
    """Repair ab's ``-e`` rows that it read from past the end of its data.

    ab writes percent ``p`` (0 < p < 100) as ``stats[(int)(0.5 + done*p/100)]``; when that
    index reaches ``done`` (p >= 100 - 50/done, e.g. the 99% row whenever fewer than 51
    requests completed) it reads uninitialised memory. Real capture (30 requests)::

        98,11.152
        99,3409317638883534.500
        100,11.152

    Those rows are replaced by the 100% row, which is ``stats[done-1]``, the slowest
    request: the value the index would have had if clamped.
    """
    fixed = dict(table)
    for percent in table:
        if 0 < percent < 100 and int(0.5 + complete * percent / 100.0) >= complete:
            fixed[percent] = table[100.0]
    return fixed


def aborted_measurement(abort: dict, command: AbCommand | None = None) -> Measurement:
    """The record of an aborted run (:func:`~labkit.ab_parse.parse_aborted`'s ``abort``): what ab
    reported, latency and error counts empty. ``command`` gives ``concurrency`` and ``requests``."""
    config = {"concurrency": command.concurrency, "requests": command.requests} if command else {}
    return Measurement(complete=abort["complete"], aborted=True, abort_reason=abort["reason"], **config)


def parse_file(path, percentiles_path=None, gnuplot_path=None) -> Measurement:
    """The record of a saved ab stdout (``labkit parse-ab FILE [--percentiles E.csv]``).

    A file holding a report gives :func:`measurement`; a file holding only an aborted
    run's output (stdout and stderr saved together, e.g. ``ab ... > out.txt 2>&1``) gives
    :func:`aborted_measurement` (its concurrency is not in the output: left at the
    default); anything else raises :class:`AbParseError`.
    """
    text = Path(path).read_text(errors="replace")
    if has_report(text):
        pct = parse_percentiles(Path(percentiles_path).read_text()) if percentiles_path else None
        gp = parse_gnuplot(Path(gnuplot_path).read_text()) if gnuplot_path else None
        return measurement(parse_report(text), pct, gp)
    abort = parse_aborted(text, "")
    if abort["reason"] is None:
        raise AbParseError("Complete requests", f"{path} holds neither an ab report nor an ab error")
    return aborted_measurement(abort)

