"""The generated nginx.conf is valid for the real nginx and really balances round-robin."""

import http.server
import os
import shutil
import signal
import subprocess
import threading
import time
import urllib.request

import pytest

from labkit.errors import ConfigError
from labkit.nginx_conf import render_nginx_conf
from tests.support.ports import free_port

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
pytestmark = pytest.mark.skipif(not os.path.exists(NGINX), reason="nginx is not installed (make test installs it)")


def _nginx(prefix, conf, *args):
    return subprocess.run([NGINX, "-p", str(prefix), "-c", str(conf), *args],
                          capture_output=True, text=True, timeout=30)


def test_render_contains_handout_settings(tmp_path):
    text = render_nginx_conf("127.0.0.1", 8080, [("10.0.0.3", 80), ("10.0.0.4", 80)], str(tmp_path))
    assert "worker_connections 4096;" in text
    assert "worker_rlimit_nofile 65536;" in text
    assert "upstream fibonacci {" in text
    assert "server 10.0.0.3:80;" in text and "server 10.0.0.4:80;" in text
    assert "proxy_pass http://fibonacci;" in text
    assert "proxy_http_version 1.1;" in text
    assert "listen 127.0.0.1:8080;" in text
    assert f"pid {tmp_path}/nginx.pid;" in text
    assert "access_log off;" in text


@pytest.mark.nginx
def test_nginx_t_accepts_it(tmp_path):
    conf = tmp_path / "nginx.conf"
    conf.write_text(render_nginx_conf("127.0.0.1", free_port(), [("127.0.0.1", 9001), ("127.0.0.1", 9002)],
                                      str(tmp_path), worker_connections=1024, rlimit_nofile=4096,
                                      access_log=str(tmp_path / "access.log")))
    r = _nginx(tmp_path, conf, "-t")
    assert r.returncode == 0, r.stderr
    assert "syntax is ok" in r.stderr and "test is successful" in r.stderr


@pytest.mark.nginx
def test_nginx_t_rejects_broken_conf(tmp_path):
    # The checker itself must be able to fail: a truncated config is refused.
    conf = tmp_path / "nginx.conf"
    conf.write_text(render_nginx_conf("127.0.0.1", free_port(), [("127.0.0.1", 9001)], str(tmp_path))[:-3])
    r = _nginx(tmp_path, conf, "-t")
    assert r.returncode != 0
    assert "unexpected end of file" in r.stderr


@pytest.mark.parametrize("bad", [[], [("a b", 80)], [("x;", 80)], [("127.0.0.1", 0)]])
def test_bad_upstreams_refused(tmp_path, bad):
    with pytest.raises(ConfigError):
        render_nginx_conf("127.0.0.1", 8080, bad, str(tmp_path))


def test_ipv6_upstream_bracketed(tmp_path):
    text = render_nginx_conf("::1", 8080, [("::1", 9001)], str(tmp_path))
    assert "server [::1]:9001;" in text and "listen [::1]:8080;" in text


@pytest.mark.nginx
def test_real_nginx_alternates_between_upstreams(tmp_path):
    servers = []
    for name in ("A", "B"):
        class Handler(http.server.BaseHTTPRequestHandler):
            node = name

            def do_GET(self):
                body = self.node.encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        servers.append(srv)
    port = free_port()
    conf = tmp_path / "nginx.conf"
    conf.write_text(render_nginx_conf("127.0.0.1", port, [("127.0.0.1", s.server_address[1]) for s in servers],
                                      str(tmp_path), worker_processes=1))
    r = _nginx(tmp_path, conf)
    assert r.returncode == 0, r.stderr
    pid = None
    try:
        deadline = time.time() + 10
        while pid is None and time.time() < deadline:
            try:
                pid = int((tmp_path / "nginx.pid").read_text())
            except (FileNotFoundError, ValueError):
                time.sleep(0.05)
        assert pid
        seen = [urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=5).read().decode()
                for _ in range(4)]
        assert sorted(seen) == ["A", "A", "B", "B"]
        assert seen[0] != seen[1]
    finally:
        if pid:
            os.kill(pid, signal.SIGQUIT)
        for s in servers:
            s.shutdown()


def test_one_worker_per_vcpu_of_the_balancers_type():
    from labkit.nginx_conf import workers_for

    assert [workers_for(t) for t in ("f1-micro", "e2-micro", "e2-medium", "e2-standard-2", "e2-highcpu-16")] == [
        1, 1, 1, 2, 16]
    conf = render_nginx_conf("127.0.0.1", 8080, [("127.0.0.2", 80)], "/tmp/x", worker_processes=workers_for("e2-standard-4"))
    assert "worker_processes 4;" in conf
