"""Shared test configuration: Hypothesis profiles (``HYPOTHESIS_PROFILE``) and a seeded rng."""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

_SLOW = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much]

# dev: quick local runs; ci: derandomized and small, so a CI run is reproducible and fast;
# intense: many examples, for a deliberate hunt.
settings.register_profile("dev", max_examples=15, deadline=None, suppress_health_check=_SLOW)
settings.register_profile(
    "ci",
    max_examples=8,
    deadline=None,
    derandomize=True,
    print_blob=True,
    suppress_health_check=_SLOW,
)
settings.register_profile("intense", max_examples=400, deadline=None, suppress_health_check=_SLOW)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))


@pytest.fixture
def rng() -> np.random.Generator:
    """A NumPy generator with a fixed seed: every test sees the same numbers."""
    return np.random.default_rng(20240607)


@pytest.fixture(autouse=True)
def _eager_path_again():
    """A test that used a foreign array (Dask, array-api-strict) leaves its thread in the
    checked ``FOREIGN`` mode, which changes which path later tests take (the count of
    products in tests/test_hvp.py, a message's prefix): every test starts without it."""
    yield
    from autodiffx._mode import STATE

    if STATE.foreign:
        STATE.foreign = False
