"""Issue 16: scaling right after a point that left nginx answering only 502s (real nginx, real servers).

An overloaded point makes the Flask servers reset upstream connections (c=2000 on two
f1-micro servers does it here, in ~15 s); nginx then marks every server down for its
``fail_timeout`` and answers "no live upstreams" (502) although the servers are idle again.
The test gets the same state in a second, deterministically: the servers' processes stop,
so nginx's connections are refused and it marks them down. Scaling, re-deploying and every wait on the balancer must ride
that window out, and a server that never answers must be one line naming it.
"""

from __future__ import annotations

import os
import signal

import pytest

from labkit.ab import AbCommand
from labkit.backends.base import ClusterSpec
from labkit.backends.local.backend import LocalBackend
from labkit.errors import BackendError
from labkit.measure import measure
from labkit.service import get_status


def _answer(url: str) -> str:
    try:
        return get_status(url, timeout=3)["node"]
    except OSError as exc:  # "http://.../status answered HTTP 502" -> "HTTP 502"
        return " ".join(str(exc).split()[-2:])


def test_scale_up_right_after_the_balancer_answered_only_502s(local_env):
    b = LocalBackend(local_env["settings"])
    b.up(ClusterSpec(nodes=2))
    # the servers' processes stop (this lab's own, by pid): nginx marks both down, "no live upstreams"
    for m in b.status()["machines"]:
        if m["role"].startswith("restserver-"):
            os.killpg(m["pid"], signal.SIGKILL)
    answers = [_answer(b.url) for _ in range(4)]
    assert answers == ["HTTP 502"] * 4

    b.scale(3)  # at once, inside nginx's fail_timeout window: before the fix, a 502 traceback here

    assert {get_status(b.url)["node"] for _ in range(9)} == {"restserver-0", "restserver-1", "restserver-2"}
    row = measure(b, AbCommand(b.url, 10, 200))  # and the next point is measured as usual
    assert (row.aborted, row.complete, row.failed, row.non_2xx) == (False, 200, 0, 0)
    assert row.balancer_cpu_s > 0 and row.server_cpu_s > 0
    b.down()


def test_a_server_that_never_answers_is_one_line_naming_it(local_env, monkeypatch):
    monkeypatch.setattr("labkit.backends.local.backend.SERVING_TIMEOUT", 3.0)
    b = LocalBackend(local_env["settings"])
    b.up(ClusterSpec(nodes=2))
    pid = b.status()["machines"][[m["role"] for m in b.status()["machines"]].index("restserver-1")]["pid"]
    os.kill(pid, signal.SIGSTOP)  # a server of this lab stops answering (it accepts, never replies)
    try:
        with pytest.raises(BackendError) as info:
            b.scale(3)
        message = str(info.value)
        assert "\n" not in message
        assert message.startswith(f"restserver-1 (running) does not answer at http://{local_env['net']}.11:8080")
        assert "did not answer within" in message
    finally:
        os.kill(pid, signal.SIGCONT)
    b.down()
