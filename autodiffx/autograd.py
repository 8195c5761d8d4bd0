"""``ad.autograd``: gradients without touching ``.grad`` (PyTorch's ``torch.autograd.grad``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ._graph import run_backward
from ._tensor import Tensor


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
) -> tuple[Tensor | None, ...]:
    """Gradients of ``outputs`` with respect to ``inputs``, returned as a tuple.

    ``grad_outputs`` (one per output) seeds non-scalar outputs. With
    ``create_graph=True`` the returned gradients are themselves differentiable.

    Examples
    --------
    >>> import autodiffx as ad
    >>> x = ad.tensor(2.0, requires_grad=True)
    >>> (g,) = ad.autograd.grad(x ** 3, x, create_graph=True)
    >>> g, ad.autograd.grad(g, x)[0]
    (tensor(12., grad_fn=<multiply>), tensor(12.))
    """
    outs = _as_list(outputs)
    ins = _as_list(inputs)
    if grad_outputs is None:
        gos: list[Any] = [None] * len(outs)
    else:
        gos = _as_list(grad_outputs) if not isinstance(grad_outputs, Tensor) else [grad_outputs]
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
            g = np.ones_like(o.data)
        elif not isinstance(g, Tensor):
            g = np.asarray(g, dtype=o.dtype)
        if g.shape != o.shape:
            raise RuntimeError(f"grad: grad_outputs shape {g.shape} != output shape {o.shape}")
        seeds.append(g)
    for i, t in enumerate(ins):
        if not isinstance(t, Tensor) or not t.requires_grad:
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
            out.append(Tensor(np.array(g, dtype=ins[i].dtype)))
    return tuple(out)
