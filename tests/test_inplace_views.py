"""In-place writes through views (issue 11, item 2): a base and its views share one history.

An in-place op on a view rewrites its base's history (PyTorch's CopySlices), and a view of a
base modified in place reads the base's new history, in reverse mode, forward mode and
second order. Every check compares with the same program written without in-place ops.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from op_specs import ROWS
from strategies import Const

import autodiffx as ad
from autodiffx import REGISTRY


def _h(x):
    return x * 1.0


# ----- the issue's four programs, in each mode -------------------------------------------
def _slice_times_3(x):
    h = _h(x)
    v = h[0:1]
    v *= 3
    return h


def _reshape_times_3(x):
    h = _h(x)
    r = h.reshape(2, 1)
    r *= 3
    return h


def _base_times_3_seen_by_view(x):
    h = _h(x)
    v = h[0:1]
    h *= 3
    return v


ISSUE = [
    (_slice_times_3, lambda x: ad.stack([3 * x[0], x[1]])),
    (_reshape_times_3, lambda x: 3 * x),
    (_base_times_3_seen_by_view, lambda x: 3 * x[0:1]),
]


@pytest.mark.parametrize(("f", "ref"), ISSUE, ids=lambda f: getattr(f, "__name__", "ref"))
def test_issue_programs_backward(f, ref):
    x = ad.tensor([1.0, 2.0], requires_grad=True)
    out = f(x)
    (out * out).sum().backward()
    x2 = ad.tensor([1.0, 2.0], requires_grad=True)
    want = ref(x2)
    (want * want).sum().backward()
    np.testing.assert_allclose(out.data, want.data)
    np.testing.assert_allclose(x.grad.data, x2.grad.data)


def test_issue_examples_give_the_right_numbers():
    x = ad.tensor([1.0, 2.0], requires_grad=True)
    _slice_times_3(x).sum().backward()
    np.testing.assert_array_equal(x.grad.data, [3.0, 1.0])
    x.grad = None
    _reshape_times_3(x).sum().backward()
    np.testing.assert_array_equal(x.grad.data, [3.0, 3.0])
    x.grad = None
    _base_times_3_seen_by_view(x).sum().backward()
    np.testing.assert_array_equal(x.grad.data, [3.0, 0.0])


def test_setitem_on_a_view_keeps_the_value_gradient():
    x = ad.tensor([1.0, 2.0], requires_grad=True)
    y = ad.tensor(5.0, requires_grad=True)
    h = _h(x)
    v = h[0:1]
    v[0] = y * 2
    h.sum().backward()
    np.testing.assert_array_equal(h.data, [10.0, 2.0])
    np.testing.assert_array_equal(x.grad.data, [0.0, 1.0])
    assert y.grad.item() == 2.0


@pytest.mark.parametrize(("f", "ref"), ISSUE, ids=lambda f: getattr(f, "__name__", "ref"))
def test_issue_programs_forward_and_second_order(f, ref):
    x0, t = np.array([1.0, 2.0]), np.array([0.5, -1.5])

    def loss(fn):
        return lambda x: (fn(x) ** 3).sum()

    got, want = loss(f), loss(ref)
    for a, b in zip(ad.jvp(got, (x0,), (t,)), ad.jvp(want, (x0,), (t,))):
        np.testing.assert_allclose(a.data, b.data)
    np.testing.assert_allclose(ad.hessian(got)(x0).data, ad.hessian(want)(x0).data)
    x = ad.tensor(x0, requires_grad=True)
    (g,) = ad.autograd.grad(loss(f)(x), x, create_graph=True)
    (gg,) = ad.autograd.grad((g * g).sum(), x)
    x2 = ad.tensor(x0, requires_grad=True)
    (g2,) = ad.autograd.grad(loss(ref)(x2), x2, create_graph=True)
    (gg2,) = ad.autograd.grad((g2 * g2).sum(), x2)
    np.testing.assert_allclose(g.data, g2.data)
    np.testing.assert_allclose(gg.data, gg2.data)


def test_setitem_on_a_view_in_forward_mode():
    def f(x, y):
        h = _h(x)
        v = h[0:1]
        v[0] = y * 2
        return h

    _, t = ad.jvp(f, (np.array([1.0, 2.0]), np.array(5.0)), (np.array([1.0, 1.0]), np.array(1.0)))
    np.testing.assert_array_equal(t.data, [2.0, 1.0])


# ----- every kind of view, every in-place op ---------------------------------------------
# Each view works on a (3, 4) Tensor and, for the reference, on a NumPy array of positions.
VIEWS = {
    "slice": lambda a: a[1:3],
    "int": lambda a: a[1],
    "step": lambda a: a[::2, ::-1],
    "ellipsis": lambda a: a[..., 1:3],
    "newaxis": lambda a: a[None, :, 2],
    "reshape": lambda a: a.reshape(6, 2),
    "T": lambda a: a.T,
    "swapaxes": lambda a: np.swapaxes(a, 0, 1),
    "moveaxis": lambda a: np.moveaxis(a.reshape(3, 2, 2), 0, -1),
    "squeeze": lambda a: np.squeeze(a[1:2]),
    "expand_dims": lambda a: np.expand_dims(a, 1),
    "ravel": lambda a: np.ravel(a),
    "diagonal": lambda a: a.diagonal(),
    "diagonal_offset": lambda a: np.diagonal(a, 1),
    "view_of_view": lambda a: a[:, 1:].T[::2],
    "chain_of_four": lambda a: a.reshape(2, 6)[1].reshape(2, 3).diagonal(1),
}


def _op(name):
    """(in-place statement on v with operand o, the same out of place)."""
    table = {
        "+=": (lambda v, o: v.__iadd__(o), lambda a, o: a + o),
        "-=": (lambda v, o: v.__isub__(o), lambda a, o: a - o),
        "*=": (lambda v, o: v.__imul__(o), lambda a, o: a * o),
        # (a copy: o * o would save o, which may be v itself, for its backward)
        "/=": (lambda v, o: v.__itruediv__(1.5 + _copy(o) ** 2), lambda a, o: a / (1.5 + o * o)),
        "**=": (lambda v, o: v.__ipow__(2), lambda a, o: a**2),
        "[...]=": (lambda v, o: v.__setitem__(Ellipsis, o), lambda a, o: a * 0 + o),
    }
    return table[name]


def _copy(o):
    return o.copy() if isinstance(o, ad.Tensor) else o


OPS = ["+=", "-=", "*=", "/=", "**=", "[...]="]


def _seed(view, op):
    return sorted(VIEWS).index(view) * len(OPS) + OPS.index(op)


def _positions(view):
    return np.asarray(view(np.arange(12).reshape(3, 4)))


def _select(view):
    """The selection matrix P (view elements x base elements) of ``view``."""
    pos = _positions(view)
    return np.eye(12)[pos.ravel()], pos.shape


def _write_ref(flat, view, new_of_old):
    """Out of place: the flat base with the view's elements replaced by new_of_old(values)."""
    p, shape = _select(view)
    old = ad.reshape(ad.tensor(p) @ flat, shape)
    new = new_of_old(old)
    return flat + ad.tensor(p.T) @ ad.reshape(new - old, (-1,))


