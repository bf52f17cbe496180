"""The ssh backend's hosts file: which machine plays which role, and how to reach it.

A small TOML file (see :func:`load_hosts_file`) parsed into :class:`HostSpec`
values and the :class:`~labkit.backends.ssh.backend.SshBackend` options. Every mistake
is one :class:`~labkit.errors.ConfigError` naming the file, the table and the key,
so ``labkit up --backend ssh`` fails with one line before it connects anywhere.

Values from the file end up in remote shells, systemd units and nginx configs, so
they are checked here, at parse time (:func:`check_name`, :func:`check_address`,
:func:`check_root`, :func:`check_remote_path`): a server's ``name`` names its systemd
unit, so it must start with ``restserver-`` or ``labkit-`` (``name = "ssh"`` would make
``down`` disable the host's ``ssh.service``); ``root`` is ``chown -R``'ed to the login,
so a system folder (``/``, ``/usr``, ``/etc``, a home folder...) is refused; hosts and
addresses are IP addresses or host names, never shell text.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
import tomllib
from pathlib import Path

from labkit import machine_types
from labkit.errors import ConfigError
from labkit.backends.ssh.connection import Connection


@dataclasses.dataclass(frozen=True)
class HostSpec:
    """One machine: how to SSH to it and the address the other machines use to reach it."""

    host: str  # where labkit connects with SSH
    user: str = "root"
    port: int = 22  # SSH port
    key_filename: str | None = None
    known_hosts: str | None = None
    host_key: tuple | str | None = None  # pinned key(s) "TYPE BASE64"
    address: str | None = None  # internal address other roles use (default: host)
    name: str | None = None

    @property
    def addr(self) -> str:
        """The address the other machines use to reach this one."""
        return self.address or self.host

    @property
    def key(self) -> tuple:
        """What identifies one SSH login: roles on the same login share a connection."""
        return (self.host, self.port, self.user)

    def connect(self) -> Connection:
        """A (lazy) SSH connection to this host, trusting only its known or pinned host key."""
        hk = list(self.host_key) if isinstance(self.host_key, tuple) else self.host_key
        return Connection(self.host, self.user, port=self.port, key_filename=self.key_filename,
                          known_hosts=self.known_hosts, host_key=hk)

    def to_dict(self) -> dict:
        """JSON-ready fields (the state file keeps hosts this way)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> HostSpec:
        """The inverse of :meth:`to_dict` (pinned keys come back as a tuple)."""
        d = dict(d)
        if isinstance(d.get("host_key"), list):
            d["host_key"] = tuple(d["host_key"])
        return cls(**d)


#: what a machine's name may look like (it becomes a file name, a unit name, a log label)
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")
#: a server's name is its systemd unit's name: only these prefixes, so it never names a system unit
SERVER_PREFIXES = ("restserver-", "labkit-")
_HOSTNAME = re.compile(r"(?=.{1,253}$)[A-Za-z0-9_]([A-Za-z0-9_-]{0,62})(\.[A-Za-z0-9_]([A-Za-z0-9_-]{0,62}))*\.?")
_USER = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,31}")
_PATH = re.compile(r"/[A-Za-z0-9_./+@-]*")
#: what the last part of ``root``'s path must contain: a folder named for labkit
ROOT_NAME = re.compile(r"labkit|restserver")
#: where the service is installed by default (systemd units only for this system install)
SYSTEM_ROOT = "/opt/restserver"
#: folders ``root`` may not be, nor be inside (the system's own)
SYSTEM_TREES = ("/bin", "/boot", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/libx32", "/proc", "/run", "/sbin",
                "/sys", "/usr/bin", "/usr/sbin", "/usr/lib", "/usr/lib32", "/usr/lib64", "/usr/libexec",
                "/usr/include", "/usr/share", "/usr/local/bin", "/usr/local/sbin", "/usr/local/lib",
                "/var/lib", "/var/log", "/var/cache", "/var/spool", "/var/run", "/var/mail", "/snap")


def check_name(name: str, server: bool = False) -> str:
    """``name`` if it is a safe machine name (a server's also starts with a :data:`SERVER_PREFIXES`)."""
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise ConfigError(f"name {name!r} must be letters, digits, '.', '_' or '-' (at most 63, starting "
                          "with a letter or digit)")
    if server and not name.startswith(SERVER_PREFIXES):
        raise ConfigError(f"server name {name!r} must start with {' or '.join(SERVER_PREFIXES)} (it names the "
                          "server's systemd unit, which must never be one of the host's own)")
    return name


