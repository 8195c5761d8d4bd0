"""Finite-difference derivatives, AD-versus-finite-difference checks and step-size studies."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

__all__ = [
    "GradcheckError",
    "StepStudy",
    "default_step",
    "derivative",
    "directional",
    "gradcheck",
    "gradgradcheck",
    "gradient",
    "hessian",
    "jacobian",
    "step_study",
]

Scheme = Literal["forward", "backward", "central", "complex"]
Result = npt.NDArray[np.inexact] | np.inexact

_SCHEMES = ("forward", "backward", "central", "complex")
_MODES = ("rev", "fwd")

# NOTE: the complex step has no subtractive cancellation, so h only has to make the truncation
# error h**2 |f'''| / 6 negligible; 1e-20 (Squire & Trapp 1998; Martins, Sturdza & Alonso 2003)
# does that with a wide margin while staying far above the underflow threshold even in
# complex64 (tiny ~ 1.2e-38), which 1e-200 would not (and which would also push small
# intermediate imaginary parts into subnormals in float64).
_COMPLEX_STEP = 1e-20

# NOTE: exponents p of h = eps**p * max(1, |x|): balancing truncation error C h**a against
# round-off error eps |f| / h**b gives h ~ eps**(1 / (a + b)) (Nocedal & Wright, Numerical
# Optimization, 2nd ed., section 8.1; Press et al., Numerical Recipes, section 5.7).
# forward/backward 1st derivative a=1, b=1; central 1st a=2, b=1; one-sided 3-point 2nd
# derivative a=1, b=2; central 3-point 2nd derivative a=2, b=2.
_STEP_POWER = {
    ("forward", 1): 1 / 2,
    ("backward", 1): 1 / 2,
    ("central", 1): 1 / 3,
    ("forward", 2): 1 / 3,
    ("backward", 2): 1 / 3,
    ("central", 2): 1 / 4,
}


# --------------------------------------------------------------------------------------------
# finite differences
# --------------------------------------------------------------------------------------------


def _values(v: Any) -> Any:
    """A Tensor's values without its derivative (finite differences only read values)."""
    detach = getattr(v, "detach", None)
    return v if detach is None else detach()


def _as_float(x: npt.ArrayLike) -> np.ndarray:
    """Copy ``x`` to a real floating array; integers and bools become float64."""
    x = np.asarray(_values(x))
    if x.dtype.kind in "biu":
        return x.astype(np.float64)
    if x.dtype.kind == "f":
        return x.copy()
    raise TypeError(f"x must be real (integer or floating point); got dtype {x.dtype}")


def _check_scheme(scheme: str, order: int) -> None:
    if scheme not in _SCHEMES:
        raise ValueError(f"scheme must be one of {_SCHEMES}; got {scheme!r}")
    if order not in (1, 2):
        raise ValueError(f"order must be 1 or 2; got {order!r}")
    if scheme == "complex" and order == 2:
        raise ValueError(
            "the complex step only gives first derivatives; use scheme='central' "
            "(or 'forward'/'backward') for second derivatives"
        )


def _steps(x: np.ndarray, h: npt.ArrayLike | None, scheme: str, order: int) -> np.ndarray:
    """Per-element steps of x's shape and dtype: the default one, or ``h`` validated."""
    if h is None:
        return np.asarray(default_step(x, scheme, order), dtype=x.dtype)
    steps = np.asarray(h, dtype=x.dtype)
    if not np.all(steps > 0):
        raise ValueError(f"h must be positive and nonzero in {x.dtype}; got {h!r}")
    return np.broadcast_to(steps, x.shape)


def _call(f: Callable[[np.ndarray], Any], x: np.ndarray) -> np.ndarray:
    # np.asarray(x): arithmetic on 0-d arrays yields NumPy scalars; f always gets arrays
    return np.asarray(_values(f(np.asarray(x))))


def _first_difference(
    f: Callable[[np.ndarray], Any],
    x: np.ndarray,
    dx: np.ndarray,
    scheme: str,
    f0: np.ndarray | None,
) -> np.ndarray:
    """Change of f along ``dx``, normalised so that dividing by the step gives f'."""
    if scheme == "forward":
        return _call(f, x + dx) - f0
    if scheme == "backward":
        return f0 - _call(f, x - dx)
    if scheme == "central":
        return (_call(f, x + dx) - _call(f, x - dx)) / 2
    z = x.astype(np.result_type(x.dtype, np.complex64))
    z.imag += dx
    return np.imag(_call(f, z))


def _second_difference(
    f: Callable[[np.ndarray], Any],
    x: np.ndarray,
    dx: np.ndarray,
    scheme: str,
    f0: np.ndarray,
) -> np.ndarray:
    """Three-point second difference along ``dx`` (divide by the step squared)."""
    if scheme == "central":
        return _call(f, x + dx) - 2 * f0 + _call(f, x - dx)
    sign = 1 if scheme == "forward" else -1
    return _call(f, x + 2 * sign * dx) - 2 * _call(f, x + sign * dx) + f0


