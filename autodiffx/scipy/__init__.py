"""``ad.scipy``: SciPy's differentiable surface (``special``, ``stats``, ``signal``, ``linalg``)."""

from __future__ import annotations

from . import linalg, special, stats

__all__ = ["linalg", "special", "stats"]
