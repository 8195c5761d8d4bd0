"""``ad.nn.functional``: activations and losses, numerically stable for large ``|x|``.

Four entries are registry primitives because stability needs their own rule:
``sigmoid`` (the derivative ``out * (1 - out)`` never forms ``exp(-x)``), ``softplus``
(``max(x, 0) + log1p(exp(-|x|))`` and derivative ``sigmoid``), ``log_softmax`` (max-shifted,
with the rule ``g - softmax * sum(g)`` from its output; also the fast path of
``cross_entropy``) and ``heaviside`` (piecewise constant: derivative 0). Everything else is
composed from primitives whose rules are already stable (``logsumexp``, ``maximum``,
``where``, ``expm1``, ``erf``), so first and higher derivatives come for free in both
modes.

Kinks and their documented (sub)gradients:

==========================  =============================================================
function                    derivative at the kink
==========================  =============================================================
``relu`` at 0               0 (``maximum(x, 0)``: a tie with a constant gives the variable 0)
``leaky_relu`` at 0         ``negative_slope`` (the left branch, as PyTorch)
``elu`` at 0                ``alpha`` (the left branch, as PyTorch)
``heaviside``               0 everywhere (also at 0)
``l1_loss`` at 0            0 (``abs'(0) = 0``)
``hinge_loss`` on margin    0 (``relu'(0) = 0``)
``softplus`` at threshold   ``sigmoid(threshold)`` below, 1 above (PyTorch's switch)
==========================  =============================================================
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.special as sp

from .._mode import COMPILE, NO_GRAD, STATE, quiet_enter, quiet_exit
from .._registry import defprim
from .._tensor import Tensor
from .._xp import is_lazy
from ..ops import abs as _abs
from ..ops import clip as _clip
from ..ops import erf as _erf
from ..ops import exp as _exp
from ..ops import expm1 as _expm1
from ..ops import log as _log
from ..ops import logsumexp as _logsumexp
from ..ops import maximum as _maximum
from ..ops import where as _where
from ..ops.linalg import total
from ..ops.shape import neg_axis

if TYPE_CHECKING:  # the registry entry's signature in the generated autodiffx/__init__.pyi
    from .. import tanh
else:
    from ..ops import tanh

__all__ = [
    "binary_cross_entropy",
    "binary_cross_entropy_with_logits",
    "cross_entropy",
    "dropout",
    "elu",
    "gelu",
    "heaviside",
    "hinge_loss",
    "huber_loss",
    "l1_loss",
    "leaky_relu",
    "log_sigmoid",
    "log_softmax",
    "logsumexp",
    "mse_loss",
    "nll_loss",
    "relu",
    "sigmoid",
    "smooth_heaviside",
    "smooth_leaky_relu",
    "smooth_relu",
    "soft_margin_hinge_loss",
    "soft_margin_loss",
    "softmax",
    "softplus",
    "tanh",
]

_SQRT1_2 = 1.0 / math.sqrt(2.0)
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_LOG_CLAMP = math.exp(-100.0)  # log() of a probability is clamped at -100, as PyTorch


def _as_tensor(x: Any) -> Tensor:
    return x if isinstance(x, Tensor) else Tensor(np.asarray(x))


def as_generator(rng: Any) -> np.random.Generator:
    """A ``numpy.random.Generator`` from a Generator (returned as is), a seed, or None (fresh).

    Examples
    --------
    >>> import numpy as np
    >>> from autodiffx.nn.functional import as_generator
    >>> g = np.random.default_rng(0)
    >>> as_generator(g) is g, as_generator(7).integers(100) == as_generator(7).integers(100)
    (True, np.True_)
    """
    if STATE.mode & COMPILE:
        STATE.compiler.write(None, "a random number generator")
    return _generator(rng)


def _generator(rng: Any) -> np.random.Generator:
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None or isinstance(rng, int | np.integer | np.random.SeedSequence):
        return np.random.default_rng(rng)
    raise TypeError(
        f"rng must be a numpy.random.Generator, an int seed or None, not {type(rng).__name__}"
    )


def _drawn(fn: Any, rng: Any, *args: Any) -> np.ndarray:
    return fn(_generator(rng), *args)  # type: ignore[no-any-return]


def _draw(fn: Any, rng: Any, *args: Any, what: str = "a random draw") -> np.ndarray:
    """``fn(generator, *args)``: an array drawn from ``rng`` (a Generator, advanced; an int
    seed; or None, a fresh generator). Inside ``ad.compile`` the draw is a step of the
    program: each replay draws again from the same ``rng``, in the same order, as eager code.
    """
    if STATE.mode & COMPILE:
        return STATE.compiler.draw(_drawn, [fn, rng, *args], what)  # type: ignore[no-any-return]
    return _drawn(fn, rng, *args)


def _dropout_mask(gen: np.random.Generator, shape: Any, p: float, dt: Any) -> np.ndarray:
    """Dropout's mask: 0 with probability ``p``, else ``1 / (1 - p)``, of dtype ``dt``."""
    keep = gen.random(shape) >= p
    return (keep * (1.0 / (1.0 - p))).astype(dt)  # type: ignore[no-any-return]


# ----- primitives (stability needs their own rules) ----------------------------------------
def _sigmoid_deriv(out: Any) -> Any:
    return out * (1 - out)


_sigmoid = defprim(
    "sigmoid",
    sp.expit,
    derivs=(_sigmoid_deriv,),
    derivs2=(lambda out, d: d * (1 - 2 * out),),
    partials=("{out} (1 − {out})",),
    expr=True,
    doc="Logistic sigmoid 1 / (1 + exp(-x)), stable for any x; derivative out * (1 - out).",
    example=(
        "import autodiffx.nn.functional as F\n"
        "x = ad.tensor([-1000.0, 0.0, 1000.0], requires_grad=True)\n"
        "F.sigmoid(x)\n"
        "F.sigmoid(x).sum().backward()\n"
        "x.grad"
    ),
)


def _softplus_kernel(x: Any, beta: float = 1.0, threshold: float = 20.0) -> Any:
    # NOTE: softplus(x) = max(x, 0) + log1p(exp(-|x|)) never overflows; with beta > 0,
    # max(beta x, 0) / beta = max(x, 0). Above the threshold the value is x (PyTorch's switch).
    if beta == 1.0:
        bx = x
        y = np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x)))
    else:
        with np.errstate(over="ignore"):
            bx = np.multiply(x, beta)
        y = np.maximum(x, 0) + np.log1p(np.exp(-np.abs(bx))) / beta
    if threshold == np.inf:
        return y
    return np.where(bx > threshold, x, y)