def _read_ref(flat, view):
    p, shape = _select(view)
    return ad.reshape(ad.tensor(p) @ flat, shape)


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("view", sorted(VIEWS))
def test_inplace_op_through_each_view(view, op):
    """The write reaches the base's history (reverse, forward, second order)."""
    fv, (ip, oop) = VIEWS[view], _op(op)

    def f(x, y):
        h = ad.sin(x)
        v = fv(h)
        ip(v, y * ad.cos(fv(x)))
        return ad.concatenate([ad.ravel(h), ad.ravel(v * v * v)])

    def ref(x, y):
        flat = ad.reshape(ad.sin(x), (-1,))
        flat = _write_ref(flat, fv, lambda a: oop(a, y * ad.cos(fv(x))))
        return ad.concatenate([flat, ad.ravel(_read_ref(flat, fv) ** 3)])

    _compare(f, ref, seed=_seed(view, op))


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("view", sorted(VIEWS))
def test_view_reads_its_base_modified_in_place(view, op):
    fv, (ip, oop) = VIEWS[view], _op(op)

    def f(x, y):
        h = ad.sin(x)
        v = fv(h)
        ip(h, y * ad.cos(x))
        return ad.ravel(v * v * v)

    def ref(x, y):
        h = oop(ad.sin(x), y * ad.cos(x))
        return ad.ravel(_read_ref(ad.reshape(h, (-1,)), fv) ** 3)

    _compare(f, ref, seed=_seed(view, op) + 500)


