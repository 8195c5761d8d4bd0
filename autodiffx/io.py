"""``save``/``load``: nested state as ``.npz`` files, never pickled, written atomically.

The state is nested dicts, lists and tuples of arrays, Tensors, numbers, strings and None.
File format (version 1): a ZIP archive readable by ``numpy.load`` holding one ``.npy``
member per array (``a0``, ``a1``, …) and a header member ``__autodiffx__``, a uint8 array
of UTF-8 JSON ``{"format": "autodiffx.state", "version": 1, "tree": ...}`` where the tree
mirrors the saved structure: JSON scalars for ``None``/``bool``/``int``/``float``/``str``,
lists for lists, ``{"__tuple__": [...]}``, ``{"__dict__": [[key, value], ...]}`` (keys are
``str`` or ``int``, kept with their type and order), ``{"__complex__": [re, im]}``,
``{"__array__": "a3"}`` and ``{"__scalar__": "a3"}`` (a NumPy scalar, kept as one).
Containers nest at most ``MAX_DEPTH`` deep.

A file that cannot be read as such (truncated, damaged, foreign, pickled) raises
:class:`CheckpointError` with one line saying why.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import struct
import tokenize
import uuid
import zipfile
import zlib
from collections.abc import Callable
from typing import IO, Any, NoReturn

import numpy as np

from ._tensor import Tensor

try:  # POSIX: a temporary file being written is locked, so a later save knows it is live
    import fcntl
except ImportError:  # pragma: no cover - Windows: an open file cannot be deleted anyway
    fcntl = None  # type: ignore[assignment]

__all__ = ["CheckpointError", "load", "save", "write_atomically"]

FORMAT = "autodiffx.state"
VERSION = 1
#: How deep containers (dicts, lists, tuples) may nest in a saved state.
MAX_DEPTH = 100
_HEADER = "__autodiffx__"
# NOTE: deflate expands at most 1032:1; a member claiming more is lying about its size, and
# refusing it up front keeps a damaged header from asking for an absurd allocation.
_MAX_DEFLATE_RATIO = 1032
# What the zip and npy readers raise on damaged bytes (RecursionError is a RuntimeError;
# numpy parses .npy headers with tokenize and ast, hence TokenError and SyntaxError).
_UNREADABLE = (
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    zlib.error,
    EOFError,
    OSError,
    NotImplementedError,
    RuntimeError,
    ValueError,
    TypeError,
    SyntaxError,
    tokenize.TokenError,
    struct.error,
    OverflowError,
)


class CheckpointError(ValueError):
    """A file that :func:`load` cannot read: truncated, damaged, not written by
    :func:`save` (nor by ``numpy.savez``), or holding pickled objects.

    The message is one line naming the file and what is wrong with it. A path that cannot
    be opened at all raises ``OSError`` (``FileNotFoundError``, ``PermissionError``...) as
    ``open`` does. A subclass of ``ValueError``.

    Examples
    --------
    >>> import os, tempfile
    >>> import autodiffx as ad
    >>> path = os.path.join(tempfile.mkdtemp(), "cut.npz")
    >>> ad.save({"w": ad.zeros(1000)}, path)
    >>> with open(path, "r+b") as fh:  # cut it in half
    ...     _ = fh.truncate(os.path.getsize(path) // 2)
    >>> try:
    ...     ad.load(path)
    ... except ad.CheckpointError as e:
    ...     print(e)  # doctest: +ELLIPSIS
    load: '...cut.npz' is not a complete ZIP archive (truncated or damaged)
    """


def _encode(obj: Any, arrays: dict[str, np.ndarray], where: str, depth: int = 0) -> Any:
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
    if isinstance(obj, dict | list | tuple) and depth >= MAX_DEPTH:
        raise TypeError(f"save: the state nests containers more than {MAX_DEPTH} deep")
    if isinstance(obj, dict):
        items = []
        for k, v in obj.items():
            if not isinstance(k, str | int) or isinstance(k, bool):
                raise TypeError(f"save: dict keys must be str or int, got {k!r} in {where}")
            items.append([k, _encode(v, arrays, f"{where}[{k!r}]", depth + 1)])
        return {"__dict__": items}
    if isinstance(obj, list | tuple):
        enc = [_encode(v, arrays, f"{where}[{i}]", depth + 1) for i, v in enumerate(obj)]
        return enc if isinstance(obj, list) else {"__tuple__": enc}
    raise TypeError(
        f"save: cannot save {type(obj).__name__} at {where}; supported are dicts, lists, "
        "tuples, arrays/Tensors, numbers, strings and None"
    )


def _write_zip(fh: Any, header: bytes, arrays: dict[str, np.ndarray], compress: bool) -> None:
    mode = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    with zipfile.ZipFile(fh, mode="w", compression=mode, allowZip64=True) as zf:
        members = {_HEADER: np.frombuffer(header, dtype=np.uint8), **arrays}
        for name, arr in members.items():
            with zf.open(name + ".npy", "w", force_zip64=True) as f:
                np.lib.format.write_array(f, np.asanyarray(arr), allow_pickle=False)


# ----- atomic writes ---------------------------------------------------------------------------
def _fsync_dir(d: str) -> None:
    with contextlib.suppress(OSError, AttributeError):
        fd = os.open(d, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _remove_stale_temporaries(d: str, base: str) -> None:
    """Delete the temporary files of earlier saves of ``base`` in ``d`` whose writer is gone
    (killed mid-save): a live writer holds a lock on its temporary file."""
    pattern = re.compile(rf"\.{re.escape(base)}\.[0-9a-f]{{32}}\.tmp")
    try:
        names = [n for n in os.listdir(d) if pattern.fullmatch(n)]
    except OSError:
        return
    for name in names:
        tmp = os.path.join(d, name)
        with contextlib.suppress(OSError):
            if fcntl is None:  # pragma: no cover - Windows refuses to delete an open file
                os.unlink(tmp)
                continue
            fd = os.open(tmp, os.O_RDONLY)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # BlockingIOError: a live save
                if os.stat(tmp).st_ino == os.fstat(fd).st_ino:
                    os.unlink(tmp)
            finally:
                os.close(fd)


def _create_locked(d: str, base: str) -> tuple[int, str]:
    """A new temporary file next to the destination, locked for as long as it is open."""
    while True:
        tmp = os.path.join(d, f".{base}.{uuid.uuid4().hex}.tmp")
        flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
        fd = os.open(tmp, flags, 0o666)
        if fcntl is None:  # pragma: no cover
            return fd, tmp
        fcntl.flock(fd, fcntl.LOCK_EX)
        if os.fstat(fd).st_nlink > 0:
            return fd, tmp
        os.close(fd)  # a concurrent cleanup took it for stale between open and lock: retry


def write_atomically(path: str | os.PathLike[str], write: Callable[[IO[bytes]], Any]) -> None:
    """Call ``write(fh)`` on a temporary file next to ``path``, fsync it and rename it over
    ``path``: readers see the old file or the whole new one, never a part.

    On an exception the temporary file is removed and the old file stays. A process killed
    mid-write leaves its temporary file (``.<name>.<hex>.tmp``, locked while it is written);
    the next write of the same path deletes those whose writer is gone.

    Examples
    --------
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "note.txt")
    >>> write_atomically(path, lambda fh: fh.write(b"hello"))
    >>> with open(path, "rb") as fh:
    ...     fh.read(), os.listdir(os.path.dirname(path))
    (b'hello', ['note.txt'])
    """
    path = os.fspath(path)
    d, base = os.path.split(os.path.abspath(path))
    _remove_stale_temporaries(d, base)
    fd, tmp = _create_locked(d, base)
    try:
        with os.fdopen(fd, "w+b") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
            if fcntl is not None:  # rename while still locked, so no cleanup can take it
                os.replace(tmp, path)
        if fcntl is None:  # pragma: no cover - Windows cannot rename an open file
            os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(d)


def save(state: Any, path: str | os.PathLike[str], *, compress: bool = False) -> None:
    """Write ``state`` (nested dicts/lists/tuples of arrays, Tensors, numbers, strings,
    None) to ``path`` as an ``.npz``-based file, atomically and without pickle.

    The file is written to a temporary file in the same directory, flushed and fsynced,
    then renamed over ``path`` (``os.replace``): a crash or error mid-write leaves any
    previous file at ``path`` intact, and an error removes the temporary file. A save
    killed mid-write (``kill -9``, power loss) leaves its temporary file behind; the next
    save of the same path removes it (see :func:`write_atomically`). The file is written at
    exactly ``path`` (no suffix is added). Tensors are saved as their arrays; object arrays
    and containers nested more than ``MAX_DEPTH`` deep are refused with ``TypeError``.

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
    write_atomically(path, lambda fh: _write_zip(fh, header, arrays, compress))


