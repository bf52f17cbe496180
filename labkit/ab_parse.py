"""ApacheBench's output, read by pure functions of text; strict: a field it cannot read is an error.

* :func:`parse_report` -- ab's report on stdout, every field;
* :func:`parse_aborted` -- what an early exit (timeout, too many failures, EMFILE...) left;
* :func:`parse_percentiles` -- the ``-e`` CSV (0..100 %, to 0.001 ms);
* :func:`parse_gnuplot` -- the ``-g`` TSV (one line per request, whole ms);
* :func:`has_report` -- whether ab got as far as printing its report.

:mod:`labkit.ab` builds the command and turns these into a
:class:`~labkit.record.Measurement`.

Where ab writes what (ab 2.3, as shipped in Debian's apache2-utils): the report and
``Total of N requests completed`` go to **stdout**; the ``Completed N requests`` progress
lines, ``Test aborted after 10 failures`` and the fatal ``apr_...: message (code)`` line go
to **stderr**. ab's exit status is the APR error code modulo 256: 70007 (timeout)
exits 119, ECONNRESET 104, EMFILE 24, EADDRNOTAVAIL 99. On an abort ab writes neither
the ``-e`` nor the ``-g`` file. Real captures live in ``tests/data/ab/``.
"""

from __future__ import annotations

import re

from labkit.errors import AbParseError
from labkit.record import PERCENTILES


# --- the report -----------------------------------------------------------------------------

_LABEL = re.compile(r"^([A-Z][A-Za-z0-9 /-]*?):[ \t]*(.*?)\s*$")
_INT = r"(\d+)"
_NUM = r"(\d+(?:\.\d+)?)"
# ab 2.3: (Connect: a, Receive: b, Length: c, Exceptions: d); ab 2.0.x has no Receive.
_FAILED_BREAKDOWN = re.compile(
    r"^\s+\(Connect: (\d+),(?: Receive: (\d+),)? Length: (\d+), Exceptions: (\d+)\)\s*$")
_RATE_EXTRA = re.compile(r"^\s+" + _NUM + r" kb/s (sent|total)\s*$")
_CONN_ROW = re.compile(r"^(Connect|Processing|Waiting|Total):\s+(-?\d+)\s+(-?\d+)\s+(-?\d+(?:\.\d+)?)"
                       r"\s+(-?\d+)\s+(-?\d+)\s*$")
_PCT_ROW = re.compile(r"^\s*(\d+)%\s+(\d+)(?: \(longest request\))?\s*$")

# label -> (key, regex for the value, converter); order = ab's order.
_SCALARS = {
    "Server Software": ("server_software", r"(.*)", str),
    "Server Hostname": ("server_hostname", r"(\S+)", str),
    "Server Port": ("server_port", _INT, int),
    "Document Path": ("document_path", r"(\S+)", str),
    "Concurrency Level": ("concurrency", _INT, int),
    "Time taken for tests": ("time_taken_text", _NUM + r" seconds", str),  # see _time_taken
    "Complete requests": ("complete", _INT, int),
    "Failed requests": ("failed", _INT, int),
    "Write errors": ("write_errors", _INT, int),
    "Non-2xx responses": ("non_2xx", _INT, int),
    "Keep-Alive requests": ("keepalive_requests", _INT, int),
    "Total transferred": ("total_transferred_bytes", _INT + r" bytes", int),
    "Total body sent": ("total_body_sent_bytes", _INT, int),
    "Total POSTed": ("total_body_sent_bytes", _INT, int),  # ab 2.0's name for it
    "HTML transferred": ("html_transferred_bytes", _INT + r" bytes", int),
    "Requests per second": ("rps", _NUM + r" \[#/sec\] \(mean\)", float),
    "Transfer rate": ("transfer_rate_kbps", _NUM + r" \[Kbytes/sec\] received", float),
}
_REQUIRED = ("Server Software", "Server Hostname", "Server Port", "Document Path", "Document Length",
             "Concurrency Level", "Time taken for tests", "Complete requests", "Failed requests",
             "Total transferred", "HTML transferred", "Requests per second", "Time per request",
             "Transfer rate")
_OPTIONAL_DEFAULTS = {"write_errors": 0, "non_2xx": 0, "keepalive_requests": None,
                      "total_body_sent_bytes": None}


