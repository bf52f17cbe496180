"""Test-wide settings and the shared fixtures (tests/support/, see its docstring).

Keeps google-auth from probing the GCE metadata server (design §10): nothing in
the tests may send traffic anywhere but loopback.
"""

import os

os.environ.setdefault("NO_GCE_CHECK", "true")
os.environ["GCE_METADATA_HOST"] = "127.0.0.1:9"
os.environ["GCE_METADATA_IP"] = "127.0.0.1:9"

# The fixture modules of tests/support/ (and the marker rules in tests/support/markers.py).
pytest_plugins: list[str] = ["tests.support.markers", "tests.support.sshd", "tests.support.service",
                             "tests.support.local", "tests.support.leftovers", "tests.support.lab",
                             "tests.support.compute_stub", "tests.support.release",
                             "tests.support.cli"]
