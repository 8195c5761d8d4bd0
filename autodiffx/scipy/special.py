"""``ad.scipy.special``: SciPy's special functions, differentiated (SciPy's kernels for values)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import scipy.special as sp

from .._convert import live
from .._registry import UFUNC_MAP, Primitive, defprim
from .._tensor import Tensor
from ..nn.functional import log_softmax as _log_softmax
from ..nn.functional import sigmoid as _sigmoid
from ..ops import digamma, erf, erfinv, gammaln, polygamma, sinc
from ..ops.elementwise import exp as _exp
from ..ops.elementwise import log as _log
from ..ops.elementwise import where as _where
from ..ops.reduction import logsumexp as _logsumexp

__all__ = [
    "beta",
    "betainc",
    "betaln",
    "digamma",
    "entr",
    "erf",
    "erfc",
    "erfcinv",
    "erfinv",
    "expit",
    "gamma",
    "gammainc",
    "gammaincc",
    "gammaln",
    "i0",
    "i0e",
    "i1",
    "i1e",
    "iv",
    "ive",
    "jv",
    "kl_div",
    "log_expit",
    "log_ndtr",
    "log_softmax",
    "logit",
    "logsumexp",
    "multigammaln",
    "ndtr",
    "ndtri",
    "polygamma",
    "psi",
    "rel_entr",
    "sinc",
    "softmax",
    "spence",
    "stdtr",
    "xlog1py",
    "xlogy",
]

_SQRT_2PI = math.sqrt(2 * math.pi)
_LOG_SQRT_2PI = math.log(_SQRT_2PI)
_TWO_OVER_SQRT_PI = 2.0 / math.sqrt(math.pi)
_SQRT_PI_OVER_2 = math.sqrt(math.pi) / 2.0

psi = digamma


def _example(name: str, *data: str) -> str:
    """A doc example: the function and its gradient at ``data`` (one list per argument)."""
    names = "xyz"[: len(data)]
    lines = [f"{n} = ad.tensor({d}, requires_grad=True)" for n, d in zip(names, data)]
    call = f"ad.scipy.special.{name}({', '.join(names)})"
    grads = ", ".join(f"{n}.grad" for n in names)
    return "\n".join([*lines, call, f"{call}.sum().backward()", grads])


def _fn(name: str, ufunc: np.ufunc, derivs: tuple[Any, ...], doc: str, *data: str, **kw: Any):
    argnames = ("x",) if len(derivs) == 1 else ("x", "y") if len(derivs) == 2 else ("a", "b", "x")
    example = kw.pop("example", None) or _example(name, *(data or ("[0.25, 0.5]",)))
    return defprim(name, ufunc, derivs=derivs, argnames=argnames, doc=doc, example=example, **kw)


# ----- gamma and beta functions ------------------------------------------------------------
gamma = _fn(
    "gamma",
    sp.gamma,
    (lambda x, out: out * digamma.call(x),),
    "Elementwise Gamma(x); its derivative is Gamma(x) digamma(x).",
    "[0.5, 2.5]",
)
beta = _fn(
    "beta",
    sp.beta,
    (
        lambda x, y, out: out * (digamma.call(x) - digamma.call(x + y)),
        lambda x, y, out: out * (digamma.call(y) - digamma.call(x + y)),
    ),
    "Elementwise Beta(a, b) = Gamma(a) Gamma(b) / Gamma(a + b).",
    "[0.5, 2.5]",
    "[1.5, 3.0]",
)
betaln = _fn(
    "betaln",
    sp.betaln,
    (
        lambda x, y: digamma.call(x) - digamma.call(x + y),
        lambda x, y: digamma.call(y) - digamma.call(x + y),
    ),
    "Elementwise log|Beta(a, b)|.",
    "[0.5, 2.5]",
    "[1.5, 3.0]",
)

# ----- error function family ---------------------------------------------------------------
erfc = _fn(
    "erfc",
    sp.erfc,
    (lambda x: -_TWO_OVER_SQRT_PI * np.exp(-x * x),),
    "Elementwise complementary error function 1 - erf(x), accurate for large x.",
    derivs2=(lambda x, d: -2 * x * d,),
)
# NOTE: inverse functions: if y = f^-1(x) then dy/dx = 1 / f'(y). erfc' = -2/sqrt(pi) e^(-y^2)
# gives erfcinv' = -sqrt(pi)/2 e^(y^2); ndtr' = e^(-y^2/2)/sqrt(2 pi) gives
# ndtri' = sqrt(2 pi) e^(y^2/2) (DLMF 7.2.1, 7.17.2; as JAX's erfcinv and ndtri rules).
erfcinv = _fn(
    "erfcinv",
    sp.erfcinv,
    (lambda out: -_SQRT_PI_OVER_2 * np.exp(out * out),),
    "Elementwise inverse of erfc on (0, 2).",
    "[0.5, 1.5]",
    derivs2=(lambda out, d: 2 * out * d * d,),
)
ndtr = _fn(
    "ndtr",
    sp.ndtr,
    (lambda x: np.exp(-0.5 * x * x) / _SQRT_2PI,),
    "Elementwise standard normal CDF; its derivative is the standard normal density.",
    derivs2=(lambda x, d: -x * d,),
)
ndtri = _fn(
    "ndtri",
    sp.ndtri,
    (lambda out: _SQRT_2PI * np.exp(0.5 * out * out),),
    "Elementwise inverse of the standard normal CDF (the probit) on (0, 1).",
    derivs2=(lambda out, d: out * d * d,),
)


# NOTE: log_ndtr' = phi(x) / Phi(x) (the inverse Mills ratio) is evaluated as
# exp(log phi(x) - log_ndtr(x)): phi and Phi both underflow for x << 0 (x = -40 gives 0/0),
# their logs do not, and the ratio ~ -x there. Its derivative is d (-x - d).
log_ndtr = _fn(
    "log_ndtr",
    sp.log_ndtr,
    (lambda x, out: np.exp(-0.5 * x * x - _LOG_SQRT_2PI - out),),
    "Elementwise log of the standard normal CDF, accurate far in both tails.",
    "[-40.0, 0.5]",
    derivs2=(lambda x, d: -d * (x + d),),
)

# ----- logistic family ---------------------------------------------------------------------
expit = _sigmoid
logit = _fn(
    "logit",
    sp.logit,
    (lambda x: 1 / (x * (1 - x)),),
    "Elementwise log(p / (1 - p)) on (0, 1), the inverse of ``expit``.",
)
log_expit = _fn(
    "log_expit",
    sp.log_expit,
    (lambda x: sp.expit(-x),),
    "Elementwise log(expit(x)), stable for large |x|; its derivative is expit(-x).",
    "[-1000.0, 0.5]",
)


# ----- x log y and entropies ---------------------------------------------------------------
def _x_over(x: Any, y: Any) -> Any:
    # NOTE: xlogy(0, y) = 0 for every y, so its y-derivative is 0 where x == 0 (not 0/0).
    return np.where(x == 0, 0.0, x / y)


xlogy = _fn(
    "xlogy",
    sp.xlogy,
    (lambda x, y: np.log(y), _x_over),
    "Elementwise x * log(y), 0 where x == 0.",
    "[0.0, 0.5]",
    "[1.5, 3.0]",
)
xlog1py = _fn(
    "xlog1py",
    sp.xlog1py,
    (lambda x, y: np.log1p(y), lambda x, y: _x_over(x, 1 + y)),
    "Elementwise x * log1p(y), 0 where x == 0.",
    "[0.0, 0.5]",
    "[0.5, 3.0]",
)
entr = _fn(
    "entr",
    sp.entr,
    (lambda x: -np.log(x) - 1,),
    "Elementwise -x log(x) (0 at 0, -inf for x < 0).",
    derivs2=(lambda x: -1 / x,),
)
rel_entr = _fn(
    "rel_entr",
    sp.rel_entr,
    (lambda x, y: np.log(x / y) + 1, lambda x, y: -x / y),
    "Elementwise x log(x / y) (0 at x == 0, y >= 0; inf elsewhere outside x, y > 0).",
    "[0.25, 0.5]",
    "[0.5, 0.2]",
)
kl_div = _fn(
    "kl_div",
    sp.kl_div,
    (lambda x, y: np.log(x / y), lambda x, y: 1 - x / y),
    "Elementwise x log(x / y) - x + y.",
    "[0.25, 0.5]",
    "[0.5, 0.2]",
)


def _dspence(x: Any) -> Any:
    # NOTE: spence(z) = integral from 1 to z of log(t) / (1 - t) dt (SciPy's convention), so
    # its derivative is log(z) / (1 - z), whose limit at z = 1 is -1.
    one = x == 1
    return np.where(one, -1.0, np.log(x) / (1 - np.where(one, 0.0, x)))


spence = _fn("spence", sp.spence, (_dspence,), "Elementwise dilogarithm (SciPy's spence, z >= 0).")


# ----- modified and ordinary Bessel functions ---------------------------------------------
# NOTE: the recurrences I_v' = (I_{v-1} + I_{v+1}) / 2 and J_v' = (J_{v-1} - J_{v+1}) / 2 (the
# same for Y_v) are DLMF 10.29.1 and 10.6.1; the exponentially scaled ive = iv e^(-|x|) adds
# -sign(x) ive. For v = 0, 1 these give i0' = i1 and i1' = (i0 + iv(2, x)) / 2 without the
# i1(x) / x of the textbook form, so x = 0 needs no special case.
i0 = _fn("i0", sp.i0, (lambda x: i1.call(x),), "Elementwise modified Bessel function I_0(x).")
i1 = _fn(
    "i1",
    sp.i1,
    (lambda x: (i0.call(x) + _iv2(x)) / 2,),
    "Elementwise modified Bessel function I_1(x).",
)


def _iv2(x: Any) -> Any:
    # NOTE: SciPy's iv(2, x) is nan for subnormal x (where it is x**2 / 8 ~ 0): masked there.
    tiny = np.abs(x) < 1e-150
    return np.where(tiny, 0.0, _iv.call(2.0, np.where(tiny, 1.0, x)))


i0e = _fn(
    "i0e",
    sp.i0e,
    (lambda x, out: i1e.call(x) - np.sign(x) * out,),
    "Elementwise exponentially scaled I_0(x) e^(-|x|); its derivative at the kink 0 is 0.",
)
i1e = _fn(
    "i1e",
    sp.i1e,
    (lambda x, out: (i0e.call(x) + _ive.call(2.0, x)) / 2 - np.sign(x) * out,),
    "Elementwise exponentially scaled I_1(x) e^(-|x|).",
)


def _in_x_only(
    name: str, ufunc: np.ufunc, dx: Any, argnames: tuple[str, ...], doc: str, consts: str
) -> Primitive:
    """A primitive differentiated with respect to its last argument only (``dx``): the others
    are ``nondiff`` (a variable there is refused by :func:`_refusing`)."""
    return defprim(
        name,
        ufunc,
        derivs=(None,) * (len(argnames) - 1) + (dx,),
        argnames=argnames,
        nondiff=tuple(range(len(argnames) - 1)),
        doc=doc,
        example=(
            f"x = ad.tensor([0.5, 0.2], requires_grad=True)\nad.scipy.special.{name}({consts}, x)"
        ),
    )


def _order_fn(name: str, ufunc: np.ufunc, dx: Any, what: str) -> Primitive:
    doc = f"Elementwise {what} of order v (differentiated with respect to x only)."
    return _in_x_only(name, ufunc, dx, ("v", "x"), doc, "1.5")


_iv = _order_fn(
    "iv", sp.iv, lambda v, x: (_iv.call(v - 1, x) + _iv.call(v + 1, x)) / 2, "modified Bessel I_v"
)
_ive = _order_fn(
    "ive",
    sp.ive,
    lambda v, x, out: (_ive.call(v - 1, x) + _ive.call(v + 1, x)) / 2 - np.sign(x) * out,
    "exponentially scaled I_v(x) e^(-|x|)",
)
_jv = _order_fn(
    "jv", sp.jv, lambda v, x: (_jv.call(v - 1, x) - _jv.call(v + 1, x)) / 2, "Bessel J_v"
)
_yv = _order_fn(
    "yv", sp.yv, lambda v, x: (_yv.call(v - 1, x) - _yv.call(v + 1, x)) / 2, "Bessel Y_v"
)


# ----- incomplete gamma and beta functions, Student's t CDF --------------------------------
# NOTE: derivatives with respect to x only, the integrands: P(a, x)' = x^(a-1) e^(-x) / Gamma(a)
# (DLMF 8.8.13), I_x(a, b)' = x^(a-1) (1-x)^(b-1) / B(a, b) (DLMF 8.17.1 differentiated),
# stdtr(df, t)' = the t density. The shape parameters have no closed-form derivative:
# a variable there is refused, never differentiated as a constant.
def _dgammainc(a: Any, x: Any) -> Any:
    return np.exp(xlogy.call(a - 1, x) - x - gammaln.call(a))


_gammainc = _in_x_only(
    "gammainc",
    sp.gammainc,
    _dgammainc,
    ("a", "x"),
    "Regularized lower incomplete gamma P(a, x) (differentiated with respect to x only).",
    "1.5",
)
_gammaincc = _in_x_only(
    "gammaincc",
    sp.gammaincc,
    lambda a, x: -_dgammainc(a, x),
    ("a", "x"),
    "Regularized upper incomplete gamma Q(a, x) (differentiated with respect to x only).",
    "1.5",
)
_betainc = _in_x_only(
    "betainc",
    sp.betainc,
    lambda a, b, x: np.exp(xlogy.call(a - 1, x) + xlog1py.call(b - 1, -x) - betaln.call(a, b)),
    ("a", "b", "x"),
    "Regularized incomplete beta I_x(a, b) (differentiated with respect to x only).",
    "1.5, 2.0",
)


def _dstdtr(df: Any, x: Any) -> Any:
    h = (df + 1) / 2
    logc = gammaln.call(h) - gammaln.call(df / 2) - 0.5 * np.log(df * math.pi)
    return np.exp(logc - h * np.log1p(x * x / df))


_stdtr = _in_x_only(
    "stdtr",
    sp.stdtr,
    _dstdtr,
    ("df", "x"),
    "Student's t CDF with df degrees of freedom (differentiated with respect to t only).",
    "3.0",
)


def _refusing(p: Primitive, names: tuple[str, ...], consts: str) -> Any:
    """The public function of ``p``: refuses a variable in a position it does not differentiate."""

    def f(*args: Any) -> Any:
        for i in sorted(p.nondiff):
            a = args[i] if i < len(args) else None
            why = live(a) if isinstance(a, Tensor) else None
            if why is not None:
                raise NotImplementedError(
                    f"ad.scipy.special.{p.name}: argument {names[i]} is a Tensor that {why}, but "
                    f"{p.name} is differentiated with respect to {names[-1]} only (the "
                    f"derivative in {names[i]} has no closed form); pass {names[i]}.detach() "
                    "to treat it as a constant"
                )
        return p(*args)

    f.__name__ = f.__qualname__ = p.name
    f.__doc__ = (
        f"{p._doc}\n\nA variable {' or '.join(names[:-1])} raises NotImplementedError."
        "\n\nExamples\n--------\n>>> import numpy as np, scipy.special\n"
        ">>> import autodiffx as ad\n>>> x = ad.tensor([0.5, 0.25], requires_grad=True)\n"
        f">>> y = ad.scipy.special.{p.name}({consts}, x)\n>>> y.sum().backward()\n"
        f">>> bool(np.allclose(y.detach().numpy(), scipy.special.{p.name}({consts}, [0.5, 0.25])))"
        "\nTrue\n"
    )
    UFUNC_MAP[p.kernel] = f  # scipy.special.<name> on Tensors gets the check too
    return f


iv = _refusing(_iv, ("v", "x"), "1.5")
ive = _refusing(_ive, ("v", "x"), "1.5")
jv = _refusing(_jv, ("v", "x"), "1.5")
yv = _refusing(_yv, ("v", "x"), "1.5")
gammainc = _refusing(_gammainc, ("a", "x"), "1.5")
gammaincc = _refusing(_gammaincc, ("a", "x"), "1.5")
betainc = _refusing(_betainc, ("a", "b", "x"), "1.5, 2.0")
stdtr = _refusing(_stdtr, ("df", "t"), "3.0")


# ----- composites --------------------------------------------------------------------------
def multigammaln(a: Any, d: int) -> Tensor:
    """Log of the multivariate gamma function of dimension ``d`` (``d`` an integer >= 1).

    ``d (d - 1) / 4 log(pi) + sum_j gammaln(a - j / 2)`` for j = 0 .. d - 1, elementwise in
    ``a`` (SciPy requires ``a > (d - 1) / 2``).

    Examples
    --------
    >>> import autodiffx as ad
    >>> a = ad.tensor([2.0, 3.5], requires_grad=True)
    >>> ad.scipy.special.multigammaln(a, 2)
    tensor([0.45158271, 2.46648573], grad_fn=<add>)
    """
    if int(d) != d or d < 1:
        raise ValueError(f"multigammaln: d must be an integer >= 1, got {d!r}")
    d = int(d)
    a = _as_float_tensor(a)
    if np.any(a.data <= (d - 1) / 2):
        raise ValueError(f"multigammaln: condition a > (d - 1) / 2 = {(d - 1) / 2} not met")
    out = gammaln(a)
    for j in range(1, d):
        out = out + gammaln(a - j / 2)
    return out + d * (d - 1) / 4 * math.log(math.pi)


def _as_float_tensor(x: Any) -> Tensor:
    if isinstance(x, Tensor):
        return x
    arr = np.asarray(x)
    return Tensor(arr if arr.dtype.kind in "fc" else arr.astype(np.float64))


def logsumexp(
    a: Any, axis: Any = None, b: Any = None, keepdims: bool = False, return_sign: bool = False
) -> Any:
    """``log(sum(b * exp(a)))`` over ``axis``, stable (as ``scipy.special.logsumexp``).

    Differentiable in ``a`` and in the weights ``b``. With ``return_sign=True`` the result is
    ``(log|s|, sign(s))`` (the sign is not differentiable); without it a negative sum gives
    nan, as SciPy's. Without ``b`` and ``return_sign`` it is the ``ad.logsumexp`` primitive.

    Examples
    --------
    >>> import autodiffx as ad
    >>> a = ad.tensor([1000.0, 1000.0], requires_grad=True)
    >>> b = ad.tensor([1.0, 3.0], requires_grad=True)
    >>> ad.scipy.special.logsumexp(a, b=b)
    tensor(1001.38629436, grad_fn=<reshape>)
    >>> ad.scipy.special.logsumexp(a, b=b).backward()
    >>> a.grad, b.grad
    (tensor([0.25, 0.75]), tensor([0.25, 0.25]))
    """
    a = _as_float_tensor(a)
    if b is None and not return_sign:
        return _logsumexp(a, axis=axis, keepdims=bool(keepdims))
    b = _as_float_tensor(1.0 if b is None else b)
    shift = np.broadcast_to(a.data, np.broadcast_shapes(a.shape, b.shape))
    if live(b) is None and np.any(b.data == 0):
        # Constant weights: entries with b == 0 do not count (SciPy's rule), nor overflow.
        a = _where(b.data == 0, -np.inf, a)
        shift = np.where(b.data == 0, -np.inf, shift)
    m = np.max(shift, axis=axis, keepdims=True) if shift.size else np.zeros(())
    m = np.where(np.isfinite(m), m, 0.0)
    s = (b * _exp(a - m)).sum(axis=axis, keepdims=True)
    sgn = np.sign(s.data)
    out = _log(abs(s)) + m
    if not return_sign and np.any(sgn < 0):
        out = np.where(sgn < 0, np.nan, out)
    if not keepdims:
        out = out.reshape(np.sum(np.empty(shift.shape), axis=axis).shape)
        sgn = sgn.reshape(out.shape)
    return (out, Tensor(sgn)) if return_sign else out


def log_softmax(x: Any, axis: Any = None) -> Tensor:
    """``x - logsumexp(x)`` over ``axis`` (SciPy's default ``None``: over all elements).

    Examples
    --------
    >>> import autodiffx as ad
    >>> x = ad.tensor([[0.0, 1000.0], [1.0, 1.0]], requires_grad=True)
    >>> ad.scipy.special.log_softmax(x, axis=1)[1]
    tensor([-0.69314718, -0.69314718], grad_fn=<getitem>)
    """
    x = _as_float_tensor(x)
    if isinstance(axis, int | np.integer) and x.ndim:
        return _log_softmax(x, axis=int(axis))
    return x - _logsumexp(x, axis=axis, keepdims=True)


def softmax(x: Any, axis: Any = None) -> Tensor:
    """``exp(x) / sum(exp(x))`` over ``axis`` (SciPy's default ``None``: over all elements).

    Examples
    --------
    >>> import autodiffx as ad
    >>> x = ad.tensor([0.0, 1000.0, 0.0], requires_grad=True)
    >>> ad.scipy.special.softmax(x)
    tensor([0., 1., 0.], grad_fn=<exp>)
    """
    return _exp(log_softmax(x, axis))


def __getattr__(name: str) -> Any:
    # Doctest collects __test__ (computed late: the examples import ad.scipy.special).
    if name == "__test__":
        prims = [n for n in __all__ if isinstance(globals()[n], Primitive)]
        return {f"special.{n}": globals()[n].__doc__ for n in prims if globals()[n].name == n}
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