def _softplus_deriv(x: Any, *, beta: float = 1.0, threshold: float = 20.0) -> Any:
    bx = x if beta == 1.0 else x * beta
    s = _sigmoid.call(bx)
    if threshold == np.inf:
        return s
    return np.where(bx > threshold, 1.0, s)


_softplus = defprim(
    "softplus",
    _softplus_kernel,
    derivs=(_softplus_deriv,),
    expr=True,
    doc="(1/beta) log(1 + exp(beta x)), stable; x itself where beta x > threshold.",
    example=(
        "import autodiffx.nn.functional as F\n"
        "x = ad.tensor([-1000.0, 0.0, 1000.0], requires_grad=True)\n"
        "F.softplus(x)\n"
        "F.softplus(x).sum().backward()\n"
        "x.grad"
    ),
)

_heaviside = defprim(
    "heaviside",
    np.heaviside,
    zero_deriv=True,
    doc="Heaviside step: 0 for x < 0, ``value`` at 0, 1 for x > 0; its derivative is 0.",
    example=(
        "import autodiffx.nn.functional as F\n"
        "x = ad.tensor([-2.0, 0.0, 3.0], requires_grad=True)\n"
        "F.heaviside(x)\n"
        "F.heaviside(x).sum().backward()\n"
        "x.grad"
    ),
)


def _log_softmax_kernel(x: Any, axis: int = -1) -> Any:
    # NOTE: shifted by the max (an all -inf slice gives -inf, not nan); one pass of exp/sum.
    m = np.max(x, axis=axis, keepdims=True)
    if is_lazy(m) or not np.all(np.isfinite(m)):  # (a Dask array: not read)
        m = np.where(np.isfinite(m), m, 0)
    s = x - m
    with np.errstate(divide="ignore"):
        return s - np.log(np.sum(np.exp(s), axis=axis, keepdims=True))


def _log_softmax_vjp(needs: Any, g: Any, out: Any, x: Any, axis: int = -1) -> tuple[Any]:
    # The axis counted from the end: g may carry leading batch axes (vectorized Jacobians).
    axis = neg_axis(axis, out.ndim)
    return (g - np.exp(out) * np.sum(g, axis=axis, keepdims=True),)


def _log_softmax_jvp(tans: Any, out: Any, x: Any, axis: int = -1) -> Any:
    t = tans[0]
    return t - np.sum(np.exp(out) * t, axis=neg_axis(axis, out.ndim), keepdims=True)


_log_softmax = defprim(
    "log_softmax",
    _log_softmax_kernel,
    vjp=_log_softmax_vjp,
    jvp=_log_softmax_jvp,
    save_args=False,
    save_out=True,
    vmap="reduce",
    doc="x - logsumexp(x) along ``axis``, stable; VJP g - softmax(x) * sum(g).",
    example=(
        "import autodiffx.nn.functional as F\n"
        "x = ad.tensor([0.0, 1000.0], requires_grad=True)\n"
        "F.log_softmax(x)\n"
        "(F.log_softmax(x) * ad.tensor([1.0, 0.0])).sum().backward()\n"
        "x.grad"
    ),
)


# ----- activations -------------------------------------------------------------------------
def heaviside(x: Any, value: float = 0.0) -> Tensor:
    """Heaviside step function: 0 for x < 0, ``value`` at x = 0, 1 for x > 0.

    The default ``value = 0`` makes ``heaviside`` the derivative of ``relu`` under the
    convention relu'(0) = 0. The derivative of ``heaviside`` is taken as 0 everywhere
    (also at the jump), so gradients through it vanish; use :func:`smooth_heaviside` for a
    differentiable surrogate.

    Parameters
    ----------
    x : Tensor or array_like
        Input.
    value : float, optional
        The value at 0 (default 0).

    Returns
    -------
    Tensor
        The step, with the dtype of ``x``.

    Examples
    --------
    >>> import autodiffx as ad
    >>> import autodiffx.nn.functional as F
    >>> x = ad.tensor([-1.0, 0.0, 2.0], requires_grad=True)
    >>> F.heaviside(x), F.heaviside(x, value=0.5)
    (tensor([0., 0., 1.], grad_fn=<heaviside>), tensor([0. , 0.5, 1. ], grad_fn=<heaviside>))
    >>> F.heaviside(x).sum().backward()
    >>> x.grad
    tensor([0., 0., 0.])
    """
    return _heaviside(_as_tensor(x), value)


def sigmoid(x: Any) -> Tensor:
    """Logistic sigmoid ``1 / (1 + exp(-x))``, stable for every x.

    A registry primitive: the value comes from ``scipy.special.expit`` (no overflow at any
    ``|x|``) and the derivative is ``out * (1 - out)``, which never forms ``exp(-x)``.

    Parameters
    ----------
    x : Tensor or array_like
        Input.

    Returns
    -------
    Tensor
        Values in [0, 1].

    Examples
    --------
    >>> import autodiffx as ad
    >>> import autodiffx.nn.functional as F
    >>> x = ad.tensor([-1000.0, 0.0, 1000.0], requires_grad=True)
    >>> F.sigmoid(x)
    tensor([0. , 0.5, 1. ], grad_fn=<sigmoid>)
    >>> F.sigmoid(x).sum().backward()
    >>> x.grad
    tensor([0.  , 0.25, 0.  ])
    """
    return _sigmoid(_as_tensor(x))


def smooth_heaviside(x: Any, beta: float = 1.0) -> Tensor:
    """Smoothed Heaviside step ``sigmoid(beta * x)``, in [0, 1]; tends to the step as beta grows.

    ``beta`` (default 1) is the sharpness: the slope at 0 is ``beta / 4``.

    Examples
    --------
    >>> import autodiffx as ad
    >>> import autodiffx.nn.functional as F
    >>> F.smooth_heaviside(ad.tensor([-1.0, 0.0, 1.0]), beta=50.0)
    tensor([1.92874985e-22, 5.00000000e-01, 1.00000000e+00])
    """
    x = _as_tensor(x)
    return _sigmoid(x if beta == 1.0 else x * beta)


def log_sigmoid(x: Any) -> Tensor:
    """``log(sigmoid(x)) = -softplus(-x)``, stable for every x.

    Examples
    --------
    >>> import autodiffx as ad
    >>> import autodiffx.nn.functional as F
    >>> F.log_sigmoid(ad.tensor([-1000.0, 0.0, 1000.0]))
    tensor([-1.00000000e+03, -6.93147181e-01, -0.00000000e+00])
    """
    return -_softplus(-_as_tensor(x), beta=1.0, threshold=np.inf)


