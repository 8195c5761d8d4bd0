"""OpSpec rows for sinc, the numpy.fft primitives and eig/eigvals/matrix_rank.

``rows(OpSpec, Case)`` builds them; ``tests/op_specs.py`` merges them as it does the nn rows
(this module imports only ``strategies``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from strategies import REAL, WELLCOND, Fixed

_NEAR_ZERO = np.array([0.0, 1e-3, -0.02, 0.05, -0.5])  # the series branch and both sides of it


def _fft_ref(name: str) -> Any:
    f = getattr(np.fft, name)
    return lambda x, s, axes, norm: f(x, s=s, axes=axes, norm=norm)


def _fft_cases(case: Any, real_out: bool = False) -> tuple[Any, ...]:
    table = [
        ((5,), None, (-1,), "backward"),
        ((5,), (8,), (-1,), "ortho"),  # zero-padded
        ((6,), (3,), (-1,), "forward"),  # cropped
        ((2, 4), None, (-2, -1), "backward"),
        ((3, 4), (4, 3), (-2, -1), "ortho"),
        ((2, 3, 4), (2,), (-3,), "backward"),
    ]
    out = []
    for shape, s, axes, norm in table:
        if real_out and s is None:  # irfftn: the output length, default 2 (m - 1)
            s = (*(shape[a] for a in axes[:-1]), 2 * (shape[axes[-1]] - 1))
        out.append(case((shape,), {"s": s, "axes": axes, "norm": norm}))
    if real_out:  # an odd output length (no Nyquist entry)
        out.append(case(((2, 4),), {"s": (2, 7), "axes": (-2, -1), "norm": "backward"}))
    return tuple(out)


def _phase(v: Any) -> Any:
    # Eigenvectors are unique up to a phase: fix it (a fixed combination of the rows real and
    # positive; a single row could be near 0, which makes central differences blow up).
    c = np.linspace(1.0, 2.0, v.shape[-2])[:, None]
    s = np.sum(v * c, axis=-2, keepdims=True)
    return v * np.conj(s) / np.abs(s)


def _eig_call(prim: Any, a: Any) -> tuple[Any, Any]:
    w, v = prim(a)
    return w, _phase(v)


def _eig_ref(a: Any) -> tuple[Any, Any]:
    w, v = np.linalg.eig(a)
    return w, _phase(v)


def _sinc_row(OpSpec: Any, Case: Any) -> Any:
    return OpSpec(
        "sinc",
        (REAL,),
        (*(Case((s,)) for s in [(), (3,), (2, 3)]), Case(((5,),), args=(Fixed(_NEAR_ZERO),))),
        broadcast=True,
        batch="pad",
        complex=True,
    )


def rows(OpSpec: Any, Case: Any) -> list[Any]:
    """The rows, built with the table's own classes."""
    mats = [Case(((3, 3),)), Case(((2, 3, 3),)), Case(((1, 1),))]
    return [
        _sinc_row(OpSpec, Case),
        OpSpec("fftn", (REAL,), _fft_cases(Case), ref=_fft_ref("fftn"), complex=True, batch="lead"),
        OpSpec(
            "ifftn", (REAL,), _fft_cases(Case), ref=_fft_ref("ifftn"), complex=True, batch="lead"
        ),
        OpSpec(
            "rfftn",
            (REAL,),
            _fft_cases(Case),
            ref=_fft_ref("rfftn"),
            batch="lead",
            exempt={"complex": "rfftn takes real input (complex input raises TypeError)"},
        ),
        OpSpec(
            "irfftn",
            (REAL,),
            _fft_cases(Case, real_out=True),
            ref=_fft_ref("irfftn"),
            complex=True,
            batch="lead",
        ),
        OpSpec(
            "eig",
            (WELLCOND,),
            tuple(mats),
            call=_eig_call,
            ref=_eig_ref,
            complex=True,
            batch="lead",
            batch_min_ndim=2,
        ),
        OpSpec(
            "eigvals",
            (WELLCOND,),
            tuple(mats),
            ref=np.linalg.eigvals,
            complex=True,
            batch="lead",
            batch_min_ndim=2,
        ),
        OpSpec(
            "matrix_rank",
            (WELLCOND,),
            tuple(mats),
            ref=np.linalg.matrix_rank,
            nondiff=True,
            order=0,
        ),
    ]
