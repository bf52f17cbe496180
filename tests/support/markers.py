"""Markers for what a test needs beyond Python, set from the fixtures it uses (see tests/support/__init__.py)."""
