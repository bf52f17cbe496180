"""The Fibonacci service (service/restserver.py) and its command lines (labkit/service.py).

What the app answers is checked in-process on its Flask ``test_client()`` (fixture
``service_app``: a fresh import per test, with its environment). What needs a real server is
checked on the service started as a subprocess on loopback (fixture ``service_proc``): the
handout's exchange and the error paths under ``flask run`` and gunicorn, and the request
counter under concurrent load (gunicorn's workers share it through ``--preload``).
"""

from __future__ import annotations

import http.client
import json
import sys
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from labkit.errors import BackendError, ConfigError
from labkit.service import SERVICE_DIR, get_status, service_command, unit_text, wait_until_up
from tests.support.ports import free_port


def call(url: str, method: str, path: str, body: bytes | str | None = None,
         content_type: str | None = "application/json") -> tuple[int, dict, bytes]:
    """One HTTP request on a fresh connection: (status, headers, raw body)."""
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        headers = {"Content-Type": content_type} if content_type and body is not None else {}
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def ask(client, method: str, path: str, body: bytes | str | None = None,
        content_type: str | None = "application/json") -> tuple[int, dict, bytes]:
    """One request to the in-process app: (status, headers, raw body), like :func:`call`."""
    headers = {"Content-Type": content_type} if content_type and body is not None else {}
    response = client.open(path, method=method, data=body, headers=headers)
    return response.status_code, dict(response.headers), response.get_data()


def fib(n: int) -> int:
    a, b = 0, 1
    for _ in range(n):
        a, b = b, a + b
    return a


@pytest.fixture
def app(service_app):
    """The service in-process, under its default bounds, naming itself ``node-under-test``."""
    return service_app({"LABKIT_NODE": "node-under-test"})


# --- under real servers ------------------------------------------------------------------------

@pytest.mark.parametrize("server, workers", [("flask", 1), ("gunicorn", 2)])
def test_a_real_server_answers_the_handout_and_its_errors_in_json(service_proc, server, workers):
    """The handout's exchange byte for byte, and each error path once, through the server's own HTTP stack."""
    url = service_proc(server, workers=workers, env={"LABKIT_NODE": "node-under-test"})
    status, headers, body = call(url, "POST", "/fibonacci", b'{"fibonacci_number": 20}\n')
    assert (status, body) == (200, b'{"fibonacci_number": 20, "value": 6765}')
    assert headers["Content-Type"] == "application/json"
    assert call(url, "GET", "/fibonacci?fibonacci_number=30")[2] == b'{"fibonacci_number": 30, "value": 832040}'
    status, _, body = call(url, "POST", "/fibonacci", b'{"fibonacci_number": 10000}')
    assert status == 200 and json.loads(body)["value"] == fib(10000)
    for path, body, code, needle in [("/fibonacci", b"not json", 400, "not valid JSON"),
                                     ("/fibonacci", b"[" * 50000, 413, "at most 4096 bytes"),
                                     ("/nowhere", None, 404, "Not Found")]:
        status, headers, raw = call(url, "POST" if body else "GET", path, body)
        assert status == code and headers["Content-Type"] == "application/json", (path, status)
        assert needle in json.loads(raw)["error"]
    status, headers, _ = call(url, "PUT", "/fibonacci", b'{"fibonacci_number": 20}')
    assert status == 405 and "POST" in headers["Allow"]
    assert get_status(url)["node"] == "node-under-test"


@pytest.mark.parametrize("server, workers", [("flask", 1), ("gunicorn", 3)])
def test_requests_counted_exactly_under_concurrency(service_proc, server, workers):
    url = service_proc(server, workers=workers)
    before = get_status(url)["requests"]
    bodies = [json.dumps({"fibonacci_number": i % 300}) for i in range(500)]
    with ThreadPoolExecutor(max_workers=50) as pool:
        results = list(pool.map(lambda b: call(url, "POST", "/fibonacci", b), bodies))
    assert [r[0] for r in results] == [200] * 500
    assert [json.loads(r[2])["value"] for r in results] == [fib(i % 300) for i in range(500)]
    assert get_status(url)["requests"] == before + 500


