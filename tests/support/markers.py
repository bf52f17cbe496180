"""What a test needs beyond Python, as markers set from the fixtures it uses; and a guard for ``make test-fast``.

Markers (registered in pyproject.toml, ``--strict-markers``):

``nginx`` / ``ab``  the test starts nginx or ApacheBench (a local lab, a sweep, the balancer)
``sshd``            the test talks to a real OpenSSH sshd on loopback
``browser``         the test drives Chromium (Voilà dashboard)
``kernel``          the test runs Jupyter kernels (papermill, nbclient, nbgrader autograde)

They are applied from the fixtures a test uses (:data:`FIXTURE_MARKS`), so a new test
that takes ``local_env`` or ``sshd`` is marked without doing anything; a test that starts
one of these tools itself carries the marker in its module (``pytestmark``) or on itself.

``make test-fast`` deselects all five (``-m "not (nginx or ab or sshd or browser or
kernel)"``) and sets ``LABKIT_TEST_FAST=1``, which arms :func:`_guard`: a test that starts
one of those programs from the pytest process without its marker fails, naming the program
and the marker it needs, so the fast subset cannot quietly grow slow again.
"""

from __future__ import annotations

import os
import subprocess

import pytest

#: Fixture name -> the markers every test using it gets.
FIXTURE_MARKS = {
    "local_env": ("nginx", "ab"),  # a local lab: service processes, nginx, ab
    "lab_report": ("nginx", "ab", "kernel"),  # the session's tiny lab, run through the notebooks
    "sshd": ("sshd",),
    "release": ("kernel",),  # nbgrader builds the student versions
    "release_dir": ("kernel",),
    "graded": ("kernel",),  # nbgrader autograde over submissions
    "host_cal": ("ab",),  # test_calibration: the host's speed, measured with ab against the real service
}
FAST = "not (nginx or ab or sshd or browser or kernel)"
# Program (argv[0]'s basename, or a module run with -m) -> the marker a test starting it needs.
_PROGRAMS = {"nginx": "nginx", "ab": "ab", "sshd": "sshd", "chromium": "browser", "chrome": "browser",
             "headless_shell": "browser", "ipykernel_launcher": "kernel", "nbgrader": "kernel", "voila": "kernel"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        for fixture in getattr(item, "fixturenames", ()):
            for name in FIXTURE_MARKS.get(fixture, ()):
                item.add_marker(name)


def _needs(argv) -> str | None:
    """The program in ``argv`` a fast test may not start, or None."""
    if isinstance(argv, (str, bytes, os.PathLike)):
        argv = [argv]
    argv = list(argv)
    if "run-driver" in map(os.fsdecode, argv):
        return "chromium"  # Playwright's driver, which starts the browser
    words = [os.path.basename(os.fsdecode(a)) for a in argv[:4]]
    if len(argv) == 2 and words[1] in ("-v", "-V", "--version"):
        return None  # a version query (provenance, doctor) only needs the program installed
    if words and words[0] in _PROGRAMS:
        return words[0]
    for i, w in enumerate(words[:-1]):
        if w == "-m" and words[i + 1] in _PROGRAMS:
            return words[i + 1]
    return None


@pytest.fixture(autouse=True)
def _guard(request, monkeypatch):
    """Under LABKIT_TEST_FAST=1: fail a test that starts nginx, ab, sshd, Chromium or a kernel unmarked."""
    if os.environ.get("LABKIT_TEST_FAST") != "1":
        yield
        return
    real = subprocess.Popen.__init__

    def guarded(self, args, *a, **kw):
        program = _needs(args)
        if program and not request.node.get_closest_marker(_PROGRAMS[program]):
            pytest.fail(f"{request.node.nodeid} starts {program} but is not marked "
                        f"@pytest.mark.{_PROGRAMS[program]} (see tests/support/markers.py)", pytrace=False)
        real(self, args, *a, **kw)

    monkeypatch.setattr(subprocess.Popen, "__init__", guarded)
    yield
