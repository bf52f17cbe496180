"""Talking to the service the way the handout's curl commands do.

``fibonacci(url, 20)`` is step 6's ``curl -X POST -H 'Content-Type: application/json'
.../fibonacci -d '{"fibonacci_number": 20}'``; ``status(url)`` is part 2's
``curl .../status``; :func:`round_robin` repeats it to show which node answered, and
:func:`round_robin_table` shows those answers as notebook 02's table (step 15).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request

from labkit.errors import BackendError


def _request(req: urllib.request.Request, timeout: float) -> dict:
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        body = exc.read().decode(errors="replace")
        raise BackendError(f"{req.full_url} answered HTTP {exc.code}: {body.strip()}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise BackendError(f"{req.full_url} is not reachable: {exc}") from None


def fibonacci(url: str, n: int, timeout: float = 10) -> dict:
    """POST ``{"fibonacci_number": n}`` to ``url/fibonacci``; return the JSON answer."""
    body = json.dumps({"fibonacci_number": n}).encode()
    req = urllib.request.Request(f"{url}/fibonacci", data=body, method="POST",
                                 headers={"Content-Type": "application/json"})
    return _request(req, timeout)


def status(url: str, timeout: float = 10) -> dict:
    """GET ``url/status``: ``cache_length``, ``requests`` and the answering ``node``."""
    return _request(urllib.request.Request(f"{url}/status"), timeout)


def round_robin(url: str, calls: int = 6, timeout: float = 10) -> list[dict]:
    """Call ``/status`` ``calls`` times through ``url``; each answer names its node."""
    return [status(url, timeout) for _ in range(calls)]


def round_robin_table(url: str, calls: int, timeout: float = 10):
    """:func:`round_robin` as a DataFrame: which node answered each call, and that node's counters."""
    import pandas as pd

    rows = round_robin(url, calls, timeout)
    return pd.DataFrame([{"call": i + 1, "node": r.get("node"), "requests": r.get("requests"),
                          "cache_length": r.get("cache_length")} for i, r in enumerate(rows)])
