"""Rule kinds: how a primitive differentiates (VJP, JVP, and hvp's forward and pair sweeps).

Every registry entry holds one rule-kind object, made by :func:`autodiffx._dispatch.defprim`
from the form the entry is written in:

=================  ===================================  ========================================
kind               the entry gives                      the kind derives
=================  ===================================  ========================================
``elementwise``    ``derivs=``: d out / d arg_i         VJP ``g * d_i``, JVP ``sum t_i * d_i``,
                   (``derivs2=``: their derivatives)    hvp's product rule
``linear``         ``linear=``: the transpose           JVP: the op applied to the tangents
``bilinear``       ``bilinear=``: one transpose each    JVP ``f(ta, b) + f(a, tb)``
``zero``           ``zero_deriv=True``                  no derivative (floor, sign, ...)
``general``        ``vjp=`` and ``jvp=``                (``multilinear=True``: hvp's cross terms)
``none``           nothing                              not differentiable (comparisons, argmax)
=================  ===================================  ========================================

The engines call the kind: reverse mode calls ``p.vjp`` and forward mode ``p.jvp`` (closures
the kind installs), ``ad.hvp``'s sweeps call :meth:`Rule.push` and :meth:`Rule.pair`. No
engine reads a kind's fields.

Batching: the engines pass ``nb``, the number of leading batch axes of the cotangent (jacrev's
batched cotangents) or of the tangents (jacfwd's), as the last argument of ``p.vjp`` and
``p.jvp``. Most rules never see it (elementwise rules broadcast over those axes). A rule that
reshapes, transposes or indexes them declares a keyword-only parameter ``nb``
(:func:`takes_nb`, read once when the entry is made) and the kind passes ``nb=`` to it alone.
Broadcasting is never a rule's concern: the engines fit every cotangent and tangent to its
argument (:func:`autodiffx._broadcast.fit`).

This module is below the Tensor and the dispatcher: it imports neither. Rules receive the
primitive (its ``batched_apply(nb, args, params)`` applies it to batched tangents) and the
values they work on.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

Binder = Callable[[Any, Any, Any], Any]


class Rule:
    """A rule kind: ``install`` sets the primitive's ``vjp``/``jvp``; ``push`` and ``pair``
    serve ``ad.hvp``'s sweeps on raw arrays (see :mod:`autodiffx._hvp`)."""

    name = "general"
    #: Rules read Tensors (custom ``ad.Function`` rules): hvp then runs on dual Tensors.
    needs_tensors = False
    #: Linear in each differentiable argument separately (the VJP for argument i reads only
    #: the other arguments' values; ``defprim(multilinear=True)`` for general rules): hvp
    #: then forms the tangent of a cotangent flowing through it without its dead primal.
    multilinear = False

    def install(self, p: Any) -> None:
        """Set ``p.vjp``, ``p.jvp`` and what the node must save for them."""
        raise NotImplementedError

    def push(self, node: Any, sweep: Any) -> Any:
        """The tangent of ``node``'s output(s) on raw arrays (None: no tangent)."""
        r = [sweep.formed(e) for e in node.edges]
        if all(t is None for t in r):
            return None
        p = node.prim
        if p.jvp is None:
            raise TypeError(f"'{p.name}' has no forward-mode (JVP) rule, which ad.hvp needs")
        return p.jvp(tuple(r), node.out, node.datas, node.params)

    def pair(self, node: Any, g: Any, gt: Any, sweep: Any) -> tuple[Sequence[Any], Sequence[Any]]:
        """Per edge of ``node``: the cotangent and its tangent (raw arrays or None), from the
        output cotangent ``g`` and its tangent ``gt``. The cotangent is formed only for edges
        into other nodes (a target of hvp needs its tangent alone)."""
        return sweep.dual(node, g, gt, [sweep.edge(e) for e in node.edges])


class NotDifferentiable(Rule):
    """Integer or boolean results (comparisons, argmax): nothing is recorded or carried."""

    name = "none"

    def install(self, p: Any) -> None:
        p.vjp = p.jvp = None

    def push(self, node: Any, sweep: Any) -> Any:
        return None

    def pair(self, node: Any, g: Any, gt: Any, sweep: Any) -> tuple[Sequence[Any], Sequence[Any]]:
        none = (None,) * len(node.edges)
        return none, none


class Zero(NotDifferentiable):
    """Piecewise constant (floor, sign, round): the derivative is zero where it exists."""

    name = "zero"

    def install(self, p: Any) -> None:
        p.save_args = False
        p.shapes = False
        p.vjp = lambda needs, g, out, args, params, nb=0: (None,) * len(args)
        p.jvp = lambda tans, out, args, params, nb=0: None


