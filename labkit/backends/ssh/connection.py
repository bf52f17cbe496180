"""An SSH connection to one host, in the style of fabric's ``Connection``.

It opens on first use, is a context manager, runs commands returning a small
:class:`Result`, and keeps one SFTP channel for file transfers. Host keys are
always checked: either against a ``known_hosts`` file (unknown hosts are
rejected, never added) or against keys pinned when the machine was created
(e.g. read from GCE guest attributes). Failed commands raise
:class:`~labkit.errors.CommandError` naming host, command, exit code and stderr.

``sudo()`` has fabric's shape (same arguments and result as ``run``), so no
caller builds ``sudo -n ...`` strings itself; ``tunnel()`` opens a TCP stream
*from* the host (SSH ``direct-tcpip``), which is how labkit reaches a service
that listens on an address only the host's network can see.

Commands that may hang (ab) run through :meth:`Connection.run_bounded`: the host's
``timeout -k`` kills them (and everything they started) at the limit, and
:class:`~labkit.errors.CommandTimeout` says so. Pid files are only signalled after
an identity check (:meth:`Connection.pid_in_file`), and temp files that root copies
somewhere get a random name made with mode 0600 (:meth:`Connection.mktemp`).
"""

from __future__ import annotations

import base64
import dataclasses
import io
import logging
import os
import re
import shlex
import socket
import threading
import time

from labkit.errors import BackendError, CommandError, CommandTimeout, MissingToolError

log = logging.getLogger("labkit")


@dataclasses.dataclass(frozen=True)
class Result:
    """What a remote command left: its exit code and decoded output."""

    exit_code: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


