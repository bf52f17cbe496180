"""The lab's Fibonacci REST service (design §4): the handout's ``restserver.py``, made correct.

Endpoints
---------
``POST`` or ``GET /fibonacci`` with the JSON body ``{"fibonacci_number": n}`` (``GET`` also
accepts ``?fibonacci_number=n``) answers ``200 {"fibonacci_number": n, "value": F(n)}``,
byte for byte what the handout promises (``{"fibonacci_number": 20, "value": 6765}``).
``GET /status`` answers ``{"cache_length": L, "requests": R, "node": "<name>"}``.

What the handout got wrong, and what this file does instead
-----------------------------------------------------------
* Its ``str.format`` templates contain literal braces, so both endpoints raise and answer
  HTTP 500. Here responses are built with :func:`json.dumps`.
* It computes F(n) recursively, so a large n hits the recursion limit. Here the cache is
  extended iteratively, under a lock, and n is bounded (``LABKIT_FIB_MAX``, default 10000)
  so one request cannot eat the machine.
* It counts requests with an unlocked global, which loses increments under concurrent
  load. Here the counter is a :class:`multiprocessing.Value` created *at import*: under the
  threaded Flask dev server its lock makes increments exact, and under gunicorn started
  with ``--preload`` the app is imported once in the master, so every forked worker shares
  the same counter (shared memory) and ``requests`` is the exact total of the node.
  Without ``--preload`` each worker would import the module itself and count only its own
  requests. The Fibonacci cache, in contrast, is per process (``cache_length`` is the
  cache of the worker that answered).
* Bad input crashed it. Here every bad request gets a 4xx with a JSON ``{"error": "..."}``
  body, and no request can produce a 5xx: the service has no external dependency, so any
  failure is provoked by the request itself and is reported as the client's error.

Environment
-----------
``LABKIT_NODE``     name reported by ``/status`` (default: the host name)
``LABKIT_FIB_MAX``  largest n accepted (default 10000)
``LABKIT_MAX_BODY`` largest request body in bytes (default 4096); a larger one is refused with
                    413 and a JSON error before it is read (on ssh hosts the servers listen on the LAN)

Running it
----------
``FLASK_APP=service/restserver.py flask run --with-threads`` (the handout's way), or
``gunicorn --preload -w W -b HOST:PORT --chdir service restserver:app``.
:func:`labkit.service.service_command` builds both command lines.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import re
import socket
import sys
import threading

from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

log = logging.getLogger("labkit.restserver")

DEFAULT_FIB_MAX = 10000
DEFAULT_MAX_BODY = 4096  # bytes: {"fibonacci_number": 10000} is 27


def _int_from_env(name: str, default: int) -> int:
    """Read a non-negative integer ``name``; a bad value stops the service at start-up, not at request time."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    if not re.fullmatch(r"\d+", raw):
        raise ValueError(f"{name} must be a non-negative integer, not {raw!r}")
    return int(raw)


def _fib_max_from_env() -> int:
    """Read ``LABKIT_FIB_MAX`` (see :func:`_int_from_env`)."""
    return _int_from_env("LABKIT_FIB_MAX", DEFAULT_FIB_MAX)


FIB_MAX = _fib_max_from_env()
MAX_BODY = _int_from_env("LABKIT_MAX_BODY", DEFAULT_MAX_BODY)
NODE = os.environ.get("LABKIT_NODE") or socket.gethostname()

# F(n) has about n*log10(phi) = 0.209*n decimal digits. Python refuses to turn ints with
# more than 4300 digits into text by default (F(20580) would already fail), so raise the
# limit to what the bound needs -- but not further: the same limit keeps json.loads from
# spending seconds converting a request body that contains a million-digit number.
_DIGITS_NEEDED = int(FIB_MAX * 0.20899) + 16
if hasattr(sys, "set_int_max_str_digits") and _DIGITS_NEEDED > sys.get_int_max_str_digits() > 0:
    sys.set_int_max_str_digits(_DIGITS_NEEDED)

# Shared by gunicorn workers forked after a --preload import (see module docstring).
_request_count = multiprocessing.Value("q", 0)

_fib_cache: list[int] = [0, 1]
_fib_lock = threading.Lock()

_INT_TEXT = re.compile(r"[+-]?\d+")

app = Flask(__name__)
# werkzeug refuses to read more than this (chunked bodies too): RequestEntityTooLarge, a 413
app.config["MAX_CONTENT_LENGTH"] = MAX_BODY


class BadInput(Exception):
    """A request whose input cannot be served; becomes a 400 with ``{"error": message}``."""


def _json_response(payload: dict, status: int = 200) -> Response:
    """Serialise with :func:`json.dumps` defaults, so the bytes match the handout exactly."""
    return Response(json.dumps(payload), status=status, mimetype="application/json")


