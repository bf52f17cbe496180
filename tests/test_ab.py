"""labkit.ab (command, record), labkit.ab_parse (parsers) and labkit.measure (retries, aborted rows).

Parser tests read real ab output captured by tests/data/capture.py into tests/data/ab/;
the numbers asserted are the ones in those files. measure() is exercised with ab
really running against real loopback servers.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
from pathlib import Path

import pytest

from labkit import ab, ab_parse
from labkit.ab import AbCommand
from labkit.record import Measurement
from labkit.backends.base import AbRun
from labkit.errors import AbParseError, ConfigError
from labkit.measure import abort_of, measure
from tests.support.backend_doubles import NoMachinesBackend
from tests.data.capture import SubprocessAb, silent_listener

DATA = Path(__file__).resolve().parent / "data" / "ab"


def text(name: str) -> str:
    return (DATA / name).read_text()


def captured(name: str) -> AbRun:
    """A captured ab run, as a backend would have returned it."""
    opt = lambda suffix: text(name + suffix) if (DATA / (name + suffix)).exists() else None  # noqa: E731
    return AbRun(tuple(text(name + ".argv").split()), int(text(name + ".exit")), text(name + ".stdout"),
                 text(name + ".stderr"), opt(".e.csv"), opt(".g.tsv"))


# --- AbCommand ------------------------------------------------------------------------------------

def test_argv_is_the_handouts_command_plus_e_and_g():
    cmd = AbCommand("http://10.0.0.2", concurrency=100, requests=10000)
    assert cmd.argv("/tmp/p.json", "/tmp/e.csv", "/tmp/g.tsv") == [
        "ab", "-p", "/tmp/p.json", "-T", "application/json", "-m", "POST",
        "-c", "100", "-n", "10000", "-s", "10", "-r",
        "-e", "/tmp/e.csv", "-g", "/tmp/g.tsv", "http://10.0.0.2/fibonacci"]
    assert cmd.argv("p", "e", "g", ab="/usr/bin/ab")[0] == "/usr/bin/ab"
    assert cmd.payload == b'{"fibonacci_number": 20}\n'


def test_argv_keepalive_path_timeout_and_replace():
    cmd = AbCommand("http://127.0.1.1:8080/", concurrency=5, requests=50, timeout_s=3, keepalive=True,
                    path="/status")
    argv = cmd.argv("p", "e", "g")
    assert argv[-2:] == ["-k", "http://127.0.1.1:8080/status"]
    assert argv[argv.index("-s") + 1] == "3"
    wider = dataclasses.replace(cmd, concurrency=50).argv("p", "e", "g")
    assert wider[wider.index("-c") + 1] == "50"
    with pytest.raises(dataclasses.FrozenInstanceError):
        cmd.concurrency = 1


@pytest.mark.parametrize("kwargs, message", [
    (dict(url="http://h", concurrency=11, requests=10), "cannot exceed requests"),
    (dict(url="http://h", concurrency=0, requests=10), "concurrency must be a positive integer"),
    (dict(url="http://h", concurrency=1, requests=0), "requests must be a positive integer"),
    (dict(url="http://h", concurrency=1, requests=1, timeout_s=0), "timeout_s must be"),
    (dict(url="http://h", concurrency=True, requests=1), "concurrency must be"),
    (dict(url="h:80", concurrency=1, requests=1), "http:// or https://"),
    (dict(url="http://h/fibonacci", concurrency=1, requests=1), "without a path"),
    (dict(url="http://h", concurrency=1, requests=1, path="fib"), "must start with '/'"),
    (dict(url="http://h", concurrency=20001, requests=30000), "at most 20000"),
    (dict(url="http://h", concurrency=1, requests=1, payload=b""), "payload"),
])
def test_command_validation(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        AbCommand(**kwargs)


# --- report parser: every field, exact values ---------------------------------------------------

def test_success_report_every_field():
    report = ab_parse.parse_report(text("success.stdout"))
    pct = report.pop("percentiles")
    conn = report.pop("connection_times")
    assert report == {
        "server_software": "Werkzeug/3.1.9", "server_hostname": "127.0.0.1", "server_port": 45315,
        "document_path": "/fibonacci", "document_length": 39, "document_length_variable": False,
        "concurrency": 10, "time_taken_s": 0.223, "complete": 200, "failed": 0,
        "failed_connect": 0, "failed_receive": 0, "failed_length": 0, "failed_exceptions": 0,
        "write_errors": 0, "non_2xx": 0, "keepalive_requests": None,
        "total_transferred_bytes": 40800, "total_body_sent_bytes": 34000, "html_transferred_bytes": 7800,
        "rps": 897.13, "time_per_request_ms": 11.147, "time_per_request_all_ms": 1.115,
        "transfer_rate_kbps": 178.73, "transfer_sent_kbps": 148.94, "transfer_total_kbps": 327.66,
    }
    assert conn == {
        "connect": {"min": 0, "mean": 0, "sd": 0.1, "median": 0, "max": 0},
        "processing": {"min": 10, "mean": 11, "sd": 0.7, "median": 11, "max": 15},
        "waiting": {"min": 0, "mean": 1, "sd": 0.6, "median": 0, "max": 5},
        "total": {"min": 10, "mean": 11, "sd": 0.7, "median": 11, "max": 15},
    }
    assert pct == {50.0: 11, 66.0: 11, 75.0: 11, 80.0: 11, 90.0: 11, 95.0: 12, 98.0: 14, 99.0: 15, 100.0: 15}


def test_non_2xx_report():
    report = ab_parse.parse_report(text("non2xx.stdout"))
    assert (report["complete"], report["failed"], report["non_2xx"]) == (30, 0, 30)
    assert report["document_path"] == "/nope"
    assert report["document_length"] == 144
    assert report["html_transferred_bytes"] == 4320


def test_length_failures_breakdown():
    report = ab_parse.parse_report(text("length.stdout"))
    assert report["failed"] == 20
    assert (report["failed_connect"], report["failed_receive"],
            report["failed_length"], report["failed_exceptions"]) == (0, 0, 20, 0)
    assert report["server_software"] == "BaseHTTP/0.6"
    assert report["document_length"] == 5
    assert report["connection_times"]["total"] == {"min": 1, "mean": 1, "sd": 0.2, "median": 1, "max": 2}


def test_variable_document_length():
    report = ab_parse.parse_report(text("variable.stdout"))
    assert report["document_length"] is None
    assert report["document_length_variable"] is True
    assert report["failed"] == 0


def test_keepalive_report():
    report = ab_parse.parse_report(text("keepalive.stdout"))
    assert report["keepalive_requests"] == 100
    assert report["complete"] == 100
    assert report["time_taken_s"] == 1.069
    assert report["rps"] == 93.58
    assert report["connection_times"]["processing"] == {"min": 1, "mean": 43, "sd": 7.6, "median": 44, "max": 48}
    assert report["percentiles"][98.0] == 48


def test_handout_sample_report_parses():
    """The handout's sample output (older ab, narrower spacing) reads the same way."""
    sample = """Server Software:      nginx/1.10.3
Server Hostname:      35.188.78.135
Server Port:          80

Document Path:        /fibonacci
Document Length:      246 bytes

Concurrency Level:    10
Time taken for tests:  0.073 seconds
Complete requests:    10
Failed requests:       0
Total transferred:    4050 bytes
Total body sent:      1700
HTML transferred:     2460 bytes
Requests per second:  137.58 [#/sec] (mean)
Time per request:     72.687 [ms] (mean)
Time per request:     7.269 [ms] (mean, across all concurrent requests)
Transfer rate:        54.41 [Kbytes/sec] received
                     22.84 kb/s sent
                     77.25 kb/s total


Connection Times (ms)
              min    mean[+/-sd] median    max
Connect:        1      1   0.1      1      2
Processing:      3     14  20.3      8     71
Waiting:        3     14  20.3      8     71
Total:          5     15  20.3      9     73


Percentage of the requests served within a certain time (ms)
 50%      9
 66%     10
 75%     10
 80%     10
 90%     73
 95%     73
 98%     73
 99%     73
100%     73 (longest request)
"""
    row = ab.measurement(ab_parse.parse_report(sample))
    assert row.mean_ms == 15.0 and row.ab_mean_ms == 72.687
    assert (row.p98_ms, row.max_ms, row.connect_mean_ms) == (73.0, 73.0, 1.0)
    assert ab_parse.parse_report(sample)["server_software"] == "nginx/1.10.3"