# --- values (in-process) -----------------------------------------------------------------------

def test_handout_example_is_byte_exact(app):
    status, headers, body = ask(app, "POST", "/fibonacci", b'{"fibonacci_number": 20}\n')
    assert status == 200
    assert body == b'{"fibonacci_number": 20, "value": 6765}'
    assert headers["Content-Type"] == "application/json"


@pytest.mark.parametrize("n, value", [(0, 0), (1, 1), (2, 1), (10, 55), (20, 6765), (93, 12200160415121876738)])
def test_values(app, n, value):
    status, _, body = ask(app, "POST", "/fibonacci", json.dumps({"fibonacci_number": n}))
    assert status == 200
    assert json.loads(body) == {"fibonacci_number": n, "value": value}


def test_get_with_query_and_with_body(app):
    assert ask(app, "GET", "/fibonacci?fibonacci_number=30")[2] == b'{"fibonacci_number": 30, "value": 832040}'
    assert ask(app, "GET", "/fibonacci", b'{"fibonacci_number": 7}')[2] == b'{"fibonacci_number": 7, "value": 13}'


def test_bound_itself_is_served_without_recursion(app):
    """F(10000) has 2090 digits: beyond any recursion limit, and needs the int->str limit."""
    status, _, body = ask(app, "POST", "/fibonacci", b'{"fibonacci_number": 10000}')
    assert status == 200
    doc = json.loads(body)
    assert doc["fibonacci_number"] == 10000
    assert doc["value"] == fib(10000)
    assert len(str(doc["value"])) == 2090


def test_bound_is_configurable(service_app):
    app = service_app({"LABKIT_FIB_MAX": "25000"})
    status, _, body = ask(app, "POST", "/fibonacci", b'{"fibonacci_number": 25000}')
    assert status == 200  # 5225 digits: more than Python's default 4300-digit str limit
    digits = json.loads(body, parse_int=str)["value"]
    assert len(digits) == 5225
    assert int(digits[-30:]) == fib(25000) % 10**30
    status, _, body = ask(app, "POST", "/fibonacci", b'{"fibonacci_number": 25001}')
    assert status == 400
    assert json.loads(body) == {"error": "fibonacci_number must be at most 25000"}


def test_status_reports_cache_requests_and_node(service_app):
    app = service_app({"LABKIT_NODE": "restserver-3"})
    assert json.loads(ask(app, "GET", "/status")[2]) == {"cache_length": 2, "requests": 0, "node": "restserver-3"}
    ask(app, "POST", "/fibonacci", b'{"fibonacci_number": 20}')
    assert json.loads(ask(app, "GET", "/status")[2]) == {"cache_length": 21, "requests": 1, "node": "restserver-3"}
    ask(app, "POST", "/fibonacci", b'{"fibonacci_number": 5}')  # cached: no growth
    _, _, raw = ask(app, "GET", "/status")
    assert raw == b'{"cache_length": 21, "requests": 2, "node": "restserver-3"}'


# --- bad input: always a 4xx with a JSON error, never a 5xx ---------------------------------