def relu(x: Any) -> Tensor:
    """Rectified linear unit ``max(x, 0)``, with relu'(0) = 0.

    Built as ``ad.maximum(x, 0)``, whose tie with a constant gives the variable derivative
    0, so ``relu``, ``maximum(x, 0)``, ``clip(x, 0, None)`` and ``where(x > 0, x, 0)``
    agree at 0.

    Examples
    --------
    >>> import autodiffx as ad
    >>> import autodiffx.nn.functional as F
    >>> x = ad.tensor([-1.0, 0.0, 2.0], requires_grad=True)
    >>> F.relu(x).sum().backward()
    >>> x.grad
    tensor([0., 0., 1.])
    """
    return _maximum(_as_tensor(x), 0)


def leaky_relu(x: Any, negative_slope: float = 0.01) -> Tensor:
    """``x`` for x > 0, ``negative_slope * x`` otherwise; the derivative at 0 is the slope.

    Examples
    --------
    >>> import autodiffx as ad
    >>> import autodiffx.nn.functional as F
    >>> x = ad.tensor([-2.0, 0.0, 3.0], requires_grad=True)
    >>> F.leaky_relu(x, 0.1).sum().backward()
    >>> x.grad
    tensor([0.1, 0.1, 1. ])
    """
    x = _as_tensor(x)
    # NOTE: at 0 the left branch is taken, so leaky_relu'(0) = negative_slope (as PyTorch).
    return _where(x > 0, x, x * negative_slope)


def softplus(x: Any, beta: float = 1.0, threshold: float = 20.0) -> Tensor:
    """Softplus ``(1/beta) * log(1 + exp(beta * x))``, a smoothed ReLU; stable for every x.

    As in PyTorch the function reverts to ``x`` where ``beta * x > threshold`` (the
    difference there is below ``exp(-threshold) / beta``); pass ``threshold=inf`` for the
    exact function everywhere (see :func:`smooth_relu`). The derivative is
    ``sigmoid(beta * x)`` (1 above the threshold). A registry primitive.

    Parameters
    ----------
    x : Tensor or array_like
        Input.
    beta : float, optional
        Sharpness, > 0 (default 1); ``softplus -> relu`` as beta grows.
    threshold : float, optional
        Switch to the identity above this value of ``beta * x`` (default 20).

    Examples
    --------
    >>> import autodiffx as ad
    >>> import autodiffx.nn.functional as F
    >>> x = ad.tensor([-1000.0, 0.0, 1000.0], requires_grad=True)
    >>> F.softplus(x)
    tensor([0.00000000e+00, 6.93147181e-01, 1.00000000e+03], grad_fn=<softplus>)
    >>> F.softplus(x).sum().backward()
    >>> x.grad
    tensor([0. , 0.5, 1. ])
    """
    if not beta > 0:
        raise ValueError(f"softplus: beta must be > 0, got {beta}")
    return _softplus(_as_tensor(x), beta=float(beta), threshold=float(threshold))


def smooth_relu(x: Any, beta: float = 1.0) -> Tensor:
    """Smoothed ReLU: exact softplus ``(1/beta) log(1 + exp(beta x))`` with no threshold.

    ``smooth_relu(x, beta) -> relu(x)`` as beta grows; the gap is at most ``log(2)/beta``.

    Examples
    --------
    >>> import autodiffx as ad
    >>> import autodiffx.nn.functional as F
    >>> F.smooth_relu(ad.tensor([-1.0, 0.0, 1.0]), beta=100.0)
    tensor([3.72007598e-46, 6.93147181e-03, 1.00000000e+00])
    """
    return softplus(x, beta=beta, threshold=np.inf)


def smooth_leaky_relu(x: Any, negative_slope: float = 0.01, beta: float = 1.0) -> Tensor:
    """Smoothed leaky ReLU ``a x + (1 - a) * smooth_relu(x, beta)`` with ``a = negative_slope``.

    Its derivative ``a + (1 - a) sigmoid(beta x)`` runs smoothly from ``a`` to 1; it tends
    to :func:`leaky_relu` as beta grows.

    Examples
    --------
    >>> import autodiffx as ad
    >>> import autodiffx.nn.functional as F
    >>> F.smooth_leaky_relu(ad.tensor([-1000.0, 1000.0]), 0.1)
    tensor([-100., 1000.])
    """
    x = _as_tensor(x)
    a = negative_slope
    return x * a + smooth_relu(x, beta) * (1 - a)


def elu(x: Any, alpha: float = 1.0) -> Tensor:
    """Exponential linear unit: ``x`` for x > 0, ``alpha * (exp(x) - 1)`` otherwise.

    The exponential is only evaluated on ``min(x, 0)`` (no overflow for large x); the
    derivative at 0 is ``alpha`` (the left branch, as PyTorch).

    Examples
    --------
    >>> import autodiffx as ad
    >>> import autodiffx.nn.functional as F
    >>> F.elu(ad.tensor([-1000.0, 0.0, 1000.0]))
    tensor([  -1.,    0., 1000.])
    """
    x = _as_tensor(x)
    pos = x > 0
    # NOTE: the safe-where pattern: expm1 sees 0 where x > 0, so its masked branch is finite.
    return _where(pos, x, _expm1(_where(pos, 0, x)) * alpha)


def gelu(x: Any, approximate: str = "none") -> Tensor:
    """Gaussian error linear unit ``x * Phi(x)``.

    ``approximate="none"`` is the exact form ``0.5 x (1 + erf(x / sqrt(2)))``;
    ``approximate="tanh"`` is ``0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x**3)))``. The
    arguments of erf and of the cubic are clipped far out in the saturated range (erf and
    tanh are exactly ±1 there), so that nothing overflows at any ``|x|``, in value or derivative.

    Examples
    --------
    >>> import autodiffx as ad
    >>> import autodiffx.nn.functional as F
    >>> F.gelu(ad.tensor([-1000.0, 1.0, 1000.0]))
    tensor([-0.00000000e+00,  8.41344746e-01,  1.00000000e+03])
    >>> F.gelu(ad.tensor([1.0]), approximate="tanh")
    tensor([0.84119199])
    """
    x = _as_tensor(x)
    if approximate == "none":
        # NOTE: erf is exactly ±1 beyond |z| = 6; clipping z at ±30 (where erf' underflows to
        # 0) changes no value or derivative but keeps erf's rule exp(-z*z) from overflowing.
        return x * 0.5 * (_erf(_clip(x * _SQRT1_2, -30.0, 30.0)) + 1)
    if approximate == "tanh":
        xc = _clip(x, -1e4, 1e4)
        inner = (xc + xc * xc * xc * 0.044715) * _SQRT_2_OVER_PI
        return x * 0.5 * (tanh(inner) + 1)
    raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")


