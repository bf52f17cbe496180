"""Where a results file came from: CPU, kernel, tool versions, date, the command or notebook, the grid.

:func:`labkit.sweep.run_sweep` writes it beside every results CSV it starts
(``runs/x.csv`` -> ``runs/x.provenance.json``; ``data/reference.provenance.json``
is one), so a number can always be traced to the kind of machine and the exact
command (or notebook) and grid that produced it -- and a lab report's ``results.csv``
carries its own. The file is handed in with the results, so it names no host and no
path under the user's home: in a notebook the "command" is the notebook's name (not
the kernel launcher's command line with its connection file), home is shown as ``~``.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import shlex
import subprocess
import sys
from pathlib import Path

from labkit import __version__
from labkit.backends.local import cgroups
from labkit.settings import Settings, resolve


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


def _in_kernel(argv: list[str]) -> bool:
    return bool(argv) and Path(argv[0]).name in ("ipykernel_launcher.py", "ipykernel_launcher", "__main__.py") \
        and ("-f" in argv or "ipykernel" in sys.modules)


def _no_home(text: str) -> str:
    home = os.path.expanduser("~")
    return text.replace(home, "~") if home not in ("", "/") else text


def command_text(argv: list[str] | None = None) -> str:
    """What produced the results: the command line (home shown as ``~``), or in a Jupyter kernel the
    notebook it runs (``notebook 01_single_server.ipynb``; its server says which in $JPY_SESSION_NAME)."""
    argv = list(sys.argv if argv is None else argv)
    if _in_kernel(argv):
        session = os.environ.get("JPY_SESSION_NAME", "")
        return f"notebook {Path(session).name}" if session else "a Jupyter notebook"
    return _no_home(shlex.join(argv))


def collect(command: list[str] | None = None, settings: Settings | None = None) -> dict:
    """A JSON-ready description of this machine's kind and software, plus ``command`` (default: this
    process's, see :func:`command_text`); ``settings`` (None: the environment's, :func:`labkit.settings.resolve`)
    decide the cgroups reported. No host name: the file is handed in with the results."""
    settings = resolve(settings)
    return {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": command_text(command),
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3, 1),
        "kernel": platform.release(),
        "os": _first_line(["sh", "-c", ". /etc/os-release && echo $PRETTY_NAME"]),
        "python": sys.version.split()[0],
        "labkit": __version__,
        "nginx": _first_line(["nginx", "-v"]),
        "ab": _first_line(["ab", "-V"]),
        "cgroups": cgroups.detect(settings).version,
        "cfs_period_us": settings.cfs_period_us,
    }


def path_beside(csv: str | os.PathLike) -> Path:
    """Where the provenance of ``csv`` goes: ``x.csv`` -> ``x.provenance.json``."""
    return Path(csv).with_suffix(".provenance.json")


def write_beside(csv: str | os.PathLike, settings: Settings | None = None, **extra) -> Path:
    """Write :func:`collect` (plus ``extra``, e.g. the run id and backend) beside ``csv``."""
    path = path_beside(csv)
    path.write_text(json.dumps({**collect(settings=settings), **extra}, indent=2, default=str) + "\n")
    return path


def add_calibration(csv: str | os.PathLike, run_id: str, entry: dict) -> Path:
    """Record ``entry`` (a sweep's host calibration, :mod:`labkit.calibration`) in the provenance beside ``csv``.

    The first sweep's entry is ``calibration``; a later one (``--resume``) on another day or
    host goes into ``calibrations`` under its run id, so every row's figure stays traceable.
    A missing provenance file is started with :func:`collect`.
    """
    path = path_beside(csv)
    data = json.loads(path.read_text()) if path.exists() else collect()
    entry = {**entry, "run_id": run_id}
    first = data.get("calibration")
    if first is None or first.get("run_id") == run_id:
        data["calibration"] = entry
    else:
        data.setdefault("calibrations", {})[run_id] = entry
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
    os.replace(tmp, path)
    return path