# ----- load ------------------------------------------------------------------------------------
def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return text if len(text) <= 160 else text[:157] + "..."


@contextlib.contextmanager
def _reading(path: str, what: str) -> Any:
    """Turn what the zip and npy readers raise on damaged bytes into a CheckpointError."""
    try:
        yield
    except CheckpointError:
        raise
    except _UNREADABLE as e:
        raise CheckpointError(
            f"load: {path!r} is corrupt: cannot read {what} ({_one_line(e)})"
        ) from e


def _not_a_zip(path: str, magic: bytes) -> CheckpointError:
    if magic.startswith(b"PK"):
        return CheckpointError(
            f"load: {path!r} is not a complete ZIP archive (truncated or damaged)"
        )
    if magic.startswith(b"\x80") or magic[:1] in (b"(", b"]", b"}"):
        return CheckpointError(
            f"load: {path!r} is a pickle file; refusing to load it (autodiffx never unpickles: "
            "files written by ad.save hold only plain arrays)"
        )
    if magic.startswith(b"\x93NUMPY"):
        return CheckpointError(f"load: {path!r} is a bare .npy array, not an autodiffx state file")
    if not magic:
        return CheckpointError(f"load: {path!r} is empty, not an autodiffx state file")
    return CheckpointError(f"load: {path!r} is not an autodiffx (.npz) state file")


