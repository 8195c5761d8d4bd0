"""``ad.scipy``: SciPy's differentiable surface (``special``, ``stats``, ``signal``, ``linalg``)."""

from __future__ import annotations

from . import linalg, signal, special, stats

__all__ = ["linalg", "signal", "special", "stats"]