def default_step(
    x: npt.ArrayLike, scheme: Scheme = "central", order: int = 1
) -> npt.NDArray[np.floating] | np.floating:
    """Textbook-optimal finite-difference step for a scheme, an order and x's dtype.

    With ``eps = np.finfo(dtype).eps`` and ``scale = max(1, |x|)`` (elementwise):

    ============================  =====================  ================================
    scheme, order                 step                   error at that step
    ============================  =====================  ================================
    forward/backward, 1           ``eps**(1/2) scale``   ``O(eps**(1/2))``
    central, 1                    ``eps**(1/3) scale``   ``O(eps**(2/3))``
    forward/backward, 2           ``eps**(1/3) scale``   ``O(eps**(1/3))``
    central, 2                    ``eps**(1/4) scale``   ``O(eps**(1/2))``
    complex, 1                    ``1e-20 scale``        ``O(eps)`` (no cancellation)
    ============================  =====================  ================================

    Real steps are then replaced by ``(x + h) - x``, so that the step the formula divides
    by is exactly the difference of the arguments f is evaluated at.

    Parameters
    ----------
    x : array_like
        Point(s) of evaluation; integers are treated as float64. The dtype (float16, float32
        or float64) selects ``eps``.
    scheme : {"forward", "backward", "central", "complex"}
        Difference scheme.
    order : {1, 2}
        Derivative order (the complex step supports order 1 only).

    Returns
    -------
    numpy.ndarray or numpy scalar
        Steps of x's shape and dtype (a NumPy scalar for scalar ``x``).

    Examples
    --------
    >>> import numpy as np
    >>> float(default_step(1.0, "forward")) == 2.0**-26  # sqrt(eps) for float64
    True
    >>> round(float(default_step(np.float32(1.0), "central")), 4)  # float32 eps**(1/3)
    0.0049
    >>> default_step(np.array([0.0, 10.0]), "complex")
    array([1.e-20, 1.e-19])
    """
    x = _as_float(x)
    _check_scheme(scheme, order)
    scale = np.maximum(1, np.abs(x))
    if scheme == "complex":
        return (np.asarray(_COMPLEX_STEP, dtype=x.dtype) * scale)[()]
    eps = np.finfo(x.dtype).eps
    h = eps ** _STEP_POWER[scheme, order] * scale
    # NOTE: Numerical Recipes section 5.7: make x + h exactly representable, so the
    # difference quotient is not polluted by the rounding of the step itself.
    return ((x + h) - x)[()]


def derivative(
    f: Callable[[np.ndarray], Any],
    x: npt.ArrayLike,
    h: npt.ArrayLike | None = None,
    scheme: Scheme = "central",
    order: int = 1,
) -> Result:
    """Finite-difference derivative of a scalar (or elementwise) function.

    Formulas, with step ``h``:

    - ``"forward"``: ``(f(x + h) - f(x)) / h``, error ``O(h)``;
    - ``"backward"``: ``(f(x) - f(x - h)) / h``, error ``O(h)``;
    - ``"central"``: ``(f(x + h) - f(x - h)) / (2 h)``, error ``O(h**2)``;
    - ``"complex"``: ``Im f(x + i h) / h``, error ``O(h**2)`` with no subtractive
      cancellation. f must be real for real arguments and extend analytically to complex ones
      (no ``abs``, ``np.real``, comparisons or conjugation on the path).

    ``order=2`` uses three-point second differences: ``(f(x+h) - 2 f(x) + f(x-h)) / h**2``
    for ``"central"`` (error ``O(h**2)``) and the one-sided ``(f(x+2h) - 2 f(x+h) + f(x)) / h**2``
    (mirrored for ``"backward"``, error ``O(h)``).

    When ``x`` is an array every element is perturbed at once, so for an elementwise f
    (``f(x)[i]`` depends on ``x[i]`` only) the result is the elementwise derivative. For other
    functions use :func:`gradient` or :func:`jacobian`.

    Parameters
    ----------
    f : callable
        Called with NumPy arrays of x's shape (float, or complex for the complex step); may
        return an array, a number or an autodiffx Tensor.
    x : array_like
        Point(s) of evaluation. Integers become float64; float16/float32 stay in their dtype.
    h : float or array_like, optional
        Step, positive, broadcastable to x's shape. Default: :func:`default_step`.
    scheme : {"forward", "backward", "central", "complex"}
        Difference scheme.
    order : {1, 2}
        Derivative order. ``scheme="complex"`` with ``order=2`` raises ``ValueError``.

    Returns
    -------
    numpy.ndarray or numpy scalar
        The derivative, with f's output shape (a NumPy scalar when that is 0-d).

    Examples
    --------
    >>> import numpy as np
    >>> d = derivative(np.sin, 1.0)
    >>> bool(abs(d - np.cos(1.0)) < 1e-10)
    True
    >>> derivative(np.sin, np.array([0.0, np.pi]), scheme="complex")
    array([ 1., -1.])
    >>> round(float(derivative(np.sin, np.pi / 2, order=2)), 6)
    -1.0
    """
    x = _as_float(x)
    _check_scheme(scheme, order)
    steps = _steps(x, h, scheme, order)
    f0 = _call(f, x) if scheme in ("forward", "backward") or order == 2 else None
    if order == 1:
        return (_first_difference(f, x, steps, scheme, f0) / steps)[()]
    return (_second_difference(f, x, steps, scheme, f0) / steps**2)[()]


def _jacobian(
    f: Callable[[np.ndarray], Any], x: np.ndarray, h: npt.ArrayLike | None, scheme: str
) -> np.ndarray:
    """Jacobian of shape ``out.shape + x.shape``, one perturbation (two for central) per column."""
    _check_scheme(scheme, 1)
    steps = _steps(x, h, scheme, 1)
    f0 = _call(f, x) if scheme in ("forward", "backward") or x.size == 0 else None
    columns = []
    for index in np.ndindex(x.shape):
        dx = np.zeros_like(x)
        dx[index] = steps[index]
        columns.append(_first_difference(f, x, dx, scheme, f0) / steps[index])
    if not columns:
        return np.zeros(f0.shape + x.shape)
    jac = np.stack(columns, axis=-1)
    return jac.reshape(jac.shape[:-1] + x.shape)


