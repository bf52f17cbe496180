"""notebooks/04_reanalysis served by Voila, driven in headless Chromium with Playwright.

A real Voila server renders the notebook beside a generated reference CSV and the
student's own results (``runs/lab.csv``, what notebooks 01-03 write); Debian's
``/usr/bin/chromium`` (never a downloaded browser) opens it. The dashboard must open
the student's own results, overlay the reference when both are picked, answer for
the reference when it is chosen, and follow a change of the SLA's mean bound. A
screenshot of the dashboard with the two CSVs overlaid is saved (and copied to
``$LABKIT_SCREENSHOT`` when that is set).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from labkit.lab import NOTEBOOKS_DIR
from tests.support.analysis_data import grid_rows, write_csv
from tests.support.ports import free_port
from tests.support.processes import stop_group_and_descendants

CHROMIUM = "/usr/bin/chromium"
pytestmark = [pytest.mark.browser, pytest.mark.kernel]
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def _latency(n, c):
    """Reference: mean = 2c/n ms, p98 = 1.5·mean, max = 2·p98. Under max<=1000 mean<300 p98<400:
    1 node up to c=100, 2 nodes up to 200; with mean<60: 20 and 50."""
    mean = 2.0 * c / n
    return mean, 1.5 * mean, 3.0 * mean


def _own_latency(n, c):
    """The student's results: twice as slow (1 node up to c=50, 2 nodes up to 100 under part 2's SLA)."""
    mean = 4.0 * c / n
    return mean, 1.5 * mean, 3.0 * mean


@pytest.fixture
def voila(tmp_path):
    """Voila serving a copy of 04_reanalysis beside a data/reference.csv, as in the project layout."""
    nb_dir = tmp_path / "notebooks"
    nb_dir.mkdir()
    shutil.copy(NOTEBOOKS_DIR / "04_reanalysis.ipynb", nb_dir)
    write_csv(tmp_path / "data" / "reference.csv", grid_rows(_latency, nodes=(1, 2), levels=(10, 20, 50, 100, 200)))
    write_csv(tmp_path / "runs" / "lab.csv", grid_rows(_own_latency, nodes=(1, 2), levels=(10, 20, 50, 100, 200)))
    port = free_port()
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
    stop_group_and_descendants(proc)  # voila, and its kernel (which Jupyter starts in a session of its own)
    log.close()


def _answers(page) -> str:
    return page.locator("div", has_text="Max concurrency within the SLA").last.inner_text()


def _wait_text(page, text: str, timeout=120_000) -> None:
    page.wait_for_function("(t) => [...document.querySelectorAll('div')].some(d => d.innerText.includes(t))",
                           arg=text, timeout=timeout)


def test_dashboard_opens_own_results_overlays_the_reference_and_follows_the_sla(voila, tmp_path):
    assert Path(CHROMIUM).exists(), "Debian's chromium is required: apt-get install -y chromium (make test does)"
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1300, "height": 1600})
            page.goto(voila, timeout=120_000)
            page.locator("div", has_text="Max concurrency within the SLA").last.wait_for(timeout=120_000)
            before = _answers(page)
            # the student's own results open first, answered for part 2's SLA and users
            assert "SLA max<=1000 mean<300 p98<400" in before
            assert "1 node: 50" in before and "2 nodes: 100" in before
            assert "Capacity (model, Little's law): 2000 users need ≥ 6,667 req/s" in before
            assert "provenance — lab.csv: no provenance file beside it" in page.inner_text("body")

            # overlay the reference: pick both CSVs
            overlay = page.locator("img.widget-image").first
            overlay_before = overlay.get_attribute("src")
            page.locator("select[multiple]").select_option(label=["runs/lab.csv", "data/reference.csv"])
            page.wait_for_function("(s) => document.querySelector('img.widget-image').src !== s",
                                   arg=overlay_before, timeout=120_000)
            _wait_text(page, "data/reference.csv: 10 rows")
            # answer for the reference
            page.locator(".widget-dropdown select").first.select_option(label="data/reference.csv")
            _wait_text(page, "1 node: 100, 2 nodes: 200")
            shot = tmp_path / "dashboard_overlay.png"
            page.screenshot(path=str(shot), full_page=True)

            numbers = page.locator(".widget-text input[type=number]")
            assert numbers.count() == 11  # max, mean, p50 ... p99 bounds and the users count
            mean_bound = numbers.nth(1)
            assert float(mean_bound.input_value()) == 300
            mean_bound.fill("60")
            mean_bound.press("Enter")
            _wait_text(page, "mean<60 ")
            after = _answers(page)
            assert "SLA max<=1000 mean<60 p98<400" in after
            assert "1 node: 20, 2 nodes: 50" in after
        finally:
            browser.close()
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
    if os.environ.get("LABKIT_SCREENSHOT"):
        shutil.copy(shot, os.environ["LABKIT_SCREENSHOT"])
