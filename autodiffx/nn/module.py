"""``Module`` and ``Parameter``: PyTorch's container semantics on autodiffx Tensors."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping
from types import ModuleType
from typing import Any, NamedTuple

import numpy as np

from .._mode import COMPILE, STATE, no_grad
from .._tensor import Tensor, bump_version
from .._xp import ADOPTED, adopt, backend, cast, namespace, zeros_like

__all__ = ["Module", "Parameter"]


class Parameter(Tensor):
    """A Tensor that is a module parameter: it requires grad and is registered on assignment.

    ``Parameter(data, requires_grad=True)`` wraps the values of ``data`` (a Tensor's
    array is shared, as PyTorch's ``nn.Parameter``; anything else goes through
    ``numpy.asarray``). Operations on a Parameter return plain Tensors.

    Parameters
    ----------
    data : Tensor or array_like
        The values (floating point or complex to require grad).
    requires_grad : bool, optional
        Default True.

    Examples
    --------
    >>> import autodiffx as ad
    >>> w = ad.nn.Parameter([1.0, 2.0])
    >>> w
    Parameter containing:
    tensor([1., 2.], requires_grad=True)
    >>> (w * 3).sum().backward()
    >>> w.grad
    tensor([3., 3.])
    """

    __slots__ = ()

    def __init__(self, data: Any = None, requires_grad: bool = True) -> None:
        if data is None:
            data = np.empty(0)
        super().__init__(data, requires_grad=requires_grad)

    def __repr__(self) -> str:
        return "Parameter containing:\n" + super().__repr__()

    def __reduce_ex__(self, protocol: Any) -> Any:
        return (_rebuild_parameter, (self.data, self.requires_grad))

    def __deepcopy__(self, memo: dict[int, Any]) -> Parameter:
        p = Parameter(self.data.copy(), requires_grad=self.requires_grad)
        if self.grad is not None:
            p.grad = Tensor(self.grad.data.copy())
        memo[id(self)] = p
        return p


def _rebuild_parameter(data: np.ndarray, requires_grad: bool) -> Parameter:
    return Parameter(data, requires_grad=requires_grad)


class _IncompatibleKeys(NamedTuple):
    missing_keys: list[str]
    unexpected_keys: list[str]

    def __repr__(self) -> str:
        if not self.missing_keys and not self.unexpected_keys:
            return "<All keys matched successfully>"
        return (
            f"_IncompatibleKeys(missing_keys={self.missing_keys}, "
            f"unexpected_keys={self.unexpected_keys})"
        )


def _as_array(v: Any) -> np.ndarray | None:
    if isinstance(v, Tensor):
        return v.data
    if isinstance(v, np.ndarray | np.generic | int | float | complex | bool):
        return np.asarray(v)
    return None


def _moved(a: Any, ns: Any, target: str) -> Any:
    """A copy of array ``a`` in namespace ``ns`` (whose arrays' backend name is ``target``,
    ``""`` for NumPy); ``a`` itself when it is one already."""
    lib = backend(a)
    if lib == target:
        return a
    if lib == "dask":
        raise TypeError(
            "Module.to: a parameter or buffer is a lazy Dask array; compute it first "
            "(ad.compute) or keep the parameters NumPy arrays (docs/backends.md)"
        )
    if lib:  # to NumPy first (CuPy: a copy from the GPU; CPU libraries: through DLPack)
        a = a.get() if lib == "cupy" else np.array(np.from_dlpack(a), copy=True)
        if target == "":
            return a
    return adopt(ns.asarray(a, copy=True))


def _holds_modules(value: Any) -> bool:
    """Whether a list, tuple or dict holds (at any depth) a Module or a Parameter."""
    items = value.values() if isinstance(value, dict) else value
    for v in items:
        if isinstance(v, Module | Parameter):
            return True
        if isinstance(v, list | tuple | dict) and _holds_modules(v):
            return True
    return False


def _refuse_container(owner: str, name: str, value: Any) -> None:
    kind = type(value).__name__
    fix = "nn.ModuleDict({...})" if isinstance(value, dict) else "nn.ModuleList([...])"
    raise TypeError(
        f"{owner}.{name}: a plain {kind} holding Modules or Parameters is not registered, so "
        "parameters(), state_dict(), train()/eval() and optimizers would silently miss what it "
        f"holds; wrap the modules in {fix}, and register loose Parameters with "
        "register_parameter(name, p) or as attributes of their own"
    )


_REGISTRIES = frozenset(("_parameters", "_buffers", "_modules"))


def _check_plain_attributes(m: Module) -> None:
    """Refuse a plain container attribute that was filled with modules after assignment.

    ``self.layers = []`` followed by ``self.layers.append(nn.Linear(...))`` passes
    ``__setattr__``; every traversal (parameters, state_dict, train, zero_grad) lands here.
    """
    for name, v in m.__dict__.items():
        if isinstance(v, list | tuple | dict) and name not in _REGISTRIES and _holds_modules(v):
            _refuse_container(type(m).__name__, name, v)


def _zero_grads(params: Iterable[Tensor], set_to_none: bool) -> None:
    """Reset the gradients of ``params`` (``Module.zero_grad`` and ``Optimizer.zero_grad``)."""
    if STATE.mode & COMPILE:  # ad.compile: replayed as a call
        STATE.compiler.effect(
            _zero_grads, [list(params), set_to_none], "zero_grad()", repeatable=True
        )
        return
    for p in params:
        g = p.grad
        if g is None:
            continue
        if set_to_none:
            p.grad = None
        elif type(g.data) is np.ndarray:
            g.zero_()
        else:  # (foreign arrays refuse in-place writes through Tensors: new zeros, same Tensor)
            g.data = zeros_like(g.data)
            bump_version(g)


# The registries that may hold a name set to None: (registry, what it holds, expected type).
_SLOTS = (
    ("_parameters", "parameter", "ad.nn.Parameter"),
    ("_modules", "child module", "ad.nn.Module"),
)


def _slot_of(value: Any) -> str | None:
    """The registry a Parameter or Module value is stored in (None for any other value)."""
    if isinstance(value, Parameter):
        return "_parameters"
    return "_modules" if isinstance(value, Module) else None


class Module:
    """Base class of every layer and model (PyTorch's ``nn.Module`` semantics).

    Assigning a :class:`Parameter` or a ``Module`` to an attribute registers it, so
    :meth:`parameters`, :meth:`state_dict`, :meth:`zero_grad`, :meth:`train` and
    :meth:`eval` see it; subclasses call ``super().__init__()`` first and define
    ``forward``. Calling the module calls ``forward``.

    Examples
    --------
    >>> import autodiffx as ad
    >>> class Affine(ad.nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.a = ad.nn.Parameter([2.0])
    ...         self.b = ad.nn.Parameter([0.5])
    ...     def forward(self, x):
    ...         return self.a * x + self.b
    >>> m = Affine()
    >>> m(ad.tensor([1.0, 2.0]))
    tensor([2.5, 4.5], grad_fn=<add>)
    >>> [name for name, _ in m.named_parameters()]
    ['a', 'b']
    """

    training: bool

    def __init__(self) -> None:
        object.__setattr__(self, "training", True)
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_non_persistent", set())
        object.__setattr__(self, "_modules", OrderedDict())

    # ----- registration ----------------------------------------------------------------
    def _registry(self, name: str) -> dict[str, Any]:
        try:
            return object.__getattribute__(self, name)
        except AttributeError:
            raise AttributeError(
                f"cannot assign parameters or modules before {type(self).__name__}."
                "__init__() calls Module.__init__() (call super().__init__() first)"
            ) from None

    def __setattr__(self, name: str, value: Any) -> None:
        d = self.__dict__
        slot = _slot_of(value)
        if slot is not None:
            registry = self._registry(slot)
            self._discard(name)
            registry[name] = value
            return
        for slot, what, expected in _SLOTS:
            if slot in d and name in d[slot]:
                if value is not None:
                    raise TypeError(
                        f"cannot assign {type(value).__name__} as {what} {name!r} "
                        f"({expected} or None expected)"
                    )
                d[slot][name] = None
                return
        if "_buffers" in d and name in d["_buffers"]:
            if value is not None and not isinstance(value, Tensor | np.ndarray):
                raise TypeError(
                    f"cannot assign {type(value).__name__} as buffer {name!r} "
                    "(Tensor, ndarray or None expected)"
                )
            d["_buffers"][name] = (
                value if value is None or isinstance(value, Tensor) else (Tensor(value))
            )
        else:
            if isinstance(value, list | tuple | dict) and _holds_modules(value):
                _refuse_container(type(self).__name__, name, value)
            object.__setattr__(self, name, value)

    def _discard(self, name: str) -> None:
        d = self.__dict__
        d.pop(name, None)
        for reg in ("_parameters", "_buffers", "_modules"):
            if reg in d:
                d[reg].pop(name, None)
        if "_non_persistent" in d:
            d["_non_persistent"].discard(name)

    def __getattr__(self, name: str) -> Any:
        d = self.__dict__
        for reg in ("_parameters", "_buffers", "_modules"):
            if reg in d and name in d[reg]:
                return d[reg][name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __delattr__(self, name: str) -> None:
        d = self.__dict__
        for reg in ("_parameters", "_buffers", "_modules"):
            if reg in d and name in d[reg]:
                del d[reg][name]
                if "_non_persistent" in d:
                    d["_non_persistent"].discard(name)
                return
        object.__delattr__(self, name)

    def __dir__(self) -> list[str]:
        extra = [*self._parameters, *self._buffers, *self._modules]
        return sorted(set(super().__dir__()) | set(extra))

    def register_parameter(self, name: str, param: Parameter | None) -> None:
        """Register ``param`` (or None, a declared but absent parameter) under ``name``.

        Examples
        --------
        >>> import autodiffx as ad
        >>> m = ad.nn.Module()
        >>> m.register_parameter("w", ad.nn.Parameter([1.0]))
        >>> list(m.state_dict())
        ['w']
        """
        if param is not None and not isinstance(param, Parameter):
            raise TypeError(f"cannot register {type(param).__name__} as parameter {name!r}")
        self._discard(name)
        self._registry("_parameters")[name] = param

    def register_buffer(self, name: str, tensor: Any, persistent: bool = True) -> None:
        """Register a non-trainable array saved in :meth:`state_dict` (if ``persistent``).

        Examples
        --------
        >>> import autodiffx as ad
        >>> m = ad.nn.Module()
        >>> m.register_buffer("running_mean", ad.zeros(3))
        >>> m.state_dict()["running_mean"]
        tensor([0., 0., 0.])
        """
        if tensor is not None and not isinstance(tensor, Tensor):
            tensor = Tensor(np.asarray(tensor))
        self._discard(name)
        self._registry("_buffers")[name] = tensor
        if not persistent:
            self._non_persistent.add(name)

    def add_module(self, name: str, module: Module | None) -> None:
        """Register a child module under ``name``.

        Examples
        --------
        >>> import autodiffx as ad
        >>> m = ad.nn.Module()
        >>> m.add_module("act", ad.nn.ReLU())
        >>> m
        Module(
          (act): ReLU()
        )
        """
        if module is not None and not isinstance(module, Module):
            raise TypeError(f"{type(module).__name__} is not a Module subclass")
        self._discard(name)
        self._registry("_modules")[name] = module

    # ----- calling -------------------------------------------------------------------------
    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """The computation; every subclass defines it."""
        raise NotImplementedError(f"{type(self).__name__} has no forward() method")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.forward(*args, **kwargs)

    # ----- traversal -----------------------------------------------------------------------
    def named_modules(
        self, memo: set[int] | None = None, prefix: str = "", remove_duplicate: bool = True
    ) -> Iterator[tuple[str, Module]]:
        """Yield ``(name, module)`` for this module and every descendant (pre-order).

        Examples
        --------
        >>> import autodiffx as ad
        >>> net = ad.nn.Sequential(ad.nn.Linear(2, 2, rng=0), ad.nn.ReLU())
        >>> [name for name, _ in net.named_modules()]
        ['', '0', '1']
        """
        if memo is None:
            memo = set()
        if remove_duplicate:
            if id(self) in memo:
                return
            memo.add(id(self))
        _check_plain_attributes(self)
        yield prefix, self
        for name, m in self._modules.items():
            if m is None:
                continue
            sub = prefix + ("." if prefix else "") + name
            yield from m.named_modules(memo, sub, remove_duplicate)

    def modules(self) -> Iterator[Module]:
        """Yield this module and every descendant.

        Examples
        --------
        >>> import autodiffx as ad
        >>> len(list(ad.nn.Sequential(ad.nn.ReLU(), ad.nn.Tanh()).modules()))
        3
        """
        for _, m in self.named_modules():
            yield m

    def named_children(self) -> Iterator[tuple[str, Module]]:
        """Yield ``(name, module)`` for the direct children.

        Examples
        --------
        >>> import autodiffx as ad
        >>> [n for n, _ in ad.nn.Sequential(ad.nn.ReLU(), ad.nn.Tanh()).named_children()]
        ['0', '1']
        """
        seen: set[int] = set()
        for name, m in self._modules.items():
            if m is not None and id(m) not in seen:
                seen.add(id(m))
                yield name, m

    def children(self) -> Iterator[Module]:
        """Yield the direct children.

        Examples
        --------
        >>> import autodiffx as ad
        >>> list(ad.nn.Sequential(ad.nn.ReLU()).children())
        [ReLU()]
        """
        for _, m in self.named_children():
            yield m

    def named_parameters(
        self, prefix: str = "", recurse: bool = True, remove_duplicate: bool = True
    ) -> Iterator[tuple[str, Parameter]]:
        """Yield ``(dotted name, parameter)``; a parameter shared by two modules appears once.

        Examples
        --------
        >>> import autodiffx as ad
        >>> [n for n, _ in ad.nn.Sequential(ad.nn.Linear(2, 3, rng=0)).named_parameters()]
        ['0.weight', '0.bias']
        """
        mods = self.named_modules(prefix=prefix) if recurse else iter([(prefix, self)])
        seen: set[int] = set()
        for mp, m in mods:
            for name, p in m._parameters.items():
                if p is None or (remove_duplicate and id(p) in seen):
                    continue
                seen.add(id(p))
                yield mp + ("." if mp else "") + name, p

    def parameters(self, recurse: bool = True) -> Iterator[Parameter]:
        """Yield every parameter (each once).

        Examples
        --------
        >>> import autodiffx as ad
        >>> [p.shape for p in ad.nn.Linear(2, 3, rng=0).parameters()]
        [(3, 2), (3,)]
        """
        for _, p in self.named_parameters(recurse=recurse):
            yield p

    def named_buffers(self, prefix: str = "", recurse: bool = True) -> Iterator[tuple[str, Tensor]]:
        """Yield ``(dotted name, buffer)``.

        Examples
        --------
        >>> import autodiffx as ad
        >>> m = ad.nn.Module()
        >>> m.register_buffer("count", ad.tensor(0))
        >>> [n for n, _ in m.named_buffers()]
        ['count']
        """
        mods = self.named_modules(prefix=prefix) if recurse else iter([(prefix, self)])
        for mp, m in mods:
            for name, b in m._buffers.items():
                if b is not None:
                    yield mp + ("." if mp else "") + name, b

    def buffers(self, recurse: bool = True) -> Iterator[Tensor]:
        """Yield every buffer.

        Examples
        --------
        >>> import autodiffx as ad
        >>> list(ad.nn.ReLU().buffers())
        []
        """
        for _, b in self.named_buffers(recurse=recurse):
            yield b

    # ----- modes and gradients ---------------------------------------------------------------
    def train(self, mode: bool = True) -> Module:
        """Set training mode (``training = mode``) here and in every descendant; return self.

        Examples
        --------
        >>> import autodiffx as ad
        >>> net = ad.nn.Sequential(ad.nn.Dropout(0.5, rng=0))
        >>> net.eval()[0].training, net.train()[0].training
        (False, True)
        """
        if not isinstance(mode, bool):
            raise ValueError("training mode is expected to be boolean")
        for m in self.modules():
            object.__setattr__(m, "training", mode)
        return self

    def eval(self) -> Module:
        """Set evaluation mode (``train(False)``); return self.

        Examples
        --------
        >>> import autodiffx as ad
        >>> ad.nn.Dropout(0.5).eval().training
        False
        """
        return self.train(False)

    def requires_grad_(self, requires_grad: bool = True) -> Module:
        """Switch ``requires_grad`` of every parameter; return self.

        Examples
        --------
        >>> import autodiffx as ad
        >>> lin = ad.nn.Linear(2, 2, rng=0).requires_grad_(False)
        >>> lin.weight.requires_grad
        False
        """
        for p in self.parameters():
            p.requires_grad_(requires_grad)
        return self

    def apply(self, fn: Any) -> Module:
        """Call ``fn`` on every descendant, then on this module (as PyTorch); return self.

        Examples
        --------
        >>> import autodiffx as ad
        >>> net = ad.nn.Sequential(ad.nn.Linear(2, 2, rng=0), ad.nn.ReLU())
        >>> seen = []
        >>> _ = net.apply(lambda m: seen.append(type(m).__name__))
        >>> seen
        ['Linear', 'ReLU', 'Sequential']
        """
        for m in self.children():
            m.apply(fn)
        fn(self)
        return self

    def to(self, *args: Any, dtype: Any = None) -> Module:
        """Cast the floating-point parameters, gradients and buffers to ``dtype``, or move
        them to another array library; return self.

        ``to(np.float32)``, ``to(dtype="float32")``; a device ``"cpu"`` is accepted and
        ignored. ``to(cupy)``, ``to(array_api_strict)`` copy every parameter, gradient and
        buffer into that library's arrays (CuPy: to the current GPU), ``to(numpy)`` back
        (docs/backends.md); the optimizers, forward and backward passes then run there.
        As PyTorch, the parameters keep their identity (an optimizer built on them stays
        valid; move the model before the optimizer's first step, whose state is made in the
        parameters' library) and integer buffers are left alone by a cast; the dtype must be
        floating point or complex, and complex values are never cast to a real dtype (that
        would drop the imaginary part: TypeError).

        Examples
        --------
        >>> import numpy as np
        >>> import autodiffx as ad
        >>> lin = ad.nn.Linear(2, 2, rng=0).to(np.float32)
        >>> lin.weight.dtype, lin.bias.dtype
        (dtype('float32'), dtype('float32'))
        >>> import array_api_strict
        >>> type(lin.to(array_api_strict).weight.data).__module__.split(".")[0]
        'array_api_strict'
        >>> type(lin.to(np).weight.data)
        <class 'numpy.ndarray'>
        """
        library = None
        for a in args:
            if isinstance(a, str) and a == "cpu":
                continue
            if isinstance(a, ModuleType):
                if library is not None:
                    raise TypeError(f"Module.to: two array libraries given ({library!r}, {a!r})")
                library = a
                continue
            if dtype is not None:
                raise TypeError(f"Module.to: two dtypes given ({dtype!r} and {a!r})")
            dtype = a
        if library is not None:
            self._move(library)
        if dtype is None:
            return self
        dt = np.dtype(dtype)
        if dt.kind not in "fc":
            raise TypeError(
                f"Module.to only accepts floating point or complex dtypes, got {dt} "
                "(integer or boolean parameters could not require grad)"
            )
        return self._cast(dt, complex_too=True)

    def _move(self, library: ModuleType) -> None:
        probe = library.asarray(0.0)
        target = backend(probe)
        if target not in ("", *ADOPTED[1:]):
            raise TypeError(
                f"Module.to({library.__name__}): the parameters can be moved to NumPy, CuPy "
                "or array-api-strict arrays only"
            )
        ns = namespace(probe) if target else np
        for t in [*self.parameters(), *self.buffers()]:
            t.data = _moved(t.data, ns, target)
            if t.grad is not None:
                t._grad = Tensor(_moved(t.grad.data, ns, target))

    def _cast(self, dt: np.dtype, complex_too: bool) -> Module:
        tensors = [*self.parameters(), *self.buffers()]
        kinds = "fc" if complex_too else "f"
        todo = [t for t in tensors if t.dtype.kind in kinds]
        for t in todo:
            if t.dtype.kind == "c" and dt.kind != "c":
                raise TypeError(
                    f"Module.to({dt}): a complex {t.dtype} parameter or buffer of shape "
                    f"{t.shape} would lose its imaginary part; cast it explicitly"
                )
        for t in todo:
            t.data = cast(t.data, dt)
            if t.grad is not None:
                t._grad = Tensor(cast(t.grad.data, dt))
        return self

    def double(self) -> Module:
        """Cast the floating-point (not complex) parameters and buffers to float64.

        Examples
        --------
        >>> import autodiffx as ad
        >>> ad.nn.Linear(2, 2, rng=0).float().double().weight.dtype
        dtype('float64')
        """
        return self._cast(np.dtype(np.float64), complex_too=False)

    def float(self) -> Module:
        """Cast the floating-point (not complex) parameters and buffers to float32.

        Examples
        --------
        >>> import autodiffx as ad
        >>> ad.nn.Linear(2, 2, rng=0).float().weight.dtype
        dtype('float32')
        """
        return self._cast(np.dtype(np.float32), complex_too=False)

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Reset the gradients of every parameter (to None, or to zeros in place).

        Examples
        --------
        >>> import autodiffx as ad
        >>> lin = ad.nn.Linear(2, 1, rng=0)
        >>> lin(ad.ones(2)).sum().backward()
        >>> lin.zero_grad()
        >>> lin.weight.grad is None
        True
        """
        _zero_grads(self.parameters(), set_to_none)

    # ----- state -------------------------------------------------------------------------------
    def state_dict(
        self, destination: Any = None, prefix: str = "", keep_vars: bool = False
    ) -> OrderedDict[str, Tensor]:
        """Parameters and persistent buffers by dotted name, in registration order.

        As PyTorch, the values are detached Tensors that SHARE memory with the parameters
        (``keep_vars=True`` returns the parameters themselves): take a snapshot with
        ``copy.deepcopy`` or write it out with ``ad.save``. Absent (None) parameters are
        skipped.

        Examples
        --------
        >>> import autodiffx as ad
        >>> sd = ad.nn.Linear(2, 3, rng=0).state_dict()
        >>> {k: v.shape for k, v in sd.items()}
        {'weight': (3, 2), 'bias': (3,)}
        """
        out: OrderedDict[str, Tensor] = OrderedDict() if destination is None else destination
        for mp, m in self.named_modules(prefix=prefix.rstrip(".")):
            dot = mp + ("." if mp else "")
            for name, p in m._parameters.items():
                if p is not None:
                    out[dot + name] = p if keep_vars else p.detach()
            for name, b in m._buffers.items():
                if b is not None and name not in m._non_persistent:
                    out[dot + name] = b if keep_vars else b.detach()
        return out

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True) -> Any:
        """Copy values from ``state_dict`` into the parameters and buffers, in place.

        Everything is validated first (names, shapes, dtypes); on any problem a
        ``RuntimeError`` lists the missing, unexpected and mismatched keys and NOTHING is
        changed. With ``strict=False`` missing and unexpected keys are allowed (and
        returned) but shape and dtype mismatches still raise. Values may be Tensors, NumPy
        arrays or numbers (what :func:`autodiffx.load` returns). The parameters keep their
        identity, so an optimizer built on them stays valid.

        Returns
        -------
        NamedTuple
            ``(missing_keys, unexpected_keys)``.

        Examples
        --------
        >>> import numpy as np
        >>> import autodiffx as ad
        >>> a, b = ad.nn.Linear(2, 3, rng=0), ad.nn.Linear(2, 3, rng=1)
        >>> a.load_state_dict(b.state_dict())
        <All keys matched successfully>
        >>> np.array_equal(a.weight, b.weight)
        True
        >>> a.load_state_dict({"weight": ad.zeros((2, 3))})
        Traceback (most recent call last):
        ...
        RuntimeError: Error(s) in loading state_dict for Linear:
            Missing key(s) in state_dict: "bias".
            size mismatch for weight: copying a param with shape (2, 3) from checkpoint, ...
        """
        if not isinstance(state_dict, Mapping):
            raise TypeError(f"expected a mapping for state_dict, got {type(state_dict).__name__}")
        own = self.state_dict(keep_vars=True)
        missing = [k for k in own if k not in state_dict]
        unexpected = [k for k in state_dict if k not in own]
        problems: list[str] = []
        updates: list[tuple[Tensor, np.ndarray]] = []
        for k, target in own.items():
            if k not in state_dict:
                continue
            arr = _as_array(state_dict[k])
            if arr is None:
                problems.append(
                    f"value for {k} is a {type(state_dict[k]).__name__}, not an array or Tensor."
                )
                continue
            if arr.shape != target.shape:
                problems.append(
                    f"size mismatch for {k}: copying a param with shape {arr.shape} from "
                    f"checkpoint, the shape in current model is {target.shape}."
                )
            elif arr.dtype != target.dtype:
                problems.append(
                    f"dtype mismatch for {k}: copying a param with dtype {arr.dtype} from "
                    f"checkpoint, the dtype in current model is {target.dtype}."
                )
            else:
                updates.append((target, arr))
        head: list[str] = []
        if strict and missing:
            head.append(
                "Missing key(s) in state_dict: " + ", ".join(f'"{k}"' for k in missing) + "."
            )
        if strict and unexpected:
            head.append(
                "Unexpected key(s) in state_dict: " + ", ".join(f'"{k}"' for k in unexpected) + "."
            )
        problems = head + problems
        if problems:
            raise RuntimeError(
                f"Error(s) in loading state_dict for {type(self).__name__}:\n\t"
                + "\n\t".join(problems)
            )
        with no_grad():
            for target, arr in updates:
                target[...] = arr
        return _IncompatibleKeys(missing, unexpected)

    # ----- printing ------------------------------------------------------------------------
    def extra_repr(self) -> str:
        """The text inside the parentheses of this module's repr (layers override it).

        Examples
        --------
        >>> import autodiffx as ad
        >>> ad.nn.LeakyReLU(0.2).extra_repr()
        'negative_slope=0.2'
        """
        return ""

    def __repr__(self) -> str:
        lines = []
        for name, m in self._modules.items():
            body = repr(m).replace("\n", "\n  ")
            lines.append(f"  ({name}): {body}")
        extra = self.extra_repr()
        if not lines:
            return f"{type(self).__name__}({extra})"
        head = f"{type(self).__name__}(" + (f"\n  {extra}" if extra else "")
        return head + "\n" + "\n".join(lines) + "\n)"