def parse_report(text: str) -> dict:
    """Parse ab's report (its stdout) into a dict; strict: unreadable fields raise.

    Real output (ab 2.3 against the Flask dev server, ``-c 10 -n 200``), abridged::

        Server Software:        Werkzeug/3.1.9
        Server Hostname:        127.0.0.1
        Server Port:            18778

        Document Path:          /fibonacci
        Document Length:        39 bytes

        Concurrency Level:      10
        Time taken for tests:   0.226 seconds
        Complete requests:      200
        Failed requests:        0
        Total transferred:      40800 bytes
        Total body sent:        34000
        HTML transferred:       7800 bytes
        Requests per second:    885.94 [#/sec] (mean)
        Time per request:       11.287 [ms] (mean)
        Time per request:       1.129 [ms] (mean, across all concurrent requests)
        Transfer rate:          176.50 [Kbytes/sec] received
                                147.08 kb/s sent
                                323.58 kb/s total

        Connection Times (ms)
                      min  mean[+/-sd] median   max
        Connect:        0    0   0.0      0       0
        Processing:    10   11   0.6     11      15
        Waiting:        0    1   0.5      0       5
        Total:         10   11   0.6     11      15

        Percentage of the requests served within a certain time (ms)
          50%     11
          ...
         100%     15 (longest request)

    Also read when present: the ``(Connect: a, Receive: b, Length: c, Exceptions: d)``
    breakdown under ``Failed requests`` (all 0 when absent; ab 2.0.x prints no
    ``Receive``, read as 0), ab 2.0's ``Total POSTed`` and microsecond ``Time taken``
    (see :func:`_time_taken`), a one-request report (no percentile table: every
    percentile is that request's time), ``Write errors``,
    ``Non-2xx responses`` (0 when absent), ``Keep-Alive requests`` (``-k``; None when
    absent), ``Document Length: Variable`` (``-l``; length None). The Connection Times
    table is in whole ms (sd to 0.1); the percentile table is in whole ms.

    Returns keys: server_software, server_hostname, server_port, document_path,
    document_length, document_length_variable, concurrency, time_taken_s, complete,
    failed, failed_connect, failed_receive, failed_length, failed_exceptions,
    write_errors, non_2xx, keepalive_requests, total_transferred_bytes,
    total_body_sent_bytes, html_transferred_bytes, rps, time_per_request_ms (c*T/n),
    time_per_request_all_ms (T/n), transfer_rate_kbps (received), transfer_sent_kbps,
    transfer_total_kbps, connection_times ({connect|processing|waiting|total:
    {min, mean, sd, median, max}}), percentiles ({50.0: ms, ..., 100.0: ms}).
    """
    lines = text.splitlines()
    out: dict = {"failed_connect": 0, "failed_receive": 0, "failed_length": 0, "failed_exceptions": 0,
                 "transfer_sent_kbps": None, "transfer_total_kbps": None, **_OPTIONAL_DEFAULTS}
    seen: set[str] = set()
    per_request: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("Connection Times (ms)"):
            out["connection_times"], i = _parse_connection_times(lines, i + 1)
            continue
        if line.startswith("Percentage of the requests served within a certain time (ms)"):
            out["percentiles"], i = _parse_percentile_table(lines, i + 1)
            continue
        i += 1
        match = _LABEL.match(line)
        if not match:
            continue
        label, value = match.groups()
        if label == "Time per request":
            seen.add(label)
            per_request.append(value)
        elif label == "Document Length":
            seen.add(label)
            if value == "Variable":
                out["document_length"], out["document_length_variable"] = None, True
            else:
                out["document_length"] = _convert(label, value, _INT + r" bytes", int)
                out["document_length_variable"] = False
        elif label in _SCALARS:
            seen.add(label)
            key, pattern, conv = _SCALARS[label]
            out[key] = _convert(label, value, pattern, conv)
            if label == "Failed requests" and out[key] > 0:
                _read_failed_breakdown(lines, i, out)
            elif label == "Transfer rate":
                i = _read_rate_extras(lines, i, out)
    for label in _REQUIRED:
        if label not in seen:
            raise AbParseError(label, "missing from ab's report")
    if len(per_request) != 2:
        raise AbParseError("Time per request", f"expected 2 lines, found {len(per_request)}")
    out["time_per_request_ms"] = _convert("Time per request", per_request[0], _NUM + r" \[ms\] \(mean\)", float)
    out["time_per_request_all_ms"] = _convert(
        "Time per request", per_request[1], _NUM + r" \[ms\] \(mean, across all concurrent requests\)", float)
    out["time_taken_s"] = _time_taken(out.pop("time_taken_text"), out)
    # ab prints the Connection Times when at least one request completed, and the
    # percentile table only when more than one did (``done > 1``): with one request,
    # every percentile is that request's total time.
    if out["complete"] > 0:
        if "connection_times" not in out:
            raise AbParseError("Connection Times", "table missing from ab's report")
        if "percentiles" not in out:
            if out["complete"] > 1:
                raise AbParseError("Percentage served", "table missing from ab's report")
            only = float(out["connection_times"]["total"]["max"])
            out["percentiles"] = {float(p): only for p in (*PERCENTILES, 100)}
    else:
        out.setdefault("connection_times", None)
        out.setdefault("percentiles", None)
    return out


