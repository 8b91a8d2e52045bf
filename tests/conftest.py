"""Shared fixtures; tests marked ``nt`` are skipped where neural-tangents is absent."""

import importlib.util

import pytest

HAVE_NT = importlib.util.find_spec("neural_tangents") is not None


def pytest_collection_modifyitems(config, items):
    if HAVE_NT:
        return
    skip = pytest.mark.skip(reason="neural-tangents is not installed (core environment)")
    for item in items:
        if "nt" in item.keywords:
            item.add_marker(skip)
