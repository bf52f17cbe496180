"""notebooks/04_reanalysis served by Voila, driven in headless Chromium with Playwright.

A real Voila server renders the notebook on a generated reference CSV; Debian's
``/usr/bin/chromium`` (never a downloaded browser) opens it, the mean bound of
the SLA is changed in the page, and the answer shown must change accordingly.
A screenshot of the changed dashboard is saved.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from labkit.lab import NOTEBOOKS_DIR
from tests.analysis_data import grid_rows, write_csv

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def _latency(n, c):
    """mean = 2c/n ms, p98 = 1.5·mean, max = 2·p98: one node meets mean<200 up to c=50, mean<60 up to c=20."""
    mean = 2.0 * c / n
    return mean, 1.5 * mean, 3.0 * mean


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def voila(tmp_path):
    """Voila serving a copy of 04_reanalysis beside a data/reference.csv, as in the project layout."""
    nb_dir = tmp_path / "notebooks"
    nb_dir.mkdir()
    shutil.copy(NOTEBOOKS_DIR / "04_reanalysis.ipynb", nb_dir)
    write_csv(tmp_path / "data" / "reference.csv", grid_rows(_latency, nodes=(1, 2), levels=(10, 20, 50, 100, 200)))
    port = _free_port()
    log = open(tmp_path / "voila.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "voila", str(nb_dir / "04_reanalysis.ipynb"), f"--port={port}", "--no-browser",
         "--Voila.ip=127.0.0.1"],
        cwd=nb_dir, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        env={**os.environ, "MPLBACKEND": "Agg"})
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(url, timeout=2).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(f"voila did not start: {(tmp_path / 'voila.log').read_text()[-2000:]}")
            time.sleep(0.3)
    yield url
    os.killpg(proc.pid, signal.SIGTERM)  # the group this fixture started (voila and its kernel)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    log.close()


def test_changing_the_sla_in_the_dashboard_changes_the_answer(voila, tmp_path):
    assert Path(CHROMIUM).exists(), "Debian's chromium is required: apt-get install -y chromium (make test does)"
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 1400})
            page.goto(voila, timeout=120_000)
            answers = page.locator("div", has_text="Max concurrency within the SLA").last
            answers.wait_for(timeout=120_000)
            before = answers.inner_text()
            assert "SLA max<=1500 mean<200 p98<=300" in before
            assert "1 node: 50" in before and "2 nodes: 100" in before

            numbers = page.locator(".widget-text input[type=number]")
            assert numbers.count() == 4  # max, mean, p98 bounds and the users count
            heatmap = page.locator("img.widget-image")
            heatmap_before = heatmap.get_attribute("src")
            mean_bound = numbers.nth(1)
            assert float(mean_bound.input_value()) == 200
            mean_bound.fill("60")
            mean_bound.press("Enter")
            page.wait_for_function(
                "() => [...document.querySelectorAll('div')].some(d => d.innerText.includes('mean<60 '))",
                timeout=60_000)
            after = page.locator("div", has_text="Max concurrency within the SLA").last.inner_text()
            assert after != before
            assert "SLA max<=1500 mean<60 p98<=300" in after
            assert "1 node: 20" in after and "2 nodes: 50" in after
            # the heatmap is redrawn last: wait for it before the screenshot
            page.wait_for_function("(s) => document.querySelector('img.widget-image').src !== s",
                                   arg=heatmap_before, timeout=60_000)
            shot = tmp_path / "dashboard.png"
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