def _derivatives(f, x0, y0, tx, ty, w):
    """Values and derivatives of the vector function f(x, y) and of the loss sum(f**2):
    gradient, JVP, Jacobians by batched reverse and forward passes, and three second-order
    products (reverse over reverse, forward over reverse, hvp)."""

    def loss(x, y):
        out = f(x, y)
        return (out * out).sum()

    d = {"value": f(ad.tensor(x0), ad.tensor(y0)).data}
    gx, gy = ad.grad(loss, argnums=(0, 1))(x0, y0)
    d["grad"] = np.concatenate([gx.data.ravel(), gy.data.ravel()])
    d["jvp"] = ad.jvp(f, (x0, y0), (tx, ty))[1].data
    d["jacrev"] = ad.jacrev(f)(x0, y0).data
    d["jacfwd"] = ad.jacfwd(f)(x0, y0).data
    x = ad.tensor(x0, requires_grad=True)
    y = ad.tensor(y0, requires_grad=True)
    (g,) = ad.autograd.grad(loss(x, y), x, create_graph=True)
    hx, hy = ad.autograd.grad((g * w).sum(), (x, y), allow_unused=True)
    d["rev_rev"] = np.concatenate([hx.data.ravel(), np.ravel(0.0 if hy is None else hy.data)])
    d["fwd_rev"] = ad.jvp(lambda a, b: ad.grad(loss)(a, b), (x0, y0), (tx, ty))[1].data
    hv = ad.hvp(loss, (x0, y0), (tx, ty))[1]
    d["hvp"] = np.concatenate([hv[0].data.ravel(), hv[1].data.ravel()])
    return d


def _compare(f, ref, seed, shape=(3, 4)):
    rng = np.random.default_rng(seed)
    x0, tx, w = (rng.uniform(-1.5, 1.5, shape) for _ in range(3))
    y0, ty = np.float64(rng.uniform(0.5, 1.5)), np.float64(rng.uniform(-1, 1))
    got = _derivatives(f, x0, y0, tx, ty, w)
    want = _derivatives(ref, x0, y0, tx, ty, w)
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=1e-10, atol=1e-12, err_msg=k)


def test_views_of_a_0d_base():
    def f(x):
        h = ad.sin(x) * 1.0
        v = h[None]
        v *= x
        r = h.reshape(1, 1).astype(np.float64, copy=False)  # (a view of a view)
        r += x * x
        return ad.stack([h, h * x])

    def ref(x):
        h = ad.sin(x) * x + x * x
        return ad.stack([h, h * x])

    for transform in (ad.jacfwd, ad.jacrev, ad.hessian):
        np.testing.assert_allclose(
            transform(f)(0.7).data, transform(ref)(0.7).data, rtol=1e-12, err_msg=str(transform)
        )


# ----- random programs against the same program without in-place ops ---------------------
def _operand(kind, fv, x, y):
    if kind == "const":
        return 0.7
    if kind == "y":
        return y * 1.3
    return ad.cos(x) if fv is None else fv(ad.cos(x))  # "x": an operand of the target's shape


