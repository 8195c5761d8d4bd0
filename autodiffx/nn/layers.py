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


class _Dropout(Module):
    """Shared by ``Dropout`` and ``Dropout2d``: the probability, the generator, ``repr``."""

    _function: Any = None

    def __init__(self, p: float = 0.5, rng: Any = None) -> None:
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
        self.p = float(p)
        self.rng = as_generator(rng)

    def forward(self, x: Any) -> Tensor:
        """Drop while training, identity otherwise."""
        return self._function(x, self.p, self.training, self.rng)

    def extra_repr(self) -> str:
        """The drop probability."""
        return f"p={self.p}"


class Dropout(_Dropout):
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

    _function = staticmethod(F.dropout)


# ----- activation modules ------------------------------------------------------------------
class _Activation(Module):
    """An activation module: ``function(x, *options)``, the options (keyword arguments of
    ``__init__``) kept as attributes and shown by ``repr``."""

    _function: Any = None

    def __init__(self, **options: Any) -> None:
        super().__init__()
        for name, value in options.items():
            setattr(self, name, value)
        self._options = tuple(options)

    def forward(self, x: Any) -> Tensor:
        """The activation of ``x``, with the module's current options."""
        return self._function(x, *[getattr(self, name) for name in self._options])

    def extra_repr(self) -> str:
        """The options."""
        values = ((name, getattr(self, name)) for name in self._options)
        return ", ".join(f"{n}={v!r}" if isinstance(v, str) else f"{n}={v}" for n, v in values)


class ReLU(_Activation):
    """Module form of :func:`autodiffx.nn.functional.relu` (relu'(0) = 0).

    Examples
    --------
    >>> import autodiffx as ad
    >>> x = ad.tensor([-1.0, 0.0, 2.0], requires_grad=True)
    >>> ad.nn.ReLU()(x).sum().backward()
    >>> x.grad  # 0 at the kink
    tensor([0., 0., 1.])
    """

    _function = staticmethod(F.relu)


class Sigmoid(_Activation):
    """Module form of :func:`autodiffx.nn.functional.sigmoid`.

    Examples
    --------
    >>> import autodiffx as ad
    >>> ad.nn.Sigmoid()(ad.tensor([0.0]))
    tensor([0.5])
    """

    _function = staticmethod(F.sigmoid)


class Tanh(_Activation):
    """Module form of ``ad.tanh``: ``Tanh()(x)`` is ``ad.tanh(x)``.

    Examples
    --------
    >>> import autodiffx as ad
    >>> bool((ad.nn.Tanh()(ad.tensor([0.5])) == ad.tanh(ad.tensor([0.5]))).all())
    True
    """

    _function = staticmethod(F.tanh)


class LeakyReLU(_Activation):
    """Module form of :func:`autodiffx.nn.functional.leaky_relu`.

    Examples
    --------
    >>> import autodiffx as ad
    >>> ad.nn.LeakyReLU(0.1)(ad.tensor([-1.0, 2.0]))
    tensor([-0.1,  2. ])
    """

    _function = staticmethod(F.leaky_relu)

    def __init__(self, negative_slope: float = 0.01) -> None:
        super().__init__(negative_slope=negative_slope)


class Softplus(_Activation):
    """Module form of :func:`autodiffx.nn.functional.softplus`.

    Examples
    --------
    >>> import autodiffx as ad
    >>> ad.nn.Softplus(beta=2.0)(ad.tensor([0.0]))
    tensor([0.34657359])
    """

    _function = staticmethod(F.softplus)

    def __init__(self, beta: float = 1.0, threshold: float = 20.0) -> None:
        super().__init__(beta=beta, threshold=threshold)


class ELU(_Activation):
    """Module form of :func:`autodiffx.nn.functional.elu`: ``x`` or ``alpha (exp(x) - 1)``.

    Examples
    --------
    >>> import autodiffx as ad
    >>> ad.nn.ELU(alpha=0.5)
    ELU(alpha=0.5)
    >>> ad.nn.ELU()(ad.tensor([-1000.0, 1.0]))
    tensor([-1.,  1.])
    """

    _function = staticmethod(F.elu)

    def __init__(self, alpha: float = 1.0) -> None:
        super().__init__(alpha=alpha)


class GELU(_Activation):
    """Module form of :func:`autodiffx.nn.functional.gelu` (``approximate='none'|'tanh'``).

    Examples
    --------
    >>> import autodiffx as ad
    >>> ad.nn.GELU()(ad.tensor([0.0, 1.0]))
    tensor([0.        , 0.84134475])
    """

    _function = staticmethod(F.gelu)

    def __init__(self, approximate: str = "none") -> None:
        if approximate not in ("none", "tanh"):
            raise ValueError(f"GELU: approximate must be 'none' or 'tanh', got {approximate!r}")
        super().__init__(approximate=approximate)


class _AlongAxis(_Activation):
    """An activation along ``axis`` (``dim=`` is PyTorch's name for it)."""

    def __init__(self, axis: int = -1, *, dim: int | None = None) -> None:
        super().__init__(axis=axis if dim is None else dim)


class Softmax(_AlongAxis):
    """Module form of :func:`autodiffx.nn.functional.softmax` along ``axis`` (``dim=`` alias).

    Examples
    --------
    >>> import autodiffx as ad
    >>> ad.nn.Softmax(axis=-1)(ad.tensor([0.0, 0.0]))
    tensor([0.5, 0.5])
    """

    _function = staticmethod(F.softmax)


class LogSoftmax(_AlongAxis):
    """Module form of :func:`autodiffx.nn.functional.log_softmax` along ``axis``.

    Examples
    --------
    >>> import autodiffx as ad
    >>> ad.nn.LogSoftmax(dim=0)
    LogSoftmax(axis=0)
    >>> ad.nn.LogSoftmax()(ad.tensor([0.0, 0.0]))
    tensor([-0.69314718, -0.69314718])
    """

    _function = staticmethod(F.log_softmax)
