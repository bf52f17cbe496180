"""The sandbox a student's notebook runs in while it is graded: bubblewrap around the kernel.

``nbgrader autograde`` executes the student's cells in a Jupyter kernel; without a
sandbox that kernel runs as the instructor and can rewrite the gradebook, read SSH
keys and cloud credentials into its feedback, edit other students' files and leave
processes behind (issue 21). Here nbgrader itself (trusted: it writes the gradebook)
runs as usual, but the *kernel* it starts is wrapped in `bubblewrap
<https://github.com/containers/bubblewrap>`_ (Debian's ``bubblewrap``) by a
kernelspec (:func:`write_kernelspec`):

- **no network**: a network namespace of its own (only its own loopback); the kernel
  talks to nbgrader over Unix sockets (``KernelManager.transport = "ipc"``) in a
  private runtime folder;
- **no home, nothing else of the machine**: a fresh root holding only the system's
  programs and libraries (``/usr``, ``/lib*``, ``/bin``, ``/sbin``, the few ``/etc``
  files Python needs), read-only, plus read-only the Python that runs labkit and
  labkit's own package; ``$HOME`` and ``/tmp`` are small empty tmpfs;
- **only that student's copy writable**: the course's ``autograded/<student>/`` and
  the runtime folder (its sockets); the gradebook, the other submissions and the
  instructor's files are not in the sandbox at all;
- **limits**: file size (``RLIMIT_FSIZE``), CPU seconds and address space per process,
  a small tmpfs, nbgrader's per-cell timeout and a wall-clock limit for the whole
  submission (:data:`LIMITS`); its own PID namespace, so whatever the notebook starts
  dies with the kernel, and ``--die-with-parent``.

What is *not* isolated: the kernel still reads the system's programs and libraries,
the Python installation and labkit's source (all read-only), may use up to its CPU and
memory limits, and decides its own cells' outputs — so the hidden answer checks are
re-run by the grader in a fresh process on the literal submitted CSV
(:mod:`labkit.grading.verify`), never trusted from the kernel.
"""

from __future__ import annotations

import dataclasses
import json
import os
import resource
import shutil
import sys
from pathlib import Path

from labkit.errors import MissingToolError

KERNEL_NAME = "labkit-sandbox"


@dataclasses.dataclass(frozen=True)
class Limits:
    """What one submission may use while it is graded."""

    file_bytes: int = 64 * 2**20  # largest file the kernel may write (RLIMIT_FSIZE)
    tmp_bytes: int = 64 * 2**20  # size of its /tmp and $HOME
    cpu_seconds: int = 300  # CPU seconds per process (RLIMIT_CPU)
    memory_bytes: int = 4 * 2**30  # address space per process (RLIMIT_AS)
    cell_seconds: int = 180  # nbgrader's per-cell timeout
    wall_seconds: int = 900  # the whole submission (nbgrader autograde + feedback)
    submission_bytes: int = 50 * 2**20  # a submission folder larger than this is not graded


LIMITS = Limits()

#: the system folders the kernel sees (read-only; those missing on this system are skipped)
SYSTEM = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
#: the /etc files Python, numpy and matplotlib read (never /etc/ssh, /etc/shadow...)
ETC = ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/passwd", "/etc/group",
       "/etc/nsswitch.conf", "/etc/localtime", "/etc/alternatives", "/etc/fonts", "/etc/mime.types",
       "/etc/ssl/certs")


def bwrap() -> str:
    """The bubblewrap binary, or a one-line MissingToolError saying how to install it."""
    found = shutil.which("bwrap") or next((p for p in ("/usr/bin/bwrap", "/bin/bwrap") if os.access(p, os.X_OK)),
                                          None)  # Debian's place, also when PATH was narrowed
    if not found:
        raise MissingToolError("grading runs each submission in a bubblewrap sandbox and bwrap is not installed: "
                               "run `sudo apt-get install -y bubblewrap` (or `make grade`)")
    return found


def python_paths() -> list[str]:
    """The read-only folders the kernel needs to run labkit: this Python, its venv, labkit's package."""
    import labkit

    paths = {os.path.realpath(sys.base_prefix), os.path.realpath(sys.prefix),
             os.path.realpath(Path(labkit.__file__).parent)}
    exe = os.path.realpath(sys.executable)
    if not any(exe.startswith(p + os.sep) for p in paths):
        paths.add(os.path.dirname(exe))
    return sorted(paths)


