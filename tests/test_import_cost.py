"""Measuring must not import pandas: `labkit bench` runs once per level, and pandas'
import (0.2-1 s on a busy 2-core machine) was most of its overhead (bench/RESULTS.md, section 1)."""

import subprocess
import sys


def test_measuring_path_does_not_import_pandas():
    code = ("import sys, labkit.cli, labkit.ab, labkit.record, labkit.measure, labkit.backends.local.backend; "
            "print(sorted(m for m in ('pandas', 'numpy', 'matplotlib') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