# --- strictness --------------------------------------------------------------------------------

@pytest.mark.parametrize("old, new, field", [
    ("Complete requests:      200", "Complete requests:      two hundred", "Complete requests"),
    ("Time taken for tests:   0.223 seconds", "Time taken for tests:   0.223 minutes", "Time taken for tests"),
    ("Requests per second:    897.13 [#/sec] (mean)", "Requests per second:    n/a", "Requests per second"),
    ("Time per request:       1.115 [ms] (mean, across all concurrent requests)\n", "", "Time per request"),
    ("Document Length:        39 bytes", "Document Length:        39 octets", "Document Length"),
    ("Server Port:            45315", "Server Port:            http", "Server Port"),
    ("Failed requests:        0\n", "", "Failed requests"),
    ("Connect:        0    0   0.1      0       0", "Connect:        0    0   x      0       0",
     "Connection Times Connect"),
    ("Total:         10   11   0.7     11      15", "Total:         10   11", "Connection Times Total"),
    ("  98%     14", "  98%     14ms", "Percentage served"),
    ("  66%     11\n", "", "Percentage served"),
    ("                        148.94 kb/s sent", "                        148.94 kB sent", "Transfer rate"),
    ("Concurrency Level:      10", "Concurrency Level:      ten", "Concurrency Level"),
])
def test_corrupted_line_names_the_field(old, new, field):
    original = text("success.stdout")
    assert old in original
    with pytest.raises(AbParseError) as info:
        ab_parse.parse_report(original.replace(old, new, 1))
    assert info.value.field == field


