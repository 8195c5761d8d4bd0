"""``ModuleList`` and ``ModuleDict``: registered containers of modules."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from .module import Module

__all__ = ["ModuleDict", "ModuleList"]


def _check_module(m: Any, where: str) -> Module:
    if not isinstance(m, Module):
        raise TypeError(f"{where}: {type(m).__name__} is not a Module subclass")
    return m


class ModuleList(Module):
    """A list of modules whose parameters are registered (named ``'0'``, ``'1'``, …).

    Use it instead of a plain list (which ``Module`` refuses, as its parameters would be
    missed). Supports ``len``, iteration, indexing (an int or a slice), assignment,
    ``del``, ``append``, ``extend``, ``insert`` and ``+=``.

    Examples
    --------
    >>> import autodiffx as ad
    >>> layers = ad.nn.ModuleList([ad.nn.Linear(2, 2, rng=i) for i in range(3)])
    >>> len(layers), len(list(layers.parameters()))
    (3, 6)
    >>> layers.append(ad.nn.ReLU())[-1]
    ReLU()
    """

    def __init__(self, modules: Iterable[Module] | None = None) -> None:
        super().__init__()
        if modules is not None:
            self.extend(modules)

    def _index(self, idx: int) -> int:
        n = len(self._modules)
        i = int(idx)
        if not -n <= i < n:
            raise IndexError(f"ModuleList index {idx} is out of range for length {n}")
        return i + n if i < 0 else i

    def __getitem__(self, idx: int | slice) -> Any:
        mods = list(self._modules.values())
        if isinstance(idx, slice):
            return ModuleList(mods[idx])
        return mods[self._index(idx)]

    def __setitem__(self, idx: int, module: Module) -> None:
        self._modules[str(self._index(idx))] = _check_module(module, "ModuleList[...] =")

    def __delitem__(self, idx: int | slice) -> None:
        mods = list(self._modules.values())
        if isinstance(idx, slice):
            del mods[idx]
        else:
            del mods[self._index(idx)]
        self._modules.clear()
        for i, m in enumerate(mods):
            self._modules[str(i)] = m

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[Module]:
        return iter(list(self._modules.values()))

    def __iadd__(self, modules: Iterable[Module]) -> ModuleList:
        return self.extend(modules)

    def append(self, module: Module) -> ModuleList:
        """Add ``module`` at the end; return self.

        Examples
        --------
        >>> import autodiffx as ad
        >>> len(ad.nn.ModuleList().append(ad.nn.Tanh()))
        1
        """
        self._modules[str(len(self._modules))] = _check_module(module, "ModuleList.append")
        return self

    def extend(self, modules: Iterable[Module]) -> ModuleList:
        """Append every module of ``modules``; return self.

        Examples
        --------
        >>> import autodiffx as ad
        >>> len(ad.nn.ModuleList([ad.nn.Tanh()]).extend([ad.nn.ReLU(), ad.nn.ReLU()]))
        3
        """
        if isinstance(modules, Module) and not isinstance(modules, ModuleList):
            raise TypeError("ModuleList.extend expects an iterable of modules, got a Module")
        for m in list(modules):
            self.append(m)
        return self

    def insert(self, index: int, module: Module) -> None:
        """Insert ``module`` before position ``index``.

        Examples
        --------
        >>> import autodiffx as ad
        >>> ml = ad.nn.ModuleList([ad.nn.Tanh()])
        >>> ml.insert(0, ad.nn.ReLU())
        >>> list(ml)
        [ReLU(), Tanh()]
        """
        mods = list(self._modules.values())
        mods.insert(index, _check_module(module, "ModuleList.insert"))
        self._modules.clear()
        for i, m in enumerate(mods):
            self._modules[str(i)] = m


class ModuleDict(Module):
    """A dict of modules whose parameters are registered under their keys (in order).

    Use it instead of a plain dict (which ``Module`` refuses, as its parameters would be
    missed). Supports ``len``, iteration over keys, ``in``, indexing, assignment, ``del``,
    ``keys``, ``values``, ``items``, ``update``, ``pop`` and ``clear``.

    Examples
    --------
    >>> import autodiffx as ad
    >>> heads = ad.nn.ModuleDict({"a": ad.nn.Linear(2, 1, rng=0), "b": ad.nn.Linear(2, 3, rng=1)})
    >>> [n for n, _ in heads.named_parameters()]
    ['a.weight', 'a.bias', 'b.weight', 'b.bias']
    >>> heads["b"](ad.ones(2)).shape
    (3,)
    """

    def __init__(self, modules: Mapping[str, Module] | Iterable[Any] | None = None) -> None:
        super().__init__()
        if modules is not None:
            self.update(modules)

    def _key(self, key: Any) -> str:
        if not isinstance(key, str):
            raise TypeError(f"ModuleDict keys must be strings, got {type(key).__name__}")
        if "." in key or key == "":
            raise KeyError(f"ModuleDict key {key!r} must be non-empty and contain no '.'")
        return key

    def __getitem__(self, key: str) -> Module:
        return self._modules[key]

    def __setitem__(self, key: str, module: Module) -> None:
        self.add_module(self._key(key), _check_module(module, f"ModuleDict[{key!r}] ="))

    def __delitem__(self, key: str) -> None:
        del self._modules[key]

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._modules))

    def __contains__(self, key: object) -> bool:
        return key in self._modules

    def keys(self) -> list[str]:
        """The keys, in insertion order."""
        return list(self._modules.keys())

    def values(self) -> list[Module]:
        """The modules, in insertion order."""
        return list(self._modules.values())

    def items(self) -> list[tuple[str, Module]]:
        """``(key, module)`` pairs, in insertion order."""
        return list(self._modules.items())

    def update(self, modules: Mapping[str, Module] | Iterable[Any]) -> None:
        """Add the modules of a mapping or of an iterable of ``(key, module)`` pairs.

        Examples
        --------
        >>> import autodiffx as ad
        >>> d = ad.nn.ModuleDict()
        >>> d.update([("act", ad.nn.ReLU())])
        >>> d.keys()
        ['act']
        """
        pairs = modules.items() if isinstance(modules, Mapping | ModuleDict) else modules
        for pair in pairs:
            if not isinstance(pair, tuple | list) or len(pair) != 2:
                raise TypeError("ModuleDict.update expects a mapping or (key, module) pairs")
            self[pair[0]] = pair[1]

    def pop(self, key: str) -> Module:
        """Remove ``key`` and return its module.

        Examples
        --------
        >>> import autodiffx as ad
        >>> ad.nn.ModuleDict({"act": ad.nn.ReLU()}).pop("act")
        ReLU()
        """
        return self._modules.pop(key)

    def clear(self) -> None:
        """Remove every module."""
        self._modules.clear()
