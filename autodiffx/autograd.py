"""``ad.autograd``: gradients without touching ``.grad`` (PyTorch's ``torch.autograd.grad``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ._graph import run_backward
from ._mode import STATE, no_grad
from ._registry import apply, defprim
from ._tensor import STAMP, Tensor, wrap
from ._xp import is_foreign, ones_like, owned


def _as_list(x: Any) -> list[Any]:
    if isinstance(x, Tensor):
        return [x]
    return list(x)


def grad(
    outputs: Tensor | Sequence[Tensor],
    inputs: Tensor | Sequence[Tensor],
    grad_outputs: Any = None,
    retain_graph: bool | None = None,
    create_graph: bool = False,
    allow_unused: bool = False,
    is_grads_batched: bool = False,
) -> tuple[Tensor | None, ...]:
    """Gradients of ``outputs`` with respect to ``inputs``, returned as a tuple.

    ``grad_outputs`` (one per output) seeds non-scalar outputs. With
    ``create_graph=True`` the returned gradients are themselves differentiable. With
    ``is_grads_batched=True`` (PyTorch's name) the first axis of every ``grad_outputs``
    entry is a batch of cotangents, all pushed through the graph in one vectorized pass:
    the result has that axis too (rows of a Jacobian).

    Examples
    --------
    >>> import autodiffx as ad
    >>> x = ad.tensor(2.0, requires_grad=True)
    >>> (g,) = ad.autograd.grad(x ** 3, x, create_graph=True)
    >>> g, ad.autograd.grad(g, x)[0]
    (tensor(12., grad_fn=<multiply>), tensor(12.))
    """
    return _grad(
        outputs,
        inputs,
        grad_outputs,
        retain_graph=retain_graph,
        create_graph=create_graph,
        allow_unused=allow_unused,
        is_grads_batched=is_grads_batched,
    )


def _seeds(
    outputs: Any, outs: list[Tensor], grad_outputs: Any, is_grads_batched: bool
) -> list[Any]:
    """The cotangent of each output: ``grad_outputs``, or ones for a scalar output."""
    if grad_outputs is None and not is_grads_batched:  # (the common case, checks inline)
        ones = []
        for o in outs:
            d = o.data
            if d.size != 1 or type(d) is not np.ndarray:
                break
            ones.append(
                np.array(1, d.dtype) if d.ndim == 0 else np.array(1, d.dtype).reshape(d.shape)
            )
        else:
            return ones
    if grad_outputs is None:
        gos: list[Any] = [None] * len(outs)
    elif isinstance(outputs, Tensor) and not (
        isinstance(grad_outputs, list | tuple) and len(grad_outputs) == 1
    ):
        gos = [grad_outputs]  # one output: an array, Tensor or nested list is its cotangent
    else:
        gos = _as_list(grad_outputs)
    if len(gos) != len(outs):
        raise ValueError(f"grad: got {len(gos)} grad_outputs for {len(outs)} outputs")
    seeds = []
    for o, g in zip(outs, gos):
        if g is None:
            if o.size != 1:
                raise RuntimeError(
                    f"grad: an output of shape {o.shape} needs a grad_outputs entry; gradients "
                    "can be created implicitly only for scalar outputs"
                )
            g = np.ones_like(o.data) if not is_foreign(o.data) else wrap(ones_like(o.data))
        elif type(g) not in (np.ndarray, float, int) and is_foreign(g):
            g = wrap(g)
        elif not isinstance(g, Tensor):
            g = np.asarray(g, dtype=o.dtype)
        gshape = g.shape[1:] if is_grads_batched else g.shape
        if gshape != o.shape:
            raise RuntimeError(
                f"grad: grad_outputs shape {g.shape} does not match output shape {o.shape}"
                + (" (with a leading batch axis)" if is_grads_batched else "")
            )
        seeds.append(g)
    return seeds


def _grad(
    outputs: Tensor | Sequence[Tensor],
    inputs: Tensor | Sequence[Tensor],
    grad_outputs: Any = None,
    *,
    retain_graph: bool | None = None,
    create_graph: bool = False,
    allow_unused: bool = False,
    is_grads_batched: bool = False,
    record: bool | None = None,
    order: list[Any] | None = None,
) -> tuple[Tensor | None, ...]:
    """:func:`grad`, and for the transforms ``record``: with ``create_graph``, whether the
    rules evaluated on Tensors are also recorded for an outer reverse pass (None: yes);
    ``order``: the plan the transform walked (see :func:`run_backward`)."""
    outs = _as_list(outputs)
    ins = _as_list(inputs)
    seeds = _seeds(outputs, outs, grad_outputs, is_grads_batched)
    for i, t in enumerate(ins):
        if not isinstance(t, Tensor) or not t._rg:
            raise RuntimeError(f"grad: input {i} does not require grad")
    if retain_graph is None:
        retain_graph = create_graph
    res = run_backward(
        outs,
        seeds,
        retain_graph=retain_graph,
        create_graph=create_graph,
        targets=ins,
        accumulate=False,
        batch_ndim=1 if is_grads_batched else 0,
        record=record,
        order=order,
    )
    assert res is not None
    out: list[Tensor | None] = []
    for i, g in enumerate(res):
        if g is None:
            if not allow_unused:
                raise RuntimeError(
                    f"grad: input {i} was not used to compute the outputs; pass "
                    "allow_unused=True to get None for it"
                )
            out.append(None)
        elif isinstance(g, Tensor):
            out.append(g)
        else:
            out.append(wrap(owned(g, ins[i].data.dtype, ins[i].data)))
    return tuple(out)


class FunctionCtx:
    """The ``ctx`` of an ``ad.Function``: saves tensors for the rules and carries any attribute.

    Examples
    --------
    >>> import autodiffx as ad
    >>> ctx = FunctionCtx()
    >>> ctx.save_for_backward(ad.tensor(1.0))
    >>> len(ctx.saved_tensors)
    1
    """

    def __init__(self) -> None:
        self._saved: tuple[Any, ...] = ()
        self._stamp = 0
        self.needs_input_grad: tuple[bool, ...] = ()

    def save_for_backward(self, *tensors: Any) -> None:
        """Keep ``tensors`` for ``vjp``/``jvp``; modifying them in place afterwards is an error."""
        self._saved = tensors
        self._stamp = STAMP[0]

    @property
    def saved_tensors(self) -> tuple[Any, ...]:
        """The tensors given to ``save_for_backward``."""
        for i, t in enumerate(self._saved):
            if isinstance(t, Tensor) and t._vc is not None and t._vc[0] > self._stamp:
                raise RuntimeError(
                    f"saved tensor {i} of a custom Function was modified in place after "
                    "save_for_backward (use an out-of-place op or save a copy)"
                )
        return self._saved


class Function:
    """Base class of user-defined differentiable operations (PyTorch's ``autograd.Function``).

    Subclasses define static ``forward(ctx, *inputs)`` (run without recording, on the given
    Tensors), ``vjp(ctx, *grads)`` returning one gradient (or None) per input (PyTorch's name
    ``backward`` is accepted for it), and optionally ``jvp(ctx, *tangents)`` for forward mode
    (missing tangents arrive as zeros). Rules written
    with autodiffx ops are differentiable again (``create_graph=True``, nested transforms).
    Call ``F.apply(*inputs)``.

    Examples
    --------
    >>> import autodiffx as ad
    >>> class Cube(ad.Function):
    ...     @staticmethod
    ...     def forward(ctx, x):
    ...         ctx.save_for_backward(x)
    ...         return x ** 3
    ...     @staticmethod
    ...     def vjp(ctx, g):
    ...         (x,) = ctx.saved_tensors
    ...         return 3 * x ** 2 * g
    >>> x = ad.tensor(2.0, requires_grad=True)
    >>> Cube.apply(x).backward()
    >>> x.grad
    tensor(12.)
    """

    _prims: tuple[Any, Any] | None = None

    @staticmethod
    def forward(ctx: FunctionCtx, *inputs: Any) -> Any:
        """Compute the outputs from the inputs (override)."""
        raise NotImplementedError

    @staticmethod
    def vjp(ctx: FunctionCtx, *grads: Any) -> Any:
        """Return the gradient of each input given the outputs' cotangents (override)."""
        raise NotImplementedError

    @classmethod
    def _primitives(cls) -> tuple[Any, Any]:
        prims = cls.__dict__.get("_prims")
        if prims is None:
            has_jvp = "jvp" in {k for c in cls.__mro__ if c is not Function for k in vars(c)}
            prims = tuple(
                defprim(
                    cls.__name__,
                    _function_kernel,
                    vjp=_function_vjp(cls),
                    jvp=_function_jvp(cls) if has_jvp else None,
                    nout=nout,
                    save_args=False,
                    register=False,
                    doc=cls.__doc__ or "",
                )
                for nout in (1, -1)
            )
            cls._prims = prims  # type: ignore[assignment]
        return prims  # type: ignore[return-value]

    @classmethod
    def apply(cls, *inputs: Any) -> Any:
        """Run ``forward`` and record one node whose rules are ``vjp``/``jvp``."""
        ctx = FunctionCtx()
        ctx.needs_input_grad = tuple(isinstance(a, Tensor) and a.requires_grad for a in inputs)
        st = STATE
        masked = set(st.levels) - st.masked
        st.masked.update(masked)  # forward itself carries no tangents: jvp() gives them
        try:
            with no_grad():
                out = cls.forward(ctx, *inputs)
        finally:
            st.masked.difference_update(masked)
        multi = isinstance(out, tuple | list)
        if multi:
            data = tuple(o.data if isinstance(o, Tensor) else np.asarray(o) for o in out)
        else:
            data = out.data if isinstance(out, Tensor) else np.asarray(out)
        single, many = cls._primitives()
        res = apply(many if multi else single, inputs, {"ctx": ctx, "result": data})
        return list(res) if isinstance(out, list) else res


def _function_kernel(*datas: Any, ctx: FunctionCtx, result: Any) -> Any:
    return result


def _as_tensor(g: Any) -> Any:
    return g if isinstance(g, Tensor) or g is None else Tensor(np.asarray(g))


def _vjp_rule(cls: type[Function]) -> tuple[str, Any] | None:
    """The reverse rule of a Function subclass: its ``vjp``, or PyTorch's name ``backward``.

    The class nearest in the MRO that defines either decides; None when none does.
    """
    for c in cls.__mro__:
        if c is Function:
            return None
        names = [n for n in ("vjp", "backward") if n in vars(c)]
        if len(names) == 2:
            raise TypeError(
                f"{cls.__name__} defines both vjp() and backward(): they are the same rule "
                "(vjp is autodiffx's name, backward PyTorch's); define one of them"
            )
        if names:
            return names[0], getattr(cls, names[0])
    return None


def _function_vjp(cls: type[Function]) -> Any:
    rule = _vjp_rule(cls)

    def vjp(needs: Any, g: Any, out: Any, *args: Any, ctx: FunctionCtx, result: Any) -> Any:
        if rule is None:
            raise NotImplementedError(
                f"{cls.__name__} has no reverse-mode rule: define vjp() in it, a static "
                "vjp(ctx, *grads) returning one gradient (or None) per input of forward() "
                "(PyTorch's name backward() is accepted too)"
            )
        name, fn = rule
        gs = tuple(_as_tensor(x) for x in g) if isinstance(g, tuple) else (_as_tensor(g),)
        res = fn(ctx, *gs)
        if not isinstance(res, tuple | list):
            res = (res,)
        if len(res) != len(args):
            raise RuntimeError(
                f"{cls.__name__}.{name} returned {len(res)} gradients for {len(args)} inputs"
            )
        return tuple(res)

    return vjp


def _function_jvp(cls: type[Function]) -> Any:
    def jvp(tans: Any, out: Any, *args: Any, ctx: FunctionCtx, result: Any) -> Any:
        filled = tuple(
            t
            if t is not None
            else (Tensor(np.zeros_like(a.data)) if isinstance(a, Tensor) else None)
            for t, a in zip(tans, args)
        )
        res = cls.jvp(ctx, *filled)  # type: ignore[attr-defined]
        return tuple(res) if isinstance(res, list) else res

    return jvp
