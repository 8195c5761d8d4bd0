"""The recorded graph's node: one application of a primitive, with edges to its inputs."""

from __future__ import annotations

from typing import Any


class Node:
    """A recorded application of a primitive (``grad_fn``); edges point to its inputs' producers.

    Made by the dispatcher; ``edges[i]`` is ``(producer, output index, shape, dtype)`` of
    argument i (the producer is a Node, or the leaf Tensor itself), or None.
    """

    __slots__ = (
        "__weakref__",
        "args",
        "datas",
        "edges",
        "hooks",
        "multi",
        "nout",
        "out",
        "out_vc",
        "outs",
        "params",
        "prim",
        "stamp",
        "where",
    )

    @property
    def name(self) -> str:
        """The primitive's name, e.g. ``"mul"``."""
        return self.prim.name

    @property
    def next_functions(self) -> tuple[Any, ...]:
        """The producers of this node's inputs (a Node, a leaf Tensor or None per input)."""
        return tuple(None if e is None else e[0] for e in self.edges)

    def __repr__(self) -> str:
        return f"<{self.prim.name} node>"