def _axis(axis: Any, dim: Any) -> Any:
    return axis if dim is None else dim


def logsumexp(x: Any, axis: Any = None, keepdims: bool = False, *, dim: Any = None) -> Tensor:
    """``log(sum(exp(x)))`` over ``axis`` (None: all), stable for large ``|x|``.

    The same primitive as ``ad.logsumexp``; ``dim=`` is accepted as PyTorch's spelling.

    Examples
    --------
    >>> import autodiffx as ad
    >>> import autodiffx.nn.functional as F
    >>> F.logsumexp(ad.tensor([1000.0, 1000.0]))
    tensor(1000.69314718)
    """
    return _logsumexp(_as_tensor(x), axis=_axis(axis, dim), keepdims=bool(keepdims))


def log_softmax(x: Any, axis: int = -1, *, dim: Any = None) -> Tensor:
    """``x - logsumexp(x)`` along ``axis`` (default last; ``dim=`` is an alias).

    A registry primitive (max-shifted kernel; VJP ``g - softmax(x) * sum(g)`` from the
    output, JVP ``t - sum(softmax(x) t)``): stable for logits of any size.

    Examples
    --------
    >>> import autodiffx as ad
    >>> import autodiffx.nn.functional as F
    >>> F.log_softmax(ad.tensor([0.0, 1000.0]))
    tensor([-1000.,     0.])
    """
    return _log_softmax(_as_tensor(x), axis=_axis(axis, dim))


def softmax(x: Any, axis: int = -1, *, dim: Any = None) -> Tensor:
    """``exp(x) / sum(exp(x))`` along ``axis`` (default last), as ``exp(log_softmax(x))``.

    Examples
    --------
    >>> import autodiffx as ad
    >>> import autodiffx.nn.functional as F
    >>> F.softmax(ad.tensor([[0.0, 0.0], [0.0, 1000.0]]))
    tensor([[0.5, 0.5],
            [0. , 1. ]])
    """
    return _exp(log_softmax(x, _axis(axis, dim)))


def dropout(x: Any, p: float = 0.5, training: bool = True, rng: Any = None) -> Tensor:
    """Zero each element with probability ``p`` and scale the rest by ``1 / (1 - p)``.

    Parameters
    ----------
    x : Tensor or array_like
        Input.
    p : float
        Drop probability in [0, 1].
    training : bool
        Identity when False.
    rng : numpy.random.Generator, int or None
        Source of the mask (an int seeds a new generator, so the mask repeats per call).

    Examples
    --------
    >>> import autodiffx as ad
    >>> import autodiffx.nn.functional as F
    >>> F.dropout(ad.ones(6), 0.5, rng=0)
    tensor([2., 0., 0., 0., 2., 2.])
    >>> F.dropout(ad.ones(3), 0.5, training=False)
    tensor([1., 1., 1.])
    """
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
    x = _as_tensor(x)
    if not training or p == 0.0:
        return x
    if p == 1.0:
        return x * 0
    dt = x.dtype if x.dtype.kind in "fc" else np.dtype(np.float64)
    return x * _draw(_dropout_mask, rng, x.shape, p, dt, what="dropout's mask")


# ----- linear layers -----------------------------------------------------------------------
def _linear_kernel(x: Any, weight: Any, bias: Any = None) -> Any:
    out = np.matmul(x, weight.T)
    if bias is None:
        return out
    if type(bias) is np.ndarray and bias.ndim == 1 and bias.dtype == out.dtype:
        out += bias  # the product is a fresh array: no second (N, out_features) buffer
        return out
    return out + bias


def _linear_vjp(needs: Any, g: Any, out: Any, x: Any, weight: Any, bias: Any) -> tuple[Any, ...]:
    # NOTE: the weight's cotangent is formed as g^T x, i.e. directly in the weight's (C) layout:
    # (x^T g)^T would be a transposed view, and every later pass over .grad (the optimizer's
    # update) would stride through it at a fraction of the speed. g may carry leading batch
    # axes; the engine sums x's extra leading axes away (for 2-D x the rule does).
    gx = g @ weight if needs[0] else None
    gw = gb = None
    if needs[1]:
        gw = g[..., :, None] * x if x.ndim == 1 else _mT(g) @ x
    if needs[2]:
        gb = g.sum(axis=-2) if x.ndim == 2 else g
    return gx, gw, gb


def _mT(a: Any) -> Any:
    """``a.mT``; Dask arrays have no ``.mT``."""
    return np.swapaxes(a, -1, -2) if is_lazy(a) else a.mT


def _linear_jvp(tans: Any, out: Any, x: Any, weight: Any, bias: Any) -> Any:
    # Batched tangents arrive padded to the output's rank (``broadcasting=True``).
    tx, tw, tb = tans
    return total((None if tx is None else tx @ weight.mT, None if tw is None else x @ tw.mT, tb))


_linear = defprim(
    "linear",
    _linear_kernel,
    vjp=_linear_vjp,
    jvp=_linear_jvp,
    broadcasting=True,
    vmap="lead",
    doc="Affine map x @ weight.T + bias (bias may be None), one node for a whole layer.",
    example=(
        "import autodiffx.nn.functional as F\n"
        "x = ad.tensor([[1.0, 2.0]], requires_grad=True)\n"
        "w = ad.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 2.0]], requires_grad=True)\n"
        "F.linear(x, w, ad.tensor([0.5, 0.0, -1.0]))\n"
        "F.linear(x, w).sum().backward()\n"
        "x.grad, w.grad"
    ),
)


