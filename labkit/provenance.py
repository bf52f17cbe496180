"""Where a results file came from: machine, CPU, kernel, tool versions, date, command.

Written beside reference data (``data/*.provenance.json``) and into every lab
report, so a number can always be traced to the machine and the exact command
that produced it.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import shlex
import subprocess
import sys

from . import __version__, cgroups


def _first_line(argv: list[str]) -> str | None:
    try:
        res = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unavailable ({exc})"
    text = (res.stdout or res.stderr).strip()
    return text.splitlines()[0] if text else None


def _cpu_model() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def collect(command: list[str] | None = None) -> dict:
    """A JSON-ready description of this machine and software, plus ``command`` if given."""
    return {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": shlex.join(command) if command else shlex.join(sys.argv),
        "machine": platform.node(),
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3, 1),
        "kernel": platform.release(),
        "os": _first_line(["sh", "-c", ". /etc/os-release && echo $PRETTY_NAME"]),
        "python": sys.version.split()[0],
        "labkit": __version__,
        "nginx": _first_line(["nginx", "-v"]),
        "ab": _first_line(["ab", "-V"]),
        "cgroups": cgroups.detect().version,
        "cfs_period_us": cgroups.CFS_PERIOD_US,
    }
