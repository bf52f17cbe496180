"""The labkit exception hierarchy.

One root, :class:`LabkitError`, so the CLI can turn any expected failure into a
single clear line (and a non-zero exit) while real bugs still show a traceback.
Subclasses carry structured fields so callers and tests can inspect *what* went
wrong without parsing messages.
"""

from __future__ import annotations


class LabkitError(Exception):
    """Root of every error labkit raises on purpose."""


class ConfigError(LabkitError):
    """Bad user input: an unknown machine type, a malformed list, a bad profile..."""


class MissingToolError(LabkitError):
    """A system tool or optional Python package is missing; the message says how to install it."""


class AbParseError(LabkitError):
    """ab's output lacks a field or has one that cannot be read. ``field`` names it."""

    def __init__(self, field: str, detail: str = ""):
        self.field = field
        super().__init__(f"cannot read ab field {field!r}" + (f": {detail}" if detail else ""))


class ResultsError(LabkitError):
    """A results CSV is malformed. Names the file, the row (1-based data row) and the column."""

    def __init__(self, path: str, row: int | None, column: str | None, detail: str):
        self.path, self.row, self.column = path, row, column
        where = str(path)
        if row is not None:
            where += f", row {row}"
        if column is not None:
            where += f", column {column!r}"
        super().__init__(f"{where}: {detail}")


class SlaSyntaxError(LabkitError):
    """An SLA string has a clause that is not ``METRIC OP MS``."""


class BackendError(LabkitError):
    """A backend could not start, reach or stop something."""


class CommandError(BackendError):
    """A command on a host failed. Names host, command, exit code and stderr."""

    def __init__(self, host: str, command: str, exit_code: int, stderr: str):
        self.host, self.command, self.exit_code, self.stderr = host, command, exit_code, stderr
        tail = stderr.strip().splitlines()[-1] if stderr.strip() else ""
        super().__init__(f"{host}: `{command}` exited {exit_code}" + (f": {tail}" if tail else ""))


class CommandTimeout(CommandError):
    """A remote command outlived its time limit (it was killed on the host: ``timeout -k``).

    A subclass of :class:`CommandError`, so code that handles any failed command still
    does; :func:`labkit.measure.measure` treats it like a local ab that hung.
    """


class NginxConfigError(BackendError):
    """A generated nginx configuration failed ``nginx -t``; the running one was left untouched."""


class LockError(LabkitError):
    """Another labkit run holds the lock on this folder or results file."""


class StateError(LabkitError):
    """A state file in ``.labkit/`` cannot be read (corrupt, cut short, or not labkit's).

    ``path`` is the file. ``labkit down`` still stops what it can find without it
    (see :func:`labkit.state.salvage`).
    """

    def __init__(self, path, detail: str):
        self.path, self.detail = str(path), detail
        super().__init__(f"{path}: unreadable state file ({detail}); `labkit down` stops what it can find "
                         "and moves the file aside")


class CloudError(BackendError):
    """A cloud API call failed in a way the user can act on (the message gives the advice)."""


class QuotaError(CloudError):
    """The project's quota does not allow the requested resources."""


class StockoutError(CloudError):
    """The zone has no capacity for the requested machine type right now."""
