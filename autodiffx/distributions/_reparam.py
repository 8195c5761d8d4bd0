"""Custom rules: implicitly reparameterised Gamma/Dirichlet samples and the incomplete gamma.

The first derivatives come from ``_implicit`` (accurate to ~1e-13); their own derivatives
(second order in the shape parameters) are not implemented and raise, as in PyTorch, instead
of being silently zero.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.special as sp

from .. import ops
from .._tensor import Tensor
from ..autograd import Function
from ._implicit import dirichlet_grad, standard_gamma_grad

_SECOND = (
    "{what}: derivatives of order two in the shape parameter (concentration) are not "
    "implemented (the first derivative is exact, from the implicit function theorem); "
    "differentiate once, or with respect to the other parameters only"
)


def _data(x: Any) -> np.ndarray:
    return np.asarray(x.data if isinstance(x, Tensor) else x)


class _FirstDerivative(Function):
    """A first derivative in the shape parameter, a constant of the graph: its own derivatives
    raise, naming ``what`` (the user-facing call)."""

    what = ""

    @classmethod
    def vjp(cls, ctx: Any, g: Any) -> Any:
        raise NotImplementedError(_SECOND.format(what=cls.what))

    @classmethod
    def jvp(cls, ctx: Any, *tangents: Any) -> Any:
        raise NotImplementedError(_SECOND.format(what=cls.what))


class _Rsample(Function):
    """Samples drawn beforehand, ``forward(ctx, concentration, sample)``, passed through with
    a pathwise derivative in the concentration: ``sample_grad`` gives ``d``, the derivative
    of the samples, and ``pull(g, d, sample)``/``push(t, d, sample)`` apply it.

    Examples
    --------
    >>> import numpy as np
    >>> import autodiffx as ad
    >>> from autodiffx.distributions._reparam import DirichletRsample, GammaRsample
    >>> a = ad.tensor([2.0], requires_grad=True)
    >>> x = GammaRsample.apply(a, np.array([1.5]))
    >>> x.sum().backward()
    >>> x, a.grad
    (tensor([1.5], grad_fn=<GammaRsample>), tensor([0.93663907]))
    >>> c = ad.tensor([1.0, 1.0], requires_grad=True)
    >>> DirichletRsample.apply(c, np.array([0.3, 0.7]))[0].backward()
    >>> c.grad
    tensor([ 0.36119184, -0.24967246])
    """

    sample_grad: type[_FirstDerivative]

    @staticmethod
    def forward(ctx: Any, concentration: Any, sample: Any) -> Any:
        ctx.save_for_backward(concentration)
        ctx.sample = sample
        return sample

    @classmethod
    def _d(cls, ctx: Any) -> Any:
        (c,) = ctx.saved_tensors
        return cls.sample_grad.apply(c, ctx.sample)

    @classmethod
    def vjp(cls, ctx: Any, g: Any) -> Any:
        return cls.pull(g, cls._d(ctx), ctx.sample), None

    @classmethod
    def jvp(cls, ctx: Any, tc: Any, ts: Any) -> Any:
        return cls.push(tc, cls._d(ctx), ctx.sample)

    @staticmethod
    def pull(g: Any, d: Any, sample: Any) -> Any:
        raise NotImplementedError

    @staticmethod
    def push(t: Any, d: Any, sample: Any) -> Any:
        raise NotImplementedError


class _SampleGrad(_FirstDerivative):
    """``kernel(concentration, sample)``, the derivative of samples, in the concentration's
    dtype."""

    @classmethod
    def forward(cls, ctx: Any, concentration: Any, sample: Any) -> Any:
        c = _data(concentration)
        return cls.kernel(c, sample).astype(c.dtype, copy=False)

    @staticmethod
    def kernel(concentration: np.ndarray, sample: Any) -> np.ndarray:
        raise NotImplementedError


class _GammaSampleGrad(_SampleGrad):
    """dx/da of Gamma(a, 1) samples x (a constant of the graph: its derivative raises)."""

    what = "Gamma.rsample"
    kernel = staticmethod(standard_gamma_grad)


class GammaRsample(_Rsample):
    """``x`` (Gamma(a, 1) samples drawn beforehand) with the pathwise derivative dx/da."""

    sample_grad = _GammaSampleGrad

    @staticmethod
    def pull(g: Any, d: Any, sample: Any) -> Any:
        return g * d

    push = pull


class _DirichletSampleGrad(_SampleGrad):
    """PyTorch's ``_dirichlet_grad`` of samples y (a constant of the graph)."""

    what = "Dirichlet.rsample"
    kernel = staticmethod(lambda c, y: dirichlet_grad(y, c))


class DirichletRsample(_Rsample):
    """``y`` (Dirichlet samples drawn beforehand) with dy_j/da_i = g_i (delta_ij - y_j)."""

    sample_grad = _DirichletSampleGrad

    @staticmethod
    def pull(g: Any, d: Any, y: Any) -> Any:
        return d * (g - (g * y).sum(axis=-1, keepdims=True))

    @staticmethod
    def push(t: Any, d: Any, y: Any) -> Any:
        moved = d * t
        return moved - y * moved.sum(axis=-1, keepdims=True)


class _GammaincDa(_FirstDerivative):
    """dP(a, x)/da = -dx/da * p(x; a) (a constant of the graph: its derivative raises)."""

    what = "Gamma.cdf"

    @staticmethod
    def forward(ctx: Any, a: Any, x: Any) -> Any:
        av, xv = np.broadcast_arrays(_data(a), _data(x))
        grad = standard_gamma_grad(av, np.maximum(xv, np.finfo(np.float64).tiny))
        dens = np.exp((av - 1) * np.log(xv) - xv - sp.gammaln(av))
        out = np.where(xv > 0, -grad * dens, 0.0)
        return out.astype(np.result_type(av.dtype, xv.dtype), copy=False)


class Gammainc(Function):
    """The regularized lower incomplete gamma P(a, x), differentiable in x (any order, as the
    density) and in a (first order).

    Examples
    --------
    >>> import autodiffx as ad
    >>> from autodiffx.distributions._reparam import Gammainc
    >>> x = ad.tensor(1.0, requires_grad=True)
    >>> Gammainc.apply(ad.tensor(1.0), x).backward()  # P(1, x) = 1 - exp(-x)
    >>> x.grad
    tensor(0.36787944)
    """

    @staticmethod
    def forward(ctx: Any, a: Any, x: Any) -> Any:
        ctx.save_for_backward(a, x)
        return sp.gammainc(_data(a), _data(x))

    @staticmethod
    def _dx(a: Any, x: Any) -> Any:
        pos = _data(x) > 0
        safe = ops.where(pos, x, 1.0)
        return ops.where(pos, ops.exp((a - 1) * ops.log(safe) - safe - ops.gammaln(a)), 0.0)

    @staticmethod
    def vjp(ctx: Any, g: Any) -> Any:
        a, x = ctx.saved_tensors
        need_a, need_x = ctx.needs_input_grad
        ga = g * _GammaincDa.apply(a, x) if need_a else None
        return ga, g * Gammainc._dx(a, x) if need_x else None

    @staticmethod
    def jvp(ctx: Any, ta: Any, tx: Any) -> Any:
        a, x = ctx.saved_tensors
        out = tx * Gammainc._dx(a, x)
        if (isinstance(ta, Tensor) and ta.requires_grad) or np.any(_data(ta)):
            out = out + ta * _GammaincDa.apply(a, x)
        return out
