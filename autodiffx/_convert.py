"""Refusals on rare paths: converting a live Tensor to NumPy, np.matrix and masked operands."""

from __future__ import annotations

import os
import sys
import sysconfig
from collections.abc import Sequence
from typing import Any

import numpy as np

from ._mode import STATE

_LIBRARY_DIRS = ("site-packages", "dist-packages")
_STDLIB = os.path.normcase(sysconfig.get_paths()["stdlib"])


def live(t: Any) -> str | None:
    """Why turning ``t`` into an ndarray would lose a derivative, or None if it would not."""
    if t._rg and STATE.grad_enabled:
        return "requires grad"
    tan = t._tan
    if tan and any(level in tan for level in STATE.levels):
        return "carries a forward-mode tangent"
    return None


def check_conversion(t: Any, how: str = "array") -> None:
    """Raise TypeError if converting ``t`` to an ndarray would drop a derivative.

    ``how`` names the conversion: ``"array"`` (``__array__``: ``np.asarray``, ``np.array``,
    NumPy or SciPy code with no autodiffx rule), ``"numpy"`` (``t.numpy()``) or ``"copy"``
    (``ad.tensor(t)``, ``Tensor(t)``).

    Examples
    --------
    >>> import autodiffx as ad
    >>> from autodiffx._convert import check_conversion
    >>> check_conversion(ad.tensor([1.0]))  # nothing to drop
    >>> check_conversion(ad.tensor([1.0], requires_grad=True))
    Traceback (most recent call last):
    ...
    TypeError: converting a Tensor that requires grad (float64[1]) to a NumPy array ...
    """
    why = live(t)
    if why is None:
        return
    what = f"a Tensor that {why} ({t.dtype}{list(t.shape)})"
    no_grad = ", or compute under `with ad.no_grad():`" if why == "requires grad" else ""
    if how == "numpy":
        msg = (
            f"t.numpy() of {what} would drop its derivative silently; use t.detach().numpy() "
            f"(or t.data) for the values without a derivative{no_grad}"
        )
    elif how == "copy":
        msg = (
            f"building a tensor from {what} would drop its derivative silently; use t.copy() "
            "for a differentiable copy, ad.stack([...]) to combine tensors, or t.detach() for "
            "the values without a derivative"
        )
    else:
        msg = (
            f"converting {what} to a NumPy array (np.asarray, np.array, or NumPy or SciPy code "
            "with no autodiffx rule) would drop its derivative silently. "
            f"{_hint(sys._getframe(1))} For the values without a derivative, take t.detach() "
            f"(or t.data){no_grad}."
        )
    raise TypeError(msg)


def _module(frame: Any) -> str:
    return frame.f_globals.get("__name__") or ""


def _is_library(frame: Any) -> bool:
    path = os.path.normcase(frame.f_code.co_filename)
    return path.startswith(_STDLIB) or any(d in path for d in _LIBRARY_DIRS)


def _hint(frame: Any) -> str:
    """What to do instead, from the code that asked for the conversion (the call stack)."""
    entry = None
    while frame is not None:
        mod = _module(frame)
        top = mod.split(".")[0]
        if mod == "numpy.ma" or mod.startswith("numpy.ma."):
            return f"The conversion comes from numpy.ma: {masked_message()}."
        if mod.startswith("numpy.matrixlib"):
            return f"The conversion comes from np.matrix: {matrix_message()}."
        if top in ("autodiffx", "numpy"):
            frame = frame.f_back
            continue
        if not _is_library(frame) or (entry and _module(entry).split(".")[0] != top):
            break
        entry = frame  # the outermost frame of the library the user called
        frame = frame.f_back
    generic = (
        "Use autodiffx functions (ad.*; NumPy functions with a rule dispatch to them), and "
        "ad.stack([...]) to build a tensor from tensors."
    )
    if entry is None:
        return generic
    fn = entry.f_code.co_name
    public = ".".join(p for p in _module(entry).split(".") if not p.startswith("_"))
    if (getattr(sys.modules.get(public), "__dict__", None) or {}).get(fn) is None:
        return f"The conversion happens in {_module(entry)}.{fn}. {generic}"
    ours = _autodiffx_version(fn, public)
    if ours is None:
        return f"{public}.{fn} has no autodiffx version: write it with autodiffx ops."
    return f"{public}.{fn} is not differentiated by autodiffx: call {ours} instead."


def _autodiffx_version(name: str, module: str) -> str | None:
    """The public autodiffx function named ``name``, looked up where ``module`` suggests."""
    import autodiffx as ad

    places = [("ad", ad), ("ad.nn.functional", ad.nn.functional), ("ad.linalg", ad.linalg)]
    if ".linalg" in module or module.endswith("linalg"):
        places.insert(0, places.pop())
    sub = module.split(".")[1] if module.startswith("scipy.") else ""
    if sub in ad.scipy.__all__:  # scipy.special.f -> ad.scipy.special.f first
        places.insert(0, (f"ad.scipy.{sub}", getattr(ad.scipy, sub)))
    for prefix, mod in places:
        if callable(getattr(mod, name, None)) and not name.startswith("_"):
            return f"{prefix}.{name}"
    return None


def masked_message() -> str:
    """Why masked arrays are refused, and what to write instead."""
    return (
        "autodiffx does not take numpy.ma masked arrays (the mask would be dropped, or applied "
        "to values but never to derivatives): pass m.filled(value) for a plain array, or mask "
        "a Tensor with ad.where(mask, x, value)"
    )


def matrix_message() -> str:
    """Why np.matrix is refused, and what to write instead."""
    return (
        "autodiffx does not take np.matrix (its * is a matrix product, so values and "
        "derivatives would disagree): pass np.asarray(m), and use @ for matrix products"
    )


def refused(cls: type) -> str | None:
    """The message refusing values of type ``cls`` (np.matrix, masked arrays), else None."""
    if not issubclass(cls, np.ndarray) or cls is np.ndarray:
        return None
    if issubclass(cls, np.ma.MaskedArray):
        return masked_message()
    if issubclass(cls, np.matrix):
        return matrix_message()
    return None


def describe(args: Sequence[Any]) -> str:
    """The dtypes and shapes of an op's arguments, for error messages: ``float64[2, 3], float``."""
    parts = []
    for a in args:
        if isinstance(a, np.ndarray) or hasattr(a, "requires_grad"):  # (an array or Tensor)
            parts.append(f"{a.dtype}{list(a.shape)}")
        elif hasattr(a, "__array_namespace__") and hasattr(a, "shape"):  # (array-API arrays)
            parts.append(f"{str(a.dtype).rsplit('.', 1)[-1]}{list(a.shape)}")
        elif isinstance(a, list | tuple):
            parts.append("[" + ", ".join(describe([b]) for b in a) + "]")
        else:
            parts.append(type(a).__name__)
    return ", ".join(parts)


def refuse_operand(name: str, a: Any, args: Any) -> None:
    """Raise TypeError naming op ``name`` if its operand ``a`` is an np.matrix or masked."""
    why = refused(type(a))
    if why is not None:
        raise TypeError(f"{name}({describe(args)}): {why}")


def plain(out: np.ndarray, name: str = "", args: Any = None) -> np.ndarray:
    """A kernel's output of an ndarray subclass as an ndarray; refuses np.matrix and masked.

    A ufunc with an np.matrix or masked operand returns that subclass, which is how such
    operands are caught without a check per op on the hot path.
    """
    why = refused(type(out))
    if why is not None:
        raise TypeError((f"{name}({describe(args)}): " if name else "") + why)
    return np.asarray(out)


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