BAD_BODIES = [
    pytest.param(b"not json", "request body is not valid JSON", id="not-json"),
    pytest.param(b"", "request body must be JSON", id="empty-body"),
    pytest.param(b"\xff\xfe\x00", "request body is not valid JSON", id="not-utf8"),
    pytest.param(b'[20]', "request body must be a JSON object", id="not-an-object"),
    pytest.param(b'{}', "missing key 'fibonacci_number'", id="missing-key"),
    pytest.param(b'{"fibonacci": 20}', "missing key 'fibonacci_number'", id="wrong-key"),
    pytest.param(b'{"fibonacci_number": "20"}', "must be an integer", id="string"),
    pytest.param(b'{"fibonacci_number": null}', "must be an integer", id="null"),
    pytest.param(b'{"fibonacci_number": true}', "must be an integer, not true", id="boolean"),
    pytest.param(b'{"fibonacci_number": 20.0}', "must be an integer, not 20.0", id="float"),
    pytest.param(b'{"fibonacci_number": 1e3}', "must be an integer", id="exponent"),
    pytest.param(b'{"fibonacci_number": NaN}', "must be an integer", id="nan"),
    pytest.param(b'{"fibonacci_number": -1}', "must not be negative", id="negative"),
    pytest.param(b'{"fibonacci_number": 10001}', "must be at most 10000", id="above-bound"),
    pytest.param(b'{"fibonacci_number": 1' + b"0" * 6000 + b"}", "not valid JSON", id="huge-literal"),
    pytest.param(b"[" * 50000, "not valid JSON", id="deep-nesting"),
]


@pytest.fixture
def roomy_app(service_app):
    """The app with the body bound raised (LABKIT_MAX_BODY) so the JSON parser's own limits are reached."""
    return service_app({"LABKIT_MAX_BODY": "65536"})


@pytest.mark.parametrize("body, message", BAD_BODIES)
def test_bad_bodies_get_400_with_json_error(roomy_app, body, message):
    status, headers, raw = ask(roomy_app, "POST", "/fibonacci", body)
    assert status == 400
    assert headers["Content-Type"] == "application/json"
    assert message in json.loads(raw)["error"]


@pytest.mark.parametrize("body", [b'{"fibonacci_number": 1' + b"0" * 6000 + b"}", b"[" * 50000])
def test_bodies_above_the_default_bound_get_413_with_json_error(app, body):
    status, headers, raw = ask(app, "POST", "/fibonacci", body)
    assert status == 413 and headers["Content-Type"] == "application/json"
    assert "at most 4096 bytes" in json.loads(raw)["error"]


@pytest.mark.parametrize("query, message", [
    ("abc", "must be an integer"), ("2.5", "must be an integer"), ("-3", "must not be negative"),
    ("10001", "must be at most 10000"), ("9" * 5000, "must be at most 10000"), ("", "must be an integer"),
])
def test_bad_query_gets_400(app, query, message):
    status, _, raw = ask(app, "GET", "/fibonacci?fibonacci_number=" + query)
    assert status == 400
    assert message in json.loads(raw)["error"]


def test_wrong_method_is_405_with_allow_header(app):
    status, headers, raw = ask(app, "PUT", "/fibonacci", b'{"fibonacci_number": 20}')
    assert status == 405
    assert set(headers["Allow"].replace(" ", "").split(",")) >= {"GET", "POST"}
    assert json.loads(raw)["error"].startswith("Method Not Allowed")
    status, _, raw = ask(app, "POST", "/status", b"{}")
    assert status == 405
    assert "error" in json.loads(raw)


def test_unknown_path_is_404_json(app):
    status, headers, raw = ask(app, "GET", "/nowhere")
    assert status == 404
    assert headers["Content-Type"] == "application/json"
    assert json.loads(raw)["error"].startswith("Not Found")


def test_form_content_type_still_parsed_as_json(app):
    """curl -d without -H sends x-www-form-urlencoded; the body is still read as JSON."""
    status, _, raw = ask(app, "POST", "/fibonacci", b'{"fibonacci_number": 12}',
                         content_type="application/x-www-form-urlencoded")
    assert (status, raw) == (200, b'{"fibonacci_number": 12, "value": 144}')


