"""`labkit parse-ab FILE --json` gives the numbers ab itself printed, for each captured run.

The expected values are read here straight from the saved ab output with a
few independent regular expressions (not with labkit's parser), so the CLI is
checked against what ab printed, not against itself.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

AB = Path(__file__).parent / "data" / "ab"


def _printed(text: str, label: str) -> float:
    return float(re.search(rf"^{re.escape(label)}:\s+([\d.]+)", text, re.M).group(1))


def _parse_ab(*args) -> dict:
    res = subprocess.run([sys.executable, "-m", "labkit.cli", "parse-ab", *map(str, args), "--json"],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


@pytest.mark.parametrize("name", ["success", "non2xx", "length", "keepalive"])
def test_report_fields_match_what_ab_printed(name):
    text = (AB / f"{name}.stdout").read_text()
    row = _parse_ab(AB / f"{name}.stdout")
    assert row["complete"] == _printed(text, "Complete requests")
    assert row["failed"] == _printed(text, "Failed requests")
    non2xx = re.search(r"^Non-2xx responses:\s+(\d+)", text, re.M)
    assert row["non_2xx"] == (int(non2xx.group(1)) if non2xx else 0)
    assert row["rps"] == _printed(text, "Requests per second")
    assert row["time_taken_s"] == _printed(text, "Time taken for tests")
    assert row["ab_mean_ms"] == float(re.search(r"^Time per request:\s+([\d.]+) \[ms\] \(mean\)$", text, re.M).group(1))
    total = re.search(r"^Total:\s+\d+\s+(\d+)", text, re.M)
    assert row["mean_ms"] == float(total.group(1))  # without -g: Connection Times "Total" mean
    assert row["connect_mean_ms"] == float(re.search(r"^Connect:\s+\d+\s+(\d+)", text, re.M).group(1))
    assert row["p98_ms"] == float(re.search(r"^\s+98%\s+(\d+)", text, re.M).group(1))
    assert row["max_ms"] == float(re.search(r"^\s+100%\s+(\d+) \(longest request\)", text, re.M).group(1))
    assert row["aborted"] is False


@pytest.mark.parametrize("name", ["success", "length"])
def test_percentiles_file_gives_the_exact_values(name):
    exact = dict(line.split(",") for line in (AB / f"{name}.e.csv").read_text().splitlines()[1:])
    row = _parse_ab(AB / f"{name}.stdout", "--percentiles", AB / f"{name}.e.csv")
    assert row["p50_ms"] == float(exact["50"])
    assert row["p98_ms"] == float(exact["98"])
    assert row["max_ms"] == float(exact["100"])


def test_an_aborted_run_is_an_aborted_row(tmp_path):
    combined = tmp_path / "timeout.txt"
    combined.write_text((AB / "timeout.stdout").read_text() + (AB / "timeout.stderr").read_text())
    row = _parse_ab(combined)
    assert row["aborted"] is True
    assert "70007" in row["abort_reason"]
    assert row["mean_ms"] is None and row["p98_ms"] is None
    stderr = (AB / "timeout.stderr").read_text() + (AB / "timeout.stdout").read_text()
    done = re.search(r"Total of (\d+) requests completed", stderr)
    assert row["complete"] == (int(done.group(1)) if done else 0)


def test_a_file_that_is_not_ab_output_is_one_clear_error(tmp_path):
    junk = tmp_path / "junk.txt"
    junk.write_text("hello\n")
    res = subprocess.run([sys.executable, "-m", "labkit.cli", "parse-ab", str(junk), "--json"],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 2
    assert res.stderr.startswith("labkit: error: ") and len(res.stderr.strip().splitlines()) == 1
