"""One real Compute Engine instance, created and deleted. Runs only with a project and credentials.

Set LABKIT_GCP_PROJECT (and optionally LABKIT_GCP_ZONE) and Application Default
Credentials (GOOGLE_APPLICATION_CREDENTIALS or `gcloud auth application-default login`).
"""

import os
import time

import pytest

from labkit.backends.gcp import api_requests as req
from labkit.settings import Settings

SETTINGS = Settings.from_env()
PROJECT = SETTINGS.gcp_project
ZONE = (SETTINGS.gcp_zone or "us-central1-a").split(",")[0].strip()
_ADC = os.environ.get("GOOGLE_APPLICATION_CREDENTIALS") or os.path.exists(
    os.path.expanduser("~/.config/gcloud/application_default_credentials.json"))

pytestmark = pytest.mark.skipif(not (PROJECT and _ADC),
                                reason="live GCP test: set LABKIT_GCP_PROJECT and Application Default Credentials")


def test_create_and_delete_one_tiny_instance():
    from labkit.backends.gcp import compute as gcp

    c = gcp.Compute(endpoint=SETTINGS.gcp_api_endpoint)
    run_id = req.new_run_id()
    name = f"labkit-live-{run_id}"
    body = req.instance_body(name, ZONE, "e2-micro", run_id, req.expires_at(ttl_hours=1), "tester")
    gcp.wait(gcp.insert_instance(c, PROJECT, ZONE, body), f"create {name}", timeout=300, zone=ZONE)
    try:
        inst = gcp.get_instance(c, PROJECT, ZONE, name)
        assert inst.labels["labkit-run"] == run_id
        assert inst.machine_type.endswith("/machineTypes/e2-micro")
    finally:
        gcp.wait(gcp.delete_instance(c, PROJECT, ZONE, name), f"delete {name}", timeout=300, zone=ZONE)
    time.sleep(1)
    assert name not in [i.name for _, i in gcp.list_labkit_instances(c, PROJECT)]
