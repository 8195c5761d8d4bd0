"""The comparison of one result computed on another array library with NumPy's, shared by the
backend checks (tests/dask_checks.py for Dask, tests/test_xp_strict.py for array-api-strict)."""

from __future__ import annotations

import numpy as np


def assert_like_numpy(
    got: np.ndarray, want: np.ndarray, what: str, k: int, rtol: float, atol: float
) -> None:
    """``got`` (result ``k``, brought back to NumPy) has ``want``'s shape and dtype, and its
    values: to ``rtol``/``atol`` when inexact, exactly otherwise."""
    assert got.shape == want.shape, f"{what}: result {k} shape {got.shape}, NumPy {want.shape}"
    assert got.dtype == want.dtype, f"{what}: result {k} dtype {got.dtype}, NumPy {want.dtype}"
    if want.dtype.kind in "fc":
        np.testing.assert_allclose(got, want, rtol=rtol, atol=atol, err_msg=f"{what} [{k}]")
    else:
        np.testing.assert_array_equal(got, want, err_msg=f"{what} [{k}]")
