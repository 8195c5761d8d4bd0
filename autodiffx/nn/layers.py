"""Layers: ``Linear``, ``Sequential``, ``Dropout``, ``Identity`` and the activation modules."""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

import numpy as np

from .._tensor import Tensor
from . import functional as F
from .functional import _linear, as_generator
from .module import Module, Parameter


class Identity(Module):
    """Return the input unchanged (a placeholder layer).

    Examples
    --------
    >>> import autodiffx as ad
    >>> ad.nn.Identity()(ad.tensor([1.0, 2.0]))
    tensor([1., 2.])
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__()

    def forward(self, x: Any) -> Any:
        """Return ``x``."""
        return x


class Linear(Module):
    """Affine map ``y = x @ weight.T + bias`` with PyTorch's shapes and initialisation.

    ``weight`` has shape (out_features, in_features) and ``bias`` (out_features,); both
    are drawn uniformly from ``[-1/sqrt(in_features), 1/sqrt(in_features)]`` (PyTorch's
    default: Kaiming-uniform with a = sqrt(5) gives exactly this bound).

    Parameters
    ----------
    in_features, out_features : int
        Sizes of the last axis of the input and of the output.
    bias : bool, optional
        Learn an additive bias (default True).
    rng : numpy.random.Generator, int or None
        Source of the initial values (an int is a seed; None draws a fresh generator).
    dtype : dtype, optional
        Parameter dtype (default float64).

    Examples
    --------
    >>> import autodiffx as ad
    >>> lin = ad.nn.Linear(3, 2, rng=0)
    >>> lin
    Linear(in_features=3, out_features=2, bias=True)
    >>> lin(ad.ones((4, 3))).shape
    (4, 2)
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        rng: Any = None,
        dtype: Any = np.float64,
    ) -> None:
        super().__init__()
        self.in_features = int(in_features)
        self.out_features = int(out_features)
        gen = as_generator(rng)
        bound = 1.0 / math.sqrt(in_features) if in_features > 0 else 0.0
        dt = np.dtype(dtype)
        w = gen.uniform(-bound, bound, size=(self.out_features, self.in_features))
        self.weight = Parameter(w.astype(dt))
        if bias:
            self.bias = Parameter(gen.uniform(-bound, bound, size=self.out_features).astype(dt))
        else:
            self.register_parameter("bias", None)

    def forward(self, x: Any) -> Tensor:
        """``x @ weight.T + bias`` over the last axis of ``x`` (one ``linear`` node)."""
        p = self._parameters  # (``self.weight`` goes through Module.__getattr__)
        return _linear(x, p["weight"], p.get("bias"))  # F.linear without its argument checks

    def extra_repr(self) -> str:
        """Sizes and whether there is a bias."""
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"bias={self.bias is not None}"
        )


class Sequential(Module):
    """Chain modules: the output of each is the input of the next.

    Built from modules (named ``'0'``, ``'1'``, …) or from one ``OrderedDict`` of named
    modules; supports ``len``, iteration, indexing (an int or a slice) and ``append``.

    Examples
    --------
    >>> import autodiffx as ad
    >>> net = ad.nn.Sequential(ad.nn.Linear(2, 4, rng=0), ad.nn.Tanh(), ad.nn.Linear(4, 1, rng=1))
    >>> net(ad.ones((5, 2))).shape
    (5, 1)
    >>> net[1], len(net)
    (Tanh(), 3)
    """

    def __init__(self, *modules: Any) -> None:
        super().__init__()
        if len(modules) == 1 and isinstance(modules[0], OrderedDict | dict):
            for name, m in modules[0].items():
                self.add_module(str(name), m)
        else:
            for i, m in enumerate(modules):
                self.add_module(str(i), m)

    def forward(self, x: Any) -> Any:
        """Apply every module in order."""
        for m in self._modules.values():
            x = m(x)
        return x

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[Module]:
        return iter(self._modules.values())

    def __getitem__(self, idx: int | slice) -> Any:
        items = list(self._modules.items())
        if isinstance(idx, slice):
            return Sequential(OrderedDict(items[idx]))
        return items[idx][1]

    def append(self, module: Module) -> Sequential:
        """Add ``module`` at the end; return self.

        Examples
        --------
        >>> import autodiffx as ad
        >>> len(ad.nn.Sequential().append(ad.nn.ReLU()))
        1
        """
        self.add_module(str(len(self._modules)), module)
        return self


class Dropout(Module):
    """Randomly zero elements with probability ``p`` while training (scaled by 1/(1-p)).

    Identity in evaluation mode (``.eval()``). The module owns its generator, made from
    ``rng`` (a ``numpy.random.Generator`` used as is, an int seed, or None).

    Examples
    --------
    >>> import autodiffx as ad
    >>> drop = ad.nn.Dropout(0.5, rng=0)
    >>> drop(ad.ones(6))
    tensor([2., 0., 0., 0., 2., 2.])
    >>> drop.eval()(ad.ones(3))
    tensor([1., 1., 1.])
    """

    def __init__(self, p: float = 0.5, rng: Any = None) -> None:
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
        self.p = float(p)
        self.rng = as_generator(rng)

    def forward(self, x: Any) -> Tensor:
        """Drop while training, identity otherwise."""
        return F.dropout(x, self.p, self.training, self.rng)

    def extra_repr(self) -> str:
        """The drop probability."""
        return f"p={self.p}"


