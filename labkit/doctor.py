"""``labkit doctor``: what this machine has, what is missing, and the command that fixes it.

Every check is local and offline (no cloud call): tools on PATH, cgroups,
open-file limits, optional Python packages, whether cloud credentials are
configured at all, and how fast this host is (a 3-second calibration of the
service: :mod:`labkit.calibration`).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import resource
import shutil
import sys
from pathlib import Path

from labkit.backends.local import cgroups
from labkit.errors import LabkitError
from labkit.settings import Settings, resolve


@dataclasses.dataclass(frozen=True)
class Check:
    """One line of the doctor's report; ``fix`` is the command to run when ``ok`` is False."""

    name: str
    ok: bool
    detail: str
    fix: str = ""
    required: bool = True


def _tool(name: str, package: str, required: bool = True, paths: tuple[str, ...] = ()) -> Check:
    found = shutil.which(name) or next((p for p in paths if os.access(p, os.X_OK)), None)
    return Check(name, bool(found), found or "not found",
                 "" if found else f"sudo apt-get install -y {package}", required)


def _module(name: str, extra: str, required: bool = False) -> Check:
    ok = importlib.util.find_spec(name) is not None
    return Check(f"python: {name}", ok, "installed" if ok else "missing",
                 "" if ok else f"pip install -e '.[{extra}]'", required)


def _host_speed(settings: Settings | None, checks: list[Check]) -> Check:
    """This host's calibration (:mod:`labkit.calibration`): the service's CPU ms per request on one core
    against the reference's, and the CPU steal meanwhile. Informational: a slow host is no fault, but
    its answers differ from the reference's (``--calibrate reference`` compensates)."""
    from labkit import calibration

    if not all(c.ok for c in checks if c.name in ("python >= 3.11", "ab")):
        return Check("host speed", False, "not measured (needs ab)", "sudo apt-get install -y apache2-utils",
                     required=False)
    try:
        cal = calibration.host_calibration(settings)
    except (LabkitError, OSError) as exc:
        return Check("host speed", False, f"not measured: {exc}", required=False)
    ratio = cal.vs_reference
    how = ("about as fast as" if 1 / calibration.SAME_SPEED < ratio < calibration.SAME_SPEED else
           f"{ratio:.1f}x slower than" if ratio > 1 else f"{1 / ratio:.1f}x faster than")
    steal = "" if cal.steal_pct is None else f", CPU steal {cal.steal_pct:.1f} %"
    return Check("host speed", True, f"{cal.cpu_ms_per_request:.2f} CPU ms per request on one core: {how} the "
                 f"reference host ({cal.reference_cpu_ms_per_request:.2f} ms){steal}", required=False)


def run_checks(settings: Settings | None = None) -> list[Check]:
    """All checks, required ones first; ``settings`` (None: the environment's, like the CLI) say where cgroups are."""
    settings = resolve(settings)
    checks = [
        Check("python >= 3.11", sys.version_info >= (3, 11), sys.version.split()[0], "install Python 3.11 or newer"),
        _tool("nginx", "nginx", paths=("/usr/sbin/nginx",)),
        _tool("ab", "apache2-utils"),
    ]
    groups = cgroups.detect(settings)
    checks.append(Check("cgroups", groups.version != "unlimited", groups.version,
                        "" if groups.version != "unlimited" else
                        "run as root (or delegate a cgroup v2 subtree to your user) for real CPU limits",
                        required=False))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    checks.append(Check("open files (hard limit)", hard == resource.RLIM_INFINITY or hard >= 10000, str(hard),
                        "raise the hard nofile limit to 10000 (limits.conf) for c >= 1000", required=False))
    checks += [
        _tool("sshd", "openssh-server", required=False, paths=("/usr/sbin/sshd",)),
        _module("paramiko", "ssh"),
        _module("google.cloud.compute_v1", "gcp"),
        _module("papermill", "notebooks"),
        _module("nbgrader", "notebooks"),
    ]
    checks.append(_host_speed(settings, checks))
    adc = os.environ.get("GOOGLE_APPLICATION_CREDENTIALS") or str(
        Path.home() / ".config/gcloud/application_default_credentials.json")
    has_adc = Path(adc).exists()
    checks.append(Check("gcp credentials", has_adc, adc if has_adc else "none configured",
                        "" if has_adc else "gcloud auth application-default login (only for --backend gcp)",
                        required=False))
    return checks


def healthy(checks: list[Check]) -> bool:
    """True when every required check passed."""
    return all(c.ok for c in checks if c.required)
