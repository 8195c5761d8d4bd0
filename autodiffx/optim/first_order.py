"""First-order optimizers: SGD, Adam, AdamW, RMSprop, Adagrad and SteepestDescent.

The update equations are PyTorch's (``torch/optim/*.py``, single-tensor path) operation by
operation, so that in float64 the trajectories agree with PyTorch to rounding. They run on
the raw arrays in place (``p.data``), never recording a graph.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .._tensor import Tensor
from .._xp import absmax, cast, namespace
from .optimizer import Optimizer, _hyperparameters, _real_view

__all__ = ["SGD", "Adagrad", "Adam", "AdamW", "RMSprop", "SteepestDescent"]


def _like(p: Tensor, values: Any = None, fill: Any = 0) -> Any:
    """A state array in the parameter's layout (shape, dtype, library and device),
    optionally filled from the real-view values ``values``."""
    x = p.data
    if type(x) is not np.ndarray:  # an array-API array (real: step refuses complex ones)
        xp = namespace(x)
        if values is not None:
            return xp.astype(values, x.dtype, copy=True)
        return xp.full(x.shape, fill, dtype=x.dtype, device=x.device)
    a = np.full(p.shape, fill, dtype=p.dtype)
    if values is not None:
        _real_view(a)[...] = values
    return a


def _descent(p: Tensor, g: Any, group: dict[str, Any]) -> tuple[Any, Any, Any]:
    """The parameter's array namespace (``np`` for NumPy arrays), its real view and the
    gradient to descend along (negated for ``maximize``)."""
    x = p.data
    xp = np if type(x) is np.ndarray else namespace(x)
    return xp, _real_view(x), (-g if group["maximize"] else g)


def _start(state: dict, p: Tensor, *buffers: str, fill: Any = 0) -> None:
    """A parameter's first state: step 0 and each named buffer (an empty name is skipped)."""
    state["step"] = 0
    for name in filter(None, buffers):
        state[name] = _like(p, fill=fill)


_AXPY: dict[np.dtype, Any] = {}


def _blas_axpy(dtype: np.dtype) -> Any:
    """SciPy's BLAS ``?axpy`` for float32/float64 (imported on first use), else None."""
    if not _AXPY:
        from scipy.linalg.blas import daxpy, saxpy

        _AXPY.update({np.dtype(np.float32): saxpy, np.dtype(np.float64): daxpy})
    return _AXPY.get(dtype)


def _sub_scaled(x: np.ndarray, lr: float, g: np.ndarray) -> None:
    """In place ``x -= lr * g`` without a temporary ``lr * g`` when BLAS can do it.

    NumPy ``x`` and ``g`` contiguous of one float dtype go to ``?axpy`` (one pass, no allocation:
    for a large layer the temporary and its page faults cost more than the update); anything
    else takes NumPy's ``x -= lr * g``.
    """
    if type(x) is not np.ndarray:  # (array-API arrays: their own operators)
        x -= lr * g
        return
    f = _AXPY.get(x.dtype) if _AXPY else _blas_axpy(x.dtype)
    if f is not None and lr != 0 and g.dtype == x.dtype and x.size:
        fx = x.flags
        if fx.c_contiguous and fx.writeable and g.flags.c_contiguous:
            flat = x.reshape(-1)
            res = f(g.reshape(-1), flat, a=-lr)
            if res is not flat:  # pragma: no cover - f2py updates contiguous arrays in place
                flat[...] = res
            return
    x -= lr * g


def _lerp(a: Any, b: Any, w: float) -> None:
    """In place ``a += w * (b - a)`` with PyTorch's two-sided lerp formula (any array API)."""
    if abs(w) < 0.5:
        a += w * (b - a)
    else:
        a[...] = b - (b - a) * (1 - w)