def _random_program(seed):
    """Steps ("hold", view) or ("write", target, op, operand) drawn with ``seed``; a target is
    "base", a view name (a fresh view), the index k of a view held since an earlier step, or
    ("sub", k): a fresh view of that held view."""
    rng = np.random.default_rng(seed)
    names = sorted(VIEWS)
    steps = []
    held = 0
    for _ in range(rng.integers(3, 8)):
        r = rng.integers(5)
        name = names[rng.integers(len(names))]
        if r == 0:
            steps.append(("hold", name))
            held += 1
            continue
        target: Any = name
        if r == 1:
            target = "base"
        elif r >= 3 and held:
            k = int(rng.integers(held))
            target = k if r == 3 else ("sub", k)
        operand = ("const", "y", "x", "self")[rng.integers(4)]
        steps.append(("write", target, OPS[rng.integers(len(OPS))], operand))
    return steps


def _sub(fv):
    return lambda a: fv(a)[..., :1]


def _run_inplace(steps, x, y):
    h = ad.sin(x)  # (sin saves x, not its output, which is overwritten)
    held = []  # (the view, how it was made)
    for step in steps:
        if step[0] == "hold":
            held.append((VIEWS[step[1]](h), VIEWS[step[1]]))
            continue
        _, target, op, operand = step
        if target == "base":
            t, fv = h, None
        elif isinstance(target, int):
            t, fv = held[target]
        elif isinstance(target, tuple):
            t, fv = held[target[1]][0][..., :1], _sub(held[target[1]][1])
        else:
            fv = VIEWS[target]
            t = fv(h)
        _op(op)[0](t, t if operand == "self" else _operand(operand, fv, x, y))
    return ad.concatenate([ad.ravel(h)] + [ad.ravel(t * t * t) for t, _ in held])


def _run_ref(steps, x, y):
    flat = ad.reshape(ad.sin(x), (-1,))
    held = []
    for step in steps:
        if step[0] == "hold":
            held.append(VIEWS[step[1]])
            continue
        _, target, op, operand = step
        oop = _op(op)[1]
        if target == "base":
            h = ad.reshape(flat, (3, 4))
            o = h if operand == "self" else _operand(operand, None, x, y)
            flat = ad.reshape(oop(h, o), (-1,))
            continue
        if isinstance(target, int):
            fv = held[target]
        elif isinstance(target, tuple):
            fv = _sub(held[target[1]])
        else:
            fv = VIEWS[target]
        o = None if operand == "self" else _operand(operand, fv, x, y)
        flat = _write_ref(flat, fv, lambda a, o=o, oop=oop: oop(a, a if o is None else o))
    return ad.concatenate([flat] + [ad.ravel(_read_ref(flat, fv) ** 3) for fv in held])


@pytest.mark.parametrize("seed", range(40))
def test_random_programs_match_their_out_of_place_twin(seed):
    steps = _random_program(seed)
    _compare(lambda x, y: _run_inplace(steps, x, y), lambda x, y: _run_ref(steps, x, y), seed=seed)


# ----- a guard on the registry: every output that shares an input's memory is a view ------
@pytest.mark.parametrize("spec", [r for r in ROWS if r.name in REGISTRY], ids=lambda r: r.name)
def test_outputs_sharing_an_input_buffer_are_registered_views(spec):
    """Else a write into the input would change the output behind its history. (NumPy
    returns views from reshape, indexing, transpose, split, einsum, real, astype, ...)

    Checked by what a view promises (docs/conventions.md, "Views"): after ``h *= 3`` every
    output that shares ``h``'s buffer reads ``h``'s new history, as ``op(3 x)`` does."""
    rng = np.random.default_rng(0)
    prim = REGISTRY[spec.name]
    for case in spec.cases:
        args = []
        for i, shape in enumerate(case.shapes):
            dom = spec.arg(case, i)
            args.append(dom.value if isinstance(dom, Const) else dom.sample(rng, shape, "f8"))
        for i, a in enumerate(args):
            if isinstance(a, np.ndarray) and a.dtype.kind in "fc":
                _check_views_of_argument(spec, prim, case, args, i)