def test_bad_fib_max_environment_stops_startup(tmp_path):
    import subprocess
    argv, env = service_command("flask", "127.0.0.1", free_port(), 1)
    proc = subprocess.run(
        [sys.executable, "-c", "import restserver"], cwd=SERVICE_DIR,
        env={**env, "LABKIT_FIB_MAX": "lots", "PATH": ""}, capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert "LABKIT_FIB_MAX must be a non-negative integer, not 'lots'" in proc.stderr


def test_bad_requests_are_counted_too(app):
    ask(app, "POST", "/fibonacci", b"junk")
    ask(app, "POST", "/fibonacci", b'{"fibonacci_number": 3}')
    assert json.loads(ask(app, "GET", "/status")[2])["requests"] == 2


# --- command lines -----------------------------------------------------------------------------

def test_flask_command_line():
    argv, env = service_command("flask", "127.0.1.2", 8080, 4, python="/usr/bin/python3",
                                service_dir=Path("/srv/svc"))
    assert argv == ["/usr/bin/python3", "-m", "flask", "--app", "/srv/svc/restserver.py", "run",
                    "--host", "127.0.1.2", "--port", "8080", "--with-threads"]
    assert env == {"PYTHONUNBUFFERED": "1"}


def test_gunicorn_command_line_with_node_and_bound():
    argv, env = service_command("gunicorn", "0.0.0.0", 80, 3, python="py", service_dir="/opt/restserver",
                                node="restserver-1", fib_max=500)
    assert argv == ["py", "-m", "gunicorn", "--preload", "-w", "3", "-b", "0.0.0.0:80",
                    "--chdir", "/opt/restserver", "--backlog", "2048", "restserver:app"]
    assert env == {"PYTHONUNBUFFERED": "1", "LABKIT_NODE": "restserver-1", "LABKIT_FIB_MAX": "500"}


def test_default_service_dir_is_the_repository_folder():
    assert SERVICE_DIR == Path(__file__).resolve().parent.parent / "service"
    assert (SERVICE_DIR / "restserver.py").is_file()


@pytest.mark.parametrize("kwargs, message", [
    (dict(server="uwsgi", host="h", port=1, workers=1), "server must be"),
    (dict(server="flask", host="h", port=0, workers=1), "port must be"),
    (dict(server="flask", host="h", port=70000, workers=1), "port must be"),
    (dict(server="gunicorn", host="h", port=80, workers=0), "workers must be"),
    (dict(server="gunicorn", host="", port=80, workers=1), "host must not be empty"),
])
def test_service_command_rejects_bad_config(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        service_command(**kwargs)


def test_unit_text_fills_every_placeholder():
    text = unit_text("gunicorn", "10.128.0.5", 80, 2, node="restserver-0")
    body = "".join(line for line in text.splitlines(keepends=True) if not line.startswith("#"))
    assert "@" not in body
    assert ("ExecStart=/opt/restserver/venv/bin/python -m gunicorn --preload -w 2 -b 10.128.0.5:80 "
            "--chdir /opt/restserver --backlog 2048 restserver:app\n") in body
    assert "Environment=LABKIT_NODE=restserver-0\n" in body
    assert "Restart=always\n" in body and "LimitNOFILE=65536\n" in body
    assert "WorkingDirectory=/opt/restserver\n" in body
    flask_text = unit_text("flask", "192.168.0.11", 8080, node="n", install_dir="/srv/rs", python="/usr/bin/python3")
    assert ("ExecStart=/usr/bin/python3 -m flask --app /srv/rs/restserver.py run --host 192.168.0.11 --port 8080 "
            "--with-threads\n") in flask_text
    for bad in (dict(node="bad name"), dict(node="n", python="/opt/my python"), dict(node="n", install_dir="/a$b")):
        with pytest.raises(ConfigError, match="systemd unit"):
            unit_text("flask", "10.0.0.1", 80, **bad)


def test_wait_until_up_times_out_naming_the_url():
    port = free_port()
    with pytest.raises(BackendError, match=rf"http://127.0.0.1:{port}/status did not answer within 0.5s"):
        wait_until_up(f"http://127.0.0.1:{port}", timeout=0.5)


def test_wait_until_up_fails_fast_when_the_process_died():
    import subprocess
    import time
    proc = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    proc.wait()
    start = time.monotonic()
    with pytest.raises(BackendError, match="exited with code 3"):
        wait_until_up(f"http://127.0.0.1:{free_port()}", timeout=30, proc=proc)
    assert time.monotonic() - start < 5