class _Members:
    """The ``.npy`` members of an open archive, read with their declared sizes checked."""

    def __init__(self, zf: zipfile.ZipFile, path: str) -> None:
        self.zf, self.path = zf, path
        self.infos: dict[str, zipfile.ZipInfo] = {}
        for info in zf.infolist():
            name = info.filename
            if not name.endswith(".npy") or name[:-4] in self.infos:
                what = "a second member named" if name[:-4] in self.infos else "a member"
                raise self.error(
                    f"holds {what} {name!r} that is not an .npy array; ad.load reads files "
                    "written by ad.save or numpy.savez"
                )
            self.infos[name[:-4]] = info

    def error(self, what: str) -> CheckpointError:
        return CheckpointError(f"load: {self.path!r} {what}")

    def _check_header(self, name: str, info: zipfile.ZipInfo) -> None:
        fmt = np.lib.format
        with self.zf.open(info) as f:
            version = fmt.read_magic(f)
            if version not in ((1, 0), (2, 0)):
                return  # version 3 (utf-8 field names): read_array checks it
            reader = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
            shape, _, dtype = reader(f)
            data = info.file_size - f.tell()
        if dtype.hasobject:
            raise self.error(
                f"holds a pickled object array in {name!r}; refusing to load it (autodiffx "
                "never unpickles: files written by ad.save hold only plain arrays)"
            )
        need = dtype.itemsize * int(np.prod(shape, dtype=object))
        if need != data:
            raise self.error(
                f"is corrupt: member {name!r} declares shape {shape} {dtype} ({need} bytes) but "
                f"holds {data} bytes"
            )

    def read(self, name: str) -> np.ndarray:
        info = self.infos.get(name)
        if info is None:
            raise self.error(f"lacks the array member {name!r} (corrupt file)")
        stored = info.compress_size
        if info.compress_type == zipfile.ZIP_STORED and info.file_size != stored:
            raise self.error(f"is corrupt: member {name!r} has inconsistent sizes")
        if info.file_size > _MAX_DEFLATE_RATIO * stored + 4096:
            raise self.error(f"is corrupt: member {name!r} claims {info.file_size} bytes")
        with _reading(self.path, f"member {name!r}"):
            self._check_header(name, info)
            with self.zf.open(info) as f:
                return np.lib.format.read_array(f, allow_pickle=False)


