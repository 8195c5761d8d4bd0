"""``save``/``load``: nested state as ``.npz`` files, never pickled, written atomically.

The state is nested dicts, lists and tuples of arrays, Tensors, numbers, strings and None.
File format (version 1): a ZIP archive readable by ``numpy.load`` holding one ``.npy``
member per array (``a0``, ``a1``, …) and a header member ``__autodiffx__``, a uint8 array
of UTF-8 JSON ``{"format": "autodiffx.state", "version": 1, "tree": ...}`` where the tree
mirrors the saved structure: JSON scalars for ``None``/``bool``/``int``/``float``/``str``,
lists for lists, ``{"__tuple__": [...]}``, ``{"__dict__": [[key, value], ...]}`` (keys are
``str`` or ``int``, kept with their type and order), ``{"__complex__": [re, im]}``,
``{"__array__": "a3"}`` and ``{"__scalar__": "a3"}`` (a NumPy scalar, kept as one).
"""

from __future__ import annotations

import contextlib
import json
import os
import uuid
import zipfile
from typing import Any

import numpy as np

from ._tensor import Tensor

__all__ = ["load", "save"]

FORMAT = "autodiffx.state"
VERSION = 1
_HEADER = "__autodiffx__"


def _encode(obj: Any, arrays: dict[str, np.ndarray], where: str) -> Any:
    if obj is None or isinstance(obj, bool | str):
        return obj
    if isinstance(obj, int | float) and not isinstance(obj, np.generic):
        return obj
    if isinstance(obj, complex):
        return {"__complex__": [obj.real, obj.imag]}
    if isinstance(obj, Tensor | np.ndarray | np.generic):
        arr = obj.data if isinstance(obj, Tensor) else np.asarray(obj)
        if arr.dtype.hasobject:
            raise TypeError(
                f"save: {where} is an object array; only numeric, bool and string arrays can "
                "be saved (autodiffx files never contain pickles)"
            )
        name = f"a{len(arrays)}"
        arrays[name] = arr
        return {"__scalar__" if isinstance(obj, np.generic) else "__array__": name}
    if isinstance(obj, dict):
        items = []
        for k, v in obj.items():
            if not isinstance(k, str | int) or isinstance(k, bool):
                raise TypeError(f"save: dict keys must be str or int, got {k!r} in {where}")
            items.append([k, _encode(v, arrays, f"{where}[{k!r}]")])
        return {"__dict__": items}
    if isinstance(obj, list | tuple):
        enc = [_encode(v, arrays, f"{where}[{i}]") for i, v in enumerate(obj)]
        return enc if isinstance(obj, list) else {"__tuple__": enc}
    raise TypeError(
        f"save: cannot save {type(obj).__name__} at {where}; supported are dicts, lists, "
        "tuples, arrays/Tensors, numbers, strings and None"
    )


def _decode(node: Any, arrays: Any) -> Any:
    if isinstance(node, list):
        return [_decode(v, arrays) for v in node]
    if not isinstance(node, dict):
        return node
    if "__dict__" in node:
        return {k: _decode(v, arrays) for k, v in node["__dict__"]}
    if "__tuple__" in node:
        return tuple(_decode(v, arrays) for v in node["__tuple__"])
    if "__complex__" in node:
        re, im = node["__complex__"]
        return complex(re, im)
    if "__array__" in node:
        return arrays(node["__array__"])
    if "__scalar__" in node:
        return arrays(node["__scalar__"])[()]
    raise ValueError(f"load: corrupt header node {node!r}")


def _write_zip(fh: Any, header: bytes, arrays: dict[str, np.ndarray], compress: bool) -> None:
    mode = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    with zipfile.ZipFile(fh, mode="w", compression=mode, allowZip64=True) as zf:
        members = {_HEADER: np.frombuffer(header, dtype=np.uint8), **arrays}
        for name, arr in members.items():
            with zf.open(name + ".npy", "w", force_zip64=True) as f:
                np.lib.format.write_array(f, np.asanyarray(arr), allow_pickle=False)


