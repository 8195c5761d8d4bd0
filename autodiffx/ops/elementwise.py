"""Elementwise primitives: most are one entry with a single derivative (``derivs=``)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import scipy.special as sp

from .._registry import defprim
from .._tensor import Tensor
from .._xp import is_lazy

_LN2 = math.log(2.0)
_LN10 = math.log(10.0)
_TWO_OVER_SQRT_PI = 2.0 / math.sqrt(math.pi)
_SQRT_PI_OVER_2 = math.sqrt(math.pi) / 2.0


def _unary(
    name: str, ufunc: np.ufunc, deriv: Any, doc: str, deriv2: Any = None, **notation: Any
) -> Any:
    return defprim(name, ufunc, derivs=(deriv,), derivs2=(deriv2,), doc=doc, **notation)


# ----- linear ------------------------------------------------------------------------------
add = defprim(
    "add",
    np.add,
    linear=(lambda g, a, b: g, lambda g, a, b: g),
    shapes=False,
    notation="+",
    partials=("1", "1"),
    doc="Elementwise a + b.",
)
subtract = defprim(
    "subtract",
    np.subtract,
    linear=(lambda g, a, b: g, lambda g, a, b: -g),
    shapes=False,
    notation="−",
    partials=("1", "-1"),
    doc="Elementwise a - b.",
)
negative = defprim(
    "negative",
    np.negative,
    linear=lambda g, x: (-g,),
    shapes=False,
    notation="−",
    partials=("-1",),
    doc="Elementwise -x.",
)
positive = defprim(
    "positive",
    np.positive,
    linear=lambda g, x: (g,),
    shapes=False,
    notation="+",
    partials=("1",),
    doc="Elementwise +x (copy).",
)
conj = defprim(
    "conj",
    np.conjugate,
    linear=lambda g, x: (np.conjugate(g),),
    shapes=False,
    overrides=(np.conj, np.conjugate),
    doc="Complex conjugate.",
)


# NOTE: of a complex array NumPy's real and imag are views of every other float; here they
# are copies: a write into one does not reach the complex tensor (its history could not
# follow element by element). real of a real array is the array itself, a view.
def _real_kernel(x: Any) -> Any:
    r = np.real(x)
    return r.copy() if np.iscomplexobj(x) else r


def _imag_kernel(x: Any) -> Any:
    r = np.imag(x)
    return r.copy() if np.iscomplexobj(x) else r


real = defprim(
    "real",
    _real_kernel,
    linear=lambda g, x: (g,),
    shapes=False,
    view="alias",
    overrides=(np.real,),
    vmap="map",
    doc="Real part (the transpose of embedding reals in the complex plane).",
)
imag = defprim(
    "imag",
    _imag_kernel,
    linear=lambda g, x: (g * -1j,),
    shapes=False,
    overrides=(np.imag,),
    vmap="map",
    doc="Imaginary part.",
)

# ----- bilinear ----------------------------------------------------------------------------
multiply = defprim(
    "multiply",
    np.multiply,
    bilinear=(lambda g, a, b: g * b, lambda g, a, b: a * g),
    notation="×",
    partials=("{(b)}", "{(a)}"),
    doc="Elementwise a * b.",
)


# NOTE: the rule recomputes a / b rather than saving the output (as PyTorch's div): with a
# saved output, m = x.mean(); m *= 2 made backward refuse, naming a divide the user never
# wrote; a constant divisor (mean, var, x / c) needs neither.
def _div_vjp(needs: Any, g: Any, out: Any, a: Any, b: Any) -> tuple[Any, Any]:
    ga = g / b
    return (ga if needs[0] else None, -ga * (a / b) if needs[1] else None)


def _div_jvp(tans: Any, out: Any, a: Any, b: Any) -> Any:
    ta, tb = tans
    if tb is None:
        return ta / b
    num = -tb * out if ta is None else ta - tb * out
    return num / b


divide = defprim(
    "divide",
    np.divide,
    vjp=_div_vjp,
    jvp=_div_jvp,
    notation="/",
    partials=("1/{(b)}", "-{out} / {(b)}"),
    doc="Elementwise a / b.",
)
floor_divide = defprim(
    "floor_divide",
    np.floor_divide,
    zero_deriv=True,
    notation="//",
    doc="Elementwise floor(a / b); piecewise constant, so its derivative is zero.",
)


# ----- power -------------------------------------------------------------------------------
def _power_kernel(a: Any, b: Any) -> Any:
    # NOTE: np.power runs the general pow() for exponents like 3 (~50x slower than x*x*x on
    # 1e6 elements); small integer and half powers get exact multiply/sqrt fast paths.
    if (type(b) is int or type(b) is float) and type(a) is np.ndarray and a.dtype.kind in "fc":
        if b == 2:
            return a * a
        if b == 3:
            return a * a * a
        if b == 1:
            return a.copy()
        if b == 4:
            s = a * a
            return s * s
        if b == 0.5:
            return np.sqrt(a)
        if b == -1:
            return 1.0 / a
    return np.power(a, b)


def _dpow_da(a: Any, b: Any) -> Any:
    if type(b) is int or type(b) is float:
        if b == 2:
            return 2 * a
        if b == 1:
            return np.ones_like(a)
        if b == 0:
            return np.zeros_like(a)
    return b * power.call(a, b - 1)


def _d2pow_da(a: Any, b: Any) -> Any:
    if type(b) is int or type(b) is float:
        if b == 2:
            return 2.0
        if b == 1 or b == 0:
            return 0.0
    return b * (b - 1) * power.call(a, b - 2)


def _dpow_db(a: Any, b: Any, out: Any) -> Any:
    # NOTE: d(a**b)/db = a**b log a; at a == 0 the limit for b > 0 is 0 (PyTorch's choice).
    safe = np.where(a == 0, 1, a)
    return np.where(a == 0, 0, out * np.log(safe))


def _power_partial(a: float | None, b: float | None) -> str:
    """d(a**b)/da as the evaluation trace writes it (a constant exponent b is a number)."""
    if b is None:
        return "{(b)} {a}^({b} − 1)"
    return "2 {a}" if b == 2 else f"{{#{b!r}}} {{a}}^{{#{b - 1!r}}}"


power = defprim(
    "power",
    _power_kernel,
    derivs=(_dpow_da, _dpow_db),
    derivs2=(_d2pow_da, None),
    argnames=("a", "b"),
    ufunc=np.power,
    notation="^",
    partials=(_power_partial, "{out} ln {(a)}"),
    expr=True,
    doc="Elementwise a ** b (fast paths for b in {2, 3, 4, 1, 0.5, -1}).",
)
UFUNC_ALIASES = {np.float_power: power}

# ----- unary elementwise -------------------------------------------------------------------
exp = _unary(
    "exp",
    np.exp,
    lambda out: out,
    "Elementwise e**x.",
    lambda out: out,
    partials=("{out}",),
    expr=True,
)
expm1 = _unary(
    "expm1",
    np.expm1,
    lambda out: out + 1,
    "Elementwise e**x - 1, accurate near 0.",
    lambda out: out + 1,
    partials=("({out} + 1)",),
    expr=True,
)
exp2 = _unary(
    "exp2",
    np.exp2,
    lambda out: out * _LN2,
    "Elementwise 2**x.",
    partials=("{out} ln 2",),
    expr=True,
)
log = _unary(
    "log",
    np.log,
    lambda x: 1 / x,
    "Elementwise natural logarithm.",
    lambda d: -d * d,
    partials=("1/{x}",),
    expr=True,
    notation="ln",
)
log1p = _unary(
    "log1p",
    np.log1p,
    lambda x: 1 / (x + 1),
    "Elementwise log(1 + x).",
    lambda d: -d * d,
    partials=("1/(1 + {x})",),
    expr=True,
)
log2 = _unary(
    "log2",
    np.log2,
    lambda x: 1 / (x * _LN2),
    "Elementwise base-2 logarithm.",
    partials=("1/({x} ln 2)",),
    expr=True,
)
log10 = _unary(
    "log10",
    np.log10,
    lambda x: 1 / (x * _LN10),
    "Elementwise base-10 logarithm.",
    partials=("1/({x} ln 10)",),
    expr=True,
)
sqrt = _unary(
    "sqrt",
    np.sqrt,
    lambda out: 0.5 / out,
    "Elementwise square root.",
    lambda out, d: -d * d / out,
    partials=("1/(2 {out})",),
    expr=True,
)
cbrt = _unary(
    "cbrt",
    np.cbrt,
    lambda out: 1 / (3 * out * out),
    "Elementwise cube root.",
    partials=("1/(3 {out}²)",),
    expr=True,
)
square = _unary(
    "square",
    np.square,
    lambda x: 2 * x,
    "Elementwise x**2.",
    lambda x: 2.0,
    partials=("2 {x}",),
    expr=True,
)
reciprocal = _unary(
    "reciprocal",
    np.reciprocal,
    lambda out: -out * out,
    "Elementwise 1/x.",
    lambda out, d: -2 * out * d,
    partials=("-{out}²",),
    expr=True,
)
sin = _unary(
    "sin",
    np.sin,
    lambda x: np.cos(x),
    "Elementwise sine.",
    lambda out: -out,
    partials=("cos {x}",),
    expr=True,
)
cos = _unary(
    "cos",
    np.cos,
    lambda x: -np.sin(x),
    "Elementwise cosine.",
    lambda out: -out,
    partials=("-sin {x}",),
    expr=True,
)
tan = _unary(
    "tan",
    np.tan,
    lambda out: 1 + out * out,
    "Elementwise tangent.",
    lambda out, d: 2 * out * d,
    partials=("(1 + {out}²)",),
    expr=True,
)
arcsin = _unary(
    "arcsin",
    np.arcsin,
    lambda x: 1 / np.sqrt(1 - x * x),
    "Elementwise arcsine.",
    partials=("1/√(1 − {x}²)",),
    expr=True,
)
arccos = _unary(
    "arccos",
    np.arccos,
    lambda x: -1 / np.sqrt(1 - x * x),
    "Elementwise arccosine.",
    partials=("-1/√(1 − {x}²)",),
    expr=True,
)
arctan = _unary(
    "arctan",
    np.arctan,
    lambda x: 1 / (1 + x * x),
    "Elementwise arctangent.",
    lambda x, d: -2 * x * d * d,
    partials=("1/(1 + {x}²)",),
    expr=True,
)
sinh = _unary(
    "sinh",
    np.sinh,
    lambda x: np.cosh(x),
    "Elementwise hyperbolic sine.",
    lambda out: out,
    partials=("cosh {x}",),
    expr=True,
)
cosh = _unary(
    "cosh",
    np.cosh,
    lambda x: np.sinh(x),
    "Elementwise hyperbolic cosine.",
    lambda out: out,
    partials=("sinh {x}",),
    expr=True,
)
tanh = _unary(
    "tanh",
    np.tanh,
    lambda out: 1 - out * out,
    "Elementwise hyperbolic tangent.",
    lambda out, d: -2 * out * d,
    partials=("(1 − {out}²)",),
    expr=True,
)
arcsinh = _unary(
    "arcsinh",
    np.arcsinh,
    lambda x: 1 / np.sqrt(x * x + 1),
    "Elementwise inverse sinh.",
    partials=("1/√({x}² + 1)",),
    expr=True,
)
arccosh = defprim(
    "arccosh",
    np.arccosh,
    derivs=(lambda x: 1 / np.sqrt(x * x - 1),),
    expr=True,
    doc="Elementwise inverse cosh.",
    example="[1.5, 2.0]",
)
arctanh = _unary(
    "arctanh", np.arctanh, lambda x: 1 / (1 - x * x), "Elementwise inverse tanh.", expr=True
)
erf = _unary(
    "erf",
    sp.erf,
    lambda x: _TWO_OVER_SQRT_PI * np.exp(-x * x),
    "Elementwise error function.",
    lambda x, d: -2 * x * d,
    expr=True,
)
erfinv = _unary(
    "erfinv",
    sp.erfinv,
    lambda out: _SQRT_PI_OVER_2 * np.exp(out * out),
    "Elementwise inverse error function on (-1, 1).",
    lambda out, d: 2 * out * d * d,
)


# ----- gamma-function family (scipy.special kernels) ----------------------------------------
def _polygamma_kernel(n: Any, x: Any) -> Any:
    if is_lazy(n):
        raise TypeError("polygamma: the order n must be an integer or a NumPy array, not Dask's")
    order = np.asarray(n)
    if order.dtype.kind not in "iu" and not (
        order.dtype.kind == "f" and np.all(order == np.floor(order))
    ):
        raise TypeError(f"polygamma: the order n must be an integer, not {order.dtype} {n!r}")
    if np.any(order < 0):
        raise ValueError(f"polygamma: the order n must be >= 0, got {n!r}")
    if is_lazy(x):
        return _polygamma_lazy(order, x)
    dtype = np.result_type(np.asarray(x).dtype, np.float16)
    return np.asarray(sp.polygamma(order.astype(np.int64), x)).astype(dtype, copy=False)


def _polygamma_lazy(order: np.ndarray, x: Any) -> Any:
    """polygamma of a Dask ``x``, chunk by chunk (``scipy.special.polygamma`` is not a ufunc,
    which Dask would dispatch); one order for all the elements."""
    if order.ndim:
        raise TypeError("polygamma on a dask.array.Array takes one order n (an integer)")
    dtype = np.result_type(x.dtype, np.float16)
    n = int(order)
    return x.map_blocks(lambda b: sp.polygamma(n, b).astype(dtype, copy=False), dtype=dtype)


gammaln = _unary(
    "gammaln",
    sp.gammaln,
    lambda x: digamma.call(x),
    "Elementwise log|Gamma(x)| (PyTorch's ``lgamma``); its derivative is ``digamma``.",
    lambda x: polygamma.call(1, x),
)
digamma = _unary(
    "digamma",
    sp.digamma,
    lambda x: polygamma.call(1, x),
    "Elementwise digamma (psi) function, the derivative of ``gammaln``.",
    lambda x: polygamma.call(2, x),
)
polygamma = defprim(
    "polygamma",
    _polygamma_kernel,
    numpy_only="scipy.special.polygamma, not in the array API",
    derivs=(None, lambda n, x: polygamma.call(n + 1, x)),
    derivs2=(None, lambda n, x: polygamma.call(n + 2, x)),
    argnames=("n", "x"),
    nondiff=(0,),
    doc="Elementwise polygamma(n, x), the n-th derivative of ``digamma`` (integer n >= 0, "
    "not differentiated).",
    example="x = ad.tensor([0.5, 2.0], requires_grad=True)\n"
    "ad.polygamma(1, x)\n"
    "ad.polygamma(1, x).sum().backward()\n"
    "x.grad",
)


def _dabs(x: Any) -> Any:
    # NOTE: abs'(0) = 0 (sign(0) = 0), the published kink convention. For complex z,
    # d|z| = Re(conj(z)/|z| dz), so the partial is conj(z)/|z| (JAX's convention), written
    # without sign(), whose derivative is defined as 0 (z/|z| is not constant off the real axis).
    if x.dtype.kind != "c":
        return np.sign(x)
    mag = np.abs(x)
    zero = mag == 0
    return np.where(zero, 0, np.conj(x) / np.where(zero, 1, mag))


abs = _unary(
    "abs",
    np.absolute,
    _dabs,
    "Elementwise ``|x|``; abs'(0) = 0.",
    partials=("sign {x}",),
    expr=True,
)
sign = defprim("sign", np.sign, zero_deriv=True, doc="Elementwise sign; its derivative is 0.")
floor = defprim("floor", np.floor, zero_deriv=True, doc="Elementwise floor; derivative 0.")
ceil = defprim("ceil", np.ceil, zero_deriv=True, doc="Elementwise ceil; derivative 0.")
rint = defprim("rint", np.rint, zero_deriv=True, doc="Round to nearest integer; derivative 0.")
trunc = defprim("trunc", np.trunc, zero_deriv=True, doc="Round toward zero; derivative 0.")

round = defprim(
    "round",
    lambda x, decimals=0: np.round(x, decimals),
    zero_deriv=True,
    overrides=(np.round, np.around),
    doc="Round to ``decimals`` decimals (as ``np.round``); derivative 0.",
)


# NOTE: a mod b = a - floor(a / b) b (fmod: trunc), so d/da = 1 and d/db = -floor(a / b)
# (-trunc(a / b)) between the jumps; at a jump the one-sided value NumPy's quotient gives is
# used (the kink table in docs/conventions.md).
def _remainder(name: str, kernel: Any, quotient: Any, doc: str) -> Any:
    """The entry of ``a - quotient(a, b) * b``: derivatives 1 and ``-quotient(a, b)``."""
    return defprim(
        name,
        kernel,
        derivs=(lambda: 1.0, lambda a, b: -quotient(a, b)),
        derivs2=(lambda: 0.0, lambda: 0.0),
        argnames=("a", "b"),
        doc=doc,
    )


mod = _remainder(
    "mod",
    np.remainder,
    np.floor_divide,
    "Elementwise a mod b with the sign of b (``np.mod``, ``np.remainder``, ``%``).",
)
fmod = _remainder(
    "fmod",
    np.fmod,
    lambda a, b: np.trunc(np.divide(a, b)),
    "Elementwise C fmod: the remainder with the sign of a.",
)

# ----- binary elementwise ------------------------------------------------------------------
arctan2 = defprim(
    "arctan2",
    np.arctan2,
    derivs=(lambda a, b: b / (a * a + b * b), lambda a, b: -a / (a * a + b * b)),
    argnames=("a", "b"),
    expr=True,
    doc="Elementwise arctan(a / b) in the right quadrant.",
)
hypot = defprim(
    "hypot",
    np.hypot,
    derivs=(lambda a, out: a / out, lambda b, out: b / out),
    argnames=("a", "b"),
    expr=True,
    doc="Elementwise sqrt(a**2 + b**2) without overflow.",
)
logaddexp = defprim(
    "logaddexp",
    np.logaddexp,
    derivs=(lambda a, out: np.exp(a - out), lambda b, out: np.exp(b - out)),
    argnames=("a", "b"),
    expr=True,
    doc="Elementwise log(exp(a) + exp(b)) without overflow.",
)


def _tie_weights(a: Any, b: Any, a_var: bool, b_var: bool, greater: bool) -> tuple[Any, Any]:
    # NOTE: ties between two variables split the gradient equally; a tie with a constant gives
    # the variable 0, so maximum(x, 0), relu(x), clip(x, 0, None) and where(x > 0, x, 0)
    # all have derivative 0 at x = 0 (the published kink table).
    # The weights are masks (a product keeps g's dtype) but for ties between two variables,
    # which are looked for only then; a weight that no variable needs is None.
    win = (a > b) if greater else (a < b)
    if not b_var:
        return win, None
    tie = a == b
    if a_var and (is_lazy(tie) or np.any(tie)):  # (a Dask array: not read, the same weights)
        return win + tie * 0.5, (1 - win) - tie * 0.5
    return (win if a_var else None), np.logical_not(np.logical_or(win, tie))


def _minmax_vjp(greater: bool) -> Any:
    def vjp(needs: Any, g: Any, out: Any, a: Any, b: Any) -> tuple[Any, Any]:
        wa, wb = _tie_weights(a, b, needs[0], needs[1], greater)
        return (g * wa if needs[0] else None, g * wb if needs[1] else None)

    return vjp


def _minmax_jvp(greater: bool) -> Any:
    def jvp(tans: Any, out: Any, a: Any, b: Any) -> Any:
        ta, tb = tans
        a_var = ta is not None or (isinstance(a, Tensor) and a.requires_grad)
        b_var = tb is not None or (isinstance(b, Tensor) and b.requires_grad)
        wa, wb = _tie_weights(a, b, a_var, b_var, greater)
        acc = None if ta is None else ta * wa
        if tb is not None:
            acc = tb * wb if acc is None else acc + tb * wb
        return acc

    return jvp


def _minmax(name: str, kernel: Any, greater: bool) -> Any:
    return defprim(
        name,
        kernel,
        vjp=_minmax_vjp(greater),
        jvp=_minmax_jvp(greater),
        expr=True,
        doc=f"Elementwise {name}; ties between two variables split the gradient equally.",
    )


maximum = _minmax("maximum", np.maximum, True)
minimum = _minmax("minimum", np.minimum, False)
UFUNC_ALIASES.update({np.fmax: maximum, np.fmin: minimum})

where = defprim(
    "where",
    np.where,
    linear=(
        None,
        lambda g, c, a, b: np.where(c, g, 0),
        lambda g, c, a, b: np.where(c, 0, g),
    ),
    nondiff=(0,),
    broadcasting=True,
    overrides=(np.where,),
    partials=(None, "where({a}, {d}, 0)", "where({a}, 0, {d})"),
    doc="Elementwise choice: a where cond is true, else b (cond is not differentiated).",
    example=(
        "x = ad.tensor([-1.0, 2.0], requires_grad=True)\n"
        "ad.where(x > 0, x, 0.0)\n"
        "ad.where(x > 0, x, 0.0).sum().backward()\n"
        "x.grad"
    ),
)


# ----- non-differentiable ------------------------------------------------------------------
def _nondiff(name: str, ufunc: np.ufunc, notation: str | None = None) -> Any:
    doc = f"Elementwise {name} (not differentiable; bool result)."
    return defprim(name, ufunc, notation=notation, doc=doc)


less = _nondiff("less", np.less, "<")
less_equal = _nondiff("less_equal", np.less_equal, "≤")
greater = _nondiff("greater", np.greater, ">")
greater_equal = _nondiff("greater_equal", np.greater_equal, "≥")
equal = _nondiff("equal", np.equal, "==")
not_equal = _nondiff("not_equal", np.not_equal, "≠")
logical_and = _nondiff("logical_and", np.logical_and)
logical_or = _nondiff("logical_or", np.logical_or)
logical_xor = _nondiff("logical_xor", np.logical_xor)
logical_not = _nondiff("logical_not", np.logical_not)
isnan = _nondiff("isnan", np.isnan)
isinf = _nondiff("isinf", np.isinf)
isfinite = _nondiff("isfinite", np.isfinite)
signbit = _nondiff("signbit", np.signbit)
