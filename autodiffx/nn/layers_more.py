"""Layers: ``Flatten``, ``Unflatten``, ``LayerNorm`` and ``Embedding`` (PyTorch's semantics)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .._mode import no_grad
from .._tensor import Tensor
from ..ops import where as _where
from .functional import _as_tensor, as_generator
from .module import Module, Parameter

__all__ = ["Embedding", "Flatten", "LayerNorm", "Unflatten"]


def _dim(d: int, ndim: int, name: str) -> int:
    if not -ndim <= d < ndim:
        raise IndexError(f"{name}: dimension {d} is out of range for a {ndim}-D input")
    return d % ndim


class Flatten(Module):
    """Merge the axes ``start_dim..end_dim`` (inclusive) into one (defaults: all but axis 0).

    Examples
    --------
    >>> import autodiffx as ad
    >>> ad.nn.Flatten()(ad.ones((2, 3, 4))).shape
    (2, 12)
    >>> ad.nn.Flatten(0, 1)(ad.ones((2, 3, 4))).shape
    (6, 4)
    """

    def __init__(self, start_dim: int = 1, end_dim: int = -1) -> None:
        super().__init__()
        self.start_dim, self.end_dim = int(start_dim), int(end_dim)

    def forward(self, x: Any) -> Tensor:
        """``x`` with the axes ``start_dim..end_dim`` merged."""
        x = _as_tensor(x)
        nd = max(x.ndim, 1)
        s = _dim(self.start_dim, nd, "Flatten")
        e = _dim(self.end_dim, nd, "Flatten")
        if s > e:
            raise ValueError(
                f"Flatten: start_dim {self.start_dim} comes after end_dim {self.end_dim}"
            )
        shape = x.shape if x.ndim else (1,)
        return x.reshape((*shape[:s], math.prod(shape[s : e + 1]), *shape[e + 1 :]))

    def extra_repr(self) -> str:
        """The axes."""
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"


class Unflatten(Module):
    """Split axis ``dim`` into ``unflattened_size`` (one entry may be -1).

    Examples
    --------
    >>> import autodiffx as ad
    >>> ad.nn.Unflatten(1, (2, 3))(ad.ones((4, 6))).shape
    (4, 2, 3)
    """

    def __init__(self, dim: int, unflattened_size: tuple[int, ...]) -> None:
        super().__init__()
        self.dim = int(dim)
        self.unflattened_size = tuple(int(n) for n in unflattened_size)

    def forward(self, x: Any) -> Tensor:
        """``x`` with axis ``dim`` split."""
        x = _as_tensor(x)
        d = _dim(self.dim, x.ndim, "Unflatten")
        sizes = self.unflattened_size
        known = math.prod(n for n in sizes if n != -1)
        ok = sizes.count(-1) <= 1 and (
            known == x.shape[d] if -1 not in sizes else known and x.shape[d] % known == 0
        )
        if not ok:
            raise ValueError(
                f"Unflatten: cannot split axis {self.dim} of size {x.shape[d]} (input shape "
                f"{x.shape}) into {sizes}: the product must equal the axis size"
            )
        return x.reshape(x.shape[:d] + sizes + x.shape[d + 1 :])

    def extra_repr(self) -> str:
        """The axis and the sizes."""
        return f"dim={self.dim}, unflattened_size={self.unflattened_size}"


class LayerNorm(Module):
    """Normalise over the trailing ``normalized_shape`` axes, then scale and shift.

    ``y = (x - mean) / sqrt(var + eps) * weight + bias`` with the biased variance, as
    PyTorch; ``weight`` starts at ones and ``bias`` at zeros (``elementwise_affine=False``
    drops both, ``bias=False`` the shift only). Composed of differentiable primitives,
    so derivatives of any order work in both modes.

    Examples
    --------
    >>> import autodiffx as ad
    >>> ln = ad.nn.LayerNorm(3)
    >>> ln(ad.tensor([[1.0, 2.0, 3.0]]))
    tensor([[-1.22473569,  0.        ,  1.22473569]], grad_fn=<add>)
    """

    def __init__(
        self,
        normalized_shape: int | tuple[int, ...],
        eps: float = 1e-5,
        elementwise_affine: bool = True,
        bias: bool = True,
        dtype: Any = np.float64,
    ) -> None:
        super().__init__()
        if isinstance(normalized_shape, int | np.integer):
            normalized_shape = (int(normalized_shape),)
        self.normalized_shape = tuple(int(n) for n in normalized_shape)
        self.eps = float(eps)
        self.elementwise_affine = bool(elementwise_affine)
        dt = np.dtype(dtype)
        if elementwise_affine:
            self.weight = Parameter(np.ones(self.normalized_shape, dtype=dt))
            if bias:
                self.bias = Parameter(np.zeros(self.normalized_shape, dtype=dt))
            else:
                self.register_parameter("bias", None)
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)

    def forward(self, x: Any) -> Tensor:
        """The normalised, scaled and shifted input."""
        x = _as_tensor(x)
        k = len(self.normalized_shape)
        if x.shape[x.ndim - k :] != self.normalized_shape or x.ndim < k:
            raise ValueError(
                f"LayerNorm: input shape {x.shape} does not end with normalized_shape "
                f"{self.normalized_shape}"
            )
        axes = tuple(range(-k, 0))
        xc = x - x.mean(axis=axes, keepdims=True)
        y = xc / ((xc * xc).mean(axis=axes, keepdims=True) + self.eps) ** 0.5
        p = self._parameters
        if p["weight"] is not None:
            y = y * p["weight"]
        if p["bias"] is not None:
            y = y + p["bias"]
        return y

    def extra_repr(self) -> str:
        """Shape, eps and affinity."""
        return (
            f"{self.normalized_shape}, eps={self.eps}, elementwise_affine={self.elementwise_affine}"
        )


class Embedding(Module):
    """A lookup table: integer indices select rows of ``weight`` (num_embeddings, dim).

    ``weight`` starts standard normal (PyTorch's init) drawn from ``rng``; the row
    ``padding_idx`` starts at zeros and receives no gradient. The gradient of a row used
    several times is the sum of its uses. Indices out of range raise ``IndexError``.

    Examples
    --------
    >>> import autodiffx as ad
    >>> emb = ad.nn.Embedding(10, 3, rng=0)
    >>> emb([[1, 2], [4, 1]]).shape
    (2, 2, 3)
    """

    def __init__(
        self,
        num_embeddings: int,
        embedding_dim: int,
        padding_idx: int | None = None,
        rng: Any = None,
        dtype: Any = np.float64,
        _weight: Any = None,
    ) -> None:
        super().__init__()
        self.num_embeddings, self.embedding_dim = int(num_embeddings), int(embedding_dim)
        if padding_idx is not None:
            if not -self.num_embeddings <= padding_idx < self.num_embeddings:
                raise ValueError(
                    f"Embedding: padding_idx {padding_idx} must be within num_embeddings"
                )
            padding_idx = int(padding_idx) % self.num_embeddings
        self.padding_idx = padding_idx
        if _weight is None:
            w = as_generator(rng).standard_normal((self.num_embeddings, self.embedding_dim))
            if padding_idx is not None:
                w[padding_idx] = 0
            self.weight = Parameter(w.astype(np.dtype(dtype)))
        else:
            self.weight = _weight

    @classmethod
    def from_pretrained(
        cls, embeddings: Any, freeze: bool = True, padding_idx: int | None = None
    ) -> Embedding:
        """An Embedding whose weight is ``embeddings`` (2-D); ``freeze`` stops its gradient.

        Examples
        --------
        >>> import autodiffx as ad
        >>> emb = ad.nn.Embedding.from_pretrained(ad.tensor([[1.0, 2.0], [3.0, 4.0]]))
        >>> emb([1]), emb.weight.requires_grad
        (tensor([[3., 4.]]), False)
        """
        w = np.array(embeddings.data if isinstance(embeddings, Tensor) else embeddings)
        if w.ndim != 2:
            raise ValueError(f"Embedding.from_pretrained: embeddings must be 2-D, got {w.shape}")
        return cls(*w.shape, padding_idx, _weight=Parameter(w, requires_grad=not freeze))

    def forward(self, indices: Any) -> Tensor:
        """The rows of ``weight`` at ``indices`` (shape ``indices.shape + (dim,)``)."""
        idx = np.asarray(indices.data if isinstance(indices, Tensor) else indices)
        if idx.dtype.kind not in "iu":
            raise TypeError(f"Embedding: indices must be integers, got dtype {idx.dtype}")
        n = self.num_embeddings
        if idx.size and (idx.min() < 0 or idx.max() >= n):
            bad = idx[(idx < 0) | (idx >= n)].flat[0]
            raise IndexError(f"Embedding: index {int(bad)} is out of range for {n} embeddings")
        w = self._parameters["weight"]
        out = w[idx]
        if self.padding_idx is not None and out.requires_grad:
            pad = (idx == self.padding_idx)[..., None]
            if pad.any():
                with no_grad():
                    frozen = w[idx]
                out = _where(pad, frozen, out)
        return out

    def extra_repr(self) -> str:
        """Sizes and the padding index."""
        pad = "" if self.padding_idx is None else f", padding_idx={self.padding_idx}"
        return f"{self.num_embeddings}, {self.embedding_dim}{pad}"
