"""Every registered primitive: forward, VJP and JVP beside its raw NumPy kernel.

Parametrized over ``sorted(autodiffx.REGISTRY)``, so a new op is benchmarked with no edit: a
ufunc kernel gets ``nin`` vectors of the size, any other kernel is tried on one vector, and
ops that need other arguments have a builder in ``BUILDERS``. An op none of these fit is
skipped (asv shows it as n/a). ``time_forward - time_numpy_kernel`` is the dispatch overhead.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np

import autodiffx as ad

from .common import SIZES, rng

Args = tuple[tuple[Any, ...], dict[str, Any]]

#: Default domain (every op accepts it, including log, sqrt, arcsin, arctanh, divide, ...).
DOMAIN = (0.1, 0.9)
DOMAINS = {
    "arccosh": (1.1, 3.0),
    # products of 1e6 factors must neither underflow nor overflow
    "prod": (0.999, 1.001),
    "cumprod": (0.999, 1.001),
}


def _vec(name: str, n: int, seed: int = 0) -> np.ndarray:
    lo, hi = DOMAINS.get(name, DOMAIN)
    return rng(seed).uniform(lo, hi, n)


def _mat(name: str, n: int, seed: int = 0) -> np.ndarray:
    side = max(1, round(n**0.5))
    lo, hi = DOMAINS.get(name, DOMAIN)
    return rng(seed).uniform(lo, hi, (side, side))


def _one_vec(**params: Any) -> Callable[[str, int], Args]:
    return lambda name, n: ((_vec(name, n),), params)


def _one_mat(**params: Any) -> Callable[[str, int], Args]:
    return lambda name, n: ((_mat(name, n),), params)


def _two_vecs(**params: Any) -> Callable[[str, int], Args]:
    return lambda name, n: ((_vec(name, n), _vec(name, n, 1)), params)


def _half(n: int) -> int:
    return len(range(0, n, 2))


#: O(side**3) LAPACK ops stop at 1e4 elements (100 x 100): beyond it the kernel is all there is.
CUBIC_MAX = 10_000


def _square(kind: str, nargs: int = 1, **params: Any) -> Callable[[str, int], Args]:
    """A well-conditioned ("general") or symmetric positive definite ("spd") matrix, and for
    ``nargs=2`` a right-hand side vector."""

    def build(name: str, n: int) -> Args:
        if n > CUBIC_MAX:
            raise NotImplementedError(f"{name}: O(n**3) kernel, sizes up to {CUBIC_MAX} only")
        m = _mat(name, n)
        side = m.shape[0]
        m = m @ m.T / side if kind == "spd" else m
        m = m + side * np.eye(side)
        args = (m, _vec(name, side, 1)) if nargs == 2 else (m,)
        return args, params

    return build


#: Ops whose arguments are not "one vector per kernel input", by name.
BUILDERS: dict[str, Callable[[str, int], Args]] = {
    "astype": _one_vec(dtype=np.float32),
    "broadcast_to": lambda name, n: ((_vec(name, n),), {"shape": (2, n)}),
    "cholesky": _square("spd"),
    "concatenate": _two_vecs(),
    "cumprod": _one_vec(axis=0),
    "cumsum": _one_vec(axis=0),
    "det": _square("general"),
    "diagonal": _one_mat(),
    "diagonal_scatter": lambda name, n: (
        (_mat(name, n)[0],),
        {"shape": (_mat(name, n).shape[0],) * 2, "offset": 0, "axis1": 0, "axis2": 1},
    ),
    "eigh": _square("spd"),
    "eigvalsh": _square("spd"),
    "einsum": lambda name, n: ((_mat(name, n), _mat(name, n, 1)[0]), {"subscripts": "ij,j->i"}),
    "getitem": _one_vec(idx=slice(None, None, 2)),
    "inv": _square("general"),
    "linear": lambda name, n: (
        (_mat(name, n), _mat(name, n, 1), _vec(name, _mat(name, n, 1).shape[0], 2)),
        {},
    ),
    "lstsq": _square("general", 2),
    "matmul": lambda name, n: ((_mat(name, n), _mat(name, n, 1)[0]), {}),
    "pad": _one_vec(pad_width=1),
    "pinv": _square("general"),
    "polygamma": lambda name, n: ((1, _vec(name, n)), {}),
    "power": _two_vecs(),
    "qr": _square("general"),
    "reshape": _one_vec(shape=(-1, 1)),
    "roll": _one_vec(shift=1),
    "scatter_add": lambda name, n: (
        (_vec(name, _half(n)),),
        {"shape": (n,), "idx": slice(None, None, 2)},
    ),
    "setitem": lambda name, n: (
        (_vec(name, n), _vec(name, _half(n), 1)),
        {"idx": slice(None, None, 2)},
    ),
    "slogdet": _square("general"),
    "softmax_cross_entropy": lambda name, n: (
        (_mat(name, n),),
        {"target": np.arange(_mat(name, n).shape[0]) % _mat(name, n).shape[1]},
    ),
    "solve": _square("general", 2),
    "split": lambda name, n: ((_vec(name, n),), {"indices_or_sections": [n // 2]}),
    "svd": _square("general", full_matrices=False),
    "svdvals": _square("general"),
    "swapaxes": _one_mat(axis1=0, axis2=1),
    "transpose": _one_mat(),
    "tril": _one_mat(),
    "triu": _one_mat(),
    "where": lambda name, n: (
        (_vec(name, n) > 0.5, _vec(name, n, 1), _vec(name, n, 2)),
        {},
    ),
}


def build_args(name: str, n: int) -> Args:
    """Arguments ``(args, params)`` for primitive ``name`` at size ``n`` (elements)."""
    if name in BUILDERS:
        return BUILDERS[name](name, n)
    kernel = ad.REGISTRY[name].kernel
    nin = kernel.nin if isinstance(kernel, np.ufunc) else 1
    return tuple(_vec(name, n, i) for i in range(nin)), {}


def _differentiable(p: ad.Primitive, i: int, a: Any) -> bool:
    return isinstance(a, np.ndarray) and a.dtype.kind in "fc" and i not in p.nondiff


def _outputs(res: Any) -> list[ad.Tensor]:
    return [res] if isinstance(res, ad.Tensor) else list(res)


class _PrimitiveBench:
    """Setup shared by the three classes below: arguments as arrays and as Tensors."""

    params: ClassVar[list[list[Any]]] = [sorted(ad.REGISTRY), list(SIZES)]
    param_names: ClassVar[list[str]] = ["op", "size"]
    rounds = 1
    repeat = (1, 5, 2.0)
    warmup_time = 0.02
    timeout = 120.0

    def setup(self, op: str, size: int) -> None:
        self.p = p = ad.REGISTRY[op]
        try:
            self.raw, self.kw = build_args(op, size)
            p.kernel(*self.raw, **self.kw)
        except NotImplementedError:
            raise
        except Exception as e:
            raise NotImplementedError(f"no argument builder fits {op!r}") from e
        self.diff = [_differentiable(p, i, a) for i, a in enumerate(self.raw)]
        self.args = tuple(
            ad.tensor(a, requires_grad=d) if isinstance(a, np.ndarray) else a
            for a, d in zip(self.raw, self.diff, strict=True)
        )
        self.inputs = [a for a, d in zip(self.args, self.diff, strict=True) if d]


class PrimitiveForward(_PrimitiveBench):
    """The raw NumPy kernel, and the op applied to Tensors that require grad (recording)."""

    def time_numpy_kernel(self, op: str, size: int) -> None:
        self.p.kernel(*self.raw, **self.kw)

    def time_forward(self, op: str, size: int) -> None:
        self.p(*self.args, **self.kw)


class PrimitiveVJP(_PrimitiveBench):
    """One backward through the op's node (graph retained), by ``ad.autograd.grad``."""

    def setup(self, op: str, size: int) -> None:
        super().setup(op, size)
        outs = [o for o in _outputs(self.p(*self.args, **self.kw)) if o.requires_grad]
        if not outs or not self.inputs:
            raise NotImplementedError(f"{op} is not differentiable")
        self.outs = outs
        r = rng(7)
        self.seeds = [ad.tensor(r.uniform(0.1, 0.9, o.shape).astype(o.dtype)) for o in outs]

    def time_vjp(self, op: str, size: int) -> None:
        ad.autograd.grad(self.outs, self.inputs, self.seeds, retain_graph=True, allow_unused=True)


class PrimitiveJVP(_PrimitiveBench):
    """The op on dual tensors inside an open dual level: primal and tangent together."""

    def setup(self, op: str, size: int) -> None:
        super().setup(op, size)
        if self.p.jvp is None or not self.inputs:
            raise NotImplementedError(f"{op} has no JVP rule")
        self.level = ad.forward.dual_level()
        self.level.__enter__()
        r = rng(8)
        self.duals = tuple(
            ad.forward.make_dual(a.detach(), r.uniform(0.1, 0.9, a.shape)) if d else a
            for a, d in zip(self.args, self.diff, strict=True)
        )

    def teardown(self, op: str, size: int) -> None:
        level = getattr(self, "level", None)
        if level is not None:
            level.__exit__(None, None, None)
            self.level = None

    def time_jvp(self, op: str, size: int) -> None:
        self.p(*self.duals, **self.kw)