def test_missing_breakdown_after_failures_is_an_error():
    broken = text("length.stdout").replace("   (Connect: 0, Receive: 0, Length: 20, Exceptions: 0)\n", "")
    with pytest.raises(AbParseError) as info:
        ab_parse.parse_report(broken)
    assert info.value.field == "Failed requests"


def test_missing_table_is_an_error():
    report = text("success.stdout")
    cut = report[:report.index("Connection Times (ms)")]
    with pytest.raises(AbParseError) as info:
        ab_parse.parse_report(cut)
    assert info.value.field == "Connection Times"


def test_aborted_output_is_not_a_report():
    with pytest.raises(AbParseError) as info:
        ab_parse.parse_report(text("timeout.stdout"))
    assert info.value.field in ab_parse._REQUIRED


# --- -e and -g files -----------------------------------------------------------------------------

def test_percentiles_file():
    table = ab_parse.parse_percentiles(text("success.e.csv"))
    assert len(table) == 101
    assert (table[0.0], table[1.0], table[50.0], table[98.0], table[99.0], table[100.0]) == \
        (10.472, 10.487, 10.638, 13.85, 14.9, 15.329)


@pytest.mark.parametrize("bad", ["Percent,ms\n50,1.0\n", "Percentage served,Time in ms\n50,abc\n",
                                 "Percentage served,Time in ms\n0,1.0\n100,2.0\n", ""])
def test_percentiles_file_strict(bad):
    with pytest.raises(AbParseError) as info:
        ab_parse.parse_percentiles(bad)
    assert info.value.field == "percentiles file"


def test_gnuplot_file():
    rows = ab_parse.parse_gnuplot(text("success.g.tsv"))
    assert len(rows) == 200
    assert rows[0] == {"starttime": "Sat Nov 28 13:12:46 2026", "seconds": 1795871566,
                       "ctime": 0, "dtime": 10, "ttime": 10, "wait": 0}
    assert sum(r["ttime"] for r in rows) == 2220
    assert max(r["ttime"] for r in rows) == 15


