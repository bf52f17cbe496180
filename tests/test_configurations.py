"""One configuration at a time: a lab's results.csv holds notebook 03's machines beside the handout's."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.support.analysis_data import make_row, write_csv
from labkit.analysis.configurations import config_labels, select
from labkit.errors import ConfigError
from labkit.results import load_results

PART2 = "max<=1000 mean<300 p98<400"


def _lab_csv(tmp_path):
    """The handout's f1-micro Flask at 1 and 2 nodes, and 03's e2-standard-2 (Flask, gunicorn ×5) at one node."""
    rows = [make_row(1, 10, mean=50.0, rps=180.0), make_row(1, 50, mean=260.0, rps=190.0),
            make_row(2, 10, mean=30.0, rps=330.0, balancer_machine_type="f1-micro"),
            make_row(2, 50, mean=140.0, rps=350.0, balancer_machine_type="f1-micro"),
            make_row(1, 10, mean=8.0, rps=1200.0, machine_type="e2-standard-2", tester_machine_type="e2-standard-2"),
            make_row(1, 50, mean=40.0, rps=1390.0, machine_type="e2-standard-2", server="gunicorn", workers=5)]
    return write_csv(tmp_path / "results.csv", rows)


def test_labels_name_machine_server_and_gunicorns_workers(tmp_path):
    df = load_results(_lab_csv(tmp_path))
    assert config_labels(df).tolist() == ["f1-micro/flask"] * 4 + ["e2-standard-2/flask", "e2-standard-2/gunicorn×5"]


def test_select_picks_the_configuration_behind_the_balancer_and_says_what_it_left(tmp_path):
    df = load_results(_lab_csv(tmp_path))
    rows, note = select(df)
    assert len(rows) == 4 and set(rows["machine_type"]) == {"f1-micro"}
    assert note == ("analysed f1-micro/flask, the configuration measured behind the balancer; left out 2 row(s) of "
                    "other configurations (e2-standard-2/flask: 1 row, e2-standard-2/gunicorn×5: 1 row), e.g. "
                    "notebook 03's vertical scaling")
    rows, note = select(df, "e2-standard-2", "gunicorn")
    assert rows["rps"].tolist() == [1390.0] and "left out 5 row(s)" in note
    single = df[df["machine_type"] == "f1-micro"]
    rows, note = select(single)
    assert note == "" and len(rows) == 4  # one configuration: every row, nothing to say


def test_select_refuses_what_it_cannot_decide_in_one_line(tmp_path):
    df = load_results(_lab_csv(tmp_path))
    with pytest.raises(ConfigError, match=r"^no e2-medium/\* rows in these results \(they hold: f1-micro/flask: 4 rows"):
        select(df, "e2-medium")
    with pytest.raises(ConfigError, match=r"^e2-standard-2/\* still matches 2 configurations .*: give both options$"):
        select(df, "e2-standard-2")
    one_node = df[df["nodes"] == 1]
    with pytest.raises(ConfigError, match=r"^these results hold 3 configurations .*: choose one with --machine-type "
                                          r"and --server$"):
        select(one_node)


def test_labkit_report_on_a_labs_results_answers_for_the_handouts_rows(tmp_path):
    """Before: the e2-standard-2's 1,200 req/s counted as a repeat of the f1-micro's c=10 (per server 1,200)."""
    csv = _lab_csv(tmp_path)
    run = lambda *extra: subprocess.run(  # noqa: E731
        [sys.executable, "-m", "labkit.cli", "report", str(csv), "--sla", PART2, "--users", "2000", *extra],
        capture_output=True, text=True, timeout=120)
    out = run("--json")
    assert out.returncode == 0, out.stderr
    answers = json.loads(out.stdout)
    assert answers["max_concurrency"] == {"1": 50, "2": 50}
    assert answers["capacity"]["per_server_rps"] == 190.0  # the f1-micro's best, not the e2-standard-2's
    assert answers["notes"][0].startswith("analysed f1-micro/flask, the configuration measured behind the balancer")
    text = run("--machine-type", "e2-standard-2", "--server", "flask")
    assert text.returncode == 0 and "note: analysed e2-standard-2/flask; left out 5 row(s)" in text.stdout
    bad = run("--machine-type", "e2-medium")
    assert bad.returncode != 0 and bad.stdout == ""
    assert bad.stderr.strip().splitlines()[-1].endswith("(they hold: f1-micro/flask: 4 rows, e2-standard-2/flask: "
                                                        "1 row, e2-standard-2/gunicorn×5: 1 row)")