def jacobian(
    f: Callable[[np.ndarray], Any],
    x: npt.ArrayLike,
    h: npt.ArrayLike | None = None,
    scheme: Scheme = "central",
) -> Result:
    """Finite-difference Jacobian ``J[i..., j...] = d f(x)[i...] / d x[j...]``.

    Each element ``x[j]`` is perturbed in turn by its own step ``h[j]`` (one call of f per
    perturbation: 1 + n calls for forward/backward, 2 n for central and complex).

    Parameters
    ----------
    f : callable
        Called with NumPy arrays of x's shape; may return an array of any shape, a number or
        an autodiffx Tensor.
    x : array_like
        Point of evaluation, any shape. Integers become float64.
    h : float or array_like, optional
        Step(s), positive, broadcastable to x's shape. Default: :func:`default_step`.
    scheme : {"forward", "backward", "central", "complex"}
        Difference scheme (see :func:`derivative`).

    Returns
    -------
    numpy.ndarray
        Array of shape ``out.shape + x.shape``.

    Examples
    --------
    >>> import numpy as np
    >>> f = lambda v: np.array([v[0] * v[1], np.sin(v[0])])
    >>> jacobian(f, np.array([1.0, 2.0])).round(6)
    array([[2.      , 1.      ],
           [0.540302, 0.      ]])
    """
    return _jacobian(f, _as_float(x), h, scheme)[()]


def gradient(
    f: Callable[[np.ndarray], Any],
    x: npt.ArrayLike,
    h: npt.ArrayLike | None = None,
    scheme: Scheme = "central",
) -> Result:
    """Finite-difference gradient of a scalar-valued function of an array.

    The arguments are those of :func:`jacobian`, for an ``f`` that returns a number, a 0-d
    (or size-1) array or an autodiffx Tensor.

    Returns
    -------
    numpy.ndarray
        The gradient, with x's shape.

    Raises
    ------
    ValueError
        If f is not scalar-valued (use :func:`jacobian`).

    Examples
    --------
    >>> import numpy as np
    >>> gradient(lambda v: np.sum(v**2), np.array([1.0, -2.0, 3.0])).round(8)
    array([ 2., -4.,  6.])
    """
    x = _as_float(x)
    jac = _jacobian(f, x, h, scheme)
    out_shape = jac.shape[: jac.ndim - x.ndim]
    if int(np.prod(out_shape)) != 1:
        raise ValueError(
            f"gradient needs a scalar-valued f, but f returned shape {out_shape}; use jacobian"
        )
    return jac.reshape(x.shape)[()]


def hessian(
    f: Callable[[np.ndarray], Any],
    x: npt.ArrayLike,
    h: npt.ArrayLike | None = None,
    scheme: Scheme = "central",
) -> Result:
    """Finite-difference Hessian, symmetric by construction.

    With ``a = h[i] e_i`` and ``b = h[j] e_j``:

    - ``"central"``: ``(f(x+a+b) - f(x+a-b) - f(x-a+b) + f(x-a-b)) / (4 h[i] h[j])`` for
      ``i != j`` and ``(f(x+a) - 2 f(x) + f(x-a)) / h[i]**2`` on the diagonal, error
      ``O(h**2)``;
    - ``"forward"``: ``(f(x+a+b) - f(x+a) - f(x+b) + f(x)) / (h[i] h[j])`` (the diagonal is
      the one-sided 3-point second difference), error ``O(h)``; ``"backward"`` mirrors it.

    ``"complex"`` is not supported (the complex step gives first derivatives only).

    Parameters
    ----------
    f : callable
        Called with NumPy arrays of x's shape. Usually scalar-valued; for an output of any
        shape the Hessian of every output element is returned.
    x : array_like
        Point of evaluation, any shape. Integers become float64.
    h : float or array_like, optional
        Step(s), positive, broadcastable to x's shape. Default:
        ``default_step(x, scheme, order=2)``.
    scheme : {"central", "forward", "backward"}
        Difference scheme.

    Returns
    -------
    numpy.ndarray
        Array of shape ``x.shape + x.shape`` for scalar f (``out.shape + x.shape + x.shape``
        in general).

    Examples
    --------
    >>> import numpy as np
    >>> A = np.array([[2.0, 1.0], [0.0, 3.0]])
    >>> hessian(lambda v: v @ A @ v, np.array([0.5, -1.0])).round(6)  # A + A.T
    array([[4., 1.],
           [1., 6.]])
    """
    x = _as_float(x)
    _check_scheme(scheme, 2)
    steps = _steps(x, h, scheme, 2).ravel()
    n = x.size

    def at(*shifts: tuple[int, int]) -> np.ndarray:
        """f at x shifted by ``sign * steps[i]`` along element ``i``, for each (i, sign)."""
        dx = np.zeros(n, dtype=x.dtype)
        for i, sign in shifts:
            dx[i] += sign * steps[i]
        return _call(f, x + dx.reshape(x.shape))

    f0 = _call(f, x)
    hess = np.empty((*f0.shape, n, n), dtype=np.result_type(f0.dtype, x.dtype))
    if scheme == "central":
        for i in range(n):
            hess[..., i, i] = (at((i, 1)) - 2 * f0 + at((i, -1))) / steps[i] ** 2
            for j in range(i):
                mixed = at((i, 1), (j, 1)) - at((i, 1), (j, -1))
                mixed = mixed - at((i, -1), (j, 1)) + at((i, -1), (j, -1))
                hess[..., i, j] = hess[..., j, i] = mixed / (4 * steps[i] * steps[j])
    else:
        sign = 1 if scheme == "forward" else -1
        shifted = [at((i, sign)) for i in range(n)]
        for i in range(n):
            for j in range(i + 1):
                mixed = at((i, sign), (j, sign)) - shifted[i] - shifted[j] + f0
                hess[..., i, j] = hess[..., j, i] = mixed / (steps[i] * steps[j])
    return hess.reshape(f0.shape + x.shape + x.shape)[()]


def _float_outputs(y: Any) -> list[np.ndarray]:
    """f's output(s) as a list of arrays, in double precision whatever their dtype."""
    ys = y if isinstance(y, tuple | list) else (y,)
    return [np.asarray(o, dtype=np.result_type(np.asarray(o).dtype, np.float64)) for o in ys]