class _NoRefusedTunnels(logging.Filter):
    """paramiko logs every refused ``direct-tcpip`` channel at ERROR; :meth:`Connection.tunnel`
    raises ``ConnectionRefusedError`` for it instead (polling a booting server refuses often)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "open FAILED" not in record.getMessage()


def _paramiko():
    try:
        import paramiko
    except ImportError:  # pragma: no cover - paramiko is a core dependency
        raise MissingToolError("paramiko is missing: pip install 'labkit[ssh]' (or pip install paramiko)") from None
    quiet = logging.getLogger("paramiko.transport")
    if not any(isinstance(f, _NoRefusedTunnels) for f in quiet.filters):
        quiet.addFilter(_NoRefusedTunnels())
    return paramiko


def parse_host_key(key):
    """Turn ``"ssh-ed25519 AAAA... [comment]"`` (or a paramiko ``PKey``) into a ``PKey``."""
    paramiko = _paramiko()
    if isinstance(key, paramiko.PKey):
        return key
    parts = str(key).split()
    if len(parts) < 2:
        raise BackendError(f"cannot read host key {key!r}: expected 'TYPE BASE64'")
    try:
        return paramiko.PKey.from_type_string(parts[0], base64.b64decode(parts[1]))
    except Exception as e:  # noqa: BLE001 - paramiko raises several types here
        raise BackendError(f"cannot read host key of type {parts[0]!r}: {e}") from None


class Connection:
    """An SSH connection to ``user@host:port`` that opens on first use.

    Give ``known_hosts`` (a file in OpenSSH format) or ``host_key`` (one key or
    a list of keys: ``PKey`` objects or ``"TYPE BASE64"`` strings) to say which
    host key to trust. With neither, the user's ``~/.ssh/known_hosts`` is used.
    """

    def __init__(self, host: str, user: str, port: int = 22, key_filename: str | None = None,
                 known_hosts: str | None = None, host_key=None, connect_timeout: float = 15.0):
        self.host, self.user, self.port = host, user, int(port)
        self.key_filename = key_filename
        self.known_hosts = known_hosts
        if host_key is not None and not isinstance(host_key, (list, tuple)):
            host_key = [host_key]
        self.host_keys = [parse_host_key(k) for k in host_key] if host_key else []
        self.connect_timeout = connect_timeout
        self._client = None
        self._sftp = None
        self._lock = threading.RLock()

    def __repr__(self):
        return f"Connection({self.user}@{self.host}:{self.port})"

    @property
    def hostkey_name(self) -> str:
        """The name the host is known by in known_hosts (``[host]:port`` unless port 22)."""
        return self.host if self.port == 22 else f"[{self.host}]:{self.port}"

    @property
    def is_connected(self) -> bool:
        t = self._client.get_transport() if self._client else None
        return bool(t and t.is_active())

    def open(self):
        """Connect and authenticate (done for you by the first ``run``/``put``/``get``)."""
        with self._lock:
            if self.is_connected:
                return self._client
            self.close()
            paramiko = _paramiko()
            client = paramiko.SSHClient()
            client.set_missing_host_key_policy(paramiko.RejectPolicy())
            if self.host_keys:
                for key in self.host_keys:
                    client.get_host_keys().add(self.hostkey_name, key.get_name(), key)
            else:
                path = self.known_hosts or os.path.expanduser("~/.ssh/known_hosts")
                if os.path.exists(path):
                    client.load_host_keys(path)
                elif self.known_hosts:
                    raise BackendError(f"known_hosts file {path} does not exist")
            try:
                client.connect(self.host, port=self.port, username=self.user, key_filename=self.key_filename,
                               timeout=self.connect_timeout, banner_timeout=self.connect_timeout,
                               auth_timeout=self.connect_timeout, allow_agent=self.key_filename is None,
                               look_for_keys=self.key_filename is None)
            except paramiko.BadHostKeyException as e:
                client.close()
                raise BackendError(
                    f"{self.hostkey_name}: host key mismatch: the server offered {e.key.get_name()} "
                    f"{e.key.fingerprint}, but {e.expected_key.fingerprint} is the trusted key. "
                    "Refusing to connect (the machine was replaced, or someone is in the middle)."
                ) from None
            except paramiko.SSHException as e:
                client.close()
                if "not found in known_hosts" in str(e):
                    raise BackendError(
                        f"{self.hostkey_name}: unknown host key; refusing to connect. Add the host's key to "
                        f"{self.known_hosts or '~/.ssh/known_hosts'} (ssh-keyscan, checked out of band) or pin it."
                    ) from None
                raise BackendError(f"{self.hostkey_name}: SSH failed: {e}") from None
            except (OSError, socket.timeout) as e:
                client.close()
                raise BackendError(f"{self.hostkey_name}: cannot connect: {e}") from None
            log.debug("ssh connected to %s@%s", self.user, self.hostkey_name)
            self._client = client
            return client

    #: seconds a remote command may take when its caller gives no limit (systemctl, mkdir, chown...),
    #: and an SFTP transfer may go without progress; a hung host is then one CommandTimeout line
    DEFAULT_TIMEOUT = 300.0
    SFTP_TIMEOUT = 60.0

    def run(self, cmd: str, check: bool = True, timeout: float | None = None, stdin: bytes | None = None) -> Result:
        """Run ``cmd`` with the remote user's shell; raise CommandError on a non-zero exit if ``check``.

        ``timeout`` (default :data:`DEFAULT_TIMEOUT`) bounds it: CommandTimeout past it."""
        timeout = self.DEFAULT_TIMEOUT if timeout is None else timeout
        client = self.open()
        log.debug("%s$ %s", self.host, cmd)
        chan = client.get_transport().open_session()
        try:
            chan.exec_command(cmd)
            if stdin is not None:
                chan.sendall(stdin)
            chan.shutdown_write()
            out, err = io.BytesIO(), io.BytesIO()
            deadline = None if timeout is None else time.monotonic() + timeout
            chan.settimeout(0.2)
            while True:
                got = False
                while chan.recv_ready():
                    out.write(chan.recv(65536))
                    got = True
                while chan.recv_stderr_ready():
                    err.write(chan.recv_stderr(65536))
                    got = True
                if chan.exit_status_ready() and not chan.recv_ready() and not chan.recv_stderr_ready():
                    break
                if deadline is not None and time.monotonic() > deadline:
                    raise CommandTimeout(self.host, cmd, -1, err.getvalue().decode(errors="replace")
                                         + f"\ntimed out after {timeout} s")
                if not got:
                    time.sleep(0.01)
            code = chan.recv_exit_status()
        finally:
            chan.close()
        result = Result(code, out.getvalue().decode(errors="replace"), err.getvalue().decode(errors="replace"))
        if check and code != 0:
            raise CommandError(self.host, cmd, code, result.stderr)
        return result

    #: exit codes of coreutils ``timeout``: 124 the command was stopped with TERM, 137 with KILL (``-k``)
    TIMEOUT_EXITS = (124, 137)

    def run_bounded(self, cmd: str, timeout: float, kill_after: float = 5.0) -> Result:
        """Run ``cmd`` (a shell snippet) under the host's ``timeout -k``; never raises for its exit code.

        After ``timeout`` seconds the host sends TERM to the command's whole process group,
        and KILL ``kill_after`` seconds later, so nothing it started keeps running when labkit
        gives up on it (a closed SSH channel does not stop a remote command). Raises
        :class:`~labkit.errors.CommandTimeout` when the limit was hit, on the host or (a hung
        connection) here.
        """
        if not timeout > 0:
            raise ValueError(f"timeout must be positive, not {timeout!r}")
        wrapped = f"timeout -k {kill_after:g} {timeout:g} sh -c {shlex.quote(cmd)}"
        started = time.monotonic()
        r = self.run(wrapped, check=False, timeout=timeout + kill_after + 30)
        if r.exit_code in self.TIMEOUT_EXITS and time.monotonic() - started >= timeout:
            raise CommandTimeout(self.host, cmd, r.exit_code, r.stderr + f"\ntimed out after {timeout:g} s "
                                 "(stopped on the host)")
        return r

    def mktemp(self, prefix: str = "labkit", directory: str = "/tmp") -> str:
        """A new, empty file with a random name and mode 0600 on the host (``mktemp``); its path.

        For files another user (root, through :meth:`sudo`) copies into place: nobody can
        have created or linked the name in advance, and nobody else can write to it.
        """
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", prefix):
            raise ValueError(f"bad temp file prefix {prefix!r}")
        return self.run(f"mktemp {shlex.quote(directory)}/{prefix}.XXXXXXXXXX").stdout.strip()

    def sudo(self, cmd: str, check: bool = True, timeout: float | None = None,
             stdin: bytes | None = None) -> Result:
        """Run ``cmd`` as root (fabric's ``Connection.sudo``): as is when logged in as root,
        else through password-less ``sudo -n sh -c``, so ``&&`` chains and redirections run
        as root as a whole."""
        if self.user != "root":
            cmd = f"sudo -n sh -c {shlex.quote(cmd)}"
        return self.run(cmd, check=check, timeout=timeout, stdin=stdin)

    def tunnel(self, host: str, port: int, timeout: float | None = None):
        """A socket-like channel to ``host:port`` as seen from the remote host (``ssh -L``).

        A refused or unreachable target raises ``ConnectionRefusedError`` (an
        ``OSError``, like a local ``connect`` would).
        """
        paramiko = _paramiko()
        transport = self.open().get_transport()
        try:
            chan = transport.open_channel("direct-tcpip", (host, int(port)), ("127.0.0.1", 0), timeout=timeout)
        except (paramiko.ChannelException, paramiko.SSHException) as e:
            raise ConnectionRefusedError(f"{self.host}: cannot reach {host}:{port} from the host: {e}") from None
        if timeout is not None:
            chan.settimeout(timeout)
        return chan

    def sftp(self):
        """The connection's one SFTP channel, opened on first use."""
        with self._lock:
            if self._sftp is None or self._sftp.sock.closed:
                self._sftp = self.open().open_sftp()
                self._sftp.get_channel().settimeout(self.SFTP_TIMEOUT)  # a stalled transfer raises
            return self._sftp

    def put(self, data, remote: str, mode: int | None = None) -> None:
        """Write ``data`` (bytes, or a local file path) to ``remote``."""
        sftp = self.sftp()
        if isinstance(data, (bytes, bytearray)):
            with sftp.open(remote, "wb") as f:
                f.write(bytes(data))
        else:
            sftp.put(os.fspath(data), remote)
        if mode is not None:
            sftp.chmod(remote, mode)

    def get_bytes(self, remote: str) -> bytes:
        with self.sftp().open(remote, "rb") as f:
            return f.read()

    def get_text(self, remote: str) -> str:
        """Read the remote file ``remote`` as UTF-8 text."""
        return self.get_bytes(remote).decode()

    def exists(self, remote: str) -> bool:
        try:
            self.sftp().stat(remote)
            return True
        except FileNotFoundError:
            return False
        except OSError as e:
            if getattr(e, "errno", None) == 2:
                return False
            raise

    #: seconds a process may seem to have started after its pid file was written (clock rounding)
    PID_SLACK = 5

    def pid_in_file(self, pidfile: str, expect: str | None = None) -> int | None:
        """The pid in ``pidfile`` if that process still runs *and is the one the file names*, else None.

        A pid file outlives its process, and the kernel hands the pid to someone else: the
        process must have started before the file was written (its start time from
        ``/proc/PID/stat`` against the file's mtime, ``PID_SLACK`` s of rounding), and its
        ``/proc/PID/cmdline`` must contain ``expect`` when given.
        """
        p = shlex.quote(pidfile)
        r = self.run(f"pid=$(cat {p} 2>/dev/null) || exit 0; case $pid in ''|*[!0-9]*) exit 0;; esac; "
                     f"echo pid $pid; echo age $(( $(date +%s) - $(stat -c %Y {p}) )); "
                     "echo hz $(getconf CLK_TCK); echo up $(cut -d' ' -f1 /proc/uptime); "
                     "echo stat $(sed 's/.*) //' /proc/$pid/stat 2>/dev/null); "
                     "echo cmd $(tr '\\0' ' ' < /proc/$pid/cmdline 2>/dev/null)", check=False)
        facts = dict(line.split(" ", 1) if " " in line else (line, "") for line in r.stdout.splitlines())
        try:
            pid, file_age = int(facts["pid"]), float(facts["age"])
            stat = facts.get("stat", "").split()
            if not stat or stat[0] in ("Z", "X"):
                return None  # gone, or a zombie
            process_age = float(facts["up"]) - int(stat[19]) / int(facts["hz"])
        except (KeyError, ValueError, IndexError):
            return None
        if process_age + self.PID_SLACK < file_age:
            log.warning("%s: %s names pid %d, but that process started after the file was written "
                        "(the pid was reused); not signalling it", self.host, pidfile, pid)
            return None
        if expect is not None and expect not in facts.get("cmd", ""):
            log.warning("%s: %s names pid %d, which is not %r; not signalling it", self.host, pidfile, pid, expect)
            return None
        return pid

    def stop_pidfile(self, pidfile: str, expect: str | None = None) -> None:
        """Stop the process group whose leader's pid is in ``pidfile`` (TERM, then KILL after 5 s),
        then remove the file. Only the process the file names is signalled (see :meth:`pid_in_file`):
        a stale file whose pid now belongs to someone else is just removed."""
        pid = self.pid_in_file(pidfile, expect)
        kill = "" if pid is None else (
            f"pid={pid}; kill -TERM -- -$pid 2>/dev/null || kill -TERM $pid 2>/dev/null; "
            f"for n in $(seq 50); do kill -0 -- -$pid 2>/dev/null || break; sleep 0.1; done; "
            f"kill -KILL -- -$pid 2>/dev/null; ")
        self.run(f"{kill}rm -f {shlex.quote(pidfile)}; true")

    def read_pidfile(self, pidfile: str, tries: int = 50) -> int:
        """The pid in ``pidfile``, waiting up to ``tries`` x 0.1 s for it to be written."""
        p = shlex.quote(pidfile)
        r = self.run(f"for n in $(seq {tries}); do [ -s {p} ] && cat {p} && exit 0; sleep 0.1; done; exit 1")
        return int(r.stdout.strip())

    def close(self) -> None:
        """Close the SFTP channel and the connection. Safe to call more than once."""
        with self._lock:
            sftp, client, self._sftp, self._client = self._sftp, self._client, None, None
        for thing in (sftp, client):
            if thing is not None:
                try:
                    thing.close()
                except Exception:  # noqa: BLE001 - closing must never raise
                    pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def __del__(self):
        try:
            self.close()
        except Exception:  # noqa: BLE001
            pass
