"""Measuring must not import pandas: `labkit bench` runs once per level, and pandas'
import (0.2-1 s on a busy 2-core machine) was most of its overhead (bench/RESULTS.md, section 1)."""

import subprocess
import sys


def test_measuring_path_does_not_import_pandas():
    code = ("import sys, labkit.cli, labkit.ab, labkit.measure, labkit.backends.local; "
            "print(sorted(m for m in ('pandas', 'numpy', 'matplotlib') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_results_reexports_the_columns():
    from labkit import columns, results

    assert results.COLUMNS is columns.COLUMNS and results.PERCENTILES is columns.PERCENTILES
    assert results.EXTRA_COLUMNS is columns.EXTRA_COLUMNS