def test_gnuplot_file_strict():
    with pytest.raises(AbParseError):
        ab_parse.parse_gnuplot("starttime\tseconds\tctime\tdtime\tttime\twait\nSat\t1\t2\t3\n")
    with pytest.raises(AbParseError):
        ab_parse.parse_gnuplot("time\tseconds\n")


# --- fields (results columns) --------------------------------------------------------------------

def test_fields_of_success_with_e_and_g():
    run = captured("success")
    row = ab.measurement(ab_parse.parse_report(run.stdout), ab_parse.parse_percentiles(run.percentiles_csv),
                    ab_parse.parse_gnuplot(run.gnuplot_tsv))
    assert row == Measurement(concurrency=10, complete=200, failed=0, non_2xx=0, aborted=False,
                              time_taken_s=0.223, rps=897.13,
                              mean_ms=11.1,  # 2220 ms over 200 requests, from -g
                              ab_mean_ms=11.147,
                              p50_ms=10.638, p66_ms=10.704, p75_ms=10.811, p80_ms=11.013,
                              p90_ms=11.36, p95_ms=11.909, p98_ms=13.85, p99_ms=14.9,
                              max_ms=15.329, connect_mean_ms=0.0)


def test_fields_from_report_alone_use_its_tables():
    row = ab.measurement(ab_parse.parse_report(text("success.stdout")))
    assert (row.mean_ms, row.p95_ms, row.p98_ms, row.max_ms) == (11.0, 12.0, 14.0, 15.0)


def test_fields_repair_abs_out_of_range_percentile_rows():
    """ab -e writes garbage for 99% when fewer than 51 requests completed (captured: 30)."""
    raw = ab_parse.parse_percentiles(text("non2xx.e.csv"))
    assert raw[99.0] == 3409317638883534.5  # what ab really wrote
    row = ab.measurement(ab_parse.parse_report(text("non2xx.stdout")), raw)
    assert row.p99_ms == row.max_ms == 11.152
    assert row.p98_ms == 11.152 and row.p50_ms == 10.578
    assert row.non_2xx == 30
    length = ab.measurement(ab_parse.parse_report(text("length.stdout")), ab_parse.parse_percentiles(text("length.e.csv")))
    assert (length.p98_ms, length.p99_ms, length.max_ms) == (1.672, 1.672, 1.672)


def test_clamp_only_touches_rows_past_the_end():
    table = {float(p): float(p) for p in range(101)}
    assert ab.clamp_percentiles(table, 200) == table
    fixed = ab.clamp_percentiles(table, 30)  # index round(30*p/100) >= 30 for p >= 99 (98.33..)
    assert [p for p in table if fixed[p] != table[p]] == [99.0]
    fixed = ab.clamp_percentiles(table, 10)  # p >= 95
    assert [p for p in table if fixed[p] != table[p]] == [95.0, 96.0, 97.0, 98.0, 99.0]


def test_parse_file_for_the_cli(tmp_path):
    row = ab.parse_file(DATA / "success.stdout", DATA / "success.e.csv")
    assert row.p98_ms == 13.85 and row.mean_ms == 11.0 and row.complete == 200
    json.dumps(row.to_json())  # the CLI prints it as JSON
    saved = tmp_path / "out.txt"
    saved.write_text(text("failures.stdout") + text("failures.stderr"))
    aborted = ab.parse_file(saved)
    assert aborted.aborted is True and aborted.complete == 61
    assert aborted.p98_ms is None and aborted.mean_ms is None
    assert aborted.abort_reason == ("Test aborted after 10 failures: "
                                       "apr_socket_connect(): Cannot assign requested address (99)")
    junk = tmp_path / "junk.txt"
    junk.write_text("hello\n")
    with pytest.raises(AbParseError):
        ab.parse_file(junk)


# --- early exits ---------------------------------------------------------------------------------