def check_address(value: str, what: str = "address") -> str:
    """``value`` if it is an IP address or a host name (never text a shell or nginx would read as more)."""
    if isinstance(value, str):
        try:
            ipaddress.ip_address(value)
            return value
        except ValueError:
            if _HOSTNAME.fullmatch(value) and not value.startswith("-"):
                return value
    raise ConfigError(f"{what} {value!r} is not an IP address or a host name")


def check_remote_path(value: str, what: str) -> str:
    """``value`` if it is an absolute, normalised path of plain characters (no spaces, quotes, ``..``)."""
    if not isinstance(value, str) or not _PATH.fullmatch(value) or any(p in (".", "..") for p in value.split("/")):
        raise ConfigError(f"{what} {value!r} must be an absolute path of letters, digits and ._+@-/ "
                          "(no spaces, quotes or '..')")
    return value


def check_root(value: str) -> str:
    """``value`` if it may be ``root`` (the install folder, ``chown -R``'ed to the login).

    An allow-list, not a deny-list: the folder's own name must say it is labkit's (contain
    ``labkit`` or ``restserver``, like ``/opt/restserver`` or ``~/labkit-lab02``), and it
    must not be, or lie inside, a system folder. On the host, an existing non-empty folder
    labkit did not create (no ``.labkit-root`` marker) is refused too (``RemoteService.install``).
    """
    root = check_remote_path(value, "root").rstrip("/") or "/"
    parts = root.strip("/").split("/") if root != "/" else []
    system = next((t for t in SYSTEM_TREES if root == t or root.startswith(t + "/")), None)
    if len(parts) < 2 or system or (parts[0] in ("home", "root") and len(parts) == 2) \
            or root in ("/usr/local", "/var/tmp", "/var/www", "/opt/local"):
        raise ConfigError(f"root {value!r} is a system folder (labkit chowns it to the login user); "
                          "use a folder of its own, like /opt/restserver")
    if not ROOT_NAME.search(parts[-1]) or any(p.startswith(".") for p in parts):
        raise ConfigError(f"root {value!r} is not a folder named for labkit (labkit chowns it to the login user): "
                          "its name must contain 'labkit' or 'restserver', like /opt/restserver")
    return root


_HOST_KEYS = {"host": str, "user": str, "port": int, "key_filename": str, "known_hosts": str,
              "host_key": (str, list), "address": str, "name": str}
_DEFAULT_KEYS = {k: t for k, t in _HOST_KEYS.items() if k not in ("host", "address", "name")}
#: the ssh backend's options, defined once: name -> (the type(s) a hosts file may give, the default)
OPTIONS = {"root": (str, SYSTEM_ROOT), "python": (str, None), "balancer_port": (int, 80),
           "use_systemd": (bool, None), "system_nginx": (bool, None), "service_timeout": ((int, float), 30.0),
           "cpu_limited": (bool, True), "nginx_workers": ((int, str), "auto"),
           "balancer_machine_type": (str, None), "tester_machine_type": (str, None)}  # None: the servers' type
OPTION_DEFAULTS = {k: default for k, (_, default) in OPTIONS.items()}
_OPTION_KEYS = {k: types for k, (types, _) in OPTIONS.items()}
_TYPE_NAMES = {str: "a string", int: "an integer", bool: "true or false", list: "a list of strings",
               float: "a number"}


def _check_table(path, where: str, table, known: dict) -> dict:
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: {where} must be a table")
    for key, value in table.items():
        if key not in known:
            raise ConfigError(f"{path}: {where}: unknown key {key!r} (known: {', '.join(known)})")
        types = known[key] if isinstance(known[key], tuple) else (known[key],)
        ok = isinstance(value, types) and not (isinstance(value, bool) and bool not in types)
        if isinstance(value, list):
            ok = ok and all(isinstance(v, str) for v in value)
        if not ok:
            want = " or ".join(_TYPE_NAMES[t] for t in types)
            raise ConfigError(f"{path}: {where}: key {key!r} must be {want}, not {value!r}")
    return dict(table)