def linear(input: Any, weight: Any, bias: Any = None) -> Tensor:
    """Affine map ``input @ weight.T + bias`` over the last axis (PyTorch's ``F.linear``).

    One registry primitive: the product and the bias share one output buffer, and the
    backward forms the weight's gradient ``g^T input`` directly in the weight's layout.

    Parameters
    ----------
    input : Tensor or array_like
        Shape (..., in_features), at least 1-D.
    weight : Tensor or array_like
        Shape (out_features, in_features).
    bias : Tensor or array_like, optional
        Shape (out_features,).

    Returns
    -------
    Tensor
        Shape (..., out_features).

    Examples
    --------
    >>> import autodiffx as ad
    >>> import autodiffx.nn.functional as F
    >>> x = ad.tensor([[1.0, 2.0]])
    >>> w = ad.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 2.0]], requires_grad=True)
    >>> F.linear(x, w, ad.tensor([0.5, 0.0, -1.0]))
    tensor([[1.5, 3. , 3. ]], grad_fn=<linear>)
    >>> F.linear(x, w).sum().backward()
    >>> w.grad
    tensor([[1., 2.],
            [1., 2.],
            [1., 2.]])
    """
    ws = _shape(weight)
    if len(ws) != 2:
        raise ValueError(f"linear: weight must be 2-D (out_features, in_features), got {ws}")
    if not _shape(input):
        raise ValueError("linear: input is 0-d (a scalar); it needs a feature axis")
    if bias is not None and len(_shape(bias)) != 1:
        raise ValueError(f"linear: bias must be 1-D (out_features,), got shape {_shape(bias)}")
    return _linear(input, weight, bias)


def _shape(v: Any) -> tuple[int, ...]:
    return v.shape if isinstance(v, Tensor | np.ndarray) else np.shape(v)


