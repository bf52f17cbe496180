"""Regenerate the real ab captures in tests/data/ab/ (provenance of the parser's test data).

Run as root on Debian with apache2-utils and the project's venv::

    .venv/bin/python tests/data/capture.py

Each case ``NAME`` leaves ``NAME.argv`` (the command, placeholders filled),
``NAME.stdout``, ``NAME.stderr``, ``NAME.exit`` (exit status) and, when ab wrote them,
``NAME.e.csv`` (-e) and ``NAME.g.tsv`` (-g). All traffic stays on loopback:

success       the real service (Flask dev server), the lab's command, -c 10 -n 200
non2xx        the real service, a path that 404s
length        a tiny server whose body length alternates -> "Length" failures
variable      the same server with ab -l -> "Document Length: Variable"
keepalive     a tiny HTTP/1.1 keep-alive server, ab -k
timeout       a socket that listens but never accepts, -s 1 -> 70007
recv_reset    a server that stops listening after 50 requests, without -r
              -> apr_socket_recv: Connection reset by peer (104)
failures      "Test aborted after 10 failures": only a *synchronous* connect() failure
              produces it (a refused loopback connect is reported later by recv). In a
              private network namespace (unshare -n) the server, after 60 requests,
              takes every ephemeral port away (ip_local_port_range narrowed to two
              ports it has bound), so ab's connect() fails with EADDRNOTAVAIL -- the
              same thing a tester out of client ports sees at high concurrency.
emfile        ulimit -n 12 with -c 50 -> socket: Too many open files (24)

This module also provides :class:`SubprocessAb` (a minimal backend that runs ab
locally) and the tiny servers, reused by tests/test_ab.py.
"""

from __future__ import annotations

import http.server
import os
import resource
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from labkit.ab import AbCommand  # noqa: E402
from labkit.backends.base import AbRun  # noqa: E402
from tests.support.backend_doubles import NoMachinesBackend  # noqa: E402

OUT = Path(__file__).resolve().parent / "ab"


class SubprocessAb(NoMachinesBackend):
    """A backend without machines that runs ab on this machine: ``run_ab`` is all it adds.

    Writes the payload and points ab's -e/-g files into a fresh temporary folder, and
    reads those files back (None when ab did not write them). ``nofile`` sets ab's
    open-file limit (the handout's ``ulimit -n``). :meth:`run_argv` lets the capture
    script change the command (drop ``-r``, add ``-l``) to provoke ab's other outputs.
    """

    name = "subprocess-ab"

    def __init__(self, nofile: int | None = None):
        super().__init__()
        self.nofile = nofile
        self.runs: list[AbRun] = []

    def _limits(self):
        if self.nofile is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (self.nofile, self.nofile))

    def run_ab(self, command: AbCommand, timeout: float, progress=None) -> AbRun:
        """The backend contract: run ``command`` (``progress`` is not reported)."""
        return self.run_argv(command, timeout)

    def run_argv(self, command: AbCommand, timeout: float, edit=lambda argv: argv) -> AbRun:
        """Run ``edit(command.argv(...))``: the lab's command, changed to provoke a case."""
        with tempfile.TemporaryDirectory(prefix="labkit-ab-") as tmp:
            files = {"payload": Path(tmp, "payload.json"), "percentiles": Path(tmp, "e.csv"),
                     "gnuplot": Path(tmp, "g.tsv")}
            files["payload"].write_bytes(command.payload)
            real = edit(command.argv(**{k: str(v) for k, v in files.items()}))
            proc = subprocess.run(real, capture_output=True, timeout=timeout, preexec_fn=self._limits)
            read = lambda p: p.read_text() if p.exists() else None  # noqa: E731
            run = AbRun(tuple(real), proc.returncode, proc.stdout.decode(errors="replace"),
                        proc.stderr.decode(errors="replace"), read(files["percentiles"]), read(files["gnuplot"]))
        self.runs.append(run)
        return run


# --- tiny loopback servers -----------------------------------------------------------------------