def load_hosts_file(path) -> dict:
    """Read a hosts file into ``SshBackend`` arguments (``servers``, ``balancer``, ``tester``, options).

    The file is TOML::

        [defaults]                     # for every host; each host may override any of these
        user = "ubuntu"                # SSH user (default root; others need password-less sudo)
        key_filename = "~/.ssh/id_ed25519"
        known_hosts = "~/.ssh/known_hosts"   # host keys are checked against it, never accepted blindly
        port = 22

        [[servers]]                    # one table per server, restserver-0, -1, ...
        host = "10.0.0.11"             # where labkit connects
        address = "192.168.0.11"       # optional: the address the balancer/tester use (default: host)

        [balancer]
        host = "10.0.0.10"
        [tester]
        host = "10.0.0.12"
        host_key = "ssh-ed25519 AAAA..."     # optional: pin the key instead of known_hosts
        [[more_testers]]               # optional: tester-1, -2, ... for --testers K (one ab process each)
        host = "10.0.0.13"

        [options]                      # all optional
        root = "/opt/restserver"       # install folder on each server
        python = "/usr/bin/python3"    # an interpreter with flask+gunicorn (default: a venv in root)
        balancer_port = 80
        use_systemd = true             # default: when the host runs systemd and root is /opt/restserver
        nginx_workers = "auto"

    ``key_filename`` and ``known_hosts`` may start with ``~`` or be relative to
    the hosts file. Any mistake is one :class:`ConfigError` naming the file and
    the key.
    """
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"hosts file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read hosts file {path}: {e}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None
    for key in data:
        if key not in ("defaults", "servers", "balancer", "tester", "more_testers", "options"):
            raise ConfigError(f"{path}: unknown key {key!r} "
                              "(known: defaults, servers, balancer, tester, more_testers, options)")
    defaults = _check_table(path, "[defaults]", data.get("defaults", {}), _DEFAULT_KEYS)
    options = _check_table(path, "[options]", data.get("options", {}), _OPTION_KEYS)
    if isinstance(options.get("nginx_workers"), str) and options["nginx_workers"] != "auto":
        raise ConfigError(f"{path}: [options]: key 'nginx_workers' must be an integer or \"auto\"")
    try:
        if "root" in options:
            options["root"] = check_root(options["root"])
        if "python" in options:
            check_remote_path(options["python"], "python")
        if "balancer_port" in options and not 0 < options["balancer_port"] < 65536:
            raise ConfigError(f"balancer_port {options['balancer_port']} is not between 1 and 65535")
        if isinstance(options.get("nginx_workers"), int) and not 0 < options["nginx_workers"] <= 1024:
            raise ConfigError(f"nginx_workers {options['nginx_workers']} is not between 1 and 1024")
        if "service_timeout" in options and not options["service_timeout"] > 0:
            raise ConfigError(f"service_timeout {options['service_timeout']} must be positive")
        for role in ("balancer_machine_type", "tester_machine_type"):
            if role in options:  # what the role's host is, for the capacity answer's per-role CPU
                machine_types.get(options[role])
    except ConfigError as e:
        raise ConfigError(f"{path}: [options]: {e}") from None

    def local_path(value: str) -> str:
        p = Path(os.path.expanduser(value))
        return str(p if p.is_absolute() else (path.parent / p).resolve())

    def host(where: str, table) -> HostSpec:
        t = {**defaults, **_check_table(path, where, table, _HOST_KEYS)}
        if not t.get("host"):
            raise ConfigError(f"{path}: {where}: missing key 'host'")
        for key in ("key_filename", "known_hosts"):
            if key in t:
                t[key] = local_path(t[key])
        if isinstance(t.get("host_key"), list):
            t["host_key"] = tuple(t["host_key"])
        try:
            check_address(t["host"], "host")
            if "address" in t:
                check_address(t["address"])
            if "name" in t:
                check_name(t["name"], server=where.startswith("[[servers]]"))
            if "user" in t and not _USER.fullmatch(t["user"]):
                raise ConfigError(f"user {t['user']!r} is not a user name")
            if not 0 < t.get("port", 22) < 65536:
                raise ConfigError(f"port {t['port']} is not between 1 and 65535")
        except ConfigError as e:
            raise ConfigError(f"{path}: {where}: {e}") from None
        return HostSpec(**t)

    servers = data.get("servers")
    if not isinstance(servers, list) or not servers:
        raise ConfigError(f"{path}: missing key 'servers': list at least one [[servers]] table with a host")
    for role in ("balancer", "tester"):
        if role not in data:
            raise ConfigError(f"{path}: missing key {role!r}: add a [{role}] table with a host")
    more = data.get("more_testers", [])
    if not isinstance(more, list):
        raise ConfigError(f"{path}: 'more_testers' must be a list of [[more_testers]] tables with a host")
    return {"servers": [host(f"[[servers]] #{i + 1}", s) for i, s in enumerate(servers)],
            "balancer": host("[balancer]", data["balancer"]), "tester": host("[tester]", data["tester"]),
            "more_testers": [host(f"[[more_testers]] #{i + 1}", t) for i, t in enumerate(more)], **options}
