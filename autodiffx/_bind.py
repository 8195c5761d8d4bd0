"""The one upward binding: the Tensor's operators and methods get the names they call above.

The core is layered (docs/architecture.md): a module imports only lower layers, and
``tests/test_layers.py`` checks it. The Tensor sits low, because everything builds and reads
Tensors, yet its operators run the dispatcher and its methods are the ops, ``backward`` is
the reverse engine and ``x += y`` the in-place machinery. Rather than import those (a cycle),
``autodiffx._tensor`` declares the names it calls and this module, which the package imports
first, sets them once. (autograd and JAX bind their array methods after the fact in the same
spirit; here the methods stay in the class body, typed and documented, and only the names
they call are bound.)
"""

from __future__ import annotations

from . import _graph, _inplace, _registry, _tensor, ops

_tensor.bind(
    _apply=_registry.apply,
    _apply2=_registry.apply2,
    _backward=_graph.run_backward,
    _write=_inplace.inplace,
    _write_item=_inplace.setitem,
    _F=ops,
    # the registry's own dicts (not copies): entries registered later dispatch too
    _REGISTRY=_registry.REGISTRY,
    _UFUNCS=_registry.UFUNC_MAP,
    _FUNCTIONS=_registry.FUNCTION_MAP,
    _REDUCE=ops.UFUNC_REDUCE,
)