# ----- activation modules ------------------------------------------------------------------
class ReLU(Module):
    """Module form of :func:`autodiffx.nn.functional.relu` (relu'(0) = 0).

    Examples
    --------
    >>> import autodiffx as ad
    >>> ad.nn.ReLU()(ad.tensor([-1.0, 2.0]))
    tensor([0., 2.])
    """

    def forward(self, x: Any) -> Tensor:
        """``max(x, 0)``."""
        return F.relu(x)


class Sigmoid(Module):
    """Module form of :func:`autodiffx.nn.functional.sigmoid`.

    Examples
    --------
    >>> import autodiffx as ad
    >>> ad.nn.Sigmoid()(ad.tensor([0.0]))
    tensor([0.5])
    """

    def forward(self, x: Any) -> Tensor:
        """The logistic sigmoid."""
        return F.sigmoid(x)


class Tanh(Module):
    """Module form of ``ad.tanh``.

    Examples
    --------
    >>> import autodiffx as ad
    >>> ad.nn.Tanh()(ad.tensor([0.0]))
    tensor([0.])
    """

    def forward(self, x: Any) -> Tensor:
        """The hyperbolic tangent."""
        return F.tanh(x)


class LeakyReLU(Module):
    """Module form of :func:`autodiffx.nn.functional.leaky_relu`.

    Examples
    --------
    >>> import autodiffx as ad
    >>> ad.nn.LeakyReLU(0.1)(ad.tensor([-1.0, 2.0]))
    tensor([-0.1,  2. ])
    """

    def __init__(self, negative_slope: float = 0.01) -> None:
        super().__init__()
        self.negative_slope = negative_slope

    def forward(self, x: Any) -> Tensor:
        """``x`` or ``negative_slope * x``."""
        return F.leaky_relu(x, self.negative_slope)

    def extra_repr(self) -> str:
        """The slope."""
        return f"negative_slope={self.negative_slope}"


class Softplus(Module):
    """Module form of :func:`autodiffx.nn.functional.softplus`.

    Examples
    --------
    >>> import autodiffx as ad
    >>> ad.nn.Softplus(beta=2.0)(ad.tensor([0.0]))
    tensor([0.34657359])
    """

    def __init__(self, beta: float = 1.0, threshold: float = 20.0) -> None:
        super().__init__()
        self.beta = beta
        self.threshold = threshold

    def forward(self, x: Any) -> Tensor:
        """``(1/beta) log(1 + exp(beta x))``."""
        return F.softplus(x, self.beta, self.threshold)

    def extra_repr(self) -> str:
        """Beta and threshold."""
        return f"beta={self.beta}, threshold={self.threshold}"


class ELU(Module):
    """Module form of :func:`autodiffx.nn.functional.elu`.

    Examples
    --------
    >>> import autodiffx as ad
    >>> ad.nn.ELU()(ad.tensor([-1000.0, 1.0]))
    tensor([-1.,  1.])
    """

    def __init__(self, alpha: float = 1.0) -> None:
        super().__init__()
        self.alpha = alpha

    def forward(self, x: Any) -> Tensor:
        """``x`` or ``alpha (exp(x) - 1)``."""
        return F.elu(x, self.alpha)

    def extra_repr(self) -> str:
        """Alpha."""
        return f"alpha={self.alpha}"


class GELU(Module):
    """Module form of :func:`autodiffx.nn.functional.gelu` (``approximate='none'|'tanh'``).

    Examples
    --------
    >>> import autodiffx as ad
    >>> ad.nn.GELU()(ad.tensor([0.0, 1.0]))
    tensor([0.        , 0.84134475])
    """

    def __init__(self, approximate: str = "none") -> None:
        super().__init__()
        if approximate not in ("none", "tanh"):
            raise ValueError(f"GELU: approximate must be 'none' or 'tanh', got {approximate!r}")
        self.approximate = approximate

    def forward(self, x: Any) -> Tensor:
        """``x Phi(x)``."""
        return F.gelu(x, self.approximate)

    def extra_repr(self) -> str:
        """The approximation."""
        return f"approximate={self.approximate!r}"


class Softmax(Module):
    """Module form of :func:`autodiffx.nn.functional.softmax` along ``axis`` (``dim=`` alias).

    Examples
    --------
    >>> import autodiffx as ad
    >>> ad.nn.Softmax(axis=-1)(ad.tensor([0.0, 0.0]))
    tensor([0.5, 0.5])
    """

    def __init__(self, axis: int = -1, *, dim: int | None = None) -> None:
        super().__init__()
        self.axis = axis if dim is None else dim

    def forward(self, x: Any) -> Tensor:
        """Softmax along ``axis``."""
        return F.softmax(x, self.axis)

    def extra_repr(self) -> str:
        """The axis."""
        return f"axis={self.axis}"


class LogSoftmax(Module):
    """Module form of :func:`autodiffx.nn.functional.log_softmax` along ``axis``.

    Examples
    --------
    >>> import autodiffx as ad
    >>> ad.nn.LogSoftmax()(ad.tensor([0.0, 0.0]))
    tensor([-0.69314718, -0.69314718])
    """

    def __init__(self, axis: int = -1, *, dim: int | None = None) -> None:
        super().__init__()
        self.axis = axis if dim is None else dim

    def forward(self, x: Any) -> Tensor:
        """Log-softmax along ``axis``."""
        return F.log_softmax(x, self.axis)

    def extra_repr(self) -> str:
        """The axis."""
        return f"axis={self.axis}"
