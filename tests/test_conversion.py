"""Errors and refusals at the NumPy boundary: conversions, np.matrix, masked arrays, names."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.special

import autodiffx as ad

V = np.array([0.5, 1.0, 2.0])


def test_ufunc_errors_name_the_ufuncs_own_module():
    x = ad.tensor(V, requires_grad=True)
    with pytest.raises(TypeError, match=r"^scipy\.special\.gammaln has no autodiffx rule"):
        scipy.special.gammaln(x)
    with pytest.raises(TypeError, match=r"^scipy\.special\.xlogy\.outer is not supported"):
        scipy.special.xlogy.outer(x, x)
    with pytest.raises(TypeError, match=r"^scipy\.special\.erf\(\.\.\., out=\.\.\.\)"):
        scipy.special.erf(x, out=np.empty(3))
    with pytest.raises(TypeError, match=r"^numpy\.add\.at is not supported"):
        np.add.at(x, [0], 1.0)
    with pytest.raises(TypeError, match=r"^numpy\.gcd has no autodiffx rule"):
        np.gcd(ad.tensor([4, 6]), 2)