# ----- losses ------------------------------------------------------------------------------
def _reduce(loss: Tensor, reduction: str, name: str) -> Tensor:
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    if reduction == "none":
        return loss
    raise ValueError(f"{name}: reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


def _pair(input: Any, target: Any, name: str) -> tuple[Tensor, Any]:
    x = _as_tensor(input)
    t = target if isinstance(target, Tensor) else np.asarray(target)
    if np.broadcast_shapes(x.shape, t.shape) != x.shape:
        raise ValueError(
            f"{name}: target shape {t.shape} does not broadcast to input shape {x.shape} "
            "(broadcasting both ways is almost always a bug; reshape one of them)"
        )
    return x, t


def mse_loss(input: Any, target: Any, reduction: str = "mean") -> Tensor:
    """Mean squared error ``(input - target)**2``, reduced by ``reduction``.

    ``reduction`` is ``'mean'`` (default), ``'sum'`` or ``'none'``. The target must
    broadcast to the input's shape.

    Examples
    --------
    >>> import autodiffx as ad
    >>> import autodiffx.nn.functional as F
    >>> F.mse_loss(ad.tensor([1.0, 2.0]), ad.tensor([0.0, 0.0]))
    tensor(2.5)
    """
    x, t = _pair(input, target, "mse_loss")
    d = x - t
    return _reduce(d * d, reduction, "mse_loss")


def l1_loss(input: Any, target: Any, reduction: str = "mean") -> Tensor:
    """Mean absolute error ``|input - target|``; its derivative at 0 is 0 (abs'(0) = 0).

    Examples
    --------
    >>> import autodiffx as ad
    >>> import autodiffx.nn.functional as F
    >>> F.l1_loss(ad.tensor([1.0, -3.0]), ad.tensor([0.0, 0.0]), reduction="sum")
    tensor(4.)
    """
    x, t = _pair(input, target, "l1_loss")
    return _reduce(_abs(x - t), reduction, "l1_loss")


def huber_loss(input: Any, target: Any, reduction: str = "mean", delta: float = 1.0) -> Tensor:
    """Huber loss: ``0.5 d**2`` where ``|d| < delta``, else ``delta (|d| - 0.5 delta)``.

    ``d = input - target``. Both branches meet with equal slope at ``|d| = delta`` (the
    derivative there is ``delta * sign(d)``, continuous), and it is 0 at ``d = 0``.

    Examples
    --------
    >>> import autodiffx as ad
    >>> import autodiffx.nn.functional as F
    >>> F.huber_loss(ad.tensor([0.5, 3.0]), ad.tensor([0.0, 0.0]), reduction="none")
    tensor([0.125, 2.5  ])
    """
    if not delta > 0:
        raise ValueError(f"huber_loss: delta must be positive, got {delta}")
    x, t = _pair(input, target, "huber_loss")
    d = x - t
    a = _abs(d)
    loss = _where(a.data < delta, 0.5 * d * d, delta * (a - 0.5 * delta))
    return _reduce(loss, reduction, "huber_loss")


def _class_axis(x: Tensor) -> int:
    if x.ndim == 0:
        raise ValueError("cross_entropy: input must have a class axis (ndim >= 1)")
    return 0 if x.ndim == 1 else 1


def _weight_along(weight: Any, x: Tensor, cax: int) -> Any:
    w = weight if isinstance(weight, Tensor) else np.asarray(weight, dtype=x.dtype)
    if w.shape != (x.shape[cax],):
        raise ValueError(f"weight must have shape ({x.shape[cax]},), got {tuple(w.shape)}")
    return w.reshape((-1,) + (1,) * (x.ndim - cax - 1))


def _nll(
    logp: Tensor, target: Any, weight: Any, ignore_index: int, reduction: str, name: str
) -> tuple[Tensor, Any, Any]:
    """Negative log-likelihood of integer targets; also returns the per-sample weights."""
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"{name}: reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
    cax = _class_axis(logp)
    n_cls = logp.shape[cax]
    dt = logp.dtype
    t = np.asarray(target.data if isinstance(target, Tensor) else target)
    if t.dtype.kind not in "iu":
        raise TypeError(f"{name}: class-index targets must be integers, got dtype {t.dtype}")
    want = logp.shape[:cax] + logp.shape[cax + 1 :]
    if t.shape != want:
        raise ValueError(
            f"{name}: target shape {t.shape} does not match input shape {logp.shape} "
            f"(expected {want}: the input without its class axis {cax})"
        )
    valid = t != ignore_index
    all_valid = bool(valid.all())
    tt = t if all_valid else np.where(valid, t, 0)
    if tt.size and (tt.min() < 0 or tt.max() >= n_cls):
        bad = tt[(tt < 0) | (tt >= n_cls)].flat[0]
        raise IndexError(f"{name}: target {int(bad)} is out of bounds for {n_cls} classes")
    # NOTE: a gather, not a one-hot product, so that -inf logits of other classes (masks)
    # never meet a zero (-inf * 0 = nan).
    grids = np.ix_(*[np.arange(n) for n in want])
    picked = logp[(*grids[:cax], tt, *grids[cax:])]
    if not all_valid:
        picked = _where(valid, picked, 0.0)
    if weight is None:
        wsel = valid.astype(dt)
    else:
        w = weight.data if isinstance(weight, Tensor) else np.asarray(weight, dtype=dt)
        if w.shape != (n_cls,):
            raise ValueError(f"{name}: weight must have shape ({n_cls},), got {w.shape}")
        wsel = (w[tt] * valid).astype(dt)
        picked = picked * wsel
    if reduction == "none":
        return -picked, wsel, valid
    total = -picked.sum()
    if reduction == "sum":
        return total, wsel, valid
    den = wsel.sum()
    # NOTE: every target ignored (or zero weight) gives nan, as PyTorch, but silently.
    return (total * np.nan if den == 0 else total / den), wsel, valid


def nll_loss(
    input: Any,
    target: Any,
    weight: Any = None,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> Tensor:
    """Negative log-likelihood of integer class labels, given log-probabilities.

    ``input`` has shape (C,), (N, C) or (N, C, d1, ...) (classes on axis 1, or 0 for 1-D
    input) and ``target`` the same shape without the class axis. ``weight`` (C,) weights the
    classes; targets equal to ``ignore_index`` contribute nothing. ``'mean'`` divides by
    the sum of the weights of the counted targets, as PyTorch.

    Examples
    --------
    >>> import autodiffx as ad
    >>> import autodiffx.nn.functional as F
    >>> F.nll_loss(ad.log(ad.tensor([[0.5, 0.5], [0.25, 0.75]])), [0, 1])
    tensor(0.49041463)
    """
    return _nll(_as_tensor(input), target, weight, ignore_index, reduction, "nll_loss")[0]


def _xent_shift(x: Any) -> Any:
    """The shifted logits of the cross-entropy: ``x - max(x)`` along the last axis, a fresh
    array. A non-finite max (a row of -inf, or an inf) shifts its row by 0."""
    m = _row_max(x)
    if not bool(np.isfinite(m).all()):
        m = np.where(np.isfinite(m), m, 0)
    return np.subtract(x, m)


def _row_max(x: Any) -> Any:
    """``x.max(axis=-1, keepdims=True)``."""
    if type(x) is np.ndarray and x.ndim == 2 and x.shape[1] <= 32 and x.shape[0] >= 64:
        # NOTE: NumPy reduces a short last axis row by row (6.1 µs for 128 x 10); the max of
        # the transposed copy's columns runs down contiguous rows (2.5 µs, copy included).
        # The same values: only the sign of a zero maximum may differ, and s = x - m, exp(s)
        # and the loss come out the same either way.
        return np.ascontiguousarray(x.T).max(axis=0)[:, None]
    return x.max(axis=-1, keepdims=True)


def _row_sum(e: Any) -> Any:
    return e.sum(axis=-1)


def _xent_loss(s: Any, se: Any, target: Any, reduction: str) -> Any:
    """The loss from the shifted logits ``s`` and the sums ``se`` of their exponentials."""
    # (se >= 1 where the rows' maxima are finite; a row of -inf has se = 0, whose log, -inf,
    # is the value, without a warning)
    token = quiet_enter()
    try:
        lse = np.log(se)
    finally:
        quiet_exit(token)
    loss = lse - s[np.arange(s.shape[0]), target]  # (not -=: s may be a foreign Tensor)
    if reduction == "none":
        return loss
    total = loss.sum()
    return total / loss.shape[0] if reduction == "mean" else total


def _xent_kernel(x: Any, target: Any = None, reduction: str = "mean") -> Any:
    # Logits x (N, C), class indices target (N,), all in range: -log_softmax(x)[i, target[i]]
    # as lse_i - s[i, target[i]] with s = x - max (the value of the general path, bit for bit).
    s = _xent_shift(x)
    return _xent_loss(s, _row_sum(np.exp(s)), target, reduction)


def _xent_record(rec: Any, args: Any, params: dict[str, Any], res: Tensor) -> None:
    """ad.compile records the kernel as its parts, so that the VJP's calls of the same parts
    (:func:`_xent_vjp`) reuse them, as a hand-written step reuses ``exp(s)`` and its sums."""
    kw = {"reduction": "mean", **dict(zip(("x", "target", "reduction"), args)), **params}
    s, _, se = _xent_parts(rec, kw["x"])
    rec.call(_xent_loss, [s, se, kw["target"], kw["reduction"]], "cross_entropy", into=res)


def _xent_parts(rec: Any, x: Any) -> tuple[Any, Any, Any]:
    """The shifted logits, their exponentials and row sums, recorded as calls (the forward's
    and the backward's are the same steps)."""
    s = rec.call(_xent_shift, [x], "cross_entropy: logits - max")
    e = rec.call(np.exp, [s], "cross_entropy: exp")
    return s, e, rec.call(_row_sum, [e], "cross_entropy: sums")


def _xent_grad(x: Any, target: Any) -> Any:
    """``softmax(x) - onehot(target)``: the derivative of the per-sample losses."""
    onehot = np.arange(x.shape[-1]) == target[:, None]
    return np.exp(_log_softmax.call(x, axis=-1)) - onehot


def _xent_scaled(e: np.ndarray, se: np.ndarray, g: Any, target: np.ndarray) -> np.ndarray:
    """``(e / se - onehot(target)) * g`` (g per sample or one for all), ``e`` left as it is."""
    scale = g / se
    out = e * scale[:, None]
    out[np.arange(e.shape[0]), target] -= g
    return out


def _xent_plain(x: np.ndarray, g: np.ndarray, target: np.ndarray) -> np.ndarray:
    """``(softmax(x) - onehot(target)) * g`` (g per sample or one for all)."""
    e = np.exp(_xent_shift(x))
    return _xent_scaled(e, _row_sum(e), g, target)


def _xent_vjp(
    needs: Any, g: Any, out: Any, x: Any, target: Any = None, reduction: str = "mean"
) -> Any:
    n = x.shape[0]
    if reduction == "mean":
        g = g / n
    if g.ndim == (reduction == "none"):
        if type(x) is np.ndarray:
            # NOTE: the plain backward (raw arrays, no batch axes): (softmax - onehot) * g
            # built in one buffer in place, as a hand-written step does; the general form
            # below is the same formula for recorded (higher-order) and batched passes.
            return (_xent_plain(x, g, target),)
        if STATE.mode & COMPILE and STATE.mode & NO_GRAD and not (x._tan or g._tan):
            # ad.compile records the plain formula's parts (the same bits as eager), the
            # first three shared with the forward's (_xent_record)
            rec = STATE.compiler
            _, e, se = _xent_parts(rec, x)
            return (rec.call(_xent_scaled, [e, se, g, target], "cross_entropy's VJP"),)
    # One cotangent per sample ('none') or one for the total; either may carry batch axes.
    g = g[..., None] if reduction == "none" else g[..., None, None]
    return (_xent_grad(x, target) * g,)


def _xent_jvp(tans: Any, out: Any, x: Any, target: Any = None, reduction: str = "mean") -> Any:
    per_sample = np.sum(_xent_grad(x, target) * tans[0], axis=-1)
    if reduction == "none":
        return per_sample
    total = np.sum(per_sample, axis=-1)
    return total / x.shape[0] if reduction == "mean" else total


_xent = defprim(
    "softmax_cross_entropy",
    _xent_kernel,
    vjp=_xent_vjp,
    jvp=_xent_jvp,
    export=False,
    record=_xent_record,
    doc=(
        "Softmax cross-entropy of logits (N, C) and in-range class indices ``target`` (N,), "
        "reduced by ``reduction``; VJP (softmax(x) - onehot) * g. The fast path of "
        "``cross_entropy``."
    ),
    example=(
        "from autodiffx.nn.functional import _xent\n"
        "x = ad.tensor([[0.0, 0.0], [0.0, 1000.0]], requires_grad=True)\n"
        "_xent(x, target=np.array([0, 1]))\n"
        "_xent(x, target=np.array([0, 1])).backward()\n"
        "x.grad"
    ),
)


_UNSIGNED = {k: np.dtype(f"u{k}") for k in (1, 2, 4, 8)}


def _xent_fast(x: Tensor, target: Any, ignore_index: int) -> Any:
    """The class-index target as an array if the fused primitive applies, else None.

    It applies to logits (N, C) with N, C > 0 and every target a valid class, none equal
    to ``ignore_index``; anything else (including every error) takes the general path.
    """
    if x.ndim != 2 or x.dtype.kind != "f" or x.size == 0:
        return None
    if isinstance(target, Tensor) and STATE.mode & COMPILE:  # a guard on the check only
        what = "cross_entropy's targets are valid class indices"
        return STATE.compiler.check(
            target, lambda t, s=x.shape: _xent_valid(t, s, ignore_index), what
        )
    t = target.data if isinstance(target, Tensor) else target
    if type(t) is not np.ndarray:
        t = np.asarray(t)
    return t if _xent_valid(t, x.shape, ignore_index) else None


def _xent_valid(t: np.ndarray, shape: tuple[int, ...], ignore_index: int) -> bool:
    """Whether ``t`` holds class indices of logits of ``shape`` (N, C), none
    ``ignore_index``."""
    if t.dtype.kind not in "iu" or t.shape != shape[:1]:
        return False
    n_cls = shape[1]
    # Negative indices read as unsigned are huge: one max() checks both bounds.
    if t.view(_UNSIGNED[t.itemsize]).max() >= n_cls:
        return False
    return not (0 <= ignore_index < n_cls and bool((t == ignore_index).any()))


def cross_entropy(
    input: Any,
    target: Any,
    weight: Any = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
) -> Tensor:
    """Cross-entropy between logits and integer class labels or class probabilities.

    Same conventions as PyTorch's ``cross_entropy``: classes on axis 1 (axis 0 for a 1-D
    input). An integer ``target`` holds class indices (shape of the input without the class
    axis; ``ignore_index`` entries are skipped); a floating ``target`` of the input's shape
    holds probabilities (soft labels, differentiable). ``weight`` (C,) weights the classes,
    ``label_smoothing`` in [0, 1] mixes the target with the uniform distribution.
    Computed with ``log_softmax``, so it is stable for logits of any size. Logits (N, C)
    with in-range class indices and no weights, ignored entries or smoothing (the common
    training case) take one fused primitive, whose backward is ``softmax - onehot``.

    Parameters
    ----------
    input : Tensor
        Logits, shape (C,), (N, C) or (N, C, d1, ...).
    target : array_like of int, or Tensor / array_like of float
        Class indices or probabilities.
    weight : array_like, optional
        Per-class weights.
    ignore_index : int
        Class index to skip (integer targets only).
    reduction : {'mean', 'sum', 'none'}
        ``'mean'`` divides by the summed weights of the counted targets for class indices,
        and by the number of samples for probabilities (as PyTorch).
    label_smoothing : float
        Amount of smoothing.

    Examples
    --------
    >>> import autodiffx as ad
    >>> import autodiffx.nn.functional as F
    >>> logits = ad.tensor([[2.0, 0.0, -1.0], [0.0, 1000.0, 0.0]], requires_grad=True)
    >>> F.cross_entropy(logits, [0, 1])
    tensor(0.08492301, grad_fn=<softmax_cross_entropy>)
    >>> F.cross_entropy(logits, ad.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]))
    tensor(0.08492301, grad_fn=<divide>)
    """
    x = _as_tensor(input)
    if weight is None and label_smoothing == 0 and reduction in ("mean", "sum", "none"):
        t = _xent_fast(x, target, ignore_index)
        if t is not None:
            return _xent(x, target=t, reduction=reduction)
    cax = _class_axis(x)
    n_cls = x.shape[cax]
    logp = log_softmax(x, axis=cax)
    tdt = target.dtype if isinstance(target, Tensor | np.ndarray) else np.asarray(target).dtype
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"cross_entropy: label_smoothing must be in [0, 1], got {label_smoothing}")
    if tdt.kind in "fc":
        t = target if isinstance(target, Tensor) else np.asarray(target, dtype=x.dtype)
        if t.shape != x.shape:
            raise ValueError(
                f"cross_entropy: probability targets must have the input's shape {x.shape}, "
                f"got {t.shape} (class indices must be integers)"
            )
        if label_smoothing > 0:
            t = t * (1 - label_smoothing) + label_smoothing / n_cls
        inf = np.isinf(logp.data)
        if inf.any():  # masked logits: 0 * -inf counts as 0 (the limit p log p -> 0)
            logp = _where(
                inf & (np.asarray(t.data if isinstance(t, Tensor) else t) == 0), 0.0, logp
            )
        prod = logp * t
        if weight is not None:
            prod = prod * _weight_along(weight, x, cax)
        if reduction == "none":
            return -prod.sum(axis=cax)
        if reduction == "sum":
            return -prod.sum()
        if reduction == "mean":
            return -prod.sum() / (x.size // n_cls)
        raise ValueError(
            f"cross_entropy: reduction must be 'mean', 'sum' or 'none', got {reduction!r}"
        )
    nll, wsel, valid = _nll(logp, target, weight, ignore_index, reduction, "cross_entropy")
    if label_smoothing == 0:
        return nll
    # Label smoothing on class indices, exactly as PyTorch (LossNLL.cpp).
    wl = logp if weight is None else logp * _weight_along(weight, x, cax)
    smooth = -wl.sum(axis=cax)
    if not valid.all():
        smooth = _where(valid, smooth, 0.0)
    if reduction == "none":
        ret = smooth
    elif reduction == "sum":
        ret = smooth.sum()
    else:
        den = wsel.sum()
        ret = smooth.sum() * np.nan if den == 0 else smooth.sum() / den
    return nll * (1 - label_smoothing) + ret * (label_smoothing / n_cls)


def binary_cross_entropy(
    input: Any, target: Any, weight: Any = None, reduction: str = "mean"
) -> Tensor:
    """Binary cross-entropy ``-(y log p + (1 - y) log(1 - p))`` of probabilities ``p``.

    As PyTorch, each logarithm is clamped at -100, so p = 0 or 1 gives a finite loss and
    gradient (the clamp is applied to the argument, ``log(max(p, e**-100))``; the
    derivative is 0 where the clamp is active). Prefer
    :func:`binary_cross_entropy_with_logits` for logits.

    Examples
    --------
    >>> import autodiffx as ad
    >>> import autodiffx.nn.functional as F
    >>> F.binary_cross_entropy(ad.tensor([0.5, 1.0, 0.0]), ad.tensor([1.0, 1.0, 1.0]))
    tensor(33.56438239)
    """
    x, t = _pair(input, target, "binary_cross_entropy")
    if np.any((x.data < 0) | (x.data > 1)):
        raise ValueError("binary_cross_entropy: all elements of input should be between 0 and 1")
    loss = -(t * _log(_maximum(x, _LOG_CLAMP)) + (1 - t) * _log(_maximum(1 - x, _LOG_CLAMP)))
    if weight is not None:
        loss = loss * weight
    return _reduce(loss, reduction, "binary_cross_entropy")


def binary_cross_entropy_with_logits(
    input: Any,
    target: Any,
    weight: Any = None,
    reduction: str = "mean",
    pos_weight: Any = None,
) -> Tensor:
    """Binary cross-entropy of ``sigmoid(input)``, computed stably from the logits.

    ``loss = (1 - y) x + (1 + (pos_weight - 1) y) softplus(-x)`` (PyTorch's form): finite
    with a finite gradient ``sigmoid(x) - y`` (without ``pos_weight``) for every x.

    Examples
    --------
    >>> import autodiffx as ad
    >>> import autodiffx.nn.functional as F
    >>> x = ad.tensor([-1000.0, 0.0, 1000.0], requires_grad=True)
    >>> F.binary_cross_entropy_with_logits(x, ad.tensor([1.0, 1.0, 0.0]), reduction="none")
    tensor([1.00000000e+03, 6.93147181e-01, 1.00000000e+03], grad_fn=<add>)
    """
    x, t = _pair(input, target, "binary_cross_entropy_with_logits")
    sp_neg = _softplus(-x, beta=1.0, threshold=np.inf)
    if pos_weight is None:
        loss = x * (1 - t) + sp_neg
    else:
        loss = x * (1 - t) + sp_neg * ((pos_weight - 1) * t + 1)
    if weight is not None:
        loss = loss * weight
    return _reduce(loss, reduction, "binary_cross_entropy_with_logits")


def hinge_loss(input: Any, target: Any, margin: float = 1.0, reduction: str = "mean") -> Tensor:
    """Binary SVM hinge loss ``max(0, margin - y * f)`` for labels ``y`` in {-1, +1}.

    At the kink (``y f = margin``) the derivative is 0 (relu'(0) = 0): a point exactly on
    the margin does not push. See :func:`soft_margin_hinge_loss` for a smooth variant.

    Examples
    --------
    >>> import autodiffx as ad
    >>> import autodiffx.nn.functional as F
    >>> F.hinge_loss(ad.tensor([2.0, 0.5, -1.0]), ad.tensor([1.0, 1.0, 1.0]), reduction="none")
    tensor([0. , 0.5, 2. ])
    """
    x, t = _pair(input, target, "hinge_loss")
    return _reduce(_maximum(margin - x * t, 0), reduction, "hinge_loss")


def soft_margin_hinge_loss(
    input: Any, target: Any, margin: float = 1.0, beta: float = 1.0, reduction: str = "mean"
) -> Tensor:
    """Smoothed hinge loss ``smooth_relu(margin - y f, beta)`` for labels y in {-1, +1}.

    ``(1/beta) log(1 + exp(beta (margin - y f)))`` is smooth everywhere, tends to
    :func:`hinge_loss` as beta grows (the gap is at most ``log(2)/beta``) and is stable for
    scores of any size. ``margin=0, beta=1`` is PyTorch's ``soft_margin_loss``.

    Examples
    --------
    >>> import autodiffx as ad
    >>> import autodiffx.nn.functional as F
    >>> f, y = ad.tensor([2.0, 0.5, -1000.0]), ad.tensor([1.0, 1.0, 1.0])
    >>> F.soft_margin_hinge_loss(f, y, beta=10.0, reduction="none")
    tensor([4.53988992e-06, 5.00671535e-01, 1.00100000e+03])
    """
    x, t = _pair(input, target, "soft_margin_hinge_loss")
    return _reduce(smooth_relu(margin - x * t, beta), reduction, "soft_margin_hinge_loss")


def soft_margin_loss(input: Any, target: Any, reduction: str = "mean") -> Tensor:
    """PyTorch's ``soft_margin_loss``: ``log(1 + exp(-y * x))`` for labels y in {-1, +1}.

    Examples
    --------
    >>> import autodiffx as ad
    >>> import autodiffx.nn.functional as F
    >>> F.soft_margin_loss(ad.tensor([0.0, 1000.0]), ad.tensor([1.0, -1.0]))
    tensor(500.34657359)
    """
    return soft_margin_hinge_loss(input, target, margin=0.0, beta=1.0, reduction=reduction)


# ----- convolution, pooling, batch norm, channel dropout (their own modules) ---------------
from .channels import batch_norm, dropout2d  # noqa: E402
from .conv import avg_pool2d, conv1d, conv2d  # noqa: E402
from .pooling import max_pool2d  # noqa: E402

__all__ += ["avg_pool2d", "batch_norm", "conv1d", "conv2d", "dropout2d", "max_pool2d"]