class _Quiet(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass


class _Variable(_Quiet):
    """Body length alternates between 2 and 5 bytes: ab counts "Length" failures."""
    count = 0
    lock = threading.Lock()

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        with _Variable.lock:
            _Variable.count += 1
            body = b"ok" if _Variable.count % 2 else b"okay!"
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST


class _KeepAlive(_Quiet):
    """HTTP/1.1 with an explicit ``Connection: Keep-Alive``, which ab -k needs to reuse sockets."""
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        body = b'{"fibonacci_number": 20, "value": 6765}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "Keep-Alive")
        self.end_headers()
        self.wfile.write(body)


def http_server(handler) -> tuple[str, callable]:
    """Start a threaded HTTP server on 127.0.0.1; return (base URL, stop)."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()

    def stop():
        server.shutdown()
        server.server_close()
    return f"http://127.0.0.1:{server.server_address[1]}", stop


def silent_listener() -> tuple[str, callable]:
    """A socket that listens but never accepts: the kernel completes the handshake and
    buffers the request, nobody ever answers (ab -s then aborts with 70007)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(512)
    return f"http://127.0.0.1:{sock.getsockname()[1]}", sock.close


def _answer(sock: socket.socket) -> None:
    conn, _ = sock.accept()
    conn.recv(65536)
    conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok")
    conn.close()


def stop_listening_after(n: int) -> tuple[str, threading.Thread]:
    """Answer ``n`` requests, then close the listening socket (queued connections get RST)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)

    def serve():
        for _ in range(n):
            _answer(sock)
        sock.close()
    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return f"http://127.0.0.1:{sock.getsockname()[1]}", thread


def _netns_failures_case() -> None:
    """Runs inside ``unshare -n``: see the module docstring, case ``failures``."""
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    held = []

    def serve():
        for _ in range(60):
            _answer(sock)
        for port in (41000, 41001):
            h = socket.socket()
            h.bind(("0.0.0.0", port))
            held.append(h)
        Path("/proc/sys/net/ipv4/ip_local_port_range").write_text("41000 41001")
        while True:
            _answer(sock)
    threading.Thread(target=serve, daemon=True).start()
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    no_r = lambda argv: [a for a in argv if a != "-r"]  # noqa: E731
    _save("failures", SubprocessAb().run_argv(AbCommand(url, 5, 200, path="/", payload=b"{}"), 60, no_r))


# --- capture -------------------------------------------------------------------------------------

def _save(name: str, run: AbRun) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"{name}.argv").write_text(" ".join(run.argv) + "\n")
    (OUT / f"{name}.stdout").write_text(run.stdout)
    (OUT / f"{name}.stderr").write_text(run.stderr)
    (OUT / f"{name}.exit").write_text(f"{run.exit_code}\n")
    for suffix, text in ((".e.csv", run.percentiles_csv), (".g.tsv", run.gnuplot_tsv)):
        path = OUT / f"{name}{suffix}"
        if text is not None:
            path.write_text(text)
        elif path.exists():
            path.unlink()
    print(f"{name}: exit {run.exit_code}")


def main() -> None:
    from labkit.service import service_command, wait_until_up

    ab = SubprocessAb()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    argv, env = service_command("flask", "127.0.0.1", port, 1, python=sys.executable)
    service = subprocess.Popen(argv, env={**os.environ, **env, "LABKIT_NODE": "capture"},
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until_up(url, 30, proc=service)
        _save("success", ab.run_ab(AbCommand(url, 10, 200), 120))
        _save("non2xx", ab.run_ab(AbCommand(url, 3, 30, path="/nope"), 60))
        _save("emfile", SubprocessAb(nofile=12).run_ab(AbCommand(url, 50, 100), 60))
    finally:
        service.terminate()
        service.wait(10)

    url, stop = http_server(_Variable)
    try:
        _save("length", ab.run_ab(AbCommand(url, 4, 40, path="/", payload=b"{}"), 60))
        with_l = lambda argv: argv[:-1] + ["-l", argv[-1]]  # noqa: E731
        _save("variable", ab.run_argv(AbCommand(url, 4, 40, path="/", payload=b"{}"), 60, with_l))
    finally:
        stop()

    url, stop = http_server(_KeepAlive)
    try:
        _save("keepalive", ab.run_ab(AbCommand(url, 4, 100, keepalive=True, payload=b"{}"), 60))
    finally:
        stop()

    url, stop = silent_listener()
    try:
        _save("timeout", ab.run_ab(AbCommand(url, 5, 20, timeout_s=1, payload=b"{}"), 60))
    finally:
        stop()

    url, thread = stop_listening_after(50)
    no_r = lambda argv: [a for a in argv if a != "-r"]  # noqa: E731
    _save("recv_reset", ab.run_argv(AbCommand(url, 5, 200, path="/", payload=b"{}"), 60, no_r))
    thread.join(5)

    subprocess.run(["unshare", "-n", sys.executable, __file__, "--netns-failures"], check=True)


if __name__ == "__main__":
    if sys.argv[1:] == ["--netns-failures"]:
        _netns_failures_case()
    else:
        main()