@pytest.mark.parametrize("name, exit_code, expected", [
    ("timeout", 119, {"complete": 0, "code": 70007, "kind": "timeout", "after_failures": False,
                      "reason": "apr_pollset_poll: The timeout specified has expired (70007)"}),
    ("failures", 99, {"complete": 61, "code": 99, "kind": "failures", "after_failures": True,
                      "reason": "Test aborted after 10 failures: "
                                "apr_socket_connect(): Cannot assign requested address (99)"}),
    ("recv_reset", 104, {"complete": 49, "code": 104, "kind": "reset", "after_failures": False,
                         "reason": "apr_socket_recv: Connection reset by peer (104)"}),
    ("emfile", 24, {"complete": 0, "code": 24, "kind": "emfile", "after_failures": False,
                    "reason": "socket: Too many open files (24)"}),
])
def test_aborted_captures(name, exit_code, expected):
    run = captured(name)
    assert run.exit_code == exit_code
    assert run.percentiles_csv is None and run.gnuplot_tsv is None  # ab writes neither on abort
    assert ab_parse.parse_aborted(run.stdout, run.stderr) == expected
    assert abort_of(run) == expected


def test_abort_messages_go_to_stderr_and_totals_to_stdout():
    assert "Test aborted after 10 failures" in text("failures.stderr")
    assert "Total of 61 requests completed" in text("failures.stdout")
    assert "(70007)" in text("timeout.stderr") and "(70007)" not in text("timeout.stdout")


def test_progress_lines_give_complete_when_no_total():
    stderr = "Completed 1000 requests\nCompleted 2000 requests\napr_pollset_poll: The timeout specified has expired (70007)\n"
    assert ab_parse.parse_aborted("Benchmarking 10.0.0.2 (be patient)\n", stderr)["complete"] == 2000


def test_successful_captures_are_not_aborts():
    for name in ("success", "non2xx", "length", "variable", "keepalive"):
        assert abort_of(captured(name)) is None


# --- measure -------------------------------------------------------------------------------------

class Replay(NoMachinesBackend):
    """Backend replaying captured ab runs in order (exercises measure's retry logic)."""

    name = "replay"

    def __init__(self, *names):
        super().__init__()
        self.runs = [captured(n) for n in names]
        self.calls = 0

    def run_ab(self, command, timeout, progress=None):
        self.calls += 1
        return self.runs.pop(0)


@pytest.mark.ab
def test_measure_success_against_the_real_service(service_proc):
    url = service_proc("flask")
    backend = SubprocessAb()
    row = measure(backend, AbCommand(url, concurrency=5, requests=60))
    assert row.aborted is False and row.attempts == 1
    assert (row.complete, row.failed, row.non_2xx) == (60, 0, 0)
    assert (row.concurrency, row.requests) == (5, 60)
    assert 0 < row.p50_ms <= row.p98_ms <= row.max_ms < 5000
    assert row.rps > 0 and row.mean_ms > 0
    assert len(backend.runs) == 1 and backend.runs[0].argv[-1] == url + "/fibonacci"
    import urllib.request
    assert json.loads(urllib.request.urlopen(url + "/status").read())["requests"] == 60


@pytest.mark.ab
def test_measure_records_70007_as_aborted_after_retries(caplog):
    url, stop = silent_listener()
    try:
        backend = SubprocessAb()
        with caplog.at_level(logging.WARNING, logger="labkit"):
            row = measure(backend, AbCommand(url, concurrency=2, requests=4, timeout_s=1),
                          retries=2, retry_delay=0)
    finally:
        stop()
    assert len(backend.runs) == 3 and row.attempts == 3
    assert row.aborted is True
    assert row.complete == 0
    assert row.abort_reason == "apr_pollset_poll: The timeout specified has expired (70007)"
    assert all(getattr(row, c) is None for c in ("mean_ms", "p98_ms", "max_ms", "rps", "time_taken_s"))
    assert (row.concurrency, row.requests) == (2, 4)
    assert [r.exit_code for r in backend.runs] == [119, 119, 119]
    assert sum("retrying" in m for m in caplog.messages) == 2


