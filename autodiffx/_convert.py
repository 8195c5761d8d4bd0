"""Refusals and error names on rare paths (kept off the per-op hot path)."""

from __future__ import annotations

import sys

import numpy as np


def ufunc_name(ufunc: np.ufunc) -> str:
    """The public dotted name of a ufunc: ``numpy.sin``, ``scipy.special.gammaln``.

    Examples
    --------
    >>> import numpy as np
    >>> from autodiffx._convert import ufunc_name
    >>> ufunc_name(np.sin)
    'numpy.sin'
    """
    name = ufunc.__name__
    mod = getattr(ufunc, "__module__", None)
    if mod:
        return f"{mod}.{name}"
    found = []
    for modname, m in list(sys.modules.items()):
        # NOTE: module dicts, not getattr: a module's __getattr__ may import or warn.
        public = not any(p.startswith("_") for p in modname.split("."))
        if public and (getattr(m, "__dict__", None) or {}).get(name) is ufunc:
            found.append(modname)
    if not found:
        return f"ufunc {name!r}"
    return f"{min(found, key=lambda s: (s.count('.'), len(s)))}.{name}"
