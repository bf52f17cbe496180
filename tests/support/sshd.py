"""A real OpenSSH sshd on loopback: the one launcher, and the session's ``sshd`` fixture.

:func:`start_sshd` writes a config into a folder holding ``host_ed25519`` and
``authorized_keys``, starts ``sshd -D`` on ``address:port`` and waits until it accepts
connections; the ``sshd`` fixture (remote and ssh backend tests) and the Compute stub's
machines (:class:`tests.support.compute_stub.SshMachines`) both start theirs with it.
Every sshd is stopped by its own PID.
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

from tests.support.ports import free_port

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

def keygen(path, kind="ed25519"):
    """A passphrase-less key pair at ``path`` and ``path.pub``."""
    subprocess.run(["ssh-keygen", "-q", "-t", kind, "-N", "", "-f", str(path)], check=True, capture_output=True)


def host_key_line(folder) -> str:
    """``TYPE BASE64`` of the host key in ``folder``."""
    with open(os.path.join(folder, "host_ed25519.pub")) as f:
        return " ".join(f.read().split()[:2])


def start_sshd(folder, address: str, port: int, timeout: float = 10.0) -> subprocess.Popen:
    """Start sshd on ``address:port`` with the keys in ``folder``; returns once it accepts connections.

    Its output goes to ``folder/sshd.log``, quoted in the error when it does not start.
    """
    os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # privilege separation dir
    config = os.path.join(folder, "sshd_config")
    with open(config, "w") as f:
        f.write(sshd_config(folder, address, port))
    log_path = os.path.join(folder, "sshd.log")
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([SSHD, "-D", "-e", "-f", config], stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection((address, port), timeout=0.5).close()
            return proc
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                stop_sshd(proc)
                with open(log_path, errors="replace") as f:
                    raise RuntimeError(f"sshd on {address}:{port} did not start: {f.read()}") from None
            time.sleep(0.05)


def stop_sshd(proc: subprocess.Popen) -> None:
    """SIGTERM the sshd we started (SIGKILL if it does not go within 10 s)."""
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.fixture(scope="session")
def sshd(tmp_path_factory):
    if not (os.path.exists(SSHD) and shutil.which("ssh-keygen")):
        pytest.skip("openssh-server is not installed (make test installs it)")
    d = tmp_path_factory.mktemp("sshd")
    os.chmod(d, 0o755)
    keygen(d / "host_ed25519")
    keygen(d / "client_key")
    (d / "authorized_keys").write_text((d / "client_key.pub").read_text())
    os.chmod(d / "authorized_keys", 0o600)
    port = free_port()
    proc = start_sshd(str(d), "127.0.0.1", port)
    try:
        key_line = host_key_line(d)
        (d / "known_hosts").write_text(f"[127.0.0.1]:{port} {key_line}\n")
        yield SshdInfo("127.0.0.1", port, getpass.getuser(), str(d / "client_key"), str(d / "known_hosts"),
                       key_line, proc.pid, str(d))
    finally:
        stop_sshd(proc)
