"""Convolutional layers: ``Conv1d``, ``Conv2d``, pooling, ``BatchNorm1d/2d``, ``Dropout2d``."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .._mode import no_grad
from .._tensor import Tensor
from . import conv as C
from .channels import batch_norm, dropout2d
from .functional import as_generator
from .layers import Linear, ReLU, Sequential, _Dropout
from .layers_more import Flatten, Unflatten
from .module import Module, Parameter
from .pooling import max_pool2d


class _ConvNd(Module):
    """Shared by ``Conv1d`` and ``Conv2d``: PyTorch's attributes and initialisation."""

    _nd = 0

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: Any,
        stride: Any = 1,
        padding: Any = 0,
        dilation: Any = 1,
        groups: int = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        rng: Any = None,
        dtype: Any = np.float64,
    ) -> None:
        super().__init__()
        nd, name = self._nd, type(self).__name__
        if padding_mode != "zeros":
            raise NotImplementedError(
                f"{name}: padding_mode={padding_mode!r} is not supported (only 'zeros'); pad the "
                "input with np.pad(x, ..., mode=...) and use padding=0"
            )
        if groups < 1 or in_channels % groups or out_channels % groups:
            raise ValueError(
                f"{name}: groups={groups} must divide in_channels={in_channels} and "
                f"out_channels={out_channels}"
            )
        self.in_channels, self.out_channels, self.groups = (
            int(in_channels),
            int(out_channels),
            groups,
        )
        self.kernel_size = C._tuple(kernel_size, nd, "kernel_size", name, 1)
        self.stride = C._tuple(stride, nd, "stride", name, 1)
        self.dilation = C._tuple(dilation, nd, "dilation", name, 1)
        self.padding = (
            padding if isinstance(padding, str) else C._tuple(padding, nd, "padding", name, 0)
        )
        self.padding_mode = padding_mode
        pairs = C._padding(padding, nd, self.kernel_size, self.dilation, self.stride, name)
        self._geo = dict(stride=self.stride, padding=pairs, dilation=self.dilation, groups=groups)
        # PyTorch's default: Kaiming-uniform with a = sqrt(5), i.e. bound 1 / sqrt(fan_in).
        fan_in = in_channels // groups * math.prod(self.kernel_size)
        bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
        gen, dt = as_generator(rng), np.dtype(dtype)
        shape = (out_channels, in_channels // groups, *self.kernel_size)
        self.weight = Parameter(gen.uniform(-bound, bound, size=shape).astype(dt))
        if bias:
            self.bias = Parameter(gen.uniform(-bound, bound, size=out_channels).astype(dt))
        else:
            self.register_parameter("bias", None)

    def forward(self, x: Any) -> Tensor:
        """The convolution of ``x`` (N, C, *spatial) or (C, *spatial), plus the bias."""
        nd, name = self._nd, f"conv{self._nd}d"
        x = C._as_tensor(x)
        unbatched = C._check_input(x, nd, name)
        if x.shape[-nd - 1] != self.in_channels:
            raise ValueError(
                f"{type(self).__name__}: expected {self.in_channels} input channels, got input "
                f"of shape {x.shape}"
            )
        C._out_sizes(
            x.shape[-nd:], self.kernel_size, self.stride, self._geo["padding"], self.dilation, name
        )
        p = self._parameters
        out = C._conv(x[None] if unbatched else x, p["weight"], **self._geo)
        if p.get("bias") is not None:
            out = out + p["bias"].reshape((-1,) + (1,) * nd)
        return out[0] if unbatched else out

    def extra_repr(self) -> str:
        """PyTorch's summary of the geometry."""
        s = (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}"
        )
        if self.padding != "valid" and self.padding != (0,) * self._nd:
            s += f", padding={self.padding!r}"
        if self.dilation != (1,) * self._nd:
            s += f", dilation={self.dilation}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        return s + ("" if self.bias is not None else ", bias=False")


class Conv1d(_ConvNd):
    """1-D convolution layer (PyTorch's ``nn.Conv1d``; see :func:`~autodiffx.nn.functional.conv1d`).

    ``weight`` (out, in / groups, k) and ``bias`` (out,) are uniform in
    ``[-1/sqrt(fan_in), 1/sqrt(fan_in)]``, ``fan_in = in / groups * k`` (PyTorch's default).

    Examples
    --------
    >>> import autodiffx as ad
    >>> conv = ad.nn.Conv1d(2, 4, 3, padding="same", rng=0)
    >>> conv
    Conv1d(2, 4, kernel_size=(3,), stride=(1,), padding='same')
    >>> conv(ad.ones((5, 2, 10))).shape
    (5, 4, 10)
    """

    _nd = 1


