"""The ``Optimizer`` base class: parameter groups, per-parameter state, state dicts."""

from __future__ import annotations

import copy
from collections import defaultdict
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from .._mode import COMPILE, STATE, enable_grad, no_grad
from .._tensor import Tensor, bump_version
from .._xp import backend, is_array_api, item, namespace
from ..nn.module import _zero_grads

__all__ = ["Optimizer", "required"]


class _Required:
    """Sentinel for a hyper-parameter without a default."""

    def __repr__(self) -> str:
        return "<required parameter>"


required = _Required()


def _real_view(a: np.ndarray) -> np.ndarray:
    """``a`` itself when real; a complex array as a flat real view (re, im interleaved).

    An array-API array is real (``step`` refuses complex ones): returned as it is.
    """
    # NOTE: try, not a type test: free on NumPy's path; array-api-strict dtypes have no kind.
    try:
        if a.dtype.kind != "c":
            return a
    except AttributeError:
        return a
    if not a.flags.c_contiguous:
        raise ValueError("complex parameters must be C-contiguous to be optimized in place")
    return a.reshape(-1).view(a.real.dtype)


def _grad_view(p: Tensor) -> np.ndarray:
    """The gradient of ``p`` as the array the update equations use.

    For complex parameters autodiffx's gradient (JAX convention) is the conjugate of the
    steepest-ascent direction in (re, im) coordinates, so it is conjugated first; the update
    then acts on the real view, as PyTorch's ``view_as_real``.
    """
    g = p.grad.data  # type: ignore[union-attr]
    if g.dtype.kind == "c":
        return _real_view(np.ascontiguousarray(np.conj(g)))
    return g


def _foreign_grad(opt: Any, p: Tensor, g: Any) -> Any:
    """The gradient ``g`` of ``p`` (one of them not a NumPy array) for ``opt._update``: an
    array-API parameter's gradient in the parameter's library, else a TypeError that says
    what to do. Complex NumPy gradients get :func:`_grad_view` as on NumPy's path."""
    x, name = p.data, type(opt).__name__
    lib, glib = backend(x), backend(g)
    where = f"{name}.step(): a parameter of shape {p.shape}"
    if glib == "dask":
        raise _lazy(name, p)
    if lib == glib == "":  # (NumPy scalars or subclasses: NumPy's path)
        return _grad_view(p) if g.dtype.kind == "c" else g
    if lib == "dask":
        raise TypeError(
            f"{where} is a Dask array, which is immutable, and optimizers update their "
            "parameters in place: keep the parameters NumPy arrays (docs/backends.md)"
        )
    if lib == "":
        raise TypeError(
            f"{where} is a NumPy array and its .grad a {glib} array (the data's library): "
            f"put the parameters in that library too, e.g. model.to({glib}) "
            "(docs/backends.md)"
        )
    if not opt._array_api:
        raise TypeError(
            f"{where} is a {lib} array; {name} updates NumPy parameters only (SGD, Adam, "
            "AdamW, RMSprop, Adagrad and SteepestDescent also update array-API arrays): "
            "move the parameters to NumPy, e.g. model.to(numpy) (docs/backends.md)"
        )
    if p.dtype.kind == "c":
        raise TypeError(
            f"{where} is a complex {p.dtype} {lib} array; the optimizers update complex "
            "parameters (through a real view) on NumPy arrays only: optimize the real and "
            "imaginary parts as two real parameters, or use NumPy arrays (docs/backends.md)"
        )
    if glib == "":  # (a gradient assigned by hand: converted as the engine converts operands)
        return namespace(x).asarray(g, device=x.device)
    if glib != lib:
        raise TypeError(f"{where} is a {lib} array and its .grad a {glib} array")
    return g


def _lazy(name: str, p: Tensor) -> TypeError:
    return TypeError(
        f"{name}.step(): the .grad of a parameter of shape {p.shape} is a lazy Dask array; "
        "evaluate the gradients first and assign them, e.g. "
        "loss, w.grad = ad.compute(loss, w.grad) (docs/backends.md)"
    )