def _check_views_of_argument(spec, prim, case, args, i):
    """Argument ``i`` is ``h = x * 1``; the outputs sharing its buffer, summed after
    ``h *= 3``, have the gradient they have in ``op(x * 3)``."""

    def run(scale):
        x = ad.Tensor(np.array(args[i]), requires_grad=True)
        h = x * scale
        ts = [ad.Tensor(np.array(a)) if isinstance(a, np.ndarray) else a for a in args]
        ts[i] = h
        out = spec.call(prim, *ts, **case.params) if spec.call else prim(*ts, **case.params)
        return x, h, list(out) if isinstance(out, tuple | list) else [out]

    x, h, outs = run(1.0)
    shared = [j for j, o in enumerate(outs) if np.shares_memory(o.data, h.data)]
    if not shared or not h.size:
        return
    h *= 3.0
    twin_x, _, twin = run(3.0)
    (got,) = ad.autograd.grad(sum(outs[j].sum() for j in shared), x)
    (want,) = ad.autograd.grad(sum(twin[j].sum() for j in shared), twin_x)
    np.testing.assert_allclose(got.data, want.data, rtol=1e-12, err_msg=f"argument {i} {case!r}")


# ----- what is refused, and what is not a view --------------------------------------------
def test_writing_through_a_view_of_a_leaf_that_requires_grad_is_refused():
    x = ad.tensor([1.0, 2.0, 3.0], requires_grad=True)
    v = x[0:2]
    with pytest.raises(RuntimeError, match=r"view \(shape \(2,\)\) of a leaf.*no_grad"):
        v *= 2
    with pytest.raises(RuntimeError, match=r"view .* of a leaf"):
        x.T[0] = 5.0
    with ad.no_grad():  # a parameter update through a view
        v -= 1.0
    np.testing.assert_array_equal(x.data, [0.0, 1.0, 3.0])


def test_a_view_made_a_leaf_that_requires_grad_is_a_leaf():
    a = ad.zeros(3)
    v = a[0:2]
    v.requires_grad_()
    with pytest.raises(RuntimeError, match=r"leaf tensor that requires grad \(a view"):
        v *= 2
    (v * v).sum().backward()
    assert v.is_leaf and v.grad is not None


def test_writing_with_grad_through_a_view_made_under_no_grad_is_refused():
    x = ad.tensor([1.0, 2.0, 3.0], requires_grad=True)
    h = _h(x)
    with ad.no_grad():
        v = h[0:2]
        w = v[1:]  # made under grad mode below from a view made under no_grad
    with pytest.raises(RuntimeError, match="made under no_grad"):
        v *= 2
    u = v[0:1]
    with pytest.raises(RuntimeError, match="made under no_grad"):
        u += 1
    with pytest.raises(RuntimeError, match="made under no_grad"):
        w[0] = 1.0
    np.testing.assert_array_equal(h.data, [1.0, 2.0, 3.0])  # nothing was written


def test_a_read_only_view_says_so():
    h = _h(ad.tensor([1.0, 2.0], requires_grad=True))
    b = h.broadcast_to((3, 2))
    with pytest.raises(ValueError, match=r"in-place add on float64\[3, 2\].*read-only view"):
        b += 1
    c = ad.broadcast_to(ad.tensor([1.0, 2.0]), (3, 2))
    with pytest.raises(TypeError, match="read-only view"):
        c *= 2


def test_views_made_under_no_grad_follow_their_base():
    """PyTorch regenerates them too: only writing through them with grad on is refused."""
    x = ad.tensor([1.0, 2.0], requires_grad=True)
    h = _h(x)
    with ad.no_grad():
        v = h[1:]
    h *= 3
    assert v.requires_grad
    v.sum().backward()
    np.testing.assert_array_equal(x.grad.data, [0.0, 3.0])


def test_a_view_whose_base_buffer_was_replaced_is_a_view_no_more():
    x = ad.tensor([1.0, 2.0, 3.0], requires_grad=True)
    h = _h(x)
    v = h[0:2]
    h.data = np.zeros(3)  # (the escape hatch: no gradient flows through .data)
    v *= 5  # writes v's own buffer only
    np.testing.assert_array_equal(h.data, [0.0, 0.0, 0.0])
    (h.sum() + v.sum()).backward()
    np.testing.assert_array_equal(x.grad.data, [6.0, 6.0, 1.0])


