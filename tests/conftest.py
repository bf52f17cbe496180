"""Test-wide settings.

Keeps google-auth from probing the GCE metadata server (design §10): nothing in
the tests may send traffic anywhere but loopback.
"""

import os

os.environ.setdefault("NO_GCE_CHECK", "true")
os.environ["GCE_METADATA_HOST"] = "127.0.0.1:9"
os.environ["GCE_METADATA_IP"] = "127.0.0.1:9"

# Fixture modules contributed by each area of the suite.
pytest_plugins: list[str] = ["tests.fixtures_sshd", "tests.fixtures_service", "tests.fixtures_local",
                             "tests.fixtures_leftovers", "tests.fixtures_lab"]
