"""OpSpec rows for the primitives registered by ``autodiffx.nn.functional``.

``NN_SPECS`` is a plain list of dicts, one per primitive, whose keys are ``OpSpec`` fields;
``cases`` is a list of dicts of ``Case`` fields. ``rows(OpSpec, Case)`` builds the rows, so
``tests/op_specs.py`` merges them with::

    from op_specs_nn import rows as _nn_rows
    ROWS += _nn_rows(OpSpec, Case)

(placed after ``Case``/``OpSpec`` are defined; this module imports only ``strategies``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.special as sp
from op_specs_conv import CONV_SPECS, POOL_SPECS
from strategies import REAL, Const, Domain

UNARY = [(), (3,), (2, 3), (1, 4)]
BINARY = [((), ()), ((3,), (3,)), ((2, 3), (3,)), ((2, 1), (1, 3)), ((), (2, 2))]


def _softplus_ref(x: Any, beta: float = 1.0, threshold: float = 20.0) -> np.ndarray:
    x = np.asarray(x)
    bx = beta * x
    with np.errstate(over="ignore"):
        soft = np.log1p(np.exp(bx)) / beta
    return np.where(bx > threshold, x, soft).astype(x.dtype)


def _softplus_cases() -> list[dict[str, Any]]:
    out = []
    for shape in UNARY:
        for beta in (1.0, 2.5):
            for threshold in (20.0, np.inf):
                out.append(dict(shapes=(shape,), params=dict(beta=beta, threshold=threshold)))
    # A low threshold inside the sampled range: both branches (the switch at beta x = 1,
    # i.e. x = 0.4, is a kink of the thresholded function; the domain keeps away from it).
    out.append(
        dict(
            shapes=((3, 4),),
            params=dict(beta=2.5, threshold=1.0),
            args=(Domain(-3.0, 3.0, away_from=(0.4,)),),
        )
    )
    return out


def _linear_ref(x: Any, w: Any, b: Any = None) -> np.ndarray:
    y = np.matmul(x, np.swapaxes(w, -1, -2))
    return y if b is None else y + b


def _xent_ref(x: Any, target: Any, reduction: str = "mean") -> np.ndarray:
    x = np.asarray(x)
    loss = -sp.log_softmax(x, axis=-1)[np.arange(x.shape[0]), target]
    if reduction == "none":
        return loss
    return np.asarray(loss.mean() if reduction == "mean" else loss.sum(), dtype=x.dtype)


# Class-index targets of the fused cross-entropy, one per row of the (N, C) logits.
_T4 = np.array([0, 2, 1, 2])
_T1 = np.array([1])
_T64 = np.arange(64) % 3  # (64 rows of 3 classes: the kernel's transposed row maximum)
_REDUCTIONS = ("mean", "sum", "none")


NN_SPECS: list[dict[str, Any]] = [
    dict(
        name="sigmoid",
        args=(REAL,),
        cases=[dict(shapes=(s,)) for s in UNARY],
        ref=sp.expit,
        broadcast=True,
        batch="pad",
        exempt={"complex": "scipy.special.expit has no complex loop"},
    ),
    dict(
        name="softplus",
        args=(REAL,),
        cases=_softplus_cases(),
        ref=_softplus_ref,
        broadcast=True,
        batch="pad",
        exempt={"complex": "max-shifted formula needs an ordered dtype"},
    ),
    dict(
        name="log_softmax",
        args=(REAL,),
        cases=[
            dict(shapes=(s,), params=dict(axis=a))
            for s in [(3,), (2, 3), (2, 1, 4)]
            for a in (0, -1, 1)
            if -len(s) <= a < len(s)
        ],
        ref=sp.log_softmax,
        batch="lead",
        exempt={"complex": "max-shifting needs an ordered dtype"},
    ),
    dict(
        # heaviside(x, value): piecewise constant; x is kept away from the jump at 0.
        name="heaviside",
        args=(Domain(away_from=(0.0,)), REAL),
        cases=[dict(shapes=s) for s in BINARY],
        ref=np.heaviside,
        zero_deriv=True,
        broadcast=True,
        batch="pad",
        weak_scalars=True,
        exempt={"complex": "ordered inputs only"},
    ),
]


NN_SPECS += [
    dict(
        # linear(x, weight, bias): x @ weight.T + bias; bias None is the layer without bias.
        name="linear",
        args=(REAL, REAL, REAL),
        cases=[
            dict(shapes=((4, 3), (2, 3), (2,))),
            dict(shapes=((3,), (2, 3), (2,))),
            dict(shapes=((2, 4, 3), (2, 3), (2,))),
            dict(shapes=((1, 1), (1, 1), (1,))),
            dict(shapes=((4, 3), (2, 3), None), args=(REAL, REAL, Const(None))),
        ],
        ref=_linear_ref,
        complex=True,
    ),
    dict(
        # softmax_cross_entropy(x, target=, reduction=): cross_entropy of logits and indices.
        name="softmax_cross_entropy",
        args=(REAL,),
        cases=[
            *(dict(shapes=((4, 3),), params=dict(target=_T4, reduction=r)) for r in _REDUCTIONS),
            dict(shapes=((1, 2),), params=dict(target=_T1)),
            dict(shapes=((1, 1),), params=dict(target=_T1 - 1, reduction="none")),
            dict(shapes=((64, 3),), params=dict(target=_T64, reduction="sum")),
        ],
        ref=_xent_ref,
        exempt={"complex": "max-shifting needs an ordered dtype"},
    ),
]


NN_SPECS += CONV_SPECS  # conv, conv_transpose, conv_weight_grad (tests/op_specs_conv.py)
NN_SPECS += POOL_SPECS  # pool_select, pool_scatter (tests/op_specs_conv.py)


def rows(opspec: type, case: type) -> list[Any]:
    """``NN_SPECS`` as ``OpSpec`` rows (the classes are passed in to avoid an import cycle)."""
    out = []
    for d in NN_SPECS:
        d = dict(d)
        d["cases"] = tuple(case(**c) for c in d["cases"])
        out.append(opspec(**d))
    return out