@pytest.mark.ab
def test_measure_emfile_is_aborted_not_raised(service_proc):
    url = service_proc("flask")
    row = measure(SubprocessAb(nofile=12), AbCommand(url, concurrency=50, requests=100), retries=1, retry_delay=0)
    assert (row.aborted, row.attempts, row.complete) == (True, 2, 0)
    assert row.abort_reason == "socket: Too many open files (24)"


def test_measure_retry_then_success_counts_attempts():
    backend = Replay("timeout", "failures", "success")
    row = measure(backend, AbCommand("http://127.0.0.1:1", 10, 200), retries=2, retry_delay=0)
    assert (row.aborted, row.attempts, row.complete, row.p98_ms) == (False, 3, 200, 13.85)


def test_measure_keeps_what_the_last_abort_reported():
    row = measure(Replay("timeout", "failures"), AbCommand("http://127.0.0.1:1", 5, 200),
                  retries=1, retry_delay=0)
    assert (row.aborted, row.attempts, row.complete) == (True, 2, 61)


def test_measure_raises_only_for_unreadable_success():
    broken = dataclasses.replace(captured("success"),
                                 stdout=text("success.stdout").replace("897.13 [#/sec]", "lots [#/sec]"))
    backend = Replay()
    backend.runs = [broken]
    with pytest.raises(AbParseError) as info:
        measure(backend, AbCommand("http://127.0.0.1:1", 10, 200), retry_delay=0)
    assert info.value.field == "Requests per second"
    assert backend.calls == 1


def test_measure_rejects_negative_retries():
    with pytest.raises(ConfigError):
        measure(Replay(), AbCommand("http://127.0.0.1:1", 1, 1), retries=-1)


# -- ab 2.0.x formats and the one-request report (issue 14 item 4) ------------------------------
def test_ab20_breakdown_without_receive_and_microsecond_time():
    r = ab_parse.parse_report(text("ab20_failures.stdout"))
    assert (r["failed"], r["failed_connect"], r["failed_receive"], r["failed_length"],
            r["failed_exceptions"]) == (20, 0, 0, 20, 0)
    # "10.1002" is ab 2.0's %ld.%03ld of (seconds, microseconds): 10 s + 1002 us
    assert r["time_taken_s"] == pytest.approx(10.001002, abs=1e-9)
    assert r["complete"] / r["rps"] == pytest.approx(r["time_taken_s"], rel=1e-3)
    assert r["total_body_sent_bytes"] == 340000  # ab 2.0 says "Total POSTed"


def test_ab20_three_digit_microseconds_are_told_apart_by_the_cross_check():
    r = ab_parse.parse_report(text("ab20_ambiguous.stdout"))
    assert r["time_taken_s"] == pytest.approx(2.000537, abs=1e-9)  # not 2.537
    r23 = ab_parse.parse_report(text("success.stdout"))  # ab 2.3's %.3f stays literal
    assert r23["time_taken_s"] == pytest.approx(float(re.search(r"Time taken for tests:\s+([\d.]+)",
                                                                text("success.stdout"))[1]))


def test_one_request_report_has_no_percentile_table_and_each_percentile_is_that_request():
    assert "Percentage of the requests" not in text("one_request.stdout")
    r = ab_parse.parse_report(text("one_request.stdout"))
    assert r["complete"] == 1
    assert set(r["percentiles"].values()) == {float(r["connection_times"]["total"]["max"])}
    m = ab.measurement(r)
    assert m.complete == 1 and not m.aborted


def test_two_requests_without_a_percentile_table_is_still_an_error():
    broken = text("one_request.stdout").replace("Complete requests:      1", "Complete requests:      2")
    with pytest.raises(AbParseError, match="Percentage served"):
        ab_parse.parse_report(broken)


def test_str_is_the_handouts_command_line():
    cmd = AbCommand("http://10.0.0.2", concurrency=10, requests=10, timeout_s=10)
    assert str(cmd) == "ab -p payload.json -T application/json -m POST -c 10 -n 10 -s 10 -r http://10.0.0.2/fibonacci"
    assert str(dataclasses.replace(cmd, keepalive=True)).endswith("-r -k http://10.0.0.2/fibonacci")
