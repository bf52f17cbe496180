"""One measured point: the typed record whose fields *are* the results-CSV columns (design §7).

:class:`Measurement` is the schema, in one place (pyperf's ``Run``, PerfKitBenchmarker's
result object): the ab parsers build one, :func:`labkit.measure.measure` returns one, the
sweep adds the point's configuration with :meth:`Measurement.replace`, and
:func:`labkit.results.append_row` writes it. :func:`labkit.results.load_results` reads the
CSV back as a DataFrame whose dtypes come from these field types (:func:`column_kinds`),
so a new column is one line here.

Importable without pandas: measuring code (``labkit bench``, one process per level) must
not pay pandas' import (0.2-1 s on a busy 2-core machine) just to know the columns.
"""

from __future__ import annotations

import dataclasses
import numbers
import typing
from typing import NamedTuple

from labkit.errors import ConfigError

PERCENTILES = (50, 66, 75, 80, 90, 95, 98, 99)


def _col(default=None, **meta):
    """A field with loader hints: ``min`` (smallest valid value), ``done`` (a row that ab
    completed must hold it: the SLA needs it), ``time`` (ISO 8601 text, loaded as UTC times)."""
    return dataclasses.field(default=default, metadata=meta)


@dataclasses.dataclass(frozen=True)
class Measurement:
    """One row of the results CSV; ``None`` is an empty cell. See design §7 for each column.

    Values are checked against the field types when the record is built (numpy scalars
    become Python ones, ints are accepted for floats), so a wrongly typed value is an error
    where it is made, not a corrupt cell found later.
    """

    # -- design §7 columns, in this order -------------------------------------------------
    run_id: str | None = None
    started_at: str | None = _col(time=True)  # ISO 8601 UTC
    backend: str | None = None
    machine_type: str | None = None
    server: str | None = None
    workers: int | None = None
    nodes: int = _col(1, min=1)
    concurrency: int = _col(1, min=1)
    requests: int | None = None
    complete: int | None = _col(done=True)
    failed: int | None = _col(done=True)
    non_2xx: int | None = _col(done=True)
    aborted: bool = False
    attempts: int = _col(1, min=1)
    time_taken_s: float | None = None
    rps: float | None = _col(done=True)
    mean_ms: float | None = _col(done=True)
    ab_mean_ms: float | None = None
    p50_ms: float | None = _col(done=True)
    p66_ms: float | None = _col(done=True)
    p75_ms: float | None = _col(done=True)
    p80_ms: float | None = _col(done=True)
    p90_ms: float | None = _col(done=True)
    p95_ms: float | None = _col(done=True)
    p98_ms: float | None = _col(done=True)
    p99_ms: float | None = _col(done=True)
    max_ms: float | None = _col(done=True)
    connect_mean_ms: float | None = None
    # -- appended columns (design §7, second table), in this order ------------------------
    cpu_limited: bool | None = None
    abort_reason: str | None = None
    repeat: int | None = None
    settle_s: float | None = None
    balancer_machine_type: str | None = None
    tester_machine_type: str | None = None
    server_cpu_s: float | None = None
    balancer_cpu_s: float | None = None
    tester_cpu_s: float | None = None
    #: how many ab processes (or tester machines) measured the point, merged from their -g data
    testers: int | None = _col(min=1)
    #: the host's calibration: the service's CPU ms per request on one unconstrained core
    host_cpu_ms_per_request: float | None = None
    #: the host's CPU steal (%) during ab's run, where the kernel reports it
    steal_pct: float | None = None
    #: whether shared-core bursting was emulated for the servers' machine type
    burst: bool | None = None
    #: the factor every role's CPU quota was multiplied by (``--calibrate reference``; 1: the type's share)
    cpu_scale: float | None = None

    def __post_init__(self):
        for name, kind in column_kinds().items():
            value = getattr(self, name)
            checked = _check(name, kind, value)
            if checked is not value:
                object.__setattr__(self, name, checked)

    def replace(self, **changes) -> Measurement:
        """A copy with some fields changed (:func:`dataclasses.replace`)."""
        return dataclasses.replace(self, **changes)

    def to_json(self) -> dict:
        """Every column, in order, as JSON values (``None`` for an empty cell)."""
        return {name: getattr(self, name) for name in ALL_COLUMNS}

    def to_cells(self) -> dict[str, str]:
        """Every column as CSV text: empty for None, ``true``/``false``, floats to 0.001."""
        return {name: _cell(getattr(self, name)) for name in ALL_COLUMNS}


class Kind(NamedTuple):
    """What the loader needs to know about one column, read off its field."""

    type: type  # str, int, float or bool
    required: bool  # the field's type does not admit None
    min: float | None  # smallest valid value (numbers), None for text and bools
    done: bool  # a completed (not aborted) row must hold a value
    time: bool  # ISO 8601 text, loaded as UTC times


_KINDS: dict[str, Kind] = {}


def column_kinds() -> dict[str, Kind]:
    """Column name -> :class:`Kind`, in CSV order, derived from :class:`Measurement`'s fields."""
    if not _KINDS:
        hints = typing.get_type_hints(Measurement)
        for f in dataclasses.fields(Measurement):
            args = [a for a in typing.get_args(hints[f.name]) if a is not type(None)]
            base = args[0] if args else hints[f.name]
            low = f.metadata.get("min", 0) if base in (int, float) else None
            _KINDS[f.name] = Kind(base, not args, low, f.metadata.get("done", False), f.metadata.get("time", False))
    return _KINDS


def _check(name: str, kind: Kind, value):
    """``value`` as the field's type (numpy scalars made Python ones); raise when it is not."""
    if value is None:
        if kind.required:
            raise ConfigError(f"measurement field {name} needs a value")
        return None
    if kind.type is bool and (isinstance(value, bool) or getattr(getattr(value, "dtype", None), "kind", "") == "b"):
        return bool(value)
    if kind.type is int and isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return value if type(value) is int else int(value)
    if kind.type is float and isinstance(value, numbers.Real) and not isinstance(value, bool):
        return value if type(value) is float else float(value)
    if kind.type is str and isinstance(value, str):
        return value
    raise ConfigError(f"measurement field {name} must be {kind.type.__name__}, not {value!r}")


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(round(value, 3))
    return str(value)


ALL_COLUMNS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(Measurement))
#: The design §7 columns, in order (every results CSV has them).
COLUMNS: tuple[str, ...] = ALL_COLUMNS[: ALL_COLUMNS.index("connect_mean_ms") + 1]
#: The appended columns, in order; CSVs written before they existed load with them empty.
EXTRA_COLUMNS: tuple[str, ...] = ALL_COLUMNS[len(COLUMNS):]
