"""A real OpenSSH sshd on a loopback port, for the remote and ssh backend tests.

Its own host key and client key are generated with ssh-keygen in a temp dir;
the server is started with ``sshd -D`` and stopped by its PID.
"""

from __future__ import annotations

import dataclasses
import getpass
import os
import shutil
import signal
import socket
import subprocess
import time

import pytest

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"


@dataclasses.dataclass
class SshdInfo:
    host: str
    port: int
    user: str
    key: str  # client private key file
    known_hosts: str  # a known_hosts file trusting this sshd
    host_key_line: str  # "TYPE BASE64" of the server's host key
    pid: int
    dir: str


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sshd_config(folder, address: str, port: int) -> str:
    """An sshd_config for a test sshd on ``address:port`` with its host key, pid file and keys in ``folder``:
    key logins only (root allowed), no PAM, enough sessions for parallel deploys."""
    return f"""\
ListenAddress {address}:{port}
HostKey {folder}/host_ed25519
PidFile {folder}/sshd.pid
AuthorizedKeysFile {folder}/authorized_keys
PermitRootLogin yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
UsePAM no
StrictModes no
Subsystem sftp internal-sftp
MaxSessions 50
MaxStartups 50:30:100
LogLevel ERROR
"""

def _keygen(path, kind="ed25519"):
    subprocess.run(["ssh-keygen", "-q", "-t", kind, "-N", "", "-f", str(path)], check=True, capture_output=True)


@pytest.fixture(scope="session")
def sshd(tmp_path_factory):
    if not (os.path.exists(SSHD) and shutil.which("ssh-keygen")):
        pytest.skip("openssh-server is not installed (make test installs it)")
    d = tmp_path_factory.mktemp("sshd")
    os.chmod(d, 0o755)
    _keygen(d / "host_ed25519")
    _keygen(d / "client_key")
    (d / "authorized_keys").write_text((d / "client_key.pub").read_text())
    os.chmod(d / "authorized_keys", 0o600)
    port = _free_port()
    os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # privilege separation dir
    config = d / "sshd_config"
    config.write_text(sshd_config(d, "127.0.0.1", port))
    log = open(d / "sshd.log", "wb")
    proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if proc.poll() is not None or time.time() > deadline:
                    raise RuntimeError(f"sshd did not start: {(d / 'sshd.log').read_text()}")
                time.sleep(0.05)
        host_key_line = " ".join((d / "host_ed25519.pub").read_text().split()[:2])
        (d / "known_hosts").write_text(f"[127.0.0.1]:{port} {host_key_line}\n")
        yield SshdInfo("127.0.0.1", port, getpass.getuser(), str(d / "client_key"), str(d / "known_hosts"),
                       host_key_line, proc.pid, str(d))
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
        log.close()
