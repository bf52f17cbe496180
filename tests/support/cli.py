"""``cli_run``: run ``labkit ARGS`` in the test's own process, through :func:`labkit.cli.main`.

For the CLI's refusals and one-line errors, which need no second process: the same entry
point (its exit codes and its ``labkit: error: ...`` lines), in the test's environment and
current folder, without the start-up of a Python process per call. Only the SIGTERM handler
``main`` installs is left out (it would outlive the call in the pytest process). A command
that brings up a lab or must be killed from outside still needs a real ``python -m labkit.cli``.
"""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.fixture
def cli_run(monkeypatch, capsys):
    """Factory: ``cli_run("report", path, "--sla", "mean<0")`` -> ``CompletedProcess`` (returncode, stdout, stderr)."""
    from labkit import cli

    monkeypatch.setattr(cli, "sigterm_as_interrupt", lambda: None)

    def run(*args: str) -> subprocess.CompletedProcess:
        argv = ["labkit", *map(str, args)]
        monkeypatch.setattr(sys, "argv", argv)
        capsys.readouterr()
        try:
            cli.main()
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        out, err = capsys.readouterr()
        return subprocess.CompletedProcess(argv, code, out, err)

    return run