class SGD(Optimizer):
    """Stochastic gradient descent with momentum, dampening, Nesterov and weight decay.

    PyTorch's equations: ``g <- g + weight_decay * p``; with momentum
    ``b <- g`` (first step) or ``b <- momentum * b + (1 - dampening) * g``, then
    ``g <- g + momentum * b`` (Nesterov) or ``g <- b``; finally ``p <- p - lr * g``
    (``maximize`` negates the gradient first).

    Parameters
    ----------
    params : iterable
        Tensors or parameter-group dicts.
    lr : float
        Learning rate (default 1e-3, as PyTorch).
    momentum, dampening, weight_decay : float
        Default 0.
    nesterov, maximize : bool
        Default False.

    Examples
    --------
    >>> import autodiffx as ad
    >>> x = ad.tensor([1.0, 2.0], requires_grad=True)
    >>> opt = ad.optim.SGD([x], lr=0.1, momentum=0.9)
    >>> for _ in range(2):
    ...     opt.zero_grad()
    ...     (x * x).sum().backward()
    ...     opt.step()
    >>> x
    tensor([0.46, 0.92], requires_grad=True)
    """

    _param_shaped = frozenset({"momentum_buffer"})
    _array_api = True

    def __init__(
        self,
        params: Any,
        lr: float = 1e-3,
        momentum: float = 0.0,
        dampening: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
        *,
        maximize: bool = False,
    ) -> None:
        defaults = _hyperparameters(locals())
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")
        super().__init__(params, defaults)

    def _update(self, p: Tensor, g: Any, group: dict[str, Any], state: dict) -> None:
        x = _real_view(p.data)
        lr = group["lr"]
        wd = group["weight_decay"]
        mom = group["momentum"]
        if wd == 0 and mom == 0:  # plain SGD (the common case): one pass, no temporary
            _sub_scaled(x, -lr if group["maximize"] else lr, g)
            return
        if group["maximize"]:
            g = -g
        if wd != 0:
            g = g + wd * x
        if mom != 0:
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = state["momentum_buffer"] = _like(p, g)
                b = _real_view(buf)
            else:
                b = _real_view(buf)
                b *= mom
                b += (1 - group["dampening"]) * g
            g = g + mom * b if group["nesterov"] else b
        _sub_scaled(x, lr, g)


