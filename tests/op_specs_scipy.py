"""OpSpec rows for the primitives registered by ``autodiffx.scipy`` (special, signal, linalg).

``rows(OpSpec, Case, elementwise)`` builds them; ``tests/op_specs.py`` merges them as it does
``op_specs_nn``. Cases are few (two shapes per row): the special functions share one rule
shape, and every generic check runs on every case.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.linalg as sl
import scipy.signal as ss
import scipy.special as sp
from strategies import NONZERO, POSITIVE, REAL, SPD, WELLCOND, Const, Fixed, interval

U = [(), (2, 3)]
B = [((), ()), ((2, 3), (3,)), ((2, 1), (1, 3))]


def _special(OpSpec: Any, Case: Any, elementwise: Any) -> list[Any]:
    def un(name: str, dom: Any, **kw: Any) -> Any:
        kw.setdefault("cases", tuple(Case((s,)) for s in U))
        return elementwise(name, dom, ref=getattr(sp, name), **kw)

    def bi(name: str, d0: Any, d1: Any, **kw: Any) -> Any:
        cases = tuple(Case(s) for s in B)
        return elementwise(name, d0, d1, ref=getattr(sp, name), cases=cases, **kw)

    def ordered(name: str, consts: tuple[Any, ...], dom: Any, **kw: Any) -> Any:
        """x differentiated; the leading order/shape arguments are constants."""
        k = len(consts[0])
        cases = tuple(
            Case((None,) * k + (s,), args=(*(Const(c) for c in cs), dom))
            for cs in consts
            for s in U
        )
        return elementwise(
            name,
            *(Const(c) for c in consts[0]),
            dom,
            ref=getattr(sp, name),
            cases=cases,
            nondiff_args=tuple(range(k)),
            weak_scalars=False,
            exempt={"hypothesis": "the order/shape arguments are Consts, not broadcast arrays"},
            **kw,
        )

    tails = Case(((3,),), args=(Fixed([-30.0, -8.0, 6.0]),))
    return [
        un("gamma", POSITIVE),
        bi("beta", POSITIVE, POSITIVE),
        bi("betaln", POSITIVE, POSITIVE),
        un("erfc", REAL),
        un("erfcinv", interval(0.1, 1.9)),
        un("ndtr", REAL),
        un("ndtri", interval(0.05, 0.95)),
        un("log_ndtr", REAL, cases=(*(Case((s,)) for s in U), tails)),
        un("logit", interval(0.1, 0.9)),
        un("log_expit", REAL),
        bi("xlogy", REAL, POSITIVE),
        bi("xlog1py", REAL, interval(-0.5, 3.0)),
        un("entr", POSITIVE),
        bi("rel_entr", POSITIVE, POSITIVE),
        bi("kl_div", POSITIVE, POSITIVE),
        un("spence", POSITIVE),
        un("i0", REAL),
        un("i1", REAL),
        # e^(-|x|) has a kink at 0 (i0e's first derivative, i1e's second): sampled away from it
        un("i0e", NONZERO),
        un("i1e", NONZERO),
        ordered("iv", ((1.5,), (0.0,)), POSITIVE),
        ordered("ive", ((1.5,), (0.0,)), POSITIVE),
        ordered("jv", ((1.5,), (2.0,)), POSITIVE),
        ordered("yv", ((1.5,), (2.0,)), POSITIVE),
        ordered("gammainc", ((1.5,), (3.0,)), POSITIVE),
        ordered("gammaincc", ((1.5,), (3.0,)), POSITIVE),
        ordered("betainc", ((1.5, 2.0), (0.5, 3.0)), interval(0.1, 0.9)),
        ordered("stdtr", ((3.0,), (7.5,)), REAL),
    ]


_PIVOTING = Fixed([[0.5, 2.0, 1.0], [3.0, 1.0, -1.0], [1.0, -2.0, 4.0]])  # rows get swapped
_MATS = [((3, 3),), ((2, 3, 3),), ((1, 1),)]
_SMALL = [((2, 2),), ((2, 2, 2),)]  # SciPy's sqrtm is slower than expm


def _linalg(OpSpec: Any, Case: Any) -> list[Any]:
    tri = [  # each of trans, lower, unit both ways
        Case(((3, 3), (3, 2)), {"trans": t, "lower": lo, "unit": u})
        for t, lo, u in [(0, False, False), (1, True, False), (0, True, True), (1, False, True)]
    ] + [Case(((2, 3, 3), (2, 3, 1)), {"trans": 1, "lower": True, "unit": False})]

    def tri_ref(a: Any, b: Any, trans: int = 0, lower: bool = False, unit: bool = False) -> Any:
        return sl.solve_triangular(a, b, trans=trans, lower=lower, unit_diagonal=unit)

    return [
        OpSpec(
            "solve_triangular",
            (WELLCOND, REAL),
            tuple(tri),
            ref=tri_ref,
            batch="lead",
            batch_min_ndim=2,
        ),
        OpSpec(
            "lu_factor",
            (WELLCOND,),
            (Case(((3, 3),)), Case(((3, 3),), args=(_PIVOTING,)), Case(((1, 1),))),
            ref=lambda a: tuple(sl.lu_factor(a)),
        ),
        OpSpec(
            "expm",
            (REAL,),
            tuple(Case(s) for s in _MATS),
            ref=sl.expm,
            complex=True,
            batch="lead",
            batch_min_ndim=2,
        ),
        OpSpec(
            "sqrtm",
            (SPD,),
            tuple(Case(s) for s in _SMALL),
            ref=sl.sqrtm,
            batch="lead",
            batch_min_ndim=2,
        ),
        OpSpec(
            "logm",
            (SPD,),
            tuple(Case(s) for s in _SMALL),
            ref=sl.logm,
            batch="lead",
            batch_min_ndim=2,
            float32=False,  # SciPy's logm warns that its float32 results may be inaccurate
        ),
    ]


def _conv_ref(a: Any, b: Any, k: int, method: str = "auto") -> Any:
    """The full convolution over the last k axes, one SciPy call per broadcast lead index."""
    a, b = np.asarray(a), np.asarray(b)
    lead = np.broadcast_shapes(a.shape[: a.ndim - k], b.shape[: b.ndim - k])
    a = np.broadcast_to(a, lead + a.shape[a.ndim - k :])
    b = np.broadcast_to(b, lead + b.shape[b.ndim - k :])
    outs = [ss.convolve(a[i], b[i], method="direct") for i in np.ndindex(lead)]
    return np.stack(outs).reshape(lead + outs[0].shape) if lead else outs[0]


def _signal(OpSpec: Any, Case: Any) -> list[Any]:
    cases = (
        Case(((4,), (3,)), {"k": 1}),
        Case(((3, 4), (2, 2)), {"k": 2}),
        Case(((2, 4), (3,)), {"k": 1}),  # leading axes broadcast
        Case(((4,), (2, 1, 2)), {"k": 1}),
    )
    return [OpSpec("convolve_full", (REAL, REAL), cases, ref=_conv_ref, complex=True, batch="lead")]


def rows(OpSpec: Any, Case: Any, elementwise: Any) -> list[Any]:
    """The rows of every ``autodiffx.scipy`` primitive."""
    return _special(OpSpec, Case, elementwise) + _linalg(OpSpec, Case) + _signal(OpSpec, Case)