class General(Rule):
    """VJP and JVP written out (``vjp(needs, g, out, *args, **params)``, ``jvp(tans, out,
    *args, **params)``; each gets ``nb=`` too if it declares it)."""

    def __init__(
        self,
        vjp: Callable[..., Any],
        jvp: Callable[..., Any] | None,
        *,
        multilinear: bool = False,
        needs_tensors: bool = False,
    ) -> None:
        self.vjp, self.jvp = vjp, jvp
        self.multilinear = multilinear
        self.needs_tensors = needs_tensors
        self.vjp_nb, self.jvp_nb = takes_nb(vjp), jvp is not None and takes_nb(jvp)

    def install(self, p: Any) -> None:
        vjp, jvp = self.vjp, self.jvp
        if self.vjp_nb:
            p.vjp = lambda needs, g, out, args, params, nb=0: vjp(
                needs, g, out, *args, nb=nb, **params
            )
        else:
            p.vjp = lambda needs, g, out, args, params, nb=0: vjp(needs, g, out, *args, **params)
        if jvp is None:
            p.jvp = None
        elif self.jvp_nb:
            p.jvp = lambda tans, out, args, params, nb=0: jvp(tans, out, *args, nb=nb, **params)
        else:
            p.jvp = lambda tans, out, args, params, nb=0: jvp(tans, out, *args, **params)

    def pair(self, node: Any, g: Any, gt: Any, sweep: Any) -> tuple[Sequence[Any], Sequence[Any]]:
        if self.multilinear and not node.multi:
            return _multilinear_pair(node, g, gt, sweep)
        return Rule.pair(self, node, g, gt, sweep)


class Linear(Rule):
    """Linear in its differentiable arguments: the transpose is the VJP; the JVP is the op
    itself applied to the tangents (zeros for arguments without one)."""

    name = "linear"
    multilinear = True

    def __init__(self, transpose: Callable[..., Any] | Sequence[Callable[..., Any] | None]) -> None:
        self.transpose = transpose
        ts = (transpose,) if callable(transpose) else tuple(transpose)
        self.nb = any(t is not None and takes_nb(t) for t in ts)  # (then all get ``nb=``)

    def install(self, p: Any) -> None:
        p.save_args = False
        p.vjp = _transpose_vjp(self.transpose, self.nb)
        nd = p.nondiff

        def jvp(tans: tuple[Any, ...], out: Any, args: Any, params: Any, nb: int = 0) -> Any:
            bshape = next(t.shape[:nb] for t in tans if t is not None) if nb else ()
            filled = []
            for i, (a, t) in enumerate(zip(args, tans)):
                if i not in nd and t is None:
                    t = _zeros_like(a, bshape)
                    if nb and p.broadcasting:  # aligned like the padded tangents
                        t = pad_batched(t, nb, out.ndim)
                filled.append(a if i in nd else t)
            return p.batched_apply(nb, filled, params)

        p.jvp = jvp

    def pair(self, node: Any, g: Any, gt: Any, sweep: Any) -> tuple[Sequence[Any], Sequence[Any]]:
        p, edges = node.prim, node.edges
        needs_c, any_c = _cotangent_edges(edges, sweep)
        none = (None,) * len(edges)
        cs = p.vjp(needs_c, g, node.out, node.datas, node.params) if any_c else none
        cts = p.vjp(edges, gt, node.out, node.datas, node.params) if gt is not None else none
        return cs, cts


class Bilinear(Rule):
    """Linear in each of two arguments (``multiply``, ``matmul``): one transpose each."""

    name = "bilinear"
    multilinear = True

    def __init__(self, transposes: Sequence[Callable[..., Any]]) -> None:
        self.ta, self.tb = transposes
        self.nb = takes_nb(self.ta) or takes_nb(self.tb)  # (then both get ``nb=``)

    def install(self, p: Any) -> None:
        ta, tb = self.ta, self.tb
        if self.nb:
            ta, tb = _with_nb(ta), _with_nb(tb)

            def vjp(needs: Any, g: Any, out: Any, args: Any, params: Any, nb: int = 0) -> Any:
                a, b = args
                return [
                    ta(g, a, b, nb=nb, **params) if needs[0] else None,
                    tb(g, a, b, nb=nb, **params) if needs[1] else None,
                ]

        else:

            def vjp(needs: Any, g: Any, out: Any, args: Any, params: Any, nb: int = 0) -> Any:
                a, b = args
                return [
                    ta(g, a, b, **params) if needs[0] else None,
                    tb(g, a, b, **params) if needs[1] else None,
                ]

        def jvp(tans: tuple[Any, ...], out: Any, args: Any, params: Any, nb: int = 0) -> Any:
            a, b = args
            ta_, tb_ = tans
            acc = None if ta_ is None else p.batched_apply(nb, (ta_, b), params)
            if tb_ is not None:
                term = p.batched_apply(nb, (a, tb_), params)
                acc = term if acc is None else acc + term
            return acc

        p.vjp, p.jvp = vjp, jvp

    def pair(self, node: Any, g: Any, gt: Any, sweep: Any) -> tuple[Sequence[Any], Sequence[Any]]:
        return _multilinear_pair(node, g, gt, sweep)