def _python_numbers(group: dict[str, Any]) -> dict[str, Any]:
    """``group``'s hyper-parameters with NumPy scalars made Python numbers (for array-API
    arrays ``a``, ``np.float64(0.1) * a`` would be a NumPy array); ``params`` left out."""
    return {
        k: tuple(_number(u) for u in v) if isinstance(v, tuple) else _number(v)
        for k, v in group.items()
        if k != "params"
    }


def _number(v: Any) -> Any:
    return v.item() if isinstance(v, np.generic) else v


def _scalar(v: Any) -> float:
    """A loss or metric (number, size-1 array or Tensor) as a Python float."""
    a = v.data if isinstance(v, Tensor) else v
    if is_array_api(a):  # (CuPy, array-api-strict: read in their library)
        if a.size != 1:
            raise ValueError(f"expected a scalar loss or metric, got shape {a.shape}")
        return float(item(a))
    a = np.asarray(a)
    if a.size != 1:
        raise ValueError(f"expected a scalar loss or metric, got shape {a.shape}")
    return float(a.reshape(()))


# Hyper-parameters checked by every optimizer that takes them (PyTorch's order and messages).
_CHECKED = (
    "lr",
    "eps",
    "momentum",
    "betas",
    "weight_decay",
    "alpha",
    "lr_decay",
    "initial_accumulator_value",
)
_CALLED = {"lr": "learning rate", "eps": "epsilon value"}


def _hyperparameters(args: Mapping[str, Any]) -> dict[str, Any]:
    """A constructor's ``locals()`` as the optimizer's ``defaults``, each value validated.

    ``self``, ``params`` and ``__class__`` are dropped; the order is the signature's.
    ``betas`` entries must lie in [0, 1), the other names in ``_CHECKED`` be >= 0: an invalid
    one raises ``ValueError`` (``Invalid learning rate: -1``, as PyTorch).
    """
    # NOTE: locals() so that each constructor lists its hyper-parameters once (its signature).
    defaults = {k: v for k, v in args.items() if k not in ("self", "params", "__class__")}
    for name in _CHECKED:
        value = defaults.get(name, 0)
        if name == "betas":
            for i, beta in enumerate(value or ()):
                if not 0 <= beta < 1:
                    raise ValueError(f"Invalid beta parameter at index {i}: {beta}")
        elif not value >= 0:
            raise ValueError(f"Invalid {_CALLED.get(name, name + ' value')}: {value}")
    return defaults


def _bump(p: Tensor) -> None:
    """Record an in-place change of ``p`` (its version counter guards saved values)."""
    bump_version(p)