def _decode(
    node: Any, read: Callable[[str], np.ndarray], fail: Callable[[str], NoReturn], depth: int
) -> Any:
    """The saved structure of a header tree node (validated: a bad node raises via fail)."""
    if node is None or isinstance(node, bool | int | float | str):
        return node
    if depth >= MAX_DEPTH:
        fail(f"nests containers more than {MAX_DEPTH} deep")
    if isinstance(node, list):
        return [_decode(v, read, fail, depth + 1) for v in node]
    if not isinstance(node, dict) or len(node) != 1:
        fail(f"has a corrupt header node {_short(node)}")
    ((tag, value),) = node.items()
    if tag == "__dict__" and isinstance(value, list):
        out: dict[Any, Any] = {}
        for item in value:
            if not (isinstance(item, list) and len(item) == 2 and _is_key(item[0])):
                fail(f"has a corrupt dict entry {_short(item)} in its header")
            if item[0] in out:
                fail(f"has the dict key {item[0]!r} twice in its header")
            out[item[0]] = _decode(item[1], read, fail, depth + 1)
        return out
    if tag == "__tuple__" and isinstance(value, list):
        return tuple(_decode(v, read, fail, depth + 1) for v in value)
    if (
        tag == "__complex__"
        and isinstance(value, list)
        and len(value) == 2
        and all(map(_is_real, value))
    ):
        return complex(value[0], value[1])
    if tag in ("__array__", "__scalar__") and isinstance(value, str):
        arr = read(value)
        if tag == "__array__":
            return arr
        if arr.shape == ():
            return arr[()]
        fail(f"has a scalar {value!r} of shape {arr.shape} (corrupt file)")
    fail(f"has a corrupt header node {_short(node)}")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_key(k: Any) -> bool:
    return isinstance(k, str) or _is_int(k)


def _is_real(v: Any) -> bool:
    return isinstance(v, float) or _is_int(v)


def _short(node: Any) -> str:
    text = json.dumps(node)
    return text if len(text) <= 60 else text[:57] + "..."


def _read_header(members: _Members) -> Any:
    """The JSON header of an autodiffx file, checked for format and version."""
    raw = members.read(_HEADER)
    if raw.dtype != np.uint8 or raw.ndim != 1:
        raise members.error(f"has a corrupt header (a {raw.dtype} array of shape {raw.shape})")
    try:
        header = json.loads(raw.tobytes().decode("utf-8"))
    except RecursionError as e:
        raise members.error("has a corrupt header (nested too deeply)") from e
    except ValueError as e:  # UnicodeDecodeError and JSONDecodeError
        raise members.error(f"has a corrupt header ({_one_line(e)})") from e
    if not isinstance(header, dict) or header.get("format") != FORMAT or "tree" not in header:
        raise members.error("is not an autodiffx state file")
    version = header.get("version")
    if not _is_int(version) or version < 1:
        raise members.error(f"has a corrupt header (format version {_short(version)})")
    if version > VERSION:
        raise members.error(
            f"has format version {version}; this autodiffx reads versions up to {VERSION} "
            "(upgrade autodiffx)"
        )
    return header["tree"]


def load(path: str | os.PathLike[str]) -> Any:
    """Read what :func:`save` wrote: nested dicts, lists and tuples of NumPy arrays, Python
    numbers, strings and None (Tensors come back as ``numpy.ndarray``).

    Read with ``allow_pickle=False``: a file holding pickled data or object arrays is
    refused. A plain ``.npz`` without the autodiffx header (e.g. from ``numpy.savez``) loads
    as a flat dict of arrays. The result can be passed to ``Module.load_state_dict`` and
    ``Optimizer.load_state_dict``.

    Parameters
    ----------
    path : str or PathLike
        The file.

    Returns
    -------
    object
        The saved structure.

    Raises
    ------
    CheckpointError
        A ``ValueError`` with one line saying why, for every file that cannot be read as
        saved state: truncated, damaged, foreign, pickled or from a newer autodiffx.
    OSError
        The path cannot be opened (missing, a directory, no permission).

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
    with open(path, "rb") as fh:
        magic = fh.read(6)
        if not magic.startswith(b"PK") or not zipfile.is_zipfile(fh):
            raise _not_a_zip(path, magic)
        fh.seek(0)
        with _reading(path, "the ZIP directory"):
            zf = zipfile.ZipFile(fh)
        with zf:
            members = _Members(zf, path)
            if _HEADER not in members.infos:
                return {name: members.read(name) for name in members.infos}
            tree = _read_header(members)

            def fail(what: str) -> NoReturn:
                raise members.error(what)

            return _decode(tree, members.read, fail, 0)