def _central(
    f: Callable[..., Any], xs: Sequence[np.ndarray], vs: Sequence[np.ndarray], h: float
) -> list[np.ndarray]:
    """``(f(x + h v) - f(x - h v)) / 2h`` for every output of ``f(*xs)``."""
    plus = _float_outputs(f(*[x + h * v for x, v in zip(xs, vs, strict=True)]))
    minus = _float_outputs(f(*[x - h * v for x, v in zip(xs, vs, strict=True)]))
    return [(p - m) / (2 * h) for p, m in zip(plus, minus, strict=True)]


def directional(
    f: Callable[..., Any],
    xs: Sequence[npt.ArrayLike],
    vs: Sequence[npt.ArrayLike],
    *,
    rel_step: float = 1e-3,
    richardson: bool = True,
) -> list[np.ndarray]:
    """Directional derivative ``J v`` of ``f(*xs)`` along ``vs`` by central differences.

    A NumPy-only kernel (no autodiffx Tensor is involved), so it is an oracle independent of
    the AD engine. ``f`` takes and returns NumPy arrays (or a tuple/list of them); the result
    has one float64 (or complex128) array per output. The step ``h`` makes the largest
    perturbation ``|h v|`` equal to ``rel_step * max(1, |x|)``; with ``richardson`` the
    central differences at ``h`` and ``h / 2`` are combined as ``(4 D(h/2) - D(h)) / 3``,
    which cancels the ``h**2`` error term (error ``O(h**4)``, about 1e-12 at the default step,
    against a round-off of about ``1e-16 / h``).

    Parameters
    ----------
    f : callable
        Called with one array per entry of ``xs``; returns an array or a tuple/list of them.
    xs, vs : sequence of array_like
        The point and the direction, one array per argument of ``f`` (matching shapes).
    rel_step : float
        The largest perturbation relative to ``max(1, |x|)``.
    richardson : bool
        Combine two step sizes to cancel the leading error term (two more calls of ``f``).

    Returns
    -------
    list of numpy.ndarray
        ``J v``, one array per output of ``f`` (zeros when ``vs`` is zero).

    Examples
    --------
    >>> import numpy as np
    >>> (d,) = directional(np.sin, [np.array([0.0, 1.0])], [np.array([1.0, 2.0])])
    >>> bool(np.allclose(d, [1.0, 2 * np.cos(1.0)], rtol=1e-11))
    True
    """
    xs = [np.asarray(x) for x in xs]
    vs = [np.asarray(v) for v in vs]
    scale = max([1.0] + [float(np.max(np.abs(x), initial=0.0)) for x in xs])
    vmax = max([0.0] + [float(np.max(np.abs(v), initial=0.0)) for v in vs])
    if vmax == 0.0:
        return [np.zeros_like(o) for o in _float_outputs(f(*xs))]
    h = rel_step * scale / vmax
    coarse = _central(f, xs, vs, h)
    if not richardson:
        return coarse
    fine = _central(f, xs, vs, h / 2)
    return [(4 * b - a) / 3 for a, b in zip(coarse, fine, strict=True)]


# --------------------------------------------------------------------------------------------
# gradient checking
# --------------------------------------------------------------------------------------------


class GradcheckError(AssertionError):
    """AD and finite-difference derivatives disagree (raised by gradcheck and gradgradcheck).

    A subclass of ``AssertionError``, so a failed check inside a test reads as a failed
    assertion. The message names the input (position and shape), the element, the output
    element, the mode, both values and the tolerance, or reports a kink.

    Examples
    --------
    >>> issubclass(GradcheckError, AssertionError)
    True
    """


def _core() -> tuple[Any, Any, Any]:
    """The AD core, imported lazily (``autodiffx`` imports this module)."""
    import autodiffx
    from autodiffx import autograd, forward

    return autodiffx, autograd, forward


def _to_numpy(value: Any, ad: Any) -> np.ndarray:
    return np.asarray(value.detach() if isinstance(value, ad.Tensor) else value)


def _prepare_inputs(
    inputs: Sequence[Any], ad: Any, stacklevel: int
) -> tuple[list[Any], list[int], list[np.ndarray]]:
    """Split inputs into pass-through values and float64 copies of the floating-point ones."""
    args, positions, arrays, low = list(inputs), [], [], []
    for position, value in enumerate(inputs):
        if isinstance(value, ad.Tensor):
            array = np.asarray(value.detach())
        elif isinstance(value, (float, np.ndarray, np.generic, list, tuple)):
            array = np.asarray(value)
        else:
            continue
        if array.dtype.kind != "f":
            continue
        if array.dtype.itemsize < 8:
            low.append(f"input {position} has dtype {array.dtype}")
        positions.append(position)
        arrays.append(array.astype(np.float64))
    if not positions:
        raise ValueError("gradcheck: no floating-point input to check")
    if low:
        warnings.warn(
            f"gradcheck: {', '.join(low)}; finite-difference checks are unreliable below "
            "float64, so the check upcasts every floating-point input to float64",
            UserWarning,
            stacklevel=stacklevel,
        )
    return args, positions, arrays


def _leaves(ad: Any, args: list[Any], positions: list[int], arrays: list[np.ndarray]) -> list:
    # NOTE: finite-difference evaluations get requires_grad leaves too, because f may itself
    # differentiate its inputs (gradgradcheck checks autograd.grad(..., create_graph=True)).
    leaves = list(args)
    for position, array in zip(positions, arrays, strict=True):
        leaves[position] = ad.tensor(array, requires_grad=True)
    return leaves


def _shifted(arrays: list[np.ndarray], j: int, index: tuple, delta: float) -> list[np.ndarray]:
    shifted = list(arrays)
    shifted[j] = arrays[j].copy()
    shifted[j][index] += delta
    return shifted


def _along(
    evaluate: Callable[[list[np.ndarray]], np.ndarray],
    arrays: list[np.ndarray],
    j: int,
    index: tuple,
) -> Callable[[np.ndarray], np.ndarray]:
    """``t -> evaluate(arrays with t added to element index of input j)``: f along one axis."""
    return lambda t: evaluate(_shifted(arrays, j, index, float(t)))


