"""``ad.linalg``: NumPy's linear algebra, differentiable."""

from __future__ import annotations

from .ops.composite import norm

__all__ = ["norm"]