class Conv2d(_ConvNd):
    """2-D convolution layer (PyTorch's ``nn.Conv2d``; see :func:`~autodiffx.nn.functional.conv2d`).

    ``weight`` (out, in / groups, kh, kw) and ``bias`` (out,) are uniform in
    ``[-1/sqrt(fan_in), 1/sqrt(fan_in)]``, ``fan_in = in / groups * kh * kw`` (PyTorch's
    default). Only ``padding_mode="zeros"``.

    Examples
    --------
    >>> import autodiffx as ad
    >>> conv = ad.nn.Conv2d(1, 8, 3, stride=2, padding=1, rng=0)
    >>> conv
    Conv2d(1, 8, kernel_size=(3, 3), stride=(2, 2), padding=(1, 1))
    >>> conv(ad.ones((4, 1, 8, 8))).shape
    (4, 8, 4, 4)
    """

    _nd = 2


class _Pool2d(Module):
    """Shared by ``MaxPool2d`` and ``AvgPool2d``: the window geometry (``stride`` defaults
    to ``kernel_size``; ``ceil_mode=True`` is refused)."""

    def __init__(self, kernel_size: Any, stride: Any, padding: Any, ceil_mode: bool) -> None:
        super().__init__()
        C._no_ceil(ceil_mode, type(self).__name__)
        self.kernel_size, self.padding, self.ceil_mode = kernel_size, padding, ceil_mode
        self.stride = kernel_size if stride is None else stride


class MaxPool2d(_Pool2d):
    """Module form of :func:`~autodiffx.nn.functional.max_pool2d`.

    Examples
    --------
    >>> import autodiffx as ad
    >>> ad.nn.MaxPool2d(2)(ad.ones((1, 3, 8, 8))).shape
    (1, 3, 4, 4)
    """

    def __init__(
        self,
        kernel_size: Any,
        stride: Any = None,
        padding: Any = 0,
        dilation: Any = 1,
        ceil_mode: bool = False,
    ) -> None:
        super().__init__(kernel_size, stride, padding, ceil_mode)
        self.dilation = dilation

    def forward(self, x: Any) -> Tensor:
        """The window maxima."""
        return max_pool2d(x, self.kernel_size, self.stride, self.padding, self.dilation)

    def extra_repr(self) -> str:
        """The geometry."""
        return (
            f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
            f"dilation={self.dilation}, ceil_mode={self.ceil_mode}"
        )


class AvgPool2d(_Pool2d):
    """Module form of :func:`~autodiffx.nn.functional.avg_pool2d`.

    Examples
    --------
    >>> import autodiffx as ad
    >>> ad.nn.AvgPool2d(2)(ad.ones((1, 3, 8, 8))).shape
    (1, 3, 4, 4)
    """

    def __init__(
        self,
        kernel_size: Any,
        stride: Any = None,
        padding: Any = 0,
        ceil_mode: bool = False,
        count_include_pad: bool = True,
        divisor_override: int | None = None,
    ) -> None:
        super().__init__(kernel_size, stride, padding, ceil_mode)
        self.count_include_pad, self.divisor_override = count_include_pad, divisor_override

    def forward(self, x: Any) -> Tensor:
        """The window means."""
        return C.avg_pool2d(
            x,
            self.kernel_size,
            self.stride,
            self.padding,
            count_include_pad=self.count_include_pad,
            divisor_override=self.divisor_override,
        )

    def extra_repr(self) -> str:
        """The geometry."""
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class _BatchNorm(Module):
    """Shared by ``BatchNorm1d`` and ``BatchNorm2d``: PyTorch's buffers and update rule."""

    _ndims: tuple[int, ...] = ()

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        dtype: Any = np.float64,
    ) -> None:
        super().__init__()
        self.num_features, self.eps, self.momentum = int(num_features), float(eps), momentum
        self.affine, self.track_running_stats = affine, track_running_stats
        dt = np.dtype(dtype)
        if affine:
            self.weight = Parameter(np.ones(num_features, dtype=dt))
            self.bias = Parameter(np.zeros(num_features, dtype=dt))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        if track_running_stats:
            self.register_buffer("running_mean", np.zeros(num_features, dtype=dt))
            self.register_buffer("running_var", np.ones(num_features, dtype=dt))
            self.register_buffer("num_batches_tracked", np.array(0, dtype=np.int64))
        else:
            for name in ("running_mean", "running_var", "num_batches_tracked"):
                self.register_buffer(name, None)

    def reset_running_stats(self) -> None:
        """Running mean 0, running variance 1, no batch tracked.

        Examples
        --------
        >>> import autodiffx as ad
        >>> bn = ad.nn.BatchNorm1d(2)
        >>> _ = bn(ad.tensor([[1.0, 2.0], [3.0, 5.0]]))
        >>> bn.reset_running_stats()
        >>> bn.running_mean, bn.running_var, bn.num_batches_tracked
        (tensor([0., 0.]), tensor([1., 1.]), tensor(0))
        """
        if self.track_running_stats:
            self.running_mean.data[...] = 0
            self.running_var.data[...] = 1
            self.num_batches_tracked.data[...] = 0

    def forward(self, x: Any) -> Tensor:
        """Normalize with batch statistics (training) or the running ones (evaluation)."""
        x = C._as_tensor(x)
        name = type(self).__name__
        if x.ndim not in self._ndims:
            dims = " or ".join(f"{n}-D" for n in self._ndims)
            raise ValueError(f"{name}: expected {dims} input, got shape {x.shape}")
        if x.shape[1] != self.num_features:
            raise ValueError(
                f"{name}: expected {self.num_features} channels (axis 1), got shape {x.shape}"
            )
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats:
            with no_grad():
                self.num_batches_tracked += 1
            if self.momentum is None:  # cumulative moving average
                factor = 1.0 / float(self.num_batches_tracked.item())
        use_batch = self.training or self.running_mean is None
        keep = not self.training or self.track_running_stats
        b = self._buffers
        rm, rv = (b["running_mean"], b["running_var"]) if keep else (None, None)
        p = self._parameters
        return batch_norm(x, rm, rv, p.get("weight"), p.get("bias"), use_batch, factor, self.eps)

    def extra_repr(self) -> str:
        """PyTorch's summary."""
        return (
            f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, "
            f"affine={self.affine}, track_running_stats={self.track_running_stats}"
        )