def test_copies_are_not_views():
    """Advanced indices, a reshape that must copy, and a 0-d element are copies (NumPy's
    rule): writing into them leaves the base and its history alone."""
    x = ad.tensor(np.arange(1.0, 7.0).reshape(2, 3), requires_grad=True)
    h = _h(x)
    a = h[[0, 1], [1, 2]]
    r = h.T.reshape(6)
    e = h[0, 0]
    for c in (a, r, e):
        c *= 10
    np.testing.assert_array_equal(h.data, x.data)
    (h.sum() + a.sum() + r.sum() + e).backward()
    np.testing.assert_array_equal(x.grad.data, [[21.0, 21.0, 11.0], [11.0, 11.0, 21.0]])


def test_split_pieces_are_views():
    x = ad.tensor(np.arange(1.0, 7.0), requires_grad=True)
    h = _h(x)
    a, b, c = ad.split(h, 3)
    before = a.sum()  # (split keeps its outputs for their shapes: no version check on them)
    b *= 10
    np.testing.assert_array_equal(h.data, [1.0, 2.0, 30.0, 40.0, 5.0, 6.0])
    h *= 2
    (h.sum() + c.sum() + before).backward()
    np.testing.assert_array_equal(x.grad.data, [3.0, 3.0, 20.0, 20.0, 4.0, 4.0])


def test_aliases_are_views():
    """astype without a cast and real of a real tensor return the tensor's own buffer."""
    x = ad.tensor([1.0, 2.0], requires_grad=True)
    h = _h(x)
    a = h.astype(np.float64, copy=False)
    a *= 3
    r = h.real
    r += x
    h.sum().backward()
    np.testing.assert_array_equal(h.data, [4.0, 8.0])
    np.testing.assert_array_equal(x.grad.data, [4.0, 4.0])


def test_numpy_views_that_positions_cannot_describe_are_copies():
    """einsum's lone diagonal and real/imag of a complex array are views in NumPy; here they
    are copies, so a write into them cannot reach the operand behind its history."""
    x = ad.tensor(np.arange(1.0, 5.0).reshape(2, 2), requires_grad=True)
    h = _h(x)
    d = ad.einsum("ii->i", h)
    d *= 10
    z = ad.tensor([1 + 2j, 3 - 1j])
    re, im = z.real, z.imag
    re *= 2
    im *= 2
    np.testing.assert_array_equal(h.data, x.data)
    np.testing.assert_array_equal(z.data, [1 + 2j, 3 - 1j])
    (h.sum() + d.sum()).backward()
    np.testing.assert_array_equal(x.grad.data, [[11.0, 1.0], [1.0, 11.0]])


# ----- the version counter and the other in-place operators -------------------------------
def test_a_saved_view_modified_through_its_base_is_detected():
    x = ad.tensor([1.0, 2.0, 3.0], requires_grad=True)
    h = _h(x)
    v = h[0:2]
    y = v * v  # saves v
    h *= 2  # bumps the version counter that v shares
    with pytest.raises(RuntimeError, match=r"'multiply'.*modified by an in-place"):
        y.sum().backward()


def test_an_operand_sharing_the_buffer_is_read_before_the_write():
    x = ad.tensor([1.0, 2.0, 3.0], requires_grad=True)
    h = _h(x)
    h *= h
    v = h[1:]
    v *= h[:2]  # overlapping operand: the old values of h[:2]
    np.testing.assert_array_equal(h.data, [1.0, 4.0, 36.0])
    h.sum().backward()  # x0² + x0² x1² + x1² x2²
    np.testing.assert_array_equal(x.grad.data, [2.0 + 8.0, 4.0 + 36.0, 24.0])