def bwrap_argv(writable: list[Path], limits: Limits = LIMITS) -> list[str]:
    """The bubblewrap command line around a kernel: see the module docstring for what it allows."""
    argv = [bwrap(), "--unshare-all", "--die-with-parent", "--new-session", "--cap-drop", "ALL",
            "--hostname", "grading", "--dev", "/dev", "--proc", "/proc"]
    for path in SYSTEM:
        if os.path.islink(path):
            argv += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            argv += ["--ro-bind", path, path]
    for path in ETC:
        argv += ["--ro-bind-try", path, path]
    argv += ["--size", str(limits.tmp_bytes), "--tmpfs", "/tmp", "--dir", "/tmp/home"]
    for path in python_paths():
        argv += ["--ro-bind", path, path]
    for path in writable:
        real = os.path.realpath(path)
        argv += ["--bind", real, real]
    argv += ["--setenv", "HOME", "/tmp/home", "--setenv", "TMPDIR", "/tmp", "--setenv", "MPLCONFIGDIR", "/tmp/home",
             "--setenv", "IPYTHONDIR", "/tmp/home/.ipython", "--unsetenv", "JUPYTER_RUNTIME_DIR",
             "--unsetenv", "JPY_PARENT_PID",  # its parent is the sandbox's init: --die-with-parent instead
             "--remount-ro", "/"]  # the sandbox's own root (and the folders made for the binds) read-only
    return argv


def write_kernelspec(jupyter_dir: Path, writable: list[Path], limits: Limits = LIMITS) -> Path:
    """A kernelspec ``labkit-sandbox`` in ``jupyter_dir/kernels``: this Python's ipykernel inside bubblewrap.

    Point nbgrader at it with ``JUPYTER_PATH=jupyter_dir`` and
    ``ExecutePreprocessor.kernel_name`` (:func:`nbgrader_settings`).
    """
    spec = Path(jupyter_dir) / "kernels" / KERNEL_NAME
    spec.mkdir(parents=True, exist_ok=True)
    argv = [*bwrap_argv(writable, limits), "--", sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(json.dumps({"argv": argv, "display_name": "labkit grading sandbox",
                                                  "language": "python"}, indent=1))
    return spec


def nbgrader_config(runtime_dir: Path, limits: Limits = LIMITS) -> str:
    """Lines for a course's ``nbgrader_config.py`` that run every notebook in the sandbox kernel, talking
    to it over Unix sockets in ``runtime_dir`` (it has no network of its own to reach nbgrader's)."""
    return (f"\n# labkit grade: every notebook runs in the bubblewrap sandbox (labkit.grading.sandbox)\n"
            f"c.Execute.kernel_name = {KERNEL_NAME!r}\n"
            f"c.KernelManager.transport = 'ipc'\n"
            f"c.KernelManager.ip = {str(Path(runtime_dir) / 'kernel')!r}\n"
            f"c.KernelManager.connection_file = {str(Path(runtime_dir) / 'kernel.json')!r}\n"
            f"c.Execute.timeout = {int(limits.cell_seconds)}\n")


def limit_preexec(limits: Limits = LIMITS):
    """A ``preexec_fn`` setting the per-process limits nbgrader and its sandboxed kernel inherit."""

    def apply():
        os.setsid()
        for what, value in ((resource.RLIMIT_FSIZE, limits.file_bytes), (resource.RLIMIT_CPU, limits.cpu_seconds),
                            (resource.RLIMIT_AS, limits.memory_bytes)):
            _, hard = resource.getrlimit(what)
            value = value if hard == resource.RLIM_INFINITY else min(value, hard)
            resource.setrlimit(what, (value, hard))

    return apply


def unsafe_entries(folder: Path, limits: Limits = LIMITS) -> list[str]:
    """Why ``folder`` (a submission) must not be copied: symlinks, special files, too many bytes.

    Walks without following links: a ``lab02/x -> /`` is reported, never entered.
    """
    problems, total = [], 0
    for root, dirs, files in os.walk(folder, followlinks=False):
        for name in dirs + files:
            path = Path(root) / name
            st = path.lstat()
            rel = path.relative_to(folder)
            if path.is_symlink():
                problems.append(f"{rel} is a symbolic link")
            elif not (path.is_dir() or path.is_file()):
                problems.append(f"{rel} is not a regular file")
            else:
                total += st.st_size if path.is_file() else 0
    if total > limits.submission_bytes:
        problems.append(f"the folder holds {total / 2**20:.0f} MiB (limit {limits.submission_bytes / 2**20:.0f} MiB)")
    return problems