class BatchNorm1d(_BatchNorm):
    """Batch normalization of (N, C) or (N, C, L) input over all axes but C (``nn.BatchNorm1d``).

    Training: batch statistics, and the running ones updated as
    ``(1 - momentum) running + momentum batch`` (the unbiased batch variance;
    ``momentum=None`` is the cumulative average). ``.eval()``: the running statistics.

    Examples
    --------
    >>> import autodiffx as ad
    >>> bn = ad.nn.BatchNorm1d(2)
    >>> bn(ad.tensor([[1.0, 10.0], [3.0, 30.0]]))
    tensor([[-0.999995  , -0.99999995],
            [ 0.999995  ,  0.99999995]], grad_fn=<add>)
    >>> bn.running_mean, bn.num_batches_tracked
    (tensor([0.2, 2. ]), tensor(1))
    """

    _ndims = (2, 3)


class BatchNorm2d(_BatchNorm):
    """Batch normalization of (N, C, H, W) input per channel (``nn.BatchNorm2d``).

    As :class:`BatchNorm1d` (running statistics, ``momentum``, ``affine``,
    ``track_running_stats``, train/eval), over the axes N, H and W.

    Examples
    --------
    >>> import autodiffx as ad
    >>> bn = ad.nn.BatchNorm2d(3)
    >>> y = bn(ad.arange(24.0).reshape(2, 3, 2, 2))
    >>> y.shape, round(float(y.data.mean()), 12), bn.running_mean
    ((2, 3, 2, 2), 0.0, tensor([0.75, 1.15, 1.55]))
    """

    _ndims = (4,)


class Dropout2d(_Dropout):
    """Zero whole channels with probability ``p`` while training (``nn.Dropout2d``).

    Identity in evaluation mode. The module owns its generator, made from ``rng``.

    Examples
    --------
    >>> import autodiffx as ad
    >>> drop = ad.nn.Dropout2d(0.5, rng=0)
    >>> drop(ad.ones((1, 4, 1, 1))).reshape(-1)
    tensor([2., 0., 0., 0.])
    >>> drop.eval()(ad.ones((1, 2, 1, 1))).reshape(-1)
    tensor([1., 1.])
    """

    _function = staticmethod(dropout2d)


def digits_cnn(channels: tuple[int, int] = (16, 32), rng: Any = None, dtype: Any = np.float64):
    """A small CNN for the embedded 8x8 digits: flat rows (N, 64) in, 10 logits out.

    ``Unflatten`` to (N, 1, 8, 8), two blocks of 3x3 ``Conv2d`` (padding 1), ``ReLU`` and
    2x2 ``MaxPool2d`` (8x8 -> 4x4 -> 2x2), then ``Flatten`` and one ``Linear``. It takes the
    same input as ``autodiffx.train``'s MLP; ``benchmarks/train_cnn.py`` trains it.

    Examples
    --------
    >>> import autodiffx as ad
    >>> model = ad.nn.digits_cnn(rng=0)
    >>> model(ad.zeros((5, 64))).shape, sum(p.size for p in model.parameters())
    ((5, 10), 6090)
    """
    gen = as_generator(rng)
    c1, c2 = channels
    return Sequential(
        Unflatten(1, (1, 8, 8)),
        Conv2d(1, c1, 3, padding=1, rng=gen, dtype=dtype),
        ReLU(),
        MaxPool2d(2),
        Conv2d(c1, c2, 3, padding=1, rng=gen, dtype=dtype),
        ReLU(),
        MaxPool2d(2),
        Flatten(),
        Linear(4 * c2, 10, rng=gen, dtype=dtype),
    )
