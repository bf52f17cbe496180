"""CPU seconds used by a machine's service, read cheaply (design §7's CPU columns, §6's settle).

Three sources, whichever the machine has:

* a **cgroup** (the local backend's machines: :meth:`labkit.backends.local.cgroups.Cgroups.cpu_seconds`);
* a **systemd unit**'s ``CPUUsageNSec`` (the ssh/gcp service installed as a unit);
* a **process tree** in ``/proc``: ``utime + stime`` of a process and of every descendant
  still running, plus the ``cutime + cstime`` its own waited-for children left (a gunicorn
  master and its workers, nginx's master and workers, the Flask dev server).

:func:`proc_tree_seconds` reads a local tree. For remote hosts :func:`remote_script` renders
ONE POSIX-shell command that prints every requested counter of that host (no fork per
process: ``read`` builtins only, so a sample costs a few milliseconds even on an f1-micro),
and :func:`parse_remote` reads its output back.
"""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _stat_fields(text: str) -> list[str]:
    # "pid (comm with spaces) S ppid ..." -> the fields after the comm
    return text.rsplit(")", 1)[1].split()


def proc_tree_seconds(pid: int, proc: Path = Path("/proc")) -> float | None:
    """CPU seconds of process ``pid`` and its live descendants (None when ``pid`` is gone)."""
    ticks, todo, first = 0, [int(pid)], True
    while todo:
        p = todo.pop()
        try:
            fields = _stat_fields((proc / str(p) / "stat").read_text())
        except (OSError, IndexError):
            if first:
                return None
            continue
        # after the comm: state(0) ppid(1) ... utime(11) stime(12) cutime(13) cstime(14)
        ticks += sum(int(f) for f in fields[11:15])
        first = False
        try:
            for child in (proc / str(p) / "task").glob("*/children"):
                todo += [int(c) for c in child.read_text().split()]
        except OSError:
            pass
    return ticks / CLK_TCK


# A POSIX sh function: T += the CPU ticks of the given pids and their descendants.
_TREE_FN = r"""t() { for p in "$@"; do { read -r s < /proc/$p/stat; } 2>/dev/null || continue; s=${s##*) }; set -- $s; T=$((T+${12}+${13}+${14}+${15})); k=; for f in /proc/$p/task/*/children; do { read -r c < $f; } 2>/dev/null; k="$k $c"; c=; done; t $k; done; }"""


def remote_script(entries: dict[str, dict]) -> str:
    """One shell command printing ``NAME KIND VALUE`` for every entry, plus ``clk_tck N``.

    ``entries`` maps a name to how to find its counter: ``{"unit": "x.service"}`` (systemd's
    ``CPUUsageNSec``, falling back to the unit's main pid tree), ``{"pidfile": PATH}`` or
    ``{"pid": N}`` (a process tree). KIND is ``ns`` or ``ticks``; a counter that cannot be
    read prints ``NAME none 0``.
    """
    lines = [_TREE_FN, 'echo "clk_tck $(getconf CLK_TCK 2>/dev/null || echo 100)"']
    for name, how in entries.items():
        n = shlex.quote(name)  # a word of its own (printf's argument), never inside double quotes
        if "unit" in how:
            u = shlex.quote(how["unit"])
            lines.append(f'v=$(systemctl show -p CPUUsageNSec --value {u} 2>/dev/null); case "$v" in '
                         f"''|*[!0-9]*) P=$(systemctl show -p MainPID --value {u} 2>/dev/null); "
                         f'T=0; [ "${{P:-0}}" != 0 ] && {{ t $P; printf "%s ticks %s\\n" {n} "$T"; }} || '
                         f'printf "%s none 0\\n" {n};; *) printf "%s ns %s\\n" {n} "$v";; esac')
            continue
        if "pidfile" in how:
            lines.append(f"P=; {{ read -r P < {shlex.quote(how['pidfile'])}; }} 2>/dev/null")
        else:
            lines.append(f"P={int(how['pid'])}")
        lines.append(f'T=0; if [ -n "$P" ] && [ -r /proc/$P/stat ]; then t $P; printf "%s ticks %s\\n" {n} "$T"; '
                     f'else printf "%s none 0\\n" {n}; fi')
    return "\n".join(lines)


_LINE = re.compile(r"^(\S+) (ns|ticks|none) (\d+)$")


def parse_remote(text: str) -> dict[str, float | None]:
    """:func:`remote_script`'s output as ``{name: CPU seconds or None}``."""
    tck, raw = 100, []
    for line in text.splitlines():
        if line.startswith("clk_tck "):
            tck = int(line.split()[1]) or 100
        elif m := _LINE.match(line.strip()):
            raw.append(m.groups())
    out: dict[str, float | None] = {}
    for name, kind, value in raw:
        out[name] = None if kind == "none" else int(value) / (1e9 if kind == "ns" else tck)
    return out


_TIMES = re.compile(r"(\d+)m([\d.]+)s\s+(\d+)m([\d.]+)s")
TIMES_MARK = "labkit-times"


def wrap_with_times(command: str) -> str:
    """``command``, then the shell's children's CPU time (``times``) on stderr after a marker.

    Run by the same shell, so it is exactly the CPU ab used; see :func:`split_times`.
    """
    return f"{command}; rc=$?; echo {TIMES_MARK} >&2; times >&2; exit $rc"


def split_times(stderr: str) -> tuple[str, float | None]:
    """``(stderr without the marker block, the children's user + system seconds or None)``."""
    head, mark, tail = stderr.rpartition(f"{TIMES_MARK}\n")
    if not mark:
        return stderr, None
    found = _TIMES.findall(tail)
    if len(found) < 2:
        return head, None
    um, us, sm, ss = found[1]
    return head, int(um) * 60 + float(us) + int(sm) * 60 + float(ss)


# -- connections still queued for a server (the drain comes in TCP retransmission waves) ------

#: Sockets in these states only (the kernel filters them: fast even beside 10,000s of TIME-WAITs).
SS_COMMAND = "ss -Htan state syn-recv state syn-sent state fin-wait-1 state listening"


def _hostport(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def pending_from_ss(text: str, servers: dict[str, tuple[str, int]]) -> dict[str, int]:
    """Connections queued for each server in :data:`SS_COMMAND`'s output: its listen backlog,
    half-open connections (SYN-RECV: the backlog was full, the kernel retransmits SYN-ACKs
    for seconds) and clients' unacknowledged SYNs or FINs towards it.
    ``servers``: name -> (address, port)."""
    where = {_hostport(a, p): name for name, (a, p) in servers.items()}
    out = dict.fromkeys(servers, 0)
    for line in text.splitlines():
        f = line.split()
        if len(f) < 5 or not f[0].isalpha() or not f[1].isdigit():
            continue
        state, recv_q, local, peer = f[0], int(f[1]), f[3], f[4]
        if local in where and state == "LISTEN":
            out[where[local]] += recv_q
        elif local in where and state == "SYN-RECV":
            out[where[local]] += 1
        elif peer in where and state in ("SYN-SENT", "FIN-WAIT-1"):
            out[where[peer]] += 1
    return out


def pending_connections(servers: dict[str, tuple[str, int]]) -> dict[str, int] | None:
    """:func:`pending_from_ss` on this machine; None when ``ss`` cannot be run."""
    import subprocess

    try:
        r = subprocess.run(SS_COMMAND.split(), capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return pending_from_ss(r.stdout, servers) if r.returncode == 0 else None
