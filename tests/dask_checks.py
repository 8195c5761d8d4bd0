"""One OpSpec row on chunked Dask arrays: values and VJPs equal NumPy's, nothing computed early.

Used by tests/test_dask.py (every primitive of ``autodiffx._xp.RUNS_ON_DASK``) and by the
probe ``python tests/dask_checks.py``, which runs every row of the registry with the list
widened to all names and prints which primitives pass (candidates for the list) and why the
others fail.
"""

from __future__ import annotations

import sys
import warnings
from typing import Any
from unittest import mock

import numpy as np
from _backend_checks import assert_like_numpy

import autodiffx as ad
from autodiffx._mode import STATE
from autodiffx._xp import inexact

RTOL = ATOL = 1e-12


#: Cases of ops that run on Dask which Dask itself cannot run, and the error they raise
#: (docs/backends.md describes them).
LIMITS = {
    "getitem": (TypeError, "advanced index"),
    "scatter_add": (TypeError, "advanced indexing"),
    "reshape": (NotImplementedError, "Dask's reshape only supports"),
}


def limited(name: str, e: Exception) -> bool:
    """Whether ``e`` is the documented error of a case of ``name`` that Dask cannot run."""
    limit = LIMITS.get(name)
    return limit is not None and isinstance(e, limit[0]) and limit[1] in str(e)


class Computed(AssertionError):
    """A Dask array was computed (or converted to NumPy) before ``ad.compute``."""


def _refuse_scheduler(*args: Any, **kwargs: Any) -> Any:
    raise Computed("a Dask graph was computed before ad.compute")


def _refuse_array(self: Any, *args: Any, **kwargs: Any) -> Any:
    raise Computed("a Dask array was converted to NumPy before ad.compute")


def chunked(a: Any) -> Any:
    """A NumPy array (also inside lists and tuples) as a Dask array of two chunks along
    each axis of length 2 or more; anything else as it is."""
    import dask.array as da

    if isinstance(a, np.ndarray):
        return da.from_array(a, chunks=tuple(max(1, (n + 1) // 2) for n in a.shape))
    if isinstance(a, list | tuple):
        return type(a)(chunked(v) for v in a)
    return a


def _tensors(args: list[Any], diff: list[int], lazy: bool) -> list[Any]:
    conv = chunked if lazy else (lambda a: a)
    out = []
    for i, a in enumerate(args):
        is_array = isinstance(a, np.ndarray)
        out.append(ad.tensor(conv(a), requires_grad=i in diff) if is_array else conv(a))
    return out


def _run(apply_op: Any, p: Any, us: list[np.ndarray] | None, lazy: bool) -> tuple[list, list]:
    """Outputs and (when ``us`` is given) the VJP of the differentiated arguments."""
    ts = _tensors(p.args, p.diff, lazy)
    outs = list(apply_op(p.spec, ts, p.params))
    if us is None:
        return outs, []
    pairs = [
        (o, ad.tensor(chunked(u) if lazy else u))
        for o, u in zip(_floating(outs), us, strict=True)
        if o.requires_grad
    ]
    if not pairs:
        return outs, []
    xs = [ts[i] for i in p.diff]
    gs = ad.autograd.grad(
        [o for o, _ in pairs], xs, grad_outputs=[u for _, u in pairs], allow_unused=True
    )
    return outs, [g for g in gs if g is not None]


def _floating(outs: list[Any]) -> list[Any]:
    return [o for o in outs if isinstance(o, ad.Tensor) and inexact(o.dtype)]


def building() -> Any:
    """A context in which computing a Dask graph, converting a Dask array to NumPy or any
    warning raises."""
    import dask
    import dask.array as da

    stack = [
        dask.config.set(scheduler=_refuse_scheduler),
        mock.patch.object(da.Array, "__array__", _refuse_array),
        warnings.catch_warnings(),
    ]
    return _Stack(stack)


class _Stack:
    def __init__(self, cms: list[Any]) -> None:
        self.cms = cms

    def __enter__(self) -> None:
        for cm in self.cms:
            cm.__enter__()
        warnings.simplefilter("error")

    def __exit__(self, *exc: Any) -> None:
        for cm in reversed(self.cms):
            cm.__exit__(*exc)


def _compare(got: list[Any], want: list[Any], what: str) -> None:
    import dask
    import dask.array as da

    assert len(got) == len(want), f"{what}: {len(got)} results, NumPy {len(want)}"
    for k, (g, w) in enumerate(zip(got, want, strict=True)):
        gd, wd = getattr(g, "data", g), getattr(w, "data", w)
        assert isinstance(gd, da.Array), f"{what}: result {k} is a {type(gd).__name__}"
        (gn,) = dask.compute(gd, scheduler="sync")
        assert_like_numpy(np.asarray(gn), np.asarray(wd), what, k, RTOL, ATOL)


def check_point(apply_op: Any, p: Any, rng: np.random.Generator) -> None:
    """Forward and VJP of one point on Dask equal NumPy's; the graph is built without
    computing anything. Raises AssertionError (or the op's TypeError, for a refusal)."""
    want, _ = _run(apply_op, p, None, False)
    us = None
    if not p.spec.nondiff and p.diff:
        us = [_normal(rng, o.shape, o.dtype) for o in _floating(want)]
    want, want_g = _run(apply_op, p, us, False)
    try:
        with building():
            got, got_g = _run(apply_op, p, us, True)
    finally:
        STATE.foreign = False
    _compare(got, want, f"forward {p!r}")
    _compare(got_g, want_g, f"VJP {p!r}")


def _normal(rng: np.random.Generator, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    x = rng.standard_normal(shape)
    if np.dtype(dtype).kind == "c":
        x = x + 1j * rng.standard_normal(shape)
    return np.asarray(x, dtype=dtype)


def points(spec: Any, rng: np.random.Generator) -> list[Any]:
    """The row's points: float64, and complex128 where the row is complex."""
    from test_primitives import make_point

    dtypes = [np.float64] + ([np.complex128] if spec.complex else [])
    return [make_point(spec, c, rng, dt) for dt in dtypes for c in spec.cases]


def probe(spec: Any) -> list[str]:
    """The failures of a row on Dask, one line per point (empty: it runs)."""
    from test_primitives import apply_op

    rng = np.random.default_rng(17)
    fails = []
    for p in points(spec, rng):
        try:
            check_point(apply_op, p, rng)
        except Exception as e:  # (a probe reports every failure)
            if limited(spec.name, e):
                continue
            msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
            fails.append(f"{p!r}: {type(e).__name__}: {msg[:200]}")
    return fails


def main() -> None:
    """Every row with RUNS_ON_DASK widened to all names: which primitives pass."""
    from op_specs import ROWS

    from autodiffx import REGISTRY, _xp

    names = sys.argv[1:]
    rows = [r for r in ROWS if r.name in REGISTRY and (not names or r.name in names)]
    passing = []
    with mock.patch.object(_xp, "RUNS_ON_DASK", frozenset(REGISTRY)):
        for r in rows:
            fails = probe(r)
            if fails:
                print(f"FAIL {r.name} ({len(fails)})")
                for f in fails[:3]:
                    print("    " + f)
            else:
                passing.append(r.name)
    print("PASS", len(passing), " ".join(passing))


if __name__ == "__main__":
    main()
