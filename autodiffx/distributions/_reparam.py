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
    a pathwise derivative in the concentration (subclasses give ``vjp`` and ``jvp``)."""

    @staticmethod
    def forward(ctx: Any, concentration: Any, sample: Any) -> Any:
        ctx.save_for_backward(concentration)
        ctx.sample = sample
        return sample


class _GammaSampleGrad(_FirstDerivative):
    """dx/da of Gamma(a, 1) samples x (a constant of the graph: its derivative raises)."""

    what = "Gamma.rsample"

    @staticmethod
    def forward(ctx: Any, concentration: Any, x: Any) -> Any:
        c = _data(concentration)
        return standard_gamma_grad(c, x).astype(c.dtype, copy=False)


class GammaRsample(_Rsample):
    """``x`` (Gamma(a, 1) samples drawn beforehand) with the pathwise derivative dx/da.

    Examples
    --------
    >>> import numpy as np
    >>> import autodiffx as ad
    >>> from autodiffx.distributions._reparam import GammaRsample
    >>> a = ad.tensor([2.0], requires_grad=True)
    >>> GammaRsample.apply(a, np.array([1.5])).sum().backward()
    >>> a.grad
    tensor([0.93663907])
    """

    @staticmethod
    def vjp(ctx: Any, g: Any) -> Any:
        (c,) = ctx.saved_tensors
        return g * _GammaSampleGrad.apply(c, ctx.sample), None

    @staticmethod
    def jvp(ctx: Any, tc: Any, tx: Any) -> Any:
        (c,) = ctx.saved_tensors
        return tc * _GammaSampleGrad.apply(c, ctx.sample)


class _DirichletSampleGrad(_FirstDerivative):
    """PyTorch's ``_dirichlet_grad`` of samples y (a constant of the graph)."""

    what = "Dirichlet.rsample"

    @staticmethod
    def forward(ctx: Any, concentration: Any, y: Any) -> Any:
        c = _data(concentration)
        return dirichlet_grad(y, c).astype(c.dtype, copy=False)


class DirichletRsample(_Rsample):
    """``y`` (Dirichlet samples drawn beforehand) with dy_j/da_i = g_i (delta_ij - y_j).

    Examples
    --------
    >>> import numpy as np
    >>> import autodiffx as ad
    >>> from autodiffx.distributions._reparam import DirichletRsample
    >>> a = ad.tensor([1.0, 1.0], requires_grad=True)
    >>> DirichletRsample.apply(a, np.array([0.3, 0.7]))[0].backward()
    >>> a.grad
    tensor([ 0.36119184, -0.24967246])
    """

    @staticmethod
    def vjp(ctx: Any, g: Any) -> Any:
        (c,) = ctx.saved_tensors
        grad = _DirichletSampleGrad.apply(c, ctx.sample)
        return grad * (g - (g * ctx.sample).sum(axis=-1, keepdims=True)), None

    @staticmethod
    def jvp(ctx: Any, tc: Any, ty: Any) -> Any:
        (c,) = ctx.saved_tensors
        moved = _DirichletSampleGrad.apply(c, ctx.sample) * tc
        return moved - ctx.sample * moved.sum(axis=-1, keepdims=True)


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
