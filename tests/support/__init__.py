"""Shared test support: fixtures, doubles and data builders (registered by tests/conftest.py)."""