class Elementwise(Rule):
    """One partial derivative per argument, ``d_i(args, out)``, elementwise with NumPy
    broadcasting. ``derivs2`` (optional) gives each ``d_i``'s derivative in argument i,
    written with the same names, ``out`` and ``d`` (the first derivative's value): hvp's
    product rule then runs on raw arrays; without it, on dual numbers (the same values,
    more slowly)."""

    name = "elementwise"

    def __init__(
        self,
        derivs: Sequence[Callable[..., Any] | None],
        argnames: Sequence[str],
        derivs2: Sequence[Callable[..., Any] | None] | None = None,
    ) -> None:
        self.derivs: list[Binder | None] = []
        self.const: list[bool] = []  # d_i reads neither the arguments nor the output
        self.save_args = self.save_out = False
        for d in derivs:
            if d is None:
                self.derivs.append(None)
                self.const.append(True)
                continue
            b, ua, uo = _binder(d, argnames)
            self.derivs.append(b)
            self.const.append(not (ua or uo))
            self.save_args |= ua
            self.save_out |= uo
        # NOTE: second derivatives are read only by hvp, whose recording keeps every argument
        # and output; they must not make a plain backward pass keep more (W3 saves no `out`).
        # A second derivative may also name ``d``: the first derivative's value.
        d2 = [None if d is None else _binder(d, (*argnames, "d"))[0] for d in derivs2 or ()]
        self.derivs2: list[Binder | None] = d2 + [None] * (len(derivs) - len(d2))

    def install(self, p: Any) -> None:
        p.save_args, p.save_out = self.save_args, self.save_out
        p.shapes = False  # the engine's edges carry the shapes; derivatives never read Metas
        bound = self.derivs
        n = len(bound)
        if n == 1:
            d0 = bound[0]
            assert d0 is not None

            def vjp(needs: Any, g: Any, out: Any, args: Any, params: Any, nb: int = 0) -> Any:
                return (g * d0(args, out, params),)

            def jvp(tans: tuple[Any, ...], out: Any, args: Any, params: Any, nb: int = 0) -> Any:
                return tans[0] * d0(args, out, params)

        else:

            def vjp(needs: Any, g: Any, out: Any, args: Any, params: Any, nb: int = 0) -> Any:
                return [
                    g * d(args, out, params) if needs[i] and d is not None else None
                    for i, d in enumerate(bound)
                ]

            def jvp(tans: tuple[Any, ...], out: Any, args: Any, params: Any, nb: int = 0) -> Any:
                acc = None
                for t, d in zip(tans, bound):
                    if t is not None and d is not None:
                        term = t * d(args, out, params)
                        acc = term if acc is None else acc + term
                return acc

        p.vjp, p.jvp = vjp, jvp

    def push(self, node: Any, sweep: Any) -> Any:
        """``sum t_i d_i``; the derivatives are kept (``sweep.derivs``) for the product rule of
        the backward sweep."""
        if node.multi:
            return Rule.push(self, node, sweep)
        edges = node.edges
        datas, out, params = node.datas, node.out, node.params
        if len(edges) == 1:  # (most nodes: the loop below, unrolled)
            t, d = sweep.formed(edges[0]), self.derivs[0]
            if t is None or d is None:
                return None
            d = d(datas, out, params)
            sweep.derivs[node] = [d]
            return t * d
        ds: list[Any] = []
        t = None
        for e, d in zip(node.edges, self.derivs):
            ti = sweep.formed(e)
            if ti is None or d is None:
                ds.append(None)
                continue
            d = d(datas, out, params)
            ds.append(d)
            t = ti * d if t is None else t + ti * d
        if t is not None:
            sweep.derivs[node] = ds
        return t

    def pair(self, node: Any, g: Any, gt: Any, sweep: Any) -> tuple[Sequence[Any], Sequence[Any]]:
        """The cotangent ``g d_i`` and its tangent ``gt d_i + g d_i' t_i`` (product rule); on
        dual numbers when ``d_i'`` is not given or another argument carries a tangent."""
        if node.multi:
            return Rule.pair(self, node, g, gt, sweep)
        edges = node.edges
        if len(edges) == 1:
            return self._pair1(node, g, gt, sweep)
        live = [i for i, e in enumerate(edges) if e is not None and self.derivs[i] is not None]
        # The arguments' tangents are formed only if a derivative depends on a value.
        varying = any(not self.const[i] for i in live)
        tans = [sweep.edge(edges[i]) if varying else None for i in range(len(edges))]
        with_tan = [i for i in live if tans[i] is not None]
        datas, out, params = node.datas, node.out, node.params
        ds = sweep.derivs.get(node)
        cs: list[Any] = [None] * len(edges)
        cts: list[Any] = [None] * len(edges)
        for i in live:
            d = None if ds is None else ds[i]
            if d is None:
                d = self.derivs[i](datas, out, params)  # type: ignore[misc]
            if sweep.into_node(edges[i]):
                cs[i] = g * d
            ct = None if gt is None else gt * d
            if with_tan and not self.const[i]:
                d2 = self.derivs2[i]
                if d2 is None or with_tan != [i]:
                    return sweep.dual(node, g, gt, [sweep.edge(e) for e in edges])
                term = g * d2([*datas, d], out, params) * tans[i]
                ct = term if ct is None else ct + term
            cts[i] = ct
        return cs, cts

    def _pair1(self, node: Any, g: Any, gt: Any, sweep: Any) -> tuple[Sequence[Any], Sequence[Any]]:
        """:meth:`pair` for one argument (most nodes), unrolled."""
        d_i = self.derivs[0]
        if d_i is None:
            return (None,), (None,)
        ds = sweep.derivs.get(node)
        d = ds[0] if ds is not None else d_i(node.datas, node.out, node.params)
        ct = None if gt is None else gt * d
        e = node.edges[0]
        if not self.const[0]:
            t = sweep.edge(e)
            if t is not None:  # the product rule: g d' t
                d2 = self.derivs2[0]
                if d2 is None:
                    return sweep.dual(node, g, gt, [t])
                term = g * d2((*node.datas, d), node.out, node.params) * t
                ct = term if ct is None else ct + term
        return (g * d if sweep.into_node(e) else None,), (ct,)