def _time_taken(text: str, out: dict) -> float:
    """Seconds from ``Time taken for tests``, in either ab's format.

    ab 2.3 prints ``%.3f`` of seconds; ab 2.0.x prints ``%ld.%03ld`` of (seconds,
    *microseconds*), not zero-padded to 6 digits: ``10.1002`` is 10 s + 1002 us =
    10.001002 s. More than 3 decimals can only be ab 2.0's microseconds. With exactly
    3 the two readings differ (``2.537``: 2.537 s, or 2.000537 s), so the one that
    agrees with what ab derived from the same time -- ``complete / rps`` and
    ``complete * (time per request across all) / 1000`` -- is taken.
    """
    whole, _, frac = text.partition(".")
    if not frac:
        return float(whole)
    as_us = int(whole) + int(frac) / 1e6
    if len(frac) > 3:
        return as_us
    as_ms = int(whole) + int(frac) / 1e3
    checks = []
    if out.get("rps"):
        checks.append(out["complete"] / out["rps"])
    if out.get("time_per_request_all_ms") and out["complete"]:
        checks.append(out["complete"] * out["time_per_request_all_ms"] / 1000)
    if not checks or as_us == as_ms:
        return as_ms
    err = lambda t: sum(abs(t - c) for c in checks)  # noqa: E731
    return as_us if err(as_us) < err(as_ms) else as_ms


def _convert(field: str, value: str, pattern: str, conv):
    match = re.fullmatch(pattern, value)
    if not match:
        raise AbParseError(field, f"cannot read {value!r}")
    return conv(match.group(1))


def _read_failed_breakdown(lines: list[str], i: int, out: dict) -> None:
    """ab prints the breakdown on the line after ``Failed requests`` whenever failed > 0."""
    match = _FAILED_BREAKDOWN.match(lines[i]) if i < len(lines) else None
    if not match:
        raise AbParseError("Failed requests", "breakdown line (Connect: .., Receive: .., Length: .., "
                           f"Exceptions: ..) missing or unreadable: {lines[i] if i < len(lines) else ''!r}")
    (out["failed_connect"], out["failed_receive"],
     out["failed_length"], out["failed_exceptions"]) = (int(g or 0) for g in match.groups())


def _read_rate_extras(lines: list[str], i: int, out: dict) -> int:
    """The ``kb/s sent`` and ``kb/s total`` lines that follow ``Transfer rate`` when posting."""
    while i < len(lines) and lines[i].startswith(" ") and lines[i].strip():
        match = _RATE_EXTRA.match(lines[i])
        if not match:
            raise AbParseError("Transfer rate", f"cannot read {lines[i].strip()!r}")
        out[f"transfer_{match.group(2)}_kbps"] = float(match.group(1))
        i += 1
    return i


def _parse_connection_times(lines: list[str], i: int) -> tuple[dict, int]:
    if i >= len(lines) or not re.match(r"^\s+min\s+mean\[\+/-sd\]\s+median\s+max\s*$", lines[i]):
        raise AbParseError("Connection Times", f"unexpected header {lines[i] if i < len(lines) else ''!r}")
    i += 1
    table = {}
    for name in ("Connect", "Processing", "Waiting", "Total"):
        match = _CONN_ROW.match(lines[i]) if i < len(lines) else None
        if not match or match.group(1) != name:
            raise AbParseError(f"Connection Times {name}",
                               f"cannot read {lines[i] if i < len(lines) else ''!r}")
        mn, mean, sd, median, mx = match.groups()[1:]
        table[name.lower()] = {"min": int(mn), "mean": int(mean), "sd": float(sd),
                               "median": int(median), "max": int(mx)}
        i += 1
    return table, i


def _parse_percentile_table(lines: list[str], i: int) -> tuple[dict, int]:
    table: dict[float, float] = {}
    while i < len(lines) and lines[i].strip():
        match = _PCT_ROW.match(lines[i])
        if not match:
            raise AbParseError("Percentage served", f"cannot read {lines[i]!r}")
        table[float(match.group(1))] = float(match.group(2))
        i += 1
    expected = {float(p) for p in (*PERCENTILES, 100)}
    if set(table) != expected:
        raise AbParseError("Percentage served", f"expected rows {sorted(expected)}, found {sorted(table)}")
    return table, i


# --- early exits ------------------------------------------------------------------------------

_FATAL = re.compile(r"^(?P<where>[^\s:][^:]*): (?P<message>.*) \((?P<code>-?\d+)\)$")
_TOTAL_OF = re.compile(r"^Total of (\d+) requests completed$", re.M)
_PROGRESS = re.compile(r"^Completed (\d+) requests$", re.M)

ABORT_KINDS = {
    70007: "timeout",  # APR_TIMEUP: a request outlived -s
    24: "emfile",  # EMFILE: ulimit -n lower than the concurrency needs
    104: "reset",  # ECONNRESET
    111: "refused",  # ECONNREFUSED
    99: "no_ports",  # EADDRNOTAVAIL: the tester ran out of ephemeral ports
}