def test_power_floor_divide_matmul_and_zero_are_in_place():
    x = ad.tensor([1.0, 2.0, 3.0], requires_grad=True)
    h = _h(x)
    p, q, z = h[0:1], h[1:2], h[2:]
    p **= 3
    q //= 1.5
    z.zero_()
    np.testing.assert_array_equal(h.data, [1.0, 1.0, 0.0])
    h.sum().backward()
    np.testing.assert_array_equal(x.grad.data, [3.0, 0.0, 0.0])
    m = ad.tensor(np.arange(1.0, 7.0).reshape(3, 2), requires_grad=True)
    hm = _h(m)
    top = hm[:2]
    top @= ad.tensor([[0.0, 1.0], [1.0, 0.0]])  # swaps the columns of the first two rows
    np.testing.assert_array_equal(hm.data, [[2.0, 1.0], [4.0, 3.0], [5.0, 6.0]])
    (hm * ad.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])).sum().backward()
    np.testing.assert_array_equal(m.grad.data, [[2.0, 1.0], [4.0, 3.0], [5.0, 6.0]])
    n = ad.tensor([7, 9])  # integers: values only, in place as NumPy's
    w = n[1:]
    w **= 2
    w //= 4
    np.testing.assert_array_equal(n.data, [7, 20])


def test_a_write_into_a_dual_tensor_or_a_transform_variable_leaves_the_primal_alone():
    """make_dual's tensor and the variable of a nested transform have their own buffers: a
    write into them used to change the primal behind its history."""
    x = ad.tensor([1.0, 2.0], requires_grad=True)
    h = _h(x)
    with ad.forward.dual_level():
        d = ad.forward.make_dual(h, ad.tensor([1.0, 1.0]))
        d *= 2
        t = ad.forward.unpack_dual(d).tangent
    np.testing.assert_array_equal(h.data, [1.0, 2.0])
    np.testing.assert_array_equal(t.data, [2.0, 2.0])
    # h requires grad: a nested variable, which reverse mode refuses to see written
    with pytest.raises(RuntimeError, match="f modifies its argument 0"):
        ad.grad(lambda v: v.__imul__(3).sum())(h)
    np.testing.assert_array_equal(h.data, [1.0, 2.0])
    h.sum().backward()
    np.testing.assert_array_equal(x.grad.data, [1.0, 1.0])


def test_a_write_under_no_grad_is_seen_by_forward_mode_only():
    """As in PyTorch: reverse mode keeps the history from before the write (it used to drop
    the tensor's graph when a tangent was open), forward mode carries the write's tangent."""
    x = ad.tensor([1.0, 2.0], requires_grad=True)
    h = _h(x)
    v = h[0:1]
    with ad.forward.dual_level():
        d = ad.forward.make_dual(ad.tensor([3.0]), ad.tensor([1.0]))
        with ad.no_grad():
            v *= d
            h *= 2.0
        t = ad.forward.unpack_dual(h).tangent
    np.testing.assert_array_equal(h.data, [6.0, 4.0])
    np.testing.assert_array_equal(t.data, [2.0, 0.0])
    assert h.grad_fn.name == "multiply" and v.grad_fn.name == "getitem"
    h.sum().backward()
    np.testing.assert_array_equal(x.grad.data, [1.0, 1.0])


def test_take_is_c_ordered_as_numpy_so_a_reshape_of_it_sees_later_writes():
    # Found by the fuzz test: ad.take along a later axis was not C-ordered, so a reshape of a
    # result computed from it copied where NumPy's is a view and missed a later write.
    x0 = np.array([[0.55, -0.92, -1.84], [-1.93, 1.25, 1.65]])

    def program(xp, x):
        v1 = xp.take(x, [0, 0], axis=-1)
        v2 = v1 + v1
        v3 = v2.reshape((4,))
        v2 += v1
        return v3

    x = ad.tensor(x0, requires_grad=True)
    out = program(ad, x * 1.0)
    np.testing.assert_array_equal(out.data, program(np, x0))
    out.sum().backward()
    np.testing.assert_array_equal(x.grad.data, [[6.0, 0.0, 0.0], [6.0, 0.0, 0.0]])
    assert ad.take(x, [0, 0], axis=-1).data.flags.c_contiguous