def _ad_jacobians(
    mode: str,
    f: Callable[..., Any],
    args: list,
    positions: list[int],
    arrays: list[np.ndarray],
    out_shape: tuple[int, ...],
) -> list[np.ndarray]:
    """AD Jacobians ``out.shape + x.shape`` of the checked inputs: one reverse pass per output
    element (``"rev"``) or one dual-number pass per input element (``"fwd"``)."""
    ad, autograd, forward = _core()
    jacs = [np.zeros(out_shape + a.shape) for a in arrays]
    if mode == "rev":
        leaves = _leaves(ad, args, positions, arrays)
        out = f(*leaves)
        if isinstance(out, ad.Tensor) and out.requires_grad:
            _rev_rows(ad, autograd, out, [leaves[p] for p in positions], out_shape, jacs)
        return jacs
    for j, (position, array) in enumerate(zip(positions, arrays, strict=True)):
        for index in np.ndindex(array.shape):
            tangent = np.zeros_like(array)
            tangent[index] = 1.0
            leaves = _leaves(ad, args, positions, arrays)
            column = _fwd_column(ad, forward, f, leaves, position, tangent)
            if column is not None:
                jacs[j][(..., *index)] = column
    return jacs


def _rev_rows(
    ad: Any, autograd: Any, out: Any, diff: list, out_shape: tuple, jacs: list[np.ndarray]
) -> None:
    """Fill row k of every Jacobian from one reverse pass seeded with output element k."""
    for k in np.ndindex(out_shape):
        seed = np.zeros(out_shape)
        seed[k] = 1.0
        grads = autograd.grad(
            out, diff, grad_outputs=ad.tensor(seed), retain_graph=True, allow_unused=True
        )
        for jac, g in zip(jacs, grads, strict=True):
            if g is not None:
                jac[k] = _to_numpy(g, ad)


def _fwd_column(
    ad: Any, forward: Any, f: Callable[..., Any], leaves: list, position: int, tangent: Any
) -> np.ndarray | None:
    """f's output tangent when the input at ``position`` carries ``tangent`` (None if none)."""
    with forward.dual_level():
        leaves[position] = forward.make_dual(leaves[position], ad.tensor(tangent))
        out = f(*leaves)
        if isinstance(out, ad.Tensor):
            t = forward.unpack_dual(out)[1]
            if t is not None:
                return _to_numpy(t, ad)
    return None


def _fd_jacobian(
    evaluate: Callable[[list[np.ndarray]], np.ndarray],
    arrays: list[np.ndarray],
    j: int,
    step: np.ndarray,
    out_shape: tuple[int, ...],
) -> np.ndarray:
    """Central-difference Jacobian ``out.shape + x.shape`` of input j."""
    columns = [
        _central(_along(evaluate, arrays, j, i), [np.zeros(())], [np.ones(())], step[i])[0]
        for i in np.ndindex(arrays[j].shape)
    ]
    return np.stack(columns, axis=-1).reshape(out_shape + arrays[j].shape)


def _kink(
    evaluate: Callable[[list[np.ndarray]], np.ndarray],
    f0: np.ndarray,
    arrays: list[np.ndarray],
    j: int,
    index: tuple[int, ...],
    h: float,
    atol: float,
    rtol: float,
) -> str | None:
    """Describe a kink at element ``index`` of input j, or None if f looks smooth there.

    The two one-sided second-order formulas of the five-point stencil agree to O(h**2) for a
    smooth f; a kink (or a jump) within 2h makes them differ by O(1) (or O(1/h)).
    """
    vals = {m: evaluate(_shifted(arrays, j, index, m * h)) for m in (-2, -1, 1, 2)}
    left = (3 * f0 - 4 * vals[-1] + vals[-2]) / (2 * h)
    right = (-3 * f0 + 4 * vals[1] - vals[2]) / (2 * h)
    allowed = atol + rtol * np.maximum(np.abs(left), np.abs(right))
    bad = np.argwhere(~(np.abs(left - right) <= allowed))
    if not len(bad):
        return None
    k = tuple(int(i) for i in bad[0])
    return (
        f"one-sided derivatives disagree at output element {k}: "
        f"left {left[k]:.6g}, right {right[k]:.6g}"
    )


