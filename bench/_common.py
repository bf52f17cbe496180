"""Shared helpers for the benchmarks in bench/: machine details, medians, RESULTS.md sections.

Every benchmark script prints its figures and replaces its own section of
``bench/RESULTS.md`` (between ``<!-- begin NAME -->`` and ``<!-- end NAME -->``
markers), so the scripts can be run one at a time or all together
(``python bench/run_all.py``) without clobbering each other's results.

Local-backend runs use a private state folder and loopback /24 so they never
collide with other labs on the same machine: ``LABKIT_STATE_DIR`` (default: a
fresh temp dir) and ``LABKIT_LOCAL_NET`` (default ``127.0.77``).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
RESULTS = BENCH_DIR / "RESULTS.md"
NOTES_DIR = BENCH_DIR / "notes"  # <section>.md: the interpretation appended to that section
PYTHON = sys.executable
LABKIT = str(Path(sys.executable).with_name("labkit"))
DEFAULT_NET = "127.0.77"


def setup_env() -> dict:
    """Make sure local-backend runs are private to this benchmark; return the env to pass on."""
    if not os.environ.get("LABKIT_STATE_DIR"):
        os.environ["LABKIT_STATE_DIR"] = tempfile.mkdtemp(prefix="labkit-bench-")
    os.environ.setdefault("LABKIT_LOCAL_NET", DEFAULT_NET)
    os.environ.setdefault("NO_GCE_CHECK", "true")
    os.environ.setdefault("GCE_METADATA_HOST", "127.0.0.1:9")
    return dict(os.environ)


def median(values) -> float:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else float("nan")


def spread(values) -> str:
    """``min–max`` of the runs, for the tables (shows how noisy the machine was)."""
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    return f"{fmt(min(values))}–{fmt(max(values))}"


def fmt(v, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and v != v):
        return "-"
    if isinstance(v, int):
        return str(v)
    if abs(v) >= 100:
        return f"{v:.0f}"
    return f"{v:.{digits}g}"


def _cmd(argv) -> str:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "?"


def machine_details() -> dict:
    cpu = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = "?"
    with contextlib.suppress(OSError):
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f"{kb / 1024**2:.1f} GiB"
    ab_version = _cmd(["ab", "-V"]).splitlines()[0] if shutil.which("ab") else "missing"
    nginx = subprocess.run(["nginx", "-v"], capture_output=True, text=True).stderr.strip() if shutil.which(
        "nginx") else "missing"
    cg = "v2" if Path("/sys/fs/cgroup/cgroup.controllers").exists() else "v1"
    with contextlib.suppress(OSError):
        load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    return {
        "cpu": f"{cpu} ({os.cpu_count()} cores)", "memory": mem,
        "kernel": platform.release(), "os": _cmd(["sh", "-c", ". /etc/os-release && echo $PRETTY_NAME"]),
        "python": platform.python_version(), "ab": ab_version, "nginx": nginx, "cgroups": cg,
        "load average (at write)": load,
        "labkit commit": _cmd(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"]),
    }


def concurrent_load_note() -> str:
    """A line saying whether the long reference sweep was running alongside (it shares the cores)."""
    if Path("/tmp/ref/sweep.log").exists() and not Path("/tmp/ref/done").exists():
        return ("**Measured while a `full`-profile reference sweep (another engineer's, 127.0.9.x) "
                "was running on the same 2 cores**: absolute figures are depressed and noisier; "
                "ratios were measured interleaved to cancel most of it.")
    return "Measured with no long sweep running (other engineers' short test runs may have overlapped)."


def header() -> str:
    d = machine_details()
    lines = ["# labkit benchmarks (bench/)", "",
             "Each section is written by its own script (`python bench/<script>.py`; all of them: "
             "`make bench` = `python bench/run_all.py`). Every figure is the median of the runs "
             "given in its table (min–max alongside), measured on:", ""]
    lines += [f"- **{k}**: {v}" for k, v in d.items()]
    lines += ["", "Local-backend runs use `LABKIT_LOCAL_NET=127.0.77` and a private `LABKIT_STATE_DIR`; "
              "other engineers' test runs shared this 2-core machine, which is why every figure is a "
              "median and every ratio was measured interleaved (A, B, A, B, …) in one run.", ""]
    return "\n".join(lines)


def write_section(name: str, body: str) -> None:
    """Replace (or append) the ``name`` section of RESULTS.md; refresh the header."""
    begin, end = f"<!-- begin {name} -->", f"<!-- end {name} -->"
    text = RESULTS.read_text() if RESULTS.exists() else ""
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    notes = NOTES_DIR / f"{name}.md"
    if notes.exists():  # the hand-written interpretation, kept across re-runs
        body = body.rstrip() + "\n\n<!-- notes: bench/notes/" + f"{name}.md -->\n" + notes.read_text().rstrip()
    block = f"{begin}\n{body.rstrip()}\n\n_Last run {stamp}. {concurrent_load_note()}_\n{end}"
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _: block, text)
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    hdr_end = "<!-- end header -->"
    if hdr_end in text:
        text = text[text.index(hdr_end) + len(hdr_end):]
    sections = sorted(re.findall(r"<!-- begin (\S+) -->.*?<!-- end \1 -->", text, re.S), key=_order)
    blocks = {n: re.search(re.escape(f"<!-- begin {n} -->") + r".*?" + re.escape(f"<!-- end {n} -->"),
                           text, re.S).group(0) for n in sections}
    out = header() + "\n" + hdr_end + "\n\n" + "\n\n".join(blocks[n] for n in sections) + "\n"
    RESULTS.write_text(out)
    print(f"wrote section {name!r} of {RESULTS}")


ORDER = ["fixes", "overhead", "horizontal", "vertical", "efficiency", "analysis", "fullrun", "startup", "capacity",
         "settle", "pinning", "grade", "testers", "labs", "quicklab", "suite"]


def _order(name: str) -> int:
    return ORDER.index(name) if name in ORDER else len(ORDER)


def table(headers: list[str], rows: list[list]) -> str:
    out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    for r in rows:
        out.append("| " + " | ".join(fmt(c) if not isinstance(c, str) else c for c in r) + " |")
    return "\n".join(out)


class Timer:
    def __enter__(self):
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.s = time.perf_counter() - self.t0
        return False


def command_line() -> str:
    """How this script was invoked, to paste into RESULTS.md."""
    rel = os.path.relpath(sys.argv[0], ROOT)
    return " ".join([".venv/bin/python", rel, *sys.argv[1:]])


# -- before/after: run a previous revision of labkit side by side with the current one ----------
_DROP_EDITABLE = ("import sys\n"
                  "sys.meta_path = [f for f in sys.meta_path if 'editable' not in repr(f).lower()]\n"
                  "sys.path.insert(0, {path!r})\n")


def export_revision(rev: str) -> Path:
    """``git archive`` labkit/, service/ and notebooks/ at ``rev`` into a temp dir (no git state touched).

    The dir also gets a ``sitecustomize.py`` that drops the editable install's import hook, so
    any Python started with ``tree_env(dir)`` - including notebook kernels and servers - imports
    labkit from ``dir``.
    """
    dest = Path(tempfile.mkdtemp(prefix=f"labkit-rev-{rev[:8]}-"))
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "labkit", "service", "notebooks"],
                             capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    (dest / "sitecustomize.py").write_text(
        "import sys\n"
        "sys.meta_path = [f for f in sys.meta_path if 'editable' not in repr(f).lower()]\n"
        f"sys.path.insert(0, {str(dest)!r})  # ahead of the current directory too\n")
    return dest


def tree_env(tree: Path | None) -> dict:
    """The environment that makes every Python child import labkit from ``tree`` (None: the installed one)."""
    env = setup_env()
    if tree is not None:
        env = {**env, "PYTHONPATH": str(tree)}
    return env


def prelude(path: Path | None) -> str:
    """Python code that makes ``import labkit`` load the tree at ``path`` (None: the installed one).

    The editable install's import hook comes before ``sys.path`` and would win over
    PYTHONPATH, so it is dropped from ``sys.meta_path`` first.
    """
    return _DROP_EDITABLE.format(path=str(path)) if path else ""


def labkit_argv(path: Path | None) -> list[str]:
    """argv prefix running the ``labkit`` CLI of the tree at ``path`` (None: the installed script)."""
    if path is None:
        return [LABKIT]
    return [PYTHON, "-c", prelude(path) + "from labkit.cli import main\nmain()"]


def parser(doc: str, section: str, runs: int = 3, **options) -> argparse.ArgumentParser:
    """A benchmark's argument parser: its docstring's first line, ``--runs``, ``--section`` (the
    RESULTS.md section it writes) and one ``--name`` per keyword (``machine_type`` is
    ``--machine-type``), typed by its default. Scripts add their own special options to it."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--runs", type=int, default=runs)
    ap.add_argument("--section", default=section, help="RESULTS.md section to write")
    for name, default in options.items():
        ap.add_argument("--" + name.replace("_", "-"), type=type(default), default=default)
    return ap


def publish(section: str, body: str, command: bool = True) -> None:
    """Print a section's body, ending with the command that made it (unless ``command`` is False:
    the body quotes it itself), and write it into RESULTS.md (see :func:`write_section`)."""
    if command:
        body = body.rstrip("\n") + f"\n\nCommand: `{command_line()}`"
    print(body)
    write_section(section, body)