class Optimizer:
    """Base class of the optimizers (PyTorch's ``torch.optim.Optimizer`` semantics).

    ``params`` is an iterable of Tensors, of ``(name, Tensor)`` pairs, or of dicts (one per
    parameter group, with a ``'params'`` entry and per-group hyper-parameters overriding
    ``defaults``). Attributes: ``param_groups`` (a list of dicts), ``state`` (per-parameter
    dicts keyed by the parameter) and ``defaults``.

    Subclasses implement ``_update(p, g, group, state)`` (called under ``no_grad`` for every
    parameter whose ``.grad`` is not None, ``g`` being the gradient array) or override
    :meth:`step`. Updates write in place into ``p.data`` and never record a graph.
    Parameters that are not NumPy arrays (CuPy, array-api-strict) are refused with a
    TypeError unless the class sets ``_array_api = True`` (the built-in first-order
    optimizers do).

    Examples
    --------
    >>> import autodiffx as ad
    >>> class PlainGD(ad.optim.Optimizer):
    ...     def __init__(self, params, lr=0.1):
    ...         super().__init__(params, dict(lr=lr))
    ...     def _update(self, p, g, group, state):
    ...         p.data -= group["lr"] * g
    >>> x = ad.tensor([1.0, -2.0], requires_grad=True)
    >>> opt = PlainGD([x])
    >>> (x * x).sum().backward()
    >>> opt.step()
    >>> x
    tensor([ 0.8, -1.6], requires_grad=True)
    """

    # State entries that have the parameter's shape (checked by load_state_dict).
    _param_shaped: frozenset[str] = frozenset()
    # Whether ``_update`` also runs on real array-API arrays (CuPy, array-api-strict): the
    # parameter's namespace for its functions, no ``out=``, Python numbers for the
    # hyper-parameters, state made in the parameter's library and on its device.
    _array_api = False

    def __init__(self, params: Any, defaults: Mapping[str, Any]) -> None:
        self.defaults = dict(defaults)
        self.state: defaultdict[Tensor, dict[str, Any]] = defaultdict(dict)
        self.param_groups: list[dict[str, Any]] = []
        if isinstance(params, Tensor):
            raise TypeError(
                "params argument given to the optimizer should be an iterable of Tensors or "
                "dicts, but got a Tensor (wrap it in a list: [x])"
            )
        if isinstance(params, set):
            raise TypeError("optimizer parameters must be an ordered iterable, not a set")
        groups = list(params)
        if not groups:
            raise ValueError("optimizer got an empty parameter list")
        if not isinstance(groups[0], Mapping):
            groups = [{"params": groups}]
        for g in groups:
            self.add_param_group(g)

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__} ("]
        for i, g in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            for k in sorted(g):
                if k not in ("params", "param_names"):
                    lines.append(f"    {k}: {g[k]}")
        return "\n".join(lines) + "\n)"

    # ----- groups ----------------------------------------------------------------------------
    def add_param_group(self, param_group: Mapping[str, Any]) -> None:
        """Add a group of parameters (a dict with ``'params'`` and optional hyper-parameters).

        Missing hyper-parameters take the optimizer's defaults; a parameter may belong to
        one group only.

        Examples
        --------
        >>> import autodiffx as ad
        >>> a, b = ad.zeros(2, requires_grad=True), ad.zeros(3, requires_grad=True)
        >>> opt = ad.optim.SGD([a], lr=0.1)
        >>> opt.add_param_group({"params": [b], "lr": 0.01})
        >>> [g["lr"] for g in opt.param_groups]
        [0.1, 0.01]
        """
        if not isinstance(param_group, Mapping):
            raise TypeError(f"param_group must be a dict, got {type(param_group).__name__}")
        group = dict(param_group)
        params = group.get("params")
        if params is None:
            raise ValueError("param_group has no 'params' entry")
        if isinstance(params, Tensor):
            params = [params]
        elif isinstance(params, set):
            raise TypeError("optimizer parameters must be an ordered iterable, not a set")
        else:
            params = list(params)
        if params and all(isinstance(p, tuple) and len(p) == 2 for p in params):
            group["param_names"] = [n for n, _ in params]
            params = [p for _, p in params]
        seen: set[int] = set()
        for p in params:
            if not isinstance(p, Tensor):
                raise TypeError(f"optimizer can only optimize Tensors, got {type(p).__name__}")
            if p.dtype.kind not in "fc":
                raise TypeError(
                    f"optimizer can only optimize floating point Tensors, got {p.dtype}"
                )
            if not p.is_leaf:
                raise ValueError("can't optimize a non-leaf Tensor (use .detach() to make a leaf)")
            if id(p) in seen:
                raise ValueError("a parameter appears twice in one parameter group")
            seen.add(id(p))
        group["params"] = params
        for k, v in self.defaults.items():
            if v is required and k not in group:
                raise ValueError(f"parameter group didn't specify a value of required option {k!r}")
            group.setdefault(k, v)
        for g in self.param_groups:
            if any(id(p) in seen for p in g["params"]):
                raise ValueError("some parameters appear in more than one parameter group")
        self.param_groups.append(group)

    # ----- stepping -----------------------------------------------------------------------------
    def zero_grad(self, set_to_none: bool = True) -> None:
        """Reset the gradient of every parameter (to None, or to zeros in place).

        Examples
        --------
        >>> import autodiffx as ad
        >>> x = ad.tensor([1.0], requires_grad=True)
        >>> opt = ad.optim.SGD([x], lr=0.1)
        >>> (x * 2).sum().backward()
        >>> opt.zero_grad()
        >>> x.grad is None
        True
        """
        _zero_grads((p for g in self.param_groups for p in g["params"]), set_to_none)

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """One update of every parameter that has a gradient; returns ``closure()`` if given.

        The closure (re-evaluating the loss and calling ``backward``) runs with gradients
        enabled before the update.

        Examples
        --------
        >>> import autodiffx as ad
        >>> x = ad.tensor([3.0], requires_grad=True)
        >>> opt = ad.optim.SGD([x], lr=0.25)
        >>> def closure():
        ...     opt.zero_grad()
        ...     loss = (x * x).sum()
        ...     loss.backward()
        ...     return loss
        >>> opt.step(closure), x
        (tensor(9., grad_fn=<sum>), tensor([1.5], requires_grad=True))
        """
        if STATE.mode & COMPILE:  # ad.compile: replayed as a call, after the closure
            if closure is not None:
                STATE.compiler.write(None, f"{type(self).__name__}.step(closure)")
            return STATE.compiler.effect(self.step, [], f"{type(self).__name__}.step()")
        loss = None
        if closure is not None:
            with enable_grad():
                loss = closure()
        state, update = self.state, self._update
        with no_grad():
            for group in self.param_groups:
                for p in group["params"]:
                    grad = p.grad
                    if grad is None:
                        continue
                    g = grad.data
                    if type(g) is np.ndarray and type(p.data) is np.ndarray:
                        update(p, _grad_view(p) if g.dtype.kind == "c" else g, group, state[p])
                    else:  # array-API arrays (CuPy, array-api-strict), or a TypeError
                        g = _foreign_grad(self, p, g)
                        update(p, g, _python_numbers(group), state[p])
                    bump_version(p)
        return loss

    def _update(self, p: Tensor, g: np.ndarray, group: dict[str, Any], state: dict) -> None:
        raise NotImplementedError(f"{type(self).__name__} does not implement step()")

    # ----- state dicts -----------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The optimizer's state in PyTorch's format.

        ``{'state': {index: {name: value}}, 'param_groups': [{..., 'params': [index, ...]}]}``
        where parameters are referred to by their position (counting through the groups).
        As PyTorch, the arrays are the optimizer's own (not copies): ``copy.deepcopy`` or
        ``ad.save`` for a snapshot.

        Examples
        --------
        >>> import autodiffx as ad
        >>> x = ad.tensor([1.0], requires_grad=True)
        >>> opt = ad.optim.SGD([x], lr=0.1, momentum=0.9)
        >>> (x * x).sum().backward()
        >>> opt.step()
        >>> opt.state_dict()["state"]
        {0: {'momentum_buffer': array([2.])}}
        """
        index: dict[int, int] = {}
        groups = []
        start = 0
        for g in self.param_groups:
            packed = {k: v for k, v in g.items() if k != "params"}
            for i, p in enumerate(g["params"], start):
                index.setdefault(id(p), i)
            packed["params"] = [index[id(p)] for p in g["params"]]
            start += len(packed["params"])
            groups.append(packed)
        state = {}
        for g in self.param_groups:
            for p in g["params"]:
                if p in self.state and index[id(p)] not in state:
                    state[index[id(p)]] = dict(self.state[p])
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Load a state from :meth:`state_dict` (or from ``ad.load`` of a saved one).

        Parameters are matched by position. Everything is validated first (group count and
        sizes, known parameter indices, hyper-parameter names, shapes of per-parameter
        arrays); on a mismatch a ``ValueError`` is raised and nothing changes. Arrays are
        copied and cast to their parameter's dtype.

        Examples
        --------
        >>> import autodiffx as ad
        >>> x = ad.tensor([1.0], requires_grad=True)
        >>> opt = ad.optim.Adam([x], lr=0.1)
        >>> (x * x).sum().backward()
        >>> opt.step()
        >>> opt2 = ad.optim.Adam([x], lr=0.5)
        >>> opt2.load_state_dict(opt.state_dict())
        >>> opt2.param_groups[0]["lr"], opt2.state[x]["step"]
        (0.1, 1)
        """
        if not isinstance(state_dict, Mapping) or not {"state", "param_groups"} <= set(state_dict):
            raise ValueError("optimizer state_dict must be a dict with 'state' and 'param_groups'")
        saved_groups = list(state_dict["param_groups"])
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(
                f"loaded state dict has {len(saved_groups)} parameter groups, the optimizer "
                f"has {len(self.param_groups)}"
            )
        id_map: dict[int, Tensor] = {}
        for i, (g, sg) in enumerate(zip(self.param_groups, saved_groups, strict=True)):
            if not isinstance(sg, Mapping) or "params" not in sg:
                raise ValueError(f"param_groups[{i}] of the loaded state dict has no 'params'")
            sparams = [int(k) for k in np.asarray(sg["params"]).reshape(-1)]
            if len(sparams) != len(g["params"]):
                raise ValueError(
                    f"loaded state dict contains a parameter group {i} of size {len(sparams)} "
                    f"that doesn't match the size of optimizer's group ({len(g['params'])})"
                )
            lacking = [k for k in self.defaults if k not in sg]
            if lacking:
                raise ValueError(
                    f"param_groups[{i}] of the loaded state dict lacks {lacking} (saved by a "
                    "different optimizer?)"
                )
            for k, p in zip(sparams, g["params"], strict=True):
                id_map[k] = p
        new_state: defaultdict[Tensor, dict[str, Any]] = defaultdict(dict)
        saved_state = state_dict["state"]
        if not isinstance(saved_state, Mapping):
            raise ValueError("the 'state' entry of an optimizer state_dict must be a dict")
        for k, v in saved_state.items():
            try:
                key = int(k)
            except (TypeError, ValueError):
                raise ValueError(f"state key {k!r} is not a parameter index") from None
            if key not in id_map:
                raise ValueError(f"state for parameter index {key}, which the optimizer lacks")
            if not isinstance(v, Mapping):
                raise ValueError(f"state of parameter {key} must be a dict")
            p = id_map[key]
            new_state[p] = self._load_param_state(p, key, v)
        for g, sg in zip(self.param_groups, saved_groups, strict=True):
            new = {k: _plain(v) for k, v in sg.items() if k != "params"}
            new["params"] = g["params"]
            g.clear()
            g.update(new)
        self.state = new_state

    def _load_param_state(self, p: Tensor, key: int, saved: Mapping[str, Any]) -> dict[str, Any]:
        out = {}
        for name, v in saved.items():
            v = _convert(v, p.dtype, cast=name != "step")
            if name in self._param_shaped and (not isinstance(v, np.ndarray) or v.shape != p.shape):
                shape = getattr(v, "shape", None)
                raise ValueError(
                    f"state {name!r} of parameter {key} has shape {shape}, the parameter has "
                    f"shape {p.shape}"
                )
            out[name] = v
        return out


def _plain(v: Any) -> Any:
    """Hyper-parameters as Python values (0-d arrays from a file become numbers)."""
    if isinstance(v, np.ndarray) and v.ndim == 0:
        return v.item()
    if isinstance(v, np.generic):
        return v.item()
    return copy.deepcopy(v)


def _convert(v: Any, dtype: np.dtype, cast: bool) -> Any:
    """A private copy of a loaded state value (arrays cast to the parameter's dtype)."""
    if isinstance(v, Tensor):
        v = v.data
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        if v.ndim == 0 and not cast:
            return v.item()
        if cast and v.dtype.kind in "fc":
            if dtype.kind != "c" and v.dtype.kind == "c":
                raise ValueError("cannot load complex optimizer state into a real parameter")
            return np.array(v, dtype=dtype, copy=True)
        return np.array(v, copy=True)
    if isinstance(v, list | tuple):
        return type(v)(_convert(x, dtype, cast) for x in v)
    if isinstance(v, Mapping):
        return {k: _convert(x, dtype, cast) for k, x in v.items()}
    return copy.deepcopy(v)