def gradcheck(
    f: Callable[..., Any],
    *inputs: Any,
    atol: float = 1e-5,
    rtol: float = 1e-3,
    modes: Iterable[str] = ("rev", "fwd"),
    eps: float | None = None,
    check_kinks: bool = True,
    raise_exception: bool = True,
) -> bool:
    """Compare AD derivatives of ``f`` with central finite differences, element by element.

    Every element of every floating-point input is checked against every output element:
    ``|AD - FD| <= atol + rtol * |FD|``. Floating-point inputs (Tensors, arrays, Python
    floats) are passed to f as fresh float64 Tensors with ``requires_grad=True``; other inputs
    (integers, bools, complex values, anything else) are passed unchanged and not checked.
    float16/float32 inputs trigger a ``UserWarning`` (finite differences are unreliable below
    float64) and are upcast to float64.

    - ``"rev"``: one ``autograd.grad`` call per output element, seeded with a one-hot
      ``grad_outputs``;
    - ``"fwd"``: one forward pass per input element, with a one-hot dual tangent.

    The finite differences are central, with step ``eps`` or, by default,
    ``default_step(x, "central")`` (``~6e-6 * max(1, |x|)``).

    With ``check_kinks=True``, each mismatching input element is tested for a kink: the
    one-sided second-order derivatives from the five-point stencil ``x - 2h, ..., x + 2h``
    (left: ``(3 f(x) - 4 f(x-h) + f(x-2h)) / 2h``; right mirrored) agree to ``O(h**2)`` for a
    smooth f; if they disagree beyond the tolerance, finite differences are no reference
    there. A genuine mismatch anywhere else is still reported first; if every mismatch sits
    at a kink, the error says a kink / non-differentiable point was detected near the input.
    An infinite derivative at such a point (``sqrt`` at 0) turns the zero seeds of the other
    elements into ``0 * inf = nan`` in the same output: those nan are blamed on the
    non-differentiable element, not on the smooth ones they show up in. The probes
    ``x ± h`` may leave f's domain; their NumPy warnings are silenced.

    Parameters
    ----------
    f : callable
        Takes the inputs (floating ones as Tensors) and returns one Tensor of any shape.
    *inputs : Tensor, array_like or number
        Point of evaluation.
    atol, rtol : float
        Absolute and relative tolerance.
    modes : iterable of {"rev", "fwd"}
        AD modes to check.
    eps : float, optional
        Finite-difference step (default: see above).
    check_kinks : bool
        Detect kinks at mismatching elements (costs 4 more calls of f per such element).
    raise_exception : bool
        If False, return False instead of raising.

    Returns
    -------
    bool
        True if every mode agrees with finite differences.

    Raises
    ------
    GradcheckError
        On the first mismatch (if ``raise_exception``).

    Examples
    --------
    >>> import numpy as np
    >>> import autodiffx as ad
    >>> gradcheck(lambda x: ad.sin(x) * x, np.array([0.5, -1.0, 2.0]))
    True
    >>> gradcheck(lambda x: x * x.detach(), 3.0, modes=("rev",), raise_exception=False)
    False
    """
    ad = _core()[0]
    modes = tuple(modes)
    if not modes or any(m not in _MODES for m in modes):
        raise ValueError(f"modes must be a non-empty subset of {_MODES}; got {modes!r}")
    args, positions, arrays = _prepare_inputs(inputs, ad, stacklevel=3)

    def evaluate(values: list[np.ndarray]) -> np.ndarray:
        out = f(*_leaves(ad, args, positions, values))
        if isinstance(out, (tuple, list)):
            raise TypeError("gradcheck: f must return a single Tensor, not a tuple or list")
        return _to_numpy(out, ad).astype(np.float64)

    def fail(message: str) -> bool:
        if raise_exception:
            raise GradcheckError(message)
        return False

    f0 = evaluate(arrays)
    steps = [
        np.asarray(default_step(a, "central")) if eps is None else np.full(a.shape, float(eps))
        for a in arrays
    ]
    # NOTE: the probes x +- h, x +- 2h may leave f's domain (sqrt at 0): their NumPy warnings
    # are silenced; a non-finite difference is a mismatch, examined for a kink below.
    with np.errstate(all="ignore"):
        fd_jacs = [
            _fd_jacobian(evaluate, arrays, j, steps[j], f0.shape) for j in range(len(arrays))
        ]
    found: list[_Mismatch] = []
    ad_by_mode = {}
    for mode in modes:
        ad_by_mode[mode] = _ad_jacobians(mode, f, args, positions, arrays, f0.shape)
        for j in range(len(arrays)):
            found += _mismatches(mode, j, ad_by_mode[mode][j], fd_jacs[j], f0.shape, atol, rtol)
    if not found:
        return True
    kinks: dict[tuple[int, tuple[int, ...]], str | None] = {}
    with np.errstate(all="ignore"):
        for m in found if check_kinks else ():
            if (m.j, m.index) not in kinks:
                kinks[m.j, m.index] = _kink(
                    evaluate, f0, arrays, m.j, m.index, steps[m.j][m.index], atol, rtol
                )
    return fail(_failure(found, kinks, ad_by_mode, fd_jacs, positions, arrays))


def _failure(
    found: list[_Mismatch],
    kinks: Mapping[tuple[int, tuple[int, ...]], str | None],
    ad_by_mode: Mapping[str, list[np.ndarray]],
    fd_jacs: list[np.ndarray],
    positions: list[int],
    arrays: list[np.ndarray],
) -> str:
    """The message of a failed check: the first genuine mismatch, else the kink that every
    mismatch sits at or comes from."""
    blamed: list[tuple[_Mismatch, tuple[int, tuple[int, ...]]]] = []
    for m in found:
        if kinks.get((m.j, m.index)) is not None:
            continue
        culprit = _non_finite_culprit(m, kinks, ad_by_mode[m.mode], fd_jacs)
        if culprit is None:
            where = f"input {positions[m.j]} (shape {arrays[m.j].shape}), element {m.index}"
            return (
                f"gradcheck failed in {m.mode!r} mode for {where}:\n    {m.values}, "
                f"|AD - FD| = {abs(m.ad - m.fd):.3g} > allowed atol + rtol*|FD| = {m.allowed:.3g}"
            )
        blamed.append((m, culprit))
    return _kink_report(found, kinks, blamed, positions, arrays)


@dataclass(frozen=True)
class _Mismatch:
    """An input element whose AD derivative disagrees with finite differences."""

    mode: str
    j: int
    index: tuple[int, ...]
    k: tuple[int, ...]  # the (first) output element where they disagree
    ad: float
    fd: float
    allowed: float

    @property
    def values(self) -> str:
        return f"output element {self.k}: AD = {self.ad:.10g}, FD = {self.fd:.10g}"


def _mismatches(
    mode: str,
    j: int,
    ad_jac: np.ndarray,
    fd_jac: np.ndarray,
    out_shape: tuple[int, ...],
    atol: float,
    rtol: float,
) -> list[_Mismatch]:
    """The elements of input j whose column of the Jacobian disagrees, in order."""
    shape = fd_jac.shape[len(out_shape) :]
    allowed = atol + rtol * np.abs(fd_jac)
    bad = ~(np.abs(ad_jac - fd_jac) <= allowed)
    per_element = bad.reshape(int(np.prod(out_shape)), int(np.prod(shape)))
    found = []
    for e in np.flatnonzero(per_element.any(axis=0)):
        index = tuple(int(i) for i in np.unravel_index(e, shape))
        k = tuple(int(i) for i in np.unravel_index(np.argmax(per_element[:, e]), out_shape))
        at = (*k, *index)
        found.append(
            _Mismatch(mode, j, index, k, float(ad_jac[at]), float(fd_jac[at]), float(allowed[at]))
        )
    return found