def parse_aborted(stdout: str, stderr: str) -> dict:
    """Read what ab reported before it exited early.

    Real output of an abort (a server that accepts but never answers, ``-s 1``)::

        stdout: Benchmarking 127.0.0.1 (be patient)...
        stderr: apr_pollset_poll: The timeout specified has expired (70007)

    and of ab running out of client ports mid-run (no ``-r`` needed for this one)::

        stdout: Benchmarking 127.0.0.1 (be patient)
                Total of 57 requests completed
        stderr: Test aborted after 10 failures
                apr_socket_connect(): Cannot assign requested address (99)

    Returns ``complete`` (from ``Total of N requests completed``, else the last
    ``Completed N requests`` progress line, else 0), ``reason`` (the fatal line, prefixed
    by ``Test aborted after 10 failures: `` when ab said so; None when no fatal line was
    found), ``code`` (the APR/errno code or None), ``kind`` (timeout, failures, emfile,
    reset, refused, no_ports, error, or unknown) and ``after_failures`` (bool).
    """
    combined = f"{stdout}\n{stderr}"
    total = _TOTAL_OF.findall(combined)
    progress = _PROGRESS.findall(combined)
    complete = int(total[-1]) if total else (int(progress[-1]) if progress else 0)
    fatal = None
    for line in reversed(combined.splitlines()):
        match = _FATAL.match(line.strip())
        if match:
            fatal = match
            break
    after_failures = "Test aborted after 10 failures" in combined
    code = int(fatal.group("code")) if fatal else None
    if fatal is not None:
        reason = fatal.group(0)
        kind = ABORT_KINDS.get(code, "error")
    else:
        last = [line.strip() for line in stderr.splitlines() if line.strip()]
        reason = last[-1] if last else None
        kind = "unknown"
    if after_failures:
        kind = "failures"
        reason = "Test aborted after 10 failures" + (f": {reason}" if reason else "")
    return {"complete": complete, "reason": reason, "code": code, "kind": kind,
            "after_failures": after_failures}


# --- -e and -g files ---------------------------------------------------------------------------

def parse_percentiles(csv_text: str) -> dict[float, float]:
    """Parse ab's ``-e`` file: percent (0..100) -> ms, to 0.001 ms.

    Real file (first and last lines)::

        Percentage served,Time in ms
        0,10.483
        1,10.508
        ...
        99,14.702
        100,14.990
    """
    lines = [line for line in csv_text.splitlines() if line.strip()]
    if not lines or lines[0].strip() != "Percentage served,Time in ms":
        raise AbParseError("percentiles file", f"header is {lines[0] if lines else ''!r}, "
                           "expected 'Percentage served,Time in ms'")
    table: dict[float, float] = {}
    for line in lines[1:]:
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?),(\d+(?:\.\d+)?)\s*", line)
        if not match:
            raise AbParseError("percentiles file", f"cannot read {line!r}")
        table[float(match.group(1))] = float(match.group(2))
    missing = [p for p in (*PERCENTILES, 100) if float(p) not in table]
    if missing:
        raise AbParseError("percentiles file", f"no row for {missing}")
    return table


_GNUPLOT_HEADER = ["starttime", "seconds", "ctime", "dtime", "ttime", "wait"]


def parse_gnuplot(tsv_text: str) -> list[dict]:
    """Parse ab's ``-g`` file: one dict per request, times in whole ms (ab rounds them).

    ``ctime`` is the connect time, ``dtime`` processing (ttime - ctime), ``ttime`` the
    total, ``wait`` the time to first byte; ``seconds`` the epoch second it started.
    Rows are sorted by ttime, as ab writes them. Real file::

        starttime	seconds	ctime	dtime	ttime	wait
        Sat Nov 28 13:08:38 2026	1795871318	0	10	10	0
    """
    lines = [line for line in tsv_text.splitlines() if line.strip()]
    if not lines or lines[0].split("\t") != _GNUPLOT_HEADER:
        raise AbParseError("gnuplot file", f"header is {lines[0] if lines else ''!r}")
    rows = []
    for line in lines[1:]:
        cells = line.split("\t")
        if len(cells) != 6:
            raise AbParseError("gnuplot file", f"cannot read {line!r}")
        try:
            rows.append({"starttime": cells[0], **{k: int(v) for k, v in zip(_GNUPLOT_HEADER[1:], cells[1:])}})
        except ValueError:
            raise AbParseError("gnuplot file", f"cannot read {line!r}") from None
    return rows


def has_report(stdout: str) -> bool:
    """True when ab got as far as printing its report."""
    return re.search(r"^Complete requests:", stdout, re.M) is not None