def calc_fibonacci(number: int) -> int:
    """Return F(number), F(0)=0 and F(1)=1, extending the shared cache iteratively.

    The cache only grows, so a reader that finds ``number`` already cached needs no lock;
    extending it is done under the lock so two threads never append the same term twice.
    """
    if number < 0:
        raise BadInput("fibonacci_number must not be negative")
    if number < len(_fib_cache):
        return _fib_cache[number]
    with _fib_lock:
        cache = _fib_cache
        a, b = cache[-2], cache[-1]
        while len(cache) <= number:
            a, b = b, a + b
            cache.append(b)
        return cache[number]


def _read_body() -> bytes:
    """The request body, at most ``MAX_BODY`` bytes (413 beyond).

    A declared length is checked before anything is read (:func:`_refuse_large_bodies`). A
    chunked body has no length: it is read from the server's de-chunked input up to one byte
    past the bound, so exactly ``MAX_BODY`` bytes pass, as with ``Content-Length`` (werkzeug's
    own limited stream refuses any read at the bound, even when the body has ended there).
    """
    if request.content_length is not None:
        return request.get_data(cache=False)
    if not request.environ.get("wsgi.input_terminated"):  # no length, not chunked: no body
        return b""
    stream, parts, size = request.environ["wsgi.input"], [], 0
    while size <= MAX_BODY:
        part = stream.read(MAX_BODY + 1 - size)
        if not part:
            break
        parts.append(part)
        size += len(part)
    if size > MAX_BODY:
        raise RequestEntityTooLarge(f"the request body must be at most {MAX_BODY} bytes (LABKIT_MAX_BODY)")
    return b"".join(parts)


def _read_number() -> int:
    """Extract and validate ``fibonacci_number`` from the query string or the JSON body."""
    if request.method == "GET" and "fibonacci_number" in request.args:
        text = request.args["fibonacci_number"].strip()
        if not _INT_TEXT.fullmatch(text):
            raise BadInput(f"fibonacci_number must be an integer, not {text[:40]!r}")
        if len(text) > 32:
            raise BadInput(f"fibonacci_number must be at most {FIB_MAX}")
        number = int(text)
    else:
        body = _read_body()
        if not body.strip():
            raise BadInput('request body must be JSON like {"fibonacci_number": 20}')
        try:
            document = json.loads(body)
        except (ValueError, RecursionError) as exc:  # bad JSON, bad UTF-8, huge number, deep nesting
            raise BadInput(f"request body is not valid JSON: {str(exc)[:100]}") from None
        if not isinstance(document, dict):
            raise BadInput('request body must be a JSON object like {"fibonacci_number": 20}')
        if "fibonacci_number" not in document:
            raise BadInput("missing key 'fibonacci_number'")
        number = document["fibonacci_number"]
        # bool is a subclass of int in Python: true must not mean F(1).
        if isinstance(number, bool) or not isinstance(number, int):
            raise BadInput(f"fibonacci_number must be an integer, not {json.dumps(number)[:40]}")
    if number < 0:
        raise BadInput("fibonacci_number must not be negative")
    if number > FIB_MAX:
        raise BadInput(f"fibonacci_number must be at most {FIB_MAX}")
    return number


@app.before_request
def _bounded_body() -> None:
    """Refuse a declared body above ``MAX_BODY`` on every path before anything reads it."""
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise RequestEntityTooLarge(f"the request body must be at most {MAX_BODY} bytes (LABKIT_MAX_BODY)")


@app.route("/fibonacci", methods=["POST", "GET"])
def fibonacci() -> Response:
    """Answer F(n); every call that reaches this view is counted, valid or not."""
    with _request_count.get_lock():
        _request_count.value += 1
    number = _read_number()
    return _json_response({"fibonacci_number": number, "value": calc_fibonacci(number)})


@app.route("/status", methods=["GET"])
def status() -> Response:
    """Report this process's cache size, the node's request count and the node name."""
    return _json_response({"cache_length": len(_fib_cache),
                           "requests": _request_count.value,
                           "node": NODE})


@app.errorhandler(BadInput)
def _bad_input(exc: BadInput) -> Response:
    return _json_response({"error": str(exc)}, 400)


@app.errorhandler(HTTPException)
def _http_error(exc: HTTPException) -> Response:
    """404, 405, 413... keep their status but get a JSON body (and 405 its Allow header)."""
    code = exc.code or 400
    if code >= 500:  # nothing in this service is a server fault; see the module docstring
        code = 400
    response = _json_response({"error": f"{exc.name}: {exc.description}"}, code)
    for key, value in exc.get_headers():
        if key.lower() == "allow":
            response.headers[key] = value
    return response


@app.errorhandler(Exception)
def _unexpected(exc: Exception) -> Response:
    """Last resort: log the traceback, but still answer a 4xx with a JSON body, never a 500."""
    log.exception("request %s %s failed", request.method, request.path)
    return _json_response({"error": f"request could not be processed ({type(exc).__name__})"}, 400)