def _non_finite_culprit(
    m: _Mismatch,
    kinks: Mapping[tuple[int, tuple[int, ...]], str | None],
    ad_jacs: list[np.ndarray],
    fd_jacs: list[np.ndarray],
) -> tuple[int, tuple[int, ...]] | None:
    """The non-differentiable element that explains a non-finite AD value of a smooth one.

    An infinite derivative (sqrt at 0) turns the zero seed of every other element into
    ``0 * inf = nan`` in the same output element: that nan belongs to the kink, not to the
    element it shows up in.
    """
    if np.isfinite(m.ad):
        return None
    for (j, index), kink in kinks.items():
        at = (*m.k, *index)
        if kink is not None and not (np.isfinite(ad_jacs[j][at]) and np.isfinite(fd_jacs[j][at])):
            return j, index
    return None


def _kink_report(
    found: list[_Mismatch],
    kinks: Mapping[tuple[int, tuple[int, ...]], str | None],
    blamed: list[tuple[_Mismatch, tuple[int, tuple[int, ...]]]],
    positions: list[int],
    arrays: list[np.ndarray],
) -> str:
    """The error of a check whose every mismatch sits at (or is explained by) a kink."""
    key = blamed[0][1] if blamed else next(k for k, v in kinks.items() if v is not None)
    m = next(m for m in found if (m.j, m.index) == key)
    j, index = key
    where = f"input {positions[j]} (shape {arrays[j].shape}), element {index}"
    text = (
        f"gradcheck: a kink / non-differentiable point was detected near {where} "
        f"(x = {arrays[j][index]:.6g}):\n    {kinks[key]};\n    finite differences are "
        f"no reference there ({m.mode!r} mode, {m.values}).\n"
    )
    others = sorted({(b.j, b.index) for b, culprit in blamed if culprit == key})
    if others:
        names = ", ".join(f"element {i} of input {positions[jj]}" for jj, i in others)
        text += (
            f"    Its non-finite derivative also makes the AD derivatives of output element "
            f"{blamed[0][0].k} with respect to {names} nan (0 * inf).\n"
        )
    return text + "    Check at a point away from the kink."


def gradgradcheck(
    f: Callable[..., Any],
    *inputs: Any,
    grad_outputs: Any = None,
    atol: float = 1e-5,
    rtol: float = 1e-3,
    modes: Iterable[str] = ("rev",),
    eps: float | None = None,
    check_kinks: bool = True,
    raise_exception: bool = True,
) -> bool:
    """Check second derivatives: :func:`gradcheck` of the vector-Jacobian product of ``f``.

    The checked function is ``xs -> autograd.grad(f(*xs), xs, grad_outputs=go,
    create_graph=True)`` over the floating-point inputs, its gradients ravelled and
    concatenated in input order into one vector (so "output element (k,)" in an error
    message indexes that vector; a gradient that is None counts as zeros). ``go`` is held
    fixed: derivatives with respect to it are not checked. The other arguments, the result
    (True if the second derivatives agree) and the errors are those of :func:`gradcheck`,
    but ``modes`` defaults to ``("rev",)``.

    Parameters
    ----------
    grad_outputs : array_like or Tensor, optional
        Cotangent ``go`` of f's output shape. Default: fixed standard normal values from
        ``numpy.random.default_rng(0)``.

    Examples
    --------
    >>> import numpy as np
    >>> import autodiffx as ad
    >>> gradgradcheck(lambda x: ad.sum(ad.sin(x) * x), np.array([0.5, -1.0]))
    True
    """
    ad, autograd, _ = _core()
    args, positions, arrays = _prepare_inputs(inputs, ad, stacklevel=3)
    if grad_outputs is None:
        out = _to_numpy(f(*_leaves(ad, args, positions, arrays)), ad)
        go = np.asarray(np.random.default_rng(0).standard_normal(out.shape))
    else:
        go = _to_numpy(grad_outputs, ad).astype(np.float64)

    def first_derivatives(*xs: Any) -> Any:
        diff = [xs[p] for p in positions]
        grads = autograd.grad(
            f(*xs), diff, grad_outputs=ad.tensor(go), create_graph=True, allow_unused=True
        )
        parts = [ad.zeros_like(x) if g is None else g for g, x in zip(grads, diff, strict=True)]
        return ad.concatenate([ad.ravel(p) for p in parts])

    upcast = list(args)
    for position, array in zip(positions, arrays, strict=True):
        upcast[position] = array
    try:
        return gradcheck(
            first_derivatives,
            *upcast,
            atol=atol,
            rtol=rtol,
            modes=modes,
            eps=eps,
            check_kinks=check_kinks,
            raise_exception=raise_exception,
        )
    except GradcheckError as err:
        raise GradcheckError(
            f"gradgradcheck (first derivatives of f, ravelled and concatenated): {err}"
        ) from None