def _multilinear_pair(
    node: Any, g: Any, gt: Any, sweep: Any
) -> tuple[Sequence[Any], Sequence[Any]]:
    """hvp's pair rule for a rule linear in each argument (T_i its VJP for argument i):
    d/de T_i(g; a_1..a_n) = T_i(gt; a) + sum over j != i of T_i(g; a with a_j -> t_j)."""
    if node.multi:
        return Rule.pair(Rule(), node, g, gt, sweep)
    p, edges = node.prim, node.edges
    datas, out, params = node.datas, node.out, node.params
    needs_c, any_c = _cotangent_edges(edges, sweep)
    none = (None,) * len(edges)
    cs = p.vjp(needs_c, g, out, datas, params) if any_c else none
    cts = p.vjp(edges, gt, out, datas, params) if gt is not None else none
    if sum(e is not None for e in edges) == 1:  # (the cross terms pair two arguments)
        return cs, cts
    cts = [None if c is None else sweep.fit(c, e) for c, e in zip(cts, edges)]
    for j, e_j in enumerate(edges):
        tj = sweep.edge(e_j)
        if tj is None:
            continue
        needs_j = [None if i == j else e for i, e in enumerate(edges)]
        if any(needs_j):
            swapped = list(datas)
            swapped[j] = tj
            for i, c in enumerate(p.vjp(needs_j, g, out, swapped, params)):
                if c is not None:
                    c = sweep.fit(c, edges[i])
                    cts[i] = c if cts[i] is None else cts[i] + c
    return cs, cts


def _cotangent_edges(edges: Sequence[Any], sweep: Any) -> tuple[Sequence[Any], bool]:
    """The edges whose cotangent hvp forms (those into nodes: a target needs only its
    tangent), and whether there is one."""
    into = [e if e is not None and sweep.into_node(e) else None for e in edges]
    return into, any(e is not None for e in into)


