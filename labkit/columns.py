"""Deprecated: the columns live in :mod:`labkit.record`; this re-export goes once nothing imports it."""

from .record import COLUMNS, EXTRA_COLUMNS, PERCENTILES  # noqa: F401
