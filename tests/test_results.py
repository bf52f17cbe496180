"""load_results and handout_table: typed loading, strict errors naming file/row/column."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from tests.support.analysis_data import make_row, write_csv, write_text
from labkit.errors import ResultsError
from labkit.record import COLUMNS, EXTRA_COLUMNS
from labkit.results import append_row, handout_table, load_results


def test_types_and_values(tmp_path):
    path = write_csv(tmp_path / "r.csv", [make_row(1, 10, mean=50.0), make_row(1, 20, aborted=True)])
    df = load_results(path)
    assert list(df.columns) == [*COLUMNS, *EXTRA_COLUMNS]
    assert str(df["nodes"].dtype) == "int64" and str(df["concurrency"].dtype) == "int64"
    assert str(df["failed"].dtype) == "Int64" and str(df["workers"].dtype) == "Int64"
    assert df["aborted"].dtype == bool and df["aborted"].tolist() == [False, True]
    assert str(df["mean_ms"].dtype) == "float64"
    assert df["mean_ms"].iloc[0] == 50.0 and pd.isna(df["mean_ms"].iloc[1])
    assert df["complete"].tolist() == [1000, 333]
    assert df["started_at"].iloc[0] == pd.Timestamp("2024-05-01T12:00:00", tz="UTC")
    assert df["machine_type"].iloc[0] == "f1-micro"


def test_started_at_offsets_become_utc(tmp_path):
    rows = [make_row(started_at="2024-05-01T14:00:00+02:00"), make_row(started_at="2024-05-01T12:00:00")]
    df = load_results(write_csv(tmp_path / "r.csv", rows))
    assert (df["started_at"] == pd.Timestamp("2024-05-01T12:00:00Z")).all()


def test_many_files_glob_list_and_extra_columns(tmp_path):
    write_csv(tmp_path / "a.csv", [make_row(1, 10)])
    write_csv(tmp_path / "b.csv", [make_row(2, 10), make_row(2, 20)])
    extra = tmp_path / "c.csv"
    text = (tmp_path / "a.csv").read_text().splitlines()
    extra.write_text("\n".join([text[0] + ",note", text[1].replace(",1,1,10,", ",1,3,10,") + ",hello"]) + "\n")
    by_glob = load_results(str(tmp_path / "*.csv"))
    assert by_glob["nodes"].tolist() == [1, 2, 2, 3]
    assert list(by_glob.columns) == [*COLUMNS, *EXTRA_COLUMNS, "note"]
    assert by_glob["note"].isna().tolist() == [True, True, True, False]
    assert by_glob["note"].iloc[3] == "hello"
    by_list = load_results([tmp_path / "b.csv", str(tmp_path / "a.csv")])
    assert by_list["nodes"].tolist() == [2, 2, 1]
    assert load_results(tmp_path / "a.csv")["concurrency"].tolist() == [10]


def test_glob_matching_nothing(tmp_path):
    with pytest.raises(ResultsError, match="no files match") as exc:
        load_results(str(tmp_path / "nothing*.csv"))
    assert exc.value.path.endswith("nothing*.csv")


def test_missing_file(tmp_path):
    with pytest.raises(ResultsError, match="no such file"):
        load_results(tmp_path / "absent.csv")


def _with_cell(tmp_path, column, value, row=2):
    """A valid 3-row CSV with one cell replaced by raw text."""
    path = write_csv(tmp_path / "bad.csv", [make_row(1, 10), make_row(1, 20), make_row(1, 50)])
    lines = path.read_text().splitlines()
    header = lines[0].split(",")
    cells = lines[row].split(",")
    cells[header.index(column)] = value
    lines[row] = ",".join(cells)
    return write_text(path, "\n".join(lines) + "\n")


@pytest.mark.parametrize("column,value,needle", [
    ("concurrency", "ten", "expected an integer, got 'ten'"),
    ("failed", "1.5", "expected an integer, got '1.5'"),
    ("mean_ms", "fast", "expected a number, got 'fast'"),
    ("p98_ms", "nan", "expected a number, got 'nan'"),
    ("aborted", "yes", "expected true or false, got 'yes'"),
    ("started_at", "yesterday", "expected an ISO 8601 time"),
    ("nodes", "0", "must be >= 1"),
    ("nodes", "", "empty, but a value is required"),
    ("max_ms", "", "empty, but the row is not aborted"),
    ("rps", "-3", "must be >= 0"),
])
def test_bad_cell_names_file_row_column(tmp_path, column, value, needle):
    path = _with_cell(tmp_path, column, value, row=2)
    with pytest.raises(ResultsError) as exc:
        load_results(path)
    err = exc.value
    assert (err.path, err.row, err.column) == (str(path), 2, column)
    assert needle in str(err)
    assert str(err).startswith(f"{path}, row 2, column {column!r}: ")


def test_missing_column(tmp_path):
    path = write_csv(tmp_path / "r.csv", [make_row()])
    lines = path.read_text().splitlines()
    drop = COLUMNS.index("p98_ms")
    lines = [",".join(c for i, c in enumerate(line.split(",")) if i != drop) for line in lines]
    write_text(path, "\n".join(lines) + "\n")
    with pytest.raises(ResultsError, match="missing column") as exc:
        load_results(path)
    assert (exc.value.row, exc.value.column) == (None, "p98_ms")


def test_wrong_field_count_and_empty_file(tmp_path):
    path = write_csv(tmp_path / "r.csv", [make_row(), make_row()])
    write_text(path, path.read_text() + "x,y\n")
    with pytest.raises(ResultsError, match=f"has 2 fields, the header has {len(COLUMNS) + len(EXTRA_COLUMNS)}") as exc:
        load_results(path)
    assert exc.value.row == 3
    empty = write_text(tmp_path / "e.csv", "")
    with pytest.raises(ResultsError, match="empty file"):
        load_results(empty)


def test_header_only_gives_empty_typed_frame(tmp_path):
    path = write_text(tmp_path / "h.csv", ",".join(COLUMNS) + "\n")
    df = load_results(path)
    assert len(df) == 0 and list(df.columns) == [*COLUMNS, *EXTRA_COLUMNS]
    assert str(df["nodes"].dtype) == "int64" and str(df["cpu_limited"].dtype) == "boolean"


def test_a_csv_from_before_the_appended_columns_loads_with_them_empty(tmp_path):
    """The reference of 2026-11-28 (tests/data/) has only cpu_limited and abort_reason after the §7 columns."""
    old = ("cpu_limited", "abort_reason")
    path = tmp_path / "old.csv"
    path.write_text(",".join([*COLUMNS, *old]) + "\n")
    append_row(path, make_row(1, 10, cpu_limited=True))  # appends keep the file's own header
    append_row(path, make_row(1, 20, aborted=True, abort_reason="apr_pollset_poll (70007)", repeat=2))
    assert path.read_text().splitlines()[0] == ",".join([*COLUMNS, *old])
    assert all(line.count(",") == len(COLUMNS) + 1 for line in path.read_text().splitlines())
    df = load_results(path)
    assert list(df.columns) == [*COLUMNS, *EXTRA_COLUMNS]
    assert df["cpu_limited"].tolist()[0] is True and df["cpu_limited"].isna().tolist() == [False, True]
    assert df["abort_reason"].tolist()[1] == "apr_pollset_poll (70007)"
    assert str(df["repeat"].dtype) == "Int64" and df["repeat"].isna().all()  # not in this file's header
    assert str(df["settle_s"].dtype) == "float64" and str(df["tester_machine_type"].dtype) == "string"
    reference = load_results(Path(__file__).parent / "data" / "reference-2026-11-28.csv")
    assert len(reference) == 65 and reference["server_cpu_s"].isna().all()
    current = load_results(Path(__file__).parents[1] / "data" / "reference.csv")  # re-measured with them
    assert len(current) == 65 and current["server_cpu_s"].notna().all() and current["settle_s"].notna().all()


def test_new_columns_are_typed_from_the_record(tmp_path):
    path = write_csv(tmp_path / "r.csv", [make_row(1, 10, repeat=1, settle_s=0.25, cpu_limited=False,
                                                   balancer_machine_type="e2-small", server_cpu_s=1.5)])
    row = load_results(path).iloc[0]
    assert (row["repeat"], row["settle_s"], row["cpu_limited"]) == (1, 0.25, False)
    assert (row["balancer_machine_type"], row["server_cpu_s"]) == ("e2-small", 1.5)
    bad = _with_cell(tmp_path, "cpu_limited", "maybe", row=1)
    with pytest.raises(ResultsError, match=r"row 1, column 'cpu_limited': expected true or false"):
        load_results(bad)
    bad = _with_cell(tmp_path, "repeat", "-1", row=3)
    with pytest.raises(ResultsError, match=r"row 3, column 'repeat': must be >= 0"):
        load_results(bad)


def test_append_row_takes_a_measurement(tmp_path):
    with pytest.raises(TypeError, match="Measurement"):
        append_row(tmp_path / "r.csv", {"nodes": 1, "concurrency": 10})
    assert not (tmp_path / "r.csv").exists()


def test_handout_table(tmp_path):
    rows = [make_row(1, 20, mean=30.0, p98=60.0, max_ms=90.0),
            make_row(1, 10, mean=10.0, p98=20.0, max_ms=40.0),
            make_row(1, 10, mean=20.0, p98=30.0, max_ms=60.0),   # repeat: averaged
            make_row(1, 50, aborted=True),                        # all aborted: NaN, still listed
            make_row(2, 10, mean=5.0)]
    df = load_results(write_csv(tmp_path / "r.csv", rows))
    t = handout_table(df, 1)
    assert list(t.columns) == ["Concurrency", "Mean Request Time (ms)", "Longest request (ms)",
                               "98 percentile (ms)"]
    assert t["Concurrency"].tolist() == [10, 20, 50]
    assert t["Mean Request Time (ms)"].tolist()[:2] == [15.0, 30.0]
    assert t["Longest request (ms)"].tolist()[:2] == [50.0, 90.0]
    assert t["98 percentile (ms)"].tolist()[:2] == [25.0, 60.0]
    assert t.iloc[2, 1:].isna().all()
    assert handout_table(df, 7).empty
