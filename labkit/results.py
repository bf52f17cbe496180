"""The results CSV (design §7): appending records, loading them back as a typed DataFrame.

This file is the contract between measuring (sweeps) and analysing (SLA,
charts): every row carries its full configuration, so a CSV can be re-read
without knowing how it was made. The columns and their types are the fields of
:class:`labkit.record.Measurement`; this module is that record's CSV edge.
"""

from __future__ import annotations

import csv
import glob as _glob
import logging
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd

from labkit.errors import ResultsError
from labkit.record import ALL_COLUMNS, COLUMNS, Kind, Measurement, column_kinds

log = logging.getLogger("labkit")


def append_row(path: str | os.PathLike, measurement: Measurement) -> None:
    """Append one measured point to ``path`` (header written when the file is new).

    The row is flushed and fsync'ed before returning, so an interrupted sweep
    keeps every point it measured. A new file gets every column of the record
    (:data:`~labkit.record.COLUMNS` then :data:`~labkit.record.EXTRA_COLUMNS`); an
    existing one keeps its own header (one written before the appended columns
    existed gets only the columns it has).
    """
    if not isinstance(measurement, Measurement):
        raise TypeError(f"append_row takes a labkit.record.Measurement, not {type(measurement).__name__}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.exists() or path.stat().st_size == 0
    fieldnames = ALL_COLUMNS
    if not new:
        check_line_end(path)
        with open(path, newline="") as fh:
            header = next(csv.reader(fh), None)
        if not header or tuple(header[: len(COLUMNS)]) != COLUMNS:
            raise ResultsError(str(path), None, None, "its header is not a labkit results header; not appending")
        fieldnames = tuple(header)
    cells = measurement.to_cells()
    try:
        with open(path, "a", newline="") as fh:
            writer = csv.writer(fh)
            if new:
                writer.writerow(fieldnames)
            writer.writerow([cells.get(c, "") for c in fieldnames])
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as e:  # a full disk, a read-only folder: one line naming the file
        raise ResultsError(str(path), None, None, f"cannot append the row: {e.strerror or e}") from None


def check_line_end(path: str | os.PathLike) -> None:
    """Refuse to append to ``path`` when it ends in the middle of a row (truncated by a crash or a copy).

    Every row labkit writes ends with a line end; without one, the next row would be glued
    onto the cut one. Raises :class:`ResultsError` naming the cut row.
    """
    with open(path, "rb") as fh:
        fh.seek(0, os.SEEK_END)
        if fh.tell() == 0:
            return
        fh.seek(-1, os.SEEK_END)
        if fh.read(1) == b"\n":
            return
        fh.seek(0)
        rows = sum(1 for _ in csv.reader(line.decode(errors="replace") for line in fh))
    raise ResultsError(str(path), rows - 1 if rows > 1 else None, None,
                       "ends in the middle of a row (no line end): the file was truncated; "
                       "repair or remove that row before adding to it")


# --------------------------------------------------------------------------
# Loading (design §7): strict, typed, nothing guessed.
# --------------------------------------------------------------------------

_INT_RE = r"[+-]?\d+"
_GLOB_CHARS = re.compile(r"[*?\[]")


def load_results(paths_or_glob) -> pd.DataFrame:
    """Load one or many results CSVs (design §7) into one typed DataFrame.

    ``paths_or_glob`` is a path (``str`` or ``Path``), a glob pattern such as
    ``"runs/*.csv"``, or a list of those; files are read in the given order
    (a glob's matches sorted by name) and concatenated.

    Types come from :class:`~labkit.record.Measurement`'s field types:
    text as pandas ``string``; integers that must be present (``nodes``,
    ``concurrency``, ``attempts``) as ``int64``, the other integers as nullable
    ``Int64``; numbers as ``float64`` (NaN when empty, e.g. on aborted rows);
    ``aborted`` as ``bool`` and ``cpu_limited`` as nullable ``boolean``
    (``true``/``false``, any case); ``started_at`` as UTC ``datetime64`` (a time
    without an offset is read as UTC, which is what the contract says it is).
    Appended columns a file does not have (it was written before they existed)
    are empty; columns the record does not know are kept as text, after the others.

    Why the csv module reads the text and not ``pandas.read_csv``: pandas pads a
    short row with empty cells, so a row cut by a crash would load as a row with
    empty values instead of being named; every cell is then typed here.

    Why strict: the SLA answers are only as good as the data, so a missing
    column, an unreadable or mistyped value, or a completed row lacking a
    number the SLA needs raises :class:`~labkit.errors.ResultsError` naming the
    file, the 1-based data row and the column, instead of being guessed.
    """
    files = _expand(paths_or_glob)
    frames = [_load_one(f) for f in files]
    df = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    extras = [c for c in df.columns if c not in ALL_COLUMNS]
    df = df[list(ALL_COLUMNS) + extras]
    log.debug("loaded %d rows from %d file(s)", len(df), len(files))
    return df


def _expand(spec) -> list[Path]:
    """Turn a path, glob or list of them into existing files, in order."""
    items = list(spec) if isinstance(spec, (list, tuple)) else [spec]
    if not items:
        raise ResultsError("<no paths>", None, None, "no results files given")
    files: list[Path] = []
    for item in items:
        if isinstance(item, str) and _GLOB_CHARS.search(item) and not Path(item).exists():
            matches = sorted(_glob.glob(item, recursive=True))
            if not matches:
                raise ResultsError(item, None, None, "no files match this pattern")
            files.extend(Path(m) for m in matches)
        else:
            path = Path(item)
            if not path.is_file():
                raise ResultsError(str(path), None, None, "no such file")
            files.append(path)
    return files


def _load_one(path: Path) -> pd.DataFrame:
    """Read and type one CSV; see :func:`load_results`."""
    name = str(path)
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            rows = list(csv.reader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ResultsError(name, None, None, f"cannot read: {exc}") from exc
    if not rows or not any(cell.strip() for cell in rows[0]):
        raise ResultsError(name, None, None, "empty file (no header row)")
    header = [h.strip() for h in rows[0]]
    seen: set[str] = set()
    for h in header:
        if h in seen:
            raise ResultsError(name, None, h, "column appears twice in the header")
        seen.add(h)
    for col in COLUMNS:
        if col not in seen:
            raise ResultsError(name, None, col, "missing column")
    data = rows[1:]
    # A trailing blank line is harmless; any other length mismatch is not.
    while data and data[-1] == []:
        data.pop()
    width = len(header)
    for i, r in enumerate(data, start=1):
        if len(r) != width:
            raise ResultsError(name, i, None, f"has {len(r)} fields, the header has {width}")
    # Strip the cells here, as plain strings: 5x faster than pandas' .str.strip() per column.
    data = [[cell.strip() for cell in r] for r in data]
    raw = pd.DataFrame(data, columns=header, dtype=object) if data else pd.DataFrame(
        {h: pd.Series([], dtype=object) for h in header})
    kinds = column_kinds()
    out: dict[str, pd.Series] = {}
    for col in (*ALL_COLUMNS, *(h for h in header if h not in kinds)):
        s = raw[col] if col in raw else pd.Series([""] * len(raw), dtype=object)
        out[col] = _typed(name, col, kinds.get(col), s)
    df = pd.DataFrame(out)
    done = ~df["aborted"]
    for col, kind in kinds.items():
        missing = done & df[col].isna() if kind.done else None
        if missing is not None and missing.any():
            raise ResultsError(name, _first(missing), col,
                               "empty, but the row is not aborted (ab reports it for a completed run)")
    return df


def _typed(name: str, col: str, kind: Kind | None, s: pd.Series) -> pd.Series:
    """The text cells of column ``col`` as its type; a bad cell raises, naming its row."""
    if kind is None or (kind.type is str and not kind.time):
        return s.where(s != "", None).astype("string")
    if kind.time:
        return _to_datetime(name, col, s)
    if kind.type is bool:
        return _to_bool(name, col, s, kind.required)
    if kind.type is int:
        return _to_int(name, col, s, kind)
    return _to_float(name, col, s, kind)


def _first(mask: pd.Series) -> int:
    """1-based data row of the first True in ``mask``."""
    return int(np.flatnonzero(mask.to_numpy())[0]) + 1


def _to_int(name: str, col: str, s: pd.Series, kind: Kind) -> pd.Series:
    empty = s == ""
    if kind.required and empty.any():
        raise ResultsError(name, _first(empty), col, "empty, but a value is required")
    bad = ~empty & ~s.str.fullmatch(_INT_RE).astype(bool)
    if bad.any():
        row = _first(bad)
        raise ResultsError(name, row, col, f"expected an integer, got {s.iloc[row - 1]!r}")
    values = pd.to_numeric(s.where(~empty, None)).astype("Int64")
    low = kind.min
    small = (values < low).fillna(False)
    if small.any():
        row = _first(small)
        raise ResultsError(name, row, col, f"must be >= {low}, got {s.iloc[row - 1]}")
    return values.astype("int64") if kind.required else values


def _to_float(name: str, col: str, s: pd.Series, kind: Kind) -> pd.Series:
    empty = s == ""
    values = pd.to_numeric(s.where(~empty, None), errors="coerce").astype("float64")
    bad = ~empty & (values.isna() | ~np.isfinite(values.fillna(0.0)))
    if bad.any():
        row = _first(bad)
        raise ResultsError(name, row, col, f"expected a number, got {s.iloc[row - 1]!r}")
    small = (values < kind.min).fillna(False)
    if small.any():
        row = _first(small)
        raise ResultsError(name, row, col, f"must be >= {kind.min:g}, got {s.iloc[row - 1]}")
    return values


def _to_bool(name: str, col: str, s: pd.Series, required: bool) -> pd.Series:
    low = s.str.lower()
    bad = ~low.isin(["true", "false"] if required else ["true", "false", ""])
    if bad.any():
        row = _first(bad)
        raise ResultsError(name, row, col, f"expected true or false, got {s.iloc[row - 1]!r}")
    if required:
        return (low == "true").astype(bool)
    return (low == "true").astype("boolean").where(low != "", pd.NA)


def _to_datetime(name: str, col: str, s: pd.Series) -> pd.Series:
    empty = s == ""
    values = pd.to_datetime(s.where(~empty, None), errors="coerce", utc=True, format="ISO8601")
    bad = ~empty & values.isna()
    if bad.any():
        row = _first(bad)
        raise ResultsError(name, row, col,
                           f"expected an ISO 8601 time, got {s.iloc[row - 1]!r}")
    return values


#: The handout's table headings (Lab 02, "Fill out the following table").
HANDOUT_COLUMNS = ("Concurrency", "Mean Request Time (ms)", "Longest request (ms)", "98 percentile (ms)")


def handout_table(df: pd.DataFrame, nodes: int) -> pd.DataFrame:
    """The handout's table for one node count: one row per tested concurrency.

    "Mean Request Time" is ``mean_ms`` (the mean time of one request, the
    quantity the SLA's ``mean`` clause bounds), not ab's ``c·T/n``. Repeats of a
    level are averaged over the rows ab completed; a level whose every row was
    aborted stays in the table with empty (NaN) values, so a gap is visible
    rather than silently dropped.
    """
    sub = df[df["nodes"] == nodes]
    if sub.empty:
        return pd.DataFrame({c: pd.Series([], dtype="float64") for c in HANDOUT_COLUMNS}).astype(
            {"Concurrency": "int64"})
    levels = np.sort(sub["concurrency"].unique())
    done = sub[~sub["aborted"]]
    agg = done.groupby("concurrency")[["mean_ms", "max_ms", "p98_ms"]].mean().reindex(levels)
    table = pd.DataFrame({
        "Concurrency": levels.astype("int64"),
        "Mean Request Time (ms)": agg["mean_ms"].to_numpy(),
        "Longest request (ms)": agg["max_ms"].to_numpy(),
        "98 percentile (ms)": agg["p98_ms"].to_numpy(),
    })
    return table