# --------------------------------------------------------------------------------------------
# step-size study
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class StepStudy:
    """Errors of finite-difference schemes against an exact derivative, per step size.

    Attributes
    ----------
    hs : numpy.ndarray
        Step sizes (read-only).
    errors : Mapping[str, numpy.ndarray]
        Scheme -> absolute errors, one per step (read-only).
    exact : float
        Reference derivative.
    best : Mapping[str, tuple[float, float]]
        Scheme -> ``(h, error)`` at the smallest error (NaN errors ignored).
    x : float
        Point of evaluation.

    Examples
    --------
    >>> import numpy as np
    >>> study = step_study(np.exp, 1.0, exact=np.e, hs=[1e-1, 1e-2], schemes=("central",))
    >>> study.to_rows()[0]["h"], round(study.best["central"][1], 7)
    (0.1, 4.53e-05)
    """

    hs: np.ndarray
    errors: Mapping[str, np.ndarray]
    exact: float
    best: Mapping[str, tuple[float, float]]
    x: float

    def to_rows(self) -> list[dict[str, float]]:
        """One dict per step: ``{"h": h, scheme: error, ...}`` (e.g. for a DataFrame).

        Examples
        --------
        >>> import numpy as np
        >>> study = step_study(np.exp, 0.0, exact=1.0, hs=[0.5], schemes=("forward",))
        >>> [{k: round(v, 4) for k, v in row.items()} for row in study.to_rows()]
        [{'h': 0.5, 'forward': 0.2974}]
        """
        return [
            {"h": float(h), **{s: float(err[i]) for s, err in self.errors.items()}}
            for i, h in enumerate(self.hs)
        ]

    def __repr__(self) -> str:
        n, shown = len(self.hs), 13
        rows = range(n) if n <= shown else np.unique(np.linspace(0, n - 1, shown).round())
        schemes = list(self.errors)
        lines = [f"StepStudy(x={self.x!r}, exact={self.exact!r})"]
        lines.append("".join(f"{name:>12}" for name in ["h", *schemes]))
        for i in rows:
            i = int(i)
            cells = [self.hs[i], *(self.errors[s][i] for s in schemes)]
            lines.append("".join(f"{v:12.2e}" for v in cells))
        if n > shown:
            lines.append(f"({len(rows)} of {n} steps shown; to_rows() has all)")
        lines.append(f"{'best h':>12}" + "".join(f"{self.best[s][0]:12.2e}" for s in schemes))
        lines.append(f"{'best error':>12}" + "".join(f"{self.best[s][1]:12.2e}" for s in schemes))
        return "\n".join(lines)


def _reference_derivative(f: Callable[[Any], Any], x: np.ndarray) -> float:
    """f'(x) in float64 by reverse-mode AD, or by the complex step when AD is unavailable."""
    x = x.astype(np.float64)
    try:
        ad, autograd, _ = _core()
    except ImportError:
        ad = None
    if ad is not None:
        t = ad.tensor(x, requires_grad=True)
        try:
            out = f(t)
        except TypeError:  # f takes plain arrays only (it converts, or calls non-autodiffx code)
            out = None
        if isinstance(out, ad.Tensor) and out.requires_grad:
            g = autograd.grad(out, t)
            return float(np.asarray(g[0] if isinstance(g, (tuple, list)) else g))
    return float(derivative(f, x, scheme="complex"))


def step_study(
    f: Callable[[Any], Any],
    x: float,
    exact: float | None = None,
    hs: npt.ArrayLike | None = None,
    schemes: Iterable[Scheme] = ("forward", "backward", "central", "complex"),
) -> StepStudy:
    """Finite-difference error versus step size, per scheme, for a scalar function.

    Shows the two regimes: as h shrinks the truncation error falls (like ``h`` for
    forward/backward, ``h**2`` for central and complex), until round-off ``~ eps |f| / h``
    takes over and the error rises again; the complex step has no round-off regime.

    Parameters
    ----------
    f : callable
        Scalar function of a scalar. Called with 0-d NumPy arrays (complex for the complex
        step) and, when ``exact`` is None, once with a Tensor.
    x : float
        Point of evaluation (a float32 scalar gives a float32 study).
    exact : float, optional
        Reference derivative. Default, computed in float64: reverse-mode AD,
        ``autograd.grad(f(t), t)`` with ``t = autodiffx.tensor(x, requires_grad=True)``; if f
        does not return a Tensor that requires grad (or the AD core is unavailable), the
        complex-step derivative at the default step ``1e-20 * max(1, |x|)``, exact to rounding
        for complex-step-safe f.
    hs : array_like, optional
        Positive steps. Default: ``np.logspace(-16, 0, 49)``.
    schemes : iterable of {"forward", "backward", "central", "complex"}
        Schemes to study.

    Returns
    -------
    StepStudy
        Steps, absolute errors per scheme, the reference and the best step per scheme.

    Examples
    --------
    >>> import numpy as np
    >>> step_study(np.exp, 1.0, exact=np.e, hs=[1e-1, 1e-2, 1e-3])
    StepStudy(x=1.0, exact=2.718281828459045)
               h     forward    backward     central     complex
        1.00e-01    1.41e-01    1.31e-01    4.53e-03    4.53e-03
        1.00e-02    1.36e-02    1.35e-02    4.53e-05    4.53e-05
        1.00e-03    1.36e-03    1.36e-03    4.53e-07    4.53e-07
          best h    1.00e-03    1.00e-03    1.00e-03    1.00e-03
      best error    1.36e-03    1.36e-03    4.53e-07    4.53e-07
    """
    x = _as_float(x)
    if x.ndim != 0:
        raise ValueError(f"step_study needs a scalar x; got shape {x.shape}")
    hs = np.logspace(-16, 0, 49) if hs is None else np.array(hs, dtype=np.float64)
    if hs.ndim != 1 or not np.all(hs > 0):
        raise ValueError("hs must be a 1-D array of positive steps")
    exact = _reference_derivative(f, x) if exact is None else float(exact)
    errors, best = {}, {}
    for scheme in schemes:
        values = [derivative(f, x, h=h, scheme=scheme) for h in hs]
        if any(np.ndim(v) != 0 for v in values):
            raise ValueError("step_study needs a scalar-valued f")
        err = np.abs(np.asarray(values, dtype=np.float64) - exact)
        err.flags.writeable = False
        errors[scheme] = err
        if np.all(np.isnan(err)):
            best[scheme] = (float("nan"), float("nan"))
        else:
            i = int(np.nanargmin(err))
            best[scheme] = (float(hs[i]), float(err[i]))
    hs.flags.writeable = False
    return StepStudy(
        hs=hs,
        errors=MappingProxyType(errors),
        exact=exact,
        best=MappingProxyType(best),
        x=float(x),
    )