def _transpose_vjp(transpose: Any, with_nb: bool) -> Callable[..., Any]:
    """The VJP of a linear entry from its transpose (one callable, or one per argument);
    ``with_nb``: a transpose declares ``nb``."""
    if callable(transpose):
        if with_nb:
            return lambda needs, g, out, args, params, nb=0: transpose(g, *args, nb=nb, **params)
        return lambda needs, g, out, args, params, nb=0: transpose(g, *args, **params)
    ts = tuple(transpose)
    if len(ts) == 2 and not with_nb:
        t0, t1 = ts  # (add, subtract: the hot path)

        def vjp2(needs: Any, g: Any, out: Any, args: Any, params: Any, nb: int = 0) -> Any:
            return (
                t0(g, *args, **params) if needs[0] and t0 is not None else None,
                t1(g, *args, **params) if needs[1] and t1 is not None else None,
            )

        return vjp2
    ts = tuple(None if t is None else _with_nb(t) for t in ts)

    def vjp(needs: Any, g: Any, out: Any, args: Any, params: Any, nb: int = 0) -> Any:
        return [
            t(g, *args, nb=nb, **params) if needs[i] and t is not None else None
            for i, t in enumerate(ts)
        ]

    return vjp


def takes_nb(fn: Callable[..., Any]) -> bool:
    """Whether a rule declares the keyword-only parameter ``nb``: the number of leading batch
    axes of the cotangent (VJP, transpose) or tangents (JVP) it receives. Read once, when the
    entry is made; the kind then passes ``nb=`` to this rule alone."""
    try:
        q = inspect.signature(fn).parameters.get("nb")
    except (TypeError, ValueError):  # (builtins without a signature)
        return False
    return q is not None and q.kind is q.KEYWORD_ONLY


def _with_nb(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` callable with ``nb=`` whether or not it declares it (kinds with several rules)."""
    if takes_nb(fn):
        return fn
    return lambda *args, nb, **params: fn(*args, **params)


def _zeros_like(a: Any, bshape: tuple[int, ...] = ()) -> Any:
    """The zero tangent of argument ``a`` (with batch axes ``bshape``)."""
    shape = getattr(a, "shape", None)
    if not bshape and shape is None:
        return 0.0
    return np.zeros(bshape + np.shape(a), getattr(a, "dtype", np.float64))


def pad_batched(t: Any, nb: int, ndim: int) -> Any:
    """A batched tangent with size-1 axes after the ``nb`` batch axes up to rank ``ndim``."""
    # NOTE: batch axes lead, so a tangent of a lower-rank operand must be padded before NumPy
    # broadcasting aligns shapes from the right.
    pad = ndim - (t.ndim - nb)
    if pad <= 0:
        return t
    return t.reshape(t.shape[:nb] + (1,) * pad + t.shape[nb:])


def _binder(fn: Callable[..., Any], argnames: Sequence[str]) -> tuple[Binder, bool, bool]:
    """Bind a derivative written with argument names (and ``out``) to ``(args, out, params)``;
    also return whether it reads the arguments and whether it reads the output."""
    sig = inspect.signature(fn).parameters.values()
    names = [q.name for q in sig if q.kind in (q.POSITIONAL_ONLY, q.POSITIONAL_OR_KEYWORD)]
    takes_params = any(q.kind in (q.KEYWORD_ONLY, q.VAR_KEYWORD) for q in sig)
    pos = []
    for n in names:
        if n == "out":
            pos.append(-1)
        elif n in argnames:
            pos.append(argnames.index(n))
        else:
            raise TypeError(f"derivative parameter {n!r} is not one of {(*argnames, 'out')}")
    uses = (any(q >= 0 for q in pos), -1 in pos)
    if takes_params:
        return (
            lambda args, out, params: fn(*[out if q < 0 else args[q] for q in pos], **params)
        ), *uses
    return _SPECIALISED.get(tuple(pos), _generic)(fn, pos), *uses


def _generic(fn: Callable[..., Any], pos: list[int]) -> Binder:
    return lambda args, out, params: fn(*[out if q < 0 else args[q] for q in pos])


# Specialised closures: one call less per rule on the hot path.
_SPECIALISED: dict[tuple[int, ...], Callable[[Callable[..., Any], list[int]], Binder]] = {
    (-1,): lambda fn, pos: lambda args, out, params: fn(out),
    (0,): lambda fn, pos: lambda args, out, params: fn(args[0]),
    (1,): lambda fn, pos: lambda args, out, params: fn(args[1]),
    (0, -1): lambda fn, pos: lambda args, out, params: fn(args[0], out),
    (1, -1): lambda fn, pos: lambda args, out, params: fn(args[1], out),
    (0, 1): lambda fn, pos: lambda args, out, params: fn(args[0], args[1]),
    (-1, 1): lambda fn, pos: lambda args, out, params: fn(out, args[1]),  # (out, d) of a d2
}