def _fsync_dir(d: str) -> None:
    with contextlib.suppress(OSError, AttributeError):
        fd = os.open(d, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def save(state: Any, path: str | os.PathLike[str], *, compress: bool = False) -> None:
    """Write ``state`` (nested dicts/lists/tuples of arrays, Tensors, numbers, strings,
    None) to ``path`` as an ``.npz``-based file, atomically and without pickle.

    The file is written to a temporary file in the same directory, flushed and fsynced,
    then renamed over ``path`` (``os.replace``): a crash or error mid-write leaves any
    previous file at ``path`` intact. The file is written at exactly ``path`` (no suffix
    is added). Tensors are saved as their arrays; object arrays are refused.

    Parameters
    ----------
    state : object
        What to save; e.g. ``{"model": model.state_dict(), "optim": opt.state_dict()}``.
    path : str or PathLike
        Destination.
    compress : bool, optional
        Deflate the members (default False).

    Examples
    --------
    >>> import os, tempfile
    >>> import autodiffx as ad
    >>> path = os.path.join(tempfile.mkdtemp(), "state.npz")
    >>> ad.save({"w": ad.tensor([1.0, 2.0]), "step": 3, "betas": (0.9, 0.999)}, path)
    >>> ad.load(path)
    {'w': array([1., 2.]), 'step': 3, 'betas': (0.9, 0.999)}
    """
    arrays: dict[str, np.ndarray] = {}
    tree = _encode(state, arrays, "state")
    header = json.dumps({"format": FORMAT, "version": VERSION, "tree": tree}).encode("utf-8")
    path = os.fspath(path)
    d = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(d, f".{os.path.basename(path)}.{uuid.uuid4().hex}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as fh:
            _write_zip(fh, header, arrays, compress)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(d)


def _refuse(path: str, what: str) -> ValueError:
    return ValueError(
        f"load: {path!r} {what}; refusing to load it (autodiffx never unpickles: files "
        "written by ad.save hold only plain arrays)"
    )


def load(path: str | os.PathLike[str]) -> Any:
    """Read what :func:`save` wrote: nested dicts, lists and tuples of NumPy arrays, Python
    numbers, strings and None (Tensors come back as ``numpy.ndarray``).

    Read with ``allow_pickle=False``: a file holding pickled data or object arrays is
    refused with a ``ValueError``. A plain ``.npz`` without the autodiffx header (e.g.
    from ``numpy.savez``) loads as a flat dict of arrays. The result can be passed to
    ``Module.load_state_dict`` and ``Optimizer.load_state_dict``.

    Parameters
    ----------
    path : str or PathLike
        The file.

    Returns
    -------
    object
        The saved structure.

    Examples
    --------
    >>> import os, tempfile
    >>> import autodiffx as ad
    >>> path = os.path.join(tempfile.mkdtemp(), "model.npz")
    >>> model = ad.nn.Linear(2, 1, rng=0)
    >>> ad.save(model.state_dict(), path)
    >>> model.load_state_dict(ad.load(path))
    <All keys matched successfully>
    """
    path = os.fspath(path)
    if not zipfile.is_zipfile(path):
        with open(path, "rb") as fh:
            magic = fh.read(6)
        if magic.startswith(b"\x80") or magic[:1] in (b"(", b"]", b"}"):
            raise _refuse(path, "is a pickle file")
        if magic.startswith(b"\x93NUMPY"):
            raise ValueError(f"load: {path!r} is a bare .npy array, not an autodiffx state file")
        raise ValueError(f"load: {path!r} is not an autodiffx (.npz) state file")
    with np.load(path, allow_pickle=False) as npz:
        names = set(npz.files)

        def read(name: str) -> np.ndarray:
            if name not in names:
                raise ValueError(f"load: {path!r} lacks the array member {name!r} (corrupt file)")
            try:
                return npz[name]
            except ValueError as e:
                if "allow_pickle" in str(e):
                    raise _refuse(path, f"holds a pickled object array in {name!r}") from e
                raise

        if _HEADER not in names:
            return {name: read(name) for name in npz.files}
        try:
            header = json.loads(bytes(read(_HEADER)).decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ValueError(f"load: {path!r} has a corrupt header: {e}") from e
        if not isinstance(header, dict) or header.get("format") != FORMAT:
            raise ValueError(f"load: {path!r} is not an autodiffx state file")
        version = header.get("version")
        if not isinstance(version, int) or version > VERSION:
            raise ValueError(
                f"load: {path!r} has format version {version}; this autodiffx reads "
                f"versions up to {VERSION} (upgrade autodiffx)"
            )
        return _decode(header["tree"], read)
