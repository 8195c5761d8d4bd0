"""``autodiffx.data``: small real data sets shipped inside the package (no download)."""

from __future__ import annotations

import gzip
from importlib import resources

import numpy as np

__all__ = ["load_digits"]

_DIGITS_SHAPE = (1797, 65)


def load_digits() -> tuple[np.ndarray, np.ndarray]:
    """The UCI optical handwritten digits (scikit-learn's copy): 1 797 images of 8×8 pixels.

    Read from ``autodiffx/data/digits.csv.gz`` (see the README beside it for the source and
    licence): each row holds 64 integer pixels 0..16, row by row, then the label 0..9.
    Every call returns fresh arrays.

    Returns
    -------
    X : numpy.ndarray
        float64, shape (1797, 64): the pixels divided by 16, so in [0, 1].
    y : numpy.ndarray
        int64, shape (1797,): the digit shown, 0..9 (about 180 of each).

    Examples
    --------
    >>> import numpy as np
    >>> from autodiffx.data import load_digits
    >>> X, y = load_digits()
    >>> X.shape, X.dtype, y.shape, y.dtype
    ((1797, 64), dtype('float64'), (1797,), dtype('int64'))
    >>> float(X.min()), float(X.max()), np.bincount(y)
    (0.0, 1.0, array([178, 182, 177, 183, 181, 182, 181, 179, 174, 180]))
    >>> print(X[0].reshape(8, 8)[2:5] * 16)
    [[ 0.  3. 15.  2.  0. 11.  8.  0.]
     [ 0.  4. 12.  0.  0.  8.  8.  0.]
     [ 0.  5.  8.  0.  0.  9.  8.  0.]]
    """
    with (
        resources.files(__name__).joinpath("digits.csv.gz").open("rb") as raw,
        gzip.open(raw, "rt", encoding="ascii") as fh,
    ):
        table = np.loadtxt(fh, delimiter=",", dtype=np.int64, ndmin=2)
    if table.shape != _DIGITS_SHAPE:
        raise ValueError(f"digits.csv.gz: expected a {_DIGITS_SHAPE} table, got {table.shape}")
    return table[:, :64] / 16.0, np.ascontiguousarray(table[:, 64])