class Adam(Optimizer):
    """Adam (Kingma & Ba), with AMSGrad, weight decay and ``maximize`` as in PyTorch.

    With ``t`` the step count: ``g <- g + weight_decay * p`` (or, decoupled,
    ``p <- p (1 - lr weight_decay)``), ``m <- m + (1 - beta1)(g - m)``,
    ``v <- beta2 v + (1 - beta2) g**2``, ``v_hat = max(v_hat, v)`` (AMSGrad) and
    ``p <- p - lr / (1 - beta1**t) * m / (sqrt(v) / sqrt(1 - beta2**t) + eps)``.

    Parameters
    ----------
    params : iterable
        Tensors or parameter-group dicts.
    lr : float
        Default 1e-3.
    betas : (float, float)
        Default (0.9, 0.999).
    eps : float
        Default 1e-8.
    weight_decay : float
        Default 0 (L2 penalty added to the gradient unless ``decoupled_weight_decay``).
    amsgrad, maximize, decoupled_weight_decay : bool
        Default False.

    Examples
    --------
    >>> import autodiffx as ad
    >>> x = ad.tensor([1.0, -1.0], requires_grad=True)
    >>> opt = ad.optim.Adam([x], lr=0.1)
    >>> (x * x).sum().backward()
    >>> opt.step()
    >>> x
    tensor([ 0.9, -0.9], requires_grad=True)
    """

    _param_shaped = frozenset({"exp_avg", "exp_avg_sq", "max_exp_avg_sq"})
    _array_api = True

    def __init__(
        self,
        params: Any,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        amsgrad: bool = False,
        *,
        maximize: bool = False,
        decoupled_weight_decay: bool = False,
    ) -> None:
        betas = (float(betas[0]), float(betas[1]))
        super().__init__(params, _hyperparameters(locals()))

    def _update(self, p: Tensor, g: Any, group: dict[str, Any], state: dict) -> None:
        xp, x, g = _descent(p, g, group)
        if not state:
            amsgrad = "max_exp_avg_sq" if group["amsgrad"] else ""
            _start(state, p, "exp_avg", "exp_avg_sq", amsgrad)
        state["step"] += 1
        step = state["step"]
        lr, wd, eps = group["lr"], group["weight_decay"], group["eps"]
        beta1, beta2 = group["betas"]
        if wd != 0:
            if group["decoupled_weight_decay"]:
                x *= 1 - lr * wd
            else:
                g = g + wd * x
        m = _real_view(state["exp_avg"])
        v = _real_view(state["exp_avg_sq"])
        _lerp(m, g, 1 - beta1)
        v *= beta2
        v += (1 - beta2) * g * g
        bias_correction1 = 1 - beta1**step
        bias_correction2 = 1 - beta2**step
        step_size = lr / bias_correction1
        bias_correction2_sqrt = bias_correction2**0.5
        if group["amsgrad"]:
            vmax = _real_view(state["max_exp_avg_sq"])
            if xp is np:
                np.maximum(vmax, v, out=vmax)
            else:
                vmax[...] = xp.maximum(vmax, v)
            denom = xp.sqrt(vmax) / bias_correction2_sqrt + eps
        else:
            denom = xp.sqrt(v) / bias_correction2_sqrt + eps
        x += -step_size * m / denom


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter), as PyTorch's ``AdamW``.

    The same as ``Adam(..., decoupled_weight_decay=True)``: ``p <- p (1 - lr *
    weight_decay)`` before the Adam step; ``weight_decay`` defaults to 1e-2.

    Examples
    --------
    >>> import autodiffx as ad
    >>> x = ad.tensor([1.0], requires_grad=True)
    >>> opt = ad.optim.AdamW([x], lr=0.1, weight_decay=0.5)
    >>> (x * x).sum().backward()
    >>> opt.step()
    >>> x
    tensor([0.85], requires_grad=True)
    """

    def __init__(
        self,
        params: Any,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        amsgrad: bool = False,
        *,
        maximize: bool = False,
    ) -> None:
        super().__init__(
            params,
            lr,
            betas,
            eps,
            weight_decay,
            amsgrad,
            maximize=maximize,
            decoupled_weight_decay=True,
        )


class RMSprop(Optimizer):
    """RMSprop (Hinton), optionally centered and with momentum, as PyTorch's.

    ``s <- alpha s + (1 - alpha) g**2``; centered: ``a <- a + (1 - alpha)(g - a)`` and
    ``d = sqrt(s - a**2) + eps``, else ``d = sqrt(s) + eps``; with momentum
    ``b <- momentum b + g / d``, ``p <- p - lr b``, else ``p <- p - lr g / d``.

    Parameters
    ----------
    params : iterable
        Tensors or parameter-group dicts.
    lr : float
        Default 1e-2.
    alpha : float
        Smoothing constant, default 0.99.
    eps : float
        Default 1e-8.
    weight_decay, momentum : float
        Default 0.
    centered, maximize : bool
        Default False.

    Examples
    --------
    >>> import autodiffx as ad
    >>> x = ad.tensor([1.0], requires_grad=True)
    >>> opt = ad.optim.RMSprop([x], lr=0.01)
    >>> (x * x).sum().backward()
    >>> opt.step()
    >>> x
    tensor([0.9], requires_grad=True)
    """

    _param_shaped = frozenset({"square_avg", "momentum_buffer", "grad_avg"})
    _array_api = True

    def __init__(
        self,
        params: Any,
        lr: float = 1e-2,
        alpha: float = 0.99,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        momentum: float = 0.0,
        centered: bool = False,
        *,
        maximize: bool = False,
    ) -> None:
        super().__init__(params, _hyperparameters(locals()))

    def _update(self, p: Tensor, g: Any, group: dict[str, Any], state: dict) -> None:
        xp, x, g = _descent(p, g, group)
        if not state:
            momentum = "momentum_buffer" if group["momentum"] > 0 else ""
            _start(state, p, "square_avg", momentum, "grad_avg" if group["centered"] else "")
        state["step"] += 1
        alpha, wd = group["alpha"], group["weight_decay"]
        if wd != 0:
            g = g + wd * x
        sq = _real_view(state["square_avg"])
        sq *= alpha
        sq += (1 - alpha) * g * g
        if group["centered"]:
            ga = _real_view(state["grad_avg"])
            _lerp(ga, g, 1 - alpha)
            avg = xp.sqrt(sq - ga * ga)
        else:
            avg = xp.sqrt(sq)
        avg += group["eps"]
        if group["momentum"] > 0:
            buf = _real_view(state["momentum_buffer"])
            buf *= group["momentum"]
            buf += g / avg
            x -= group["lr"] * buf
        else:
            x += -group["lr"] * g / avg


class Adagrad(Optimizer):
    """Adagrad (Duchi et al.), as PyTorch's.

    With step count ``t``: ``g <- g + weight_decay p``, ``clr = lr / (1 + (t - 1)
    lr_decay)``, ``s <- s + g**2`` (``s`` starts at ``initial_accumulator_value``) and
    ``p <- p - clr g / (sqrt(s) + eps)``.

    Parameters
    ----------
    params : iterable
        Tensors or parameter-group dicts.
    lr : float
        Default 1e-2.
    lr_decay, weight_decay, initial_accumulator_value : float
        Default 0.
    eps : float
        Default 1e-10.
    maximize : bool
        Default False.

    Examples
    --------
    >>> import autodiffx as ad
    >>> x = ad.tensor([1.0, -100.0], requires_grad=True)
    >>> opt = ad.optim.Adagrad([x], lr=0.5)
    >>> ad.sum(x * x).backward()
    >>> opt.step()
    >>> x  # the first step moves each coordinate by lr, whatever its gradient's scale
    tensor([  0.5, -99.5], requires_grad=True)
    """

    _param_shaped = frozenset({"sum"})
    _array_api = True

    def __init__(
        self,
        params: Any,
        lr: float = 1e-2,
        lr_decay: float = 0.0,
        weight_decay: float = 0.0,
        initial_accumulator_value: float = 0.0,
        eps: float = 1e-10,
        *,
        maximize: bool = False,
    ) -> None:
        super().__init__(params, _hyperparameters(locals()))

    def _update(self, p: Tensor, g: Any, group: dict[str, Any], state: dict) -> None:
        xp, x, g = _descent(p, g, group)
        if not state:
            init = group["initial_accumulator_value"]
            _start(state, p, "sum", fill=complex(init, init) if p.dtype.kind == "c" else init)
        state["step"] += 1
        step = state["step"]
        wd = group["weight_decay"]
        if wd != 0:
            g = g + wd * x
        clr = group["lr"] / (1 + (step - 1) * group["lr_decay"])
        s = _real_view(state["sum"])
        s += g * g
        std = xp.sqrt(s) + group["eps"]
        x += -clr * g / std


# ----- steepest descent under a norm ---------------------------------------------------------
# Each takes the gradient's array namespace (``np`` for NumPy arrays) and the gradient.
def _dir_l2(xp: Any, g: Any) -> Any:
    m = absmax(g)
    if m == 0:
        return xp.zeros_like(g)
    s = g / m  # NOTE: scaled first, so that the norm never overflows or underflows
    return s / xp.sqrt(xp.sum(s * s))


def _dir_l1(xp: Any, g: Any) -> Any:
    m = absmax(g)
    if m == 0:
        return xp.zeros_like(g)
    hit = cast(xp.abs(g) == m, g.dtype)
    # NOTE: ties split the unit mass equally (the minimum-norm maximiser).
    return xp.sign(g) * hit / int(xp.count_nonzero(hit))


def _dir_spectral(xp: Any, g: Any) -> Any:
    if g.ndim < 2:
        return xp.sign(g) if g.ndim == 0 else _dir_l2(xp, g)
    u, s, vh = xp.linalg.svd(g, full_matrices=False)
    smax = xp.max(s, axis=-1, keepdims=True)
    # NOTE: singular directions of (numerically) zero singular values are dropped: the
    # minimum-norm maximiser U_r V_r^T, and 0 for a zero gradient.
    keep = s > smax * max(g.shape[-2:]) * xp.finfo(g.dtype).eps
    return (u * cast(keep, u.dtype)[..., None, :]) @ vh


def _dir_linf(xp: Any, g: Any) -> Any:
    return xp.sign(g)


_DIRECTIONS: dict[str, Callable[[Any, Any], Any]] = {
    "l2": _dir_l2,
    "l1": _dir_l1,
    "linf": _dir_linf,
    "spectral": _dir_spectral,
}


class SteepestDescent(Optimizer):
    r"""Steepest descent under a chosen norm: one class for every norm.

    For each parameter tensor with gradient ``g`` the step is ``p <- p - lr * v`` where
    ``v = argmax { <g, v> : ||v|| <= 1 }`` is the maximiser of the gradient's pairing over
    the unit ball of the norm (the direction of steepest ascent; descent goes against it).
    The maximum value ``<g, v> = ||g||_*`` is the dual norm.

    ==============  =================================================  ====================
    ``norm``        maximiser ``v``                                    dual norm ``<g, v>``
    ==============  =================================================  ====================
    ``"l2"``        ``g / ||g||_2``                                    ``||g||_2``
    ``"linf"``      ``sign(g)`` (signSGD)                              ``||g||_1``
    ``"l1"``        ``sign(g_i) e_i`` at the largest ``|g_i|`` (ties   ``||g||_inf``
                    split the unit mass equally): coordinate descent
    ``"spectral"``  ``U V^T`` from the SVD ``g = U S V^T`` (matrices;  nuclear norm
                    batched over leading axes; vectors as ``"l2"``)
    callable        ``norm(g) -> v`` for any other norm                ``<g, v>``
    ==============  =================================================  ====================

    A zero gradient gives ``v = 0``. With ``scale_by_dual_norm=True`` the step is
    ``lr * ||g||_* * v``, the minimiser of ``<g, d> + ||d||**2 / (2 lr)``: for ``"l2"``
    this is plain gradient descent. Each parameter tensor is one block (the norm of the
    whole parameter vector is the max over blocks, whose unit ball is the product of the
    blocks' balls, so the maximiser is taken blockwise). Real parameters only.

    Parameters
    ----------
    params : iterable
        Tensors or parameter-group dicts.
    lr : float
        Step length (default 1e-3).
    norm : {"l2", "l1", "linf", "spectral"} or callable
        The norm (per group).
    scale_by_dual_norm : bool
        Multiply the step by the dual norm of the gradient (default False).
    maximize : bool
        Ascend instead (default False).

    Examples
    --------
    >>> import autodiffx as ad
    >>> x = ad.tensor([3.0, -1.0], requires_grad=True)
    >>> opt = ad.optim.SteepestDescent([x], lr=0.5, norm="linf")
    >>> (x * x).sum().backward()
    >>> opt.step()
    >>> x
    tensor([ 2.5, -0.5], requires_grad=True)
    """

    _array_api = True

    def __init__(
        self,
        params: Any,
        lr: float = 1e-3,
        norm: str | Callable[[np.ndarray], Any] = "l2",
        scale_by_dual_norm: bool = False,
        *,
        maximize: bool = False,
    ) -> None:
        defaults = _hyperparameters(locals())
        if not callable(norm) and norm not in _DIRECTIONS:
            raise ValueError(
                f"norm must be one of {sorted(_DIRECTIONS)} or a callable, got {norm!r}"
            )
        super().__init__(params, defaults)

    def _update(self, p: Tensor, g: Any, group: dict[str, Any], state: dict) -> None:
        if p.dtype.kind == "c":
            raise TypeError("SteepestDescent supports real parameters only")
        xp, x, g = _descent(p, g, group)
        norm = group["norm"]
        v = norm(g) if callable(norm) else _DIRECTIONS[norm](xp, g)
        if xp is np:
            v = np.asarray(v, dtype=p.dtype)
        else:  # (a callable may return NumPy values: converted as the engine's operands)
            v = xp.asarray(v, dtype=x.dtype, device=x.device)
        if v.shape != g.shape:
            raise ValueError(
                f"norm callable returned shape {v.shape} for a gradient of shape {g.shape}"
            )
        if group["scale_by_dual_norm"]:
            v = v * float(np.vdot(g, v) if xp is np else xp.sum(g * v))
        x -= group["lr"] * v
