"""One real tiny-profile lab run for the whole session, shared by the notebook and release tests.

Running the five notebooks for real (Flask servers, nginx, ab on the local backend) is the
slowest thing the suite does; the notebook tests read what it produced, and the release
tests grade the student versions against its results CSV, so it is run once, not per module.
"""

from __future__ import annotations

import time

import pytest

from labkit import state
from labkit.lab import run_lab
from labkit.settings import Settings
from tests.support.local import session_net
from tests.support.once import once_per_run


@pytest.fixture(scope="session")
def lab_report(tmp_path_factory):
    """Run the whole lab once with the tiny profile on its own loopback network and state folder.

    CPU limits are off: the tests read what the notebooks produced, not how fast an f1-micro is
    (limits are checked by the ``@pytest.mark.cgroups`` tests).

    The settings are passed, not put in the environment: the notebook kernels get them from run_lab.
    """
    return once_per_run(tmp_path_factory, "lab_report", lambda: _run_tiny_lab(tmp_path_factory))


def _run_tiny_lab(tmp_path_factory) -> dict:
    tmp = tmp_path_factory.mktemp("lab")
    settings = Settings.from_env().replace(state_dir=tmp / ".labkit", local_net=session_net(201), cgroups="off")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(tmp)
        started = time.monotonic()
        report = run_lab("tiny", out_root=tmp / "reports", settings=settings)
        elapsed = time.monotonic() - started
        left_up = state.load(settings, "local")
    print(f"tiny lab run: {elapsed:.0f} s")
    return {"dir": report, "elapsed": elapsed, "left_up": left_up, "root": tmp / "reports",
            "settings": settings}
