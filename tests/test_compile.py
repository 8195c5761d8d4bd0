"""ad.compile: the cache, guards, refusals, transforms recorded through, the generated source
and errors at replay (every OpSpec row is in tests/test_compile_ops.py)."""

from __future__ import annotations

import inspect

import numpy as np
import pytest

import autodiffx as ad
from autodiffx.compiler import CompileError


def _equal(a, b):
    la, lb = ad.func.tree_flatten(a)[0], ad.func.tree_flatten(b)[0]
    assert len(la) == len(lb)
    for x, y in zip(la, lb, strict=True):
        assert type(x) is type(y)
        x, y = np.asarray(getattr(x, "data", x)), np.asarray(getattr(y, "data", y))
        assert x.dtype == y.dtype and x.shape == y.shape
        assert np.array_equal(x, y)


X0, X1 = np.array([0.3, -1.2, 2.0]), np.array([1.0, 0.5, -0.7])
V = np.array([1.0, 2.0, 0.5])


def f(x):
    return ad.sum(ad.sin(x) * x**2)


# ----- transforms inside the compiled function are recorded through ------------------------
@pytest.mark.parametrize(
    ("fn", "nargs"),
    [
        (ad.grad(f), 1),
        (ad.value_and_grad(f), 1),
        (lambda x, v: ad.hvp(f, (x,), (v,)), 2),
        (lambda x, v: ad.jvp(f, (x,), (v,)), 2),
        (lambda x, v: ad.vjp(lambda y: ad.tanh(y) * y, x)[1](v), 2),
        (ad.hessian(f), 1),
        (ad.jacrev(lambda x: ad.tanh(x) * x), 1),
        (ad.jacfwd(lambda x: ad.tanh(x) * x), 1),
        (ad.grad(lambda x: ad.sum(ad.grad(f)(x) ** 2)), 1),
    ],
    ids=["grad", "value_and_grad", "hvp", "jvp", "vjp", "hessian", "jacrev", "jacfwd", "nested"],
)
def test_transforms_replay_as_eager(fn, nargs):
    cf = ad.compile(fn)
    for x in (X0, X1, -X0):
        args = (x, V)[:nargs]
        _equal(cf(*args), fn(*args))
    assert cf.cache_info() == {"hits": 2, "recordings": 1, "signatures": 1}


def test_hvp_compiled_is_the_eager_sweep_bit_for_bit():
    # The eager hvp sweeps the recording with its pair rules (second derivatives such as
    # sin's -sin); recorded, the same sweep runs on Tensors: the same operations, the same
    # bits (jvp of grad would differ in the last bits). A pytree or a tangent of another
    # dtype takes jvp of grad, as the eager hvp's general path does not.
    cf = ad.compile(lambda x, v: ad.hvp(f, (x,), (v,)))
    for x in (X0, X1, -X0):
        _equal(cf(x, V), ad.hvp(f, (x,), (V,)))
    assert cf.cache_info() == {"hits": 2, "recordings": 1, "signatures": 1}
    assert "np.cos" in cf.source and "np.sin" in cf.source
    tanh3 = lambda x: ad.sum(ad.tanh(x) ** 3)
    ct = ad.compile(lambda x, v: ad.hvp(tanh3, (x,), (v,)))
    for x in (X0, X1):
        _equal(ct(x, V), ad.hvp(tanh3, (x,), (V,)))
    composed = ad.jvp(ad.grad(tanh3), (X1,), (V,))[1]
    assert not np.array_equal(ct(X1, V)[1].data, composed.data)  # (the sweep's own rules)


class _Cube(ad.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x**3

    @staticmethod
    def vjp(ctx, g):
        (x,) = ctx.saved_tensors
        return 3 * x**2 * g

    @staticmethod
    def jvp(ctx, t):
        (x,) = ctx.saved_tensors
        return 3 * x**2 * t


def test_hvp_of_pytrees_and_cast_tangents_compiled_equal_eager():
    def s(p):
        return ad.sum(ad.tanh(p["a"]) ** 2 * p["b"])

    def h(a, b, v, w):
        return ad.hvp(s, ({"a": a, "b": b},), ({"a": v, "b": w},))

    cf = ad.compile(h)
    for x in (X0, X1, -X0):
        args = (x, X1 * 2, V, V.astype(np.float32))  # (a float32 tangent: cast, recorded)
        _equal(cf(*args), h(*args))
    assert cf.cache_info()["hits"] == 2


@pytest.mark.parametrize(
    "fn",
    [
        lambda x: ad.sum(_Cube.apply(x) * ad.sin(x)),  # a custom Function: on dual Tensors
        lambda x: ad.sum(ad.tanh(x * W) ** 2),  # a closure that requires grad: on duals too
    ],
    ids=["function", "closure"],
)
def test_hvp_general_paths_compiled_equal_eager(fn):
    cf = ad.compile(lambda x, v: ad.hvp(fn, (x,), (v,))[1].detach())
    for x in (X0[:2], X1[:2]):
        _equal(cf(x, V[:2]), ad.hvp(fn, (x,), (V[:2],))[1].detach())
    assert cf.cache_info()["hits"] == 1


def test_pytrees_scalars_and_kwargs():
    def fn(params, x, scale=2.0, name="a"):
        return {"y": ad.tanh(params["w"] * x + params["b"]) * scale, "n": name}

    cf = ad.compile(fn)
    p = {"w": ad.tensor([1.0, 2.0]), "b": ad.tensor(0.5)}
    for x in (X0[:2], X1[:2]):
        _equal(cf(p, x, scale=3.0), fn(p, x, scale=3.0))
    assert cf.cache_info()["recordings"] == 1
    _equal(cf(p, X0[:2], scale=4.0), fn(p, X0[:2], scale=4.0))  # a new scalar: records
    assert cf.cache_info()["recordings"] == 2


# ----- the cache -------------------------------------------------------------------------------
def test_signature_hits_and_misses():
    cf = ad.compile(lambda x: ad.exp(x) * 2)
    cf(np.ones(3))
    cf(np.zeros(3))  # same shape and dtype: a hit
    assert cf.cache_info() == {"hits": 1, "recordings": 1, "signatures": 1}
    cf(np.ones(4))  # shape
    cf(np.ones(3, np.float32))  # dtype
    cf(ad.tensor(np.ones(3)))  # a Tensor (returned as is if f returns it): another one
    cf(ad.tensor(np.zeros(3)))
    assert cf.cache_info() == {"hits": 2, "recordings": 4, "signatures": 4}
    _equal(cf(np.full(3, 0.5, np.float32)), ad.exp(ad.tensor(np.full(3, 0.5, np.float32))) * 2)


def test_requires_grad_is_in_the_signature_and_refused_when_it_reaches_an_output():
    cf = ad.compile(lambda x: x * 2)
    cf(ad.tensor([1.0]))
    with pytest.raises(CompileError, match=r"requires grad.*ad.compile\(ad.grad"):
        cf(ad.tensor([1.0], requires_grad=True))
    g = ad.compile(ad.grad(f))  # (eager, this gradient is differentiable in x)
    with pytest.raises(CompileError, match="requires grad"):
        g(ad.tensor(X0, requires_grad=True))
    _equal(g(ad.tensor(X0)), ad.grad(f)(ad.tensor(X0)))


def test_lru_drops_the_oldest_signature():
    cf = ad.compile(lambda x: x + 1)
    for n in range(1, 11):
        cf(np.ones(n))
    assert cf.cache_info()["signatures"] == ad.compiler.CACHE_SIZE
    cf(np.ones(1))  # dropped: records again
    assert cf.cache_info()["recordings"] == 11


def test_repeated_hits_keep_the_lru_order():
    cf = ad.compile(lambda x: x + 1)
    cf(np.ones(1))
    cf(np.ones(1))  # a hit: (1,) is the most recent signature...
    for n in range(2, 9):
        cf(np.ones(n))  # ...until seven others are recorded after it
    cf(np.ones(2))
    cf(np.ones(2))  # two hits on (2,): it is the most recent again
    cf(np.ones(9))  # the cache is full: (1,), the least recent, is dropped, not (2,)
    assert cf.cache_info() == {"hits": 3, "recordings": 9, "signatures": ad.compiler.CACHE_SIZE}
    _equal(cf(np.ones(2)), ad.tensor(np.full(2, 2.0)))
    assert cf.cache_info()["recordings"] == 9
    cf(np.ones(1))
    assert cf.cache_info()["recordings"] == 10


def test_a_dropped_signature_records_again_after_repeated_hits():
    cf = ad.compile(lambda x: x + 1)
    cf(np.ones(1))
    cf(np.ones(1))
    cf(np.ones(1))  # (1,) hit twice in a row
    for n in range(2, 10):
        cf(np.ones(n))  # eight newer signatures: (1,) is dropped
    cf(np.ones(1))
    assert cf.cache_info()["recordings"] == 10


@pytest.mark.parametrize(
    "other",
    [
        lambda: ad.tensor(np.ones(3), requires_grad=True),  # requires_grad
        lambda: ad.tensor(np.ones(1)),  # shape
        lambda: ad.tensor(np.ones(3, np.float32)),  # dtype
        lambda: np.ones(3),  # an array, not a Tensor
        lambda: ad.tensor(np.ones(3).astype(np.dtype(">f8"))),  # byte order
    ],
    ids=["requires_grad", "shape", "dtype", "array", "byteorder"],
)
def test_a_call_unlike_the_last_one_is_not_replayed_by_its_entry(other):
    # the last variant's entry checks each part of the signature; anything else goes to the
    # cache, and the two signatures alternate with their own programs
    def fn(x, w):
        return ad.tanh(x * w.detach()) * 2

    cf = ad.compile(fn)
    x = ad.tensor(np.linspace(0.5, 1.5, 3))
    for _ in range(3):
        for w in (ad.tensor(np.full(3, 2.0)), other()):
            want = fn(x, w if isinstance(w, ad.Tensor) else ad.tensor(w))
            _equal(cf(x, w), want)
            assert cf(x, w).dtype == want.dtype
    assert cf.cache_info() == {"hits": 10, "recordings": 2, "signatures": 2}


def test_an_equal_dtype_that_is_another_object_is_a_hit():
    cf = ad.compile(lambda x: ad.exp(x) * 2)
    dt = np.dtype("f8", metadata={"unit": "m"})  # equal to float64, another object
    assert dt == np.float64 and dt is not np.dtype(np.float64)
    cf(np.ones(3))
    _equal(cf(np.zeros(3, dt)), ad.tensor(np.full(3, 2.0)))
    assert cf.cache_info() == {"hits": 1, "recordings": 1, "signatures": 1}


def test_the_entry_counts_arguments():
    cf = ad.compile(lambda *xs: sum(xs[1:], xs[0]) * 2)
    for xs in [(X0,), (X0, X1), (X0,), (X0, X1, X0), (X0, X1)]:
        _equal(cf(*xs), sum((ad.tensor(x) for x in xs[1:]), ad.tensor(xs[0])) * 2)
    assert cf.cache_info() == {"hits": 2, "recordings": 3, "signatures": 3}


def test_source_is_the_program_of_the_last_call():
    cf = ad.compile(lambda x: ad.sin(x) if x.shape[0] == 2 else ad.cos(x))
    for n, kernel in [(2, "np.sin"), (3, "np.cos"), (2, "np.sin"), (2, "np.sin"), (3, "np.cos")]:
        cf(np.ones(n))
        assert kernel in cf.source


def test_aliased_arguments_are_independent_at_replay():
    cf = ad.compile(lambda x, y: x * 2 + y)
    cf(X0, X0)
    _equal(cf(X0, X1), ad.tensor(X0) * 2 + ad.tensor(X1))


# ----- guards ----------------------------------------------------------------------------------
def _branchy(x):
    if ad.sum(x) > 0:
        return x * 2
    return -x


@pytest.mark.parametrize(
    ("fn", "same", "other"),
    [
        (_branchy, [1.0, 2.0, 3.0], [-1.0, -2.0, 3.0]),  # bool() of a comparison
        (lambda x: x * float(ad.amax(x)), [1.0, 2.0, 3.0], [1.0, 2.0, 4.0]),  # float()
        (lambda x: x * ad.sum(x).item(), [1.0, 2.0, 3.0], [2.0, 2.0, 3.0]),  # .item()
        (lambda x: x[int(ad.argmax(x))] * x, [1.0, 5.0, 3.0], [5.0, 1.0, 3.0]),  # int()
        (lambda x: x * max(x.tolist()), [1.0, 5.0, 3.0], [1.0, 6.0, 3.0]),  # .tolist()
        (lambda x: x * x.data.sum(), [1.0, 5.0, 3.0], [1.0, 6.0, 3.0]),  # .data
        (lambda x: x * np.asarray(x).sum(), [1.0, 5.0, 3.0], [1.0, 6.0, 3.0]),  # np.asarray
        (lambda x: x[x > 0] * 2, [1.0, -5.0, 3.0], [1.0, 5.0, 3.0]),  # a boolean mask
        (lambda x: ad.exp(x) * (x.numpy() > 1).sum(), [1.0, 5.0, 3.0], [0.0, 0.0, 3.0]),
    ],
    ids=["bool", "float", "item", "int", "tolist", "data", "asarray", "mask", "numpy"],
)
def test_each_read_is_a_guard(fn, same, other):
    cf = ad.compile(fn)
    a, b = np.array(same), np.array(other)
    _equal(cf(a), fn(ad.tensor(a)))
    _equal(cf(a.copy()), fn(ad.tensor(a)))  # same values: replayed
    assert cf.cache_info()["hits"] == 1
    _equal(cf(b), fn(ad.tensor(b)))  # another outcome: a new variant
    assert cf.cache_info()["recordings"] == 2
    _equal(cf(a), fn(ad.tensor(a)))  # the first variant is still there
    _equal(cf(b), fn(ad.tensor(b)))
    assert cf.cache_info() == {"hits": 3, "recordings": 2, "signatures": 1}


def test_guards_appear_in_the_source():
    cf = ad.compile(_branchy)
    cf(np.ones(2))
    assert "return MISS  # bool(t)" in cf.source


# ----- refusals --------------------------------------------------------------------------------
def _inplace(x):
    y = x * 2
    y += 1
    return y


def _setitem(x):
    y = x * 2
    y[0] = 0.0
    return y


W = ad.tensor([1.0, 2.0], requires_grad=True)


def _backward(x):
    (W * x).sum().backward(create_graph=True)
    return x


def _reads_grad(x):
    return x * (W.grad if W.grad is not None else 0)


def _random(x):
    return x * ad.rand(2, rng=0, requires_grad=True)


def _writes_data(x):
    x.data = x.data * 2
    return x


@pytest.mark.parametrize(
    ("fn", "what"),
    [
        (_inplace, "in-place add"),
        (_setitem, "item assignment"),
        (_backward, r"backward\(create_graph=True\)"),
        (_reads_grad, "read of .grad"),
        (_random, r"ad.rand\(requires_grad=True\)"),
        (_writes_data, "write of t.data"),
    ],
    ids=["inplace", "setitem", "backward", "grad", "rand", "data"],
)
def test_side_effects_are_refused(fn, what):
    cf = ad.compile(fn)
    with pytest.raises(CompileError, match=what + ".*test_compile.py.*side effect"):
        cf(np.ones(2))


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.complex128])
def test_rand_and_randn_draw_at_every_replay(dtype):
    # from the same Generator, in eager's order, with eager's values
    def make(g):
        return lambda x: x * ad.rand(3, rng=g, dtype=dtype) + ad.randn((3,), rng=g, dtype=dtype)

    g1, g2 = np.random.default_rng(4), np.random.default_rng(4)
    cf, f = ad.compile(make(g1)), make(g2)
    for _ in range(3):
        _equal(cf(X0), f(ad.tensor(X0)))
    assert cf.cache_info()["hits"] == 2 and cf.source.count("# ad.rand") == 2
    assert g1.bit_generator.state == g2.bit_generator.state
    cs = ad.compile(lambda x: x * ad.rand(3, rng=7))  # a seed: the same draw, as eager
    _equal(cs(X0), cs(X0))


_PATHWISE = {
    "normal": lambda m: ad.distributions.Normal(m, 0.5),
    "laplace": lambda m: ad.distributions.Laplace(m, 0.5),
    "exponential": lambda m: ad.distributions.Exponential(ad.exp(m)),
    "uniform": lambda m: ad.distributions.Uniform(m, m + 1.0),
    "lognormal": lambda m: ad.distributions.LogNormal(m, 0.5),
    "independent": lambda m: ad.distributions.Independent(ad.distributions.Normal(m, 0.5), 1),
    "mvn": lambda m: ad.distributions.MultivariateNormal(m, ad.tensor(np.diag([1.0, 2.0, 3.0]))),
}


@pytest.mark.parametrize("name", list(_PATHWISE))
def test_distribution_samples_draw_at_every_replay(name):
    # a variational step's reparameterised sample: drawn again at each replay from the same
    # Generator, in eager's order, with eager's values and gradients (not the recording's)
    def make(g):
        def loss(m):
            d = _PATHWISE[name](m)
            x = d.rsample((4,), rng=g)
            return ad.mean(x**2) + ad.mean(d.sample((2,), rng=g))

        return ad.value_and_grad(loss)

    g1, g2 = np.random.default_rng(9), np.random.default_rng(9)
    cf, f = ad.compile(make(g1)), make(g2)
    m = np.array([0.1, -0.3, 0.7])
    outs = []
    for _ in range(3):
        got, want = cf(m), f(ad.tensor(m))
        _equal(got, want)
        outs.append(got[0].item())
    assert len(set(outs)) == 3  # (new noise each step)
    assert cf.cache_info()["hits"] == 2 and cf.source.count("'s noise") == 2, cf.source
    assert g1.bit_generator.state == g2.bit_generator.state


def test_a_score_function_step_replays_bernoulli_draws():
    # REINFORCE with Bernoulli samples: the draw is replayed, the sample compared with the
    # probabilities by an op, the support check a guard on its outcome
    g1, g2 = np.random.default_rng(6), np.random.default_rng(6)

    def make(g):
        def surrogate(m):
            d = ad.distributions.Bernoulli(logits=m)
            x = d.sample((16,), rng=g)
            return ad.mean(d.log_prob(x) * (x - 0.3) ** 2)

        return ad.value_and_grad(surrogate)

    cf, f = ad.compile(make(g1)), make(g2)
    for k in range(4):
        m = np.array([0.2 * k - 0.5, 1.0, -0.4])
        _equal(cf(m), f(ad.tensor(m)))
    assert cf.cache_info() == {"hits": 3, "recordings": 1, "signatures": 1}
    assert g1.bit_generator.state == g2.bit_generator.state


@pytest.mark.parametrize(
    "make",
    [
        lambda m: ad.distributions.Gamma(ad.exp(m), 1.0),
        lambda m: ad.distributions.Poisson(ad.exp(m)),
        lambda m: ad.distributions.Dirichlet(ad.exp(m)),
    ],
    ids=["gamma", "poisson", "dirichlet"],
)
def test_samples_that_read_the_parameters_are_refused(make):
    # these draw from the parameters' values (Gamma's and Dirichlet's samplers, Poisson's
    # counts) outside ops: refused
    cf = ad.compile(lambda m: ad.sum(make(m).sample((2,), rng=0)))
    with pytest.raises(CompileError, match=r"random number generator.*side effect"):
        cf(np.array([0.1, -0.3, 0.7]))


def test_a_read_after_backward_is_checked_before_it():
    # the branch reads the loss after backward(): checked first at replay, so a changed
    # branch records again without having added a gradient into .grad twice
    w = ad.tensor(np.array([1.0, 2.0]), requires_grad=True)

    def step(x):
        loss = ad.sum(w * x)
        loss.backward()
        return loss * 2 if loss.item() > 0 else loss

    cf = ad.compile(step)
    for x in ([1.0, 1.0], [1.0, 1.0], [-1.0, -1.0], [2.0, 1.0], [-3.0, 0.0]):
        cf(np.array(x))
    np.testing.assert_array_equal(w.grad.data, [0.0, 2.0])  # the sum of the five inputs
    # (.item() guards the loss's value: each new loss records, the repeated ones replay)
    assert cf.cache_info() == {"hits": 2, "recordings": 3, "signatures": 1}


def test_a_mask_made_before_backward_is_checked_before_it():
    # the mask's values are a guard; made before backward(), it is checked first, so a new
    # mask records again with the gradient added once, as eager adds it
    w = ad.tensor(np.array([1.0, 2.0]), requires_grad=True)

    def step(x):
        m = x > 0
        ad.sum(w * x).backward()
        return x[m] * 2

    cf = ad.compile(step)
    for x, want in [([1.0, -1.0], [2.0]), ([3.0, -2.0], [6.0]), ([1.0, 1.0], [2.0, 2.0])]:
        _equal(cf(np.array(x)), ad.tensor(want))
    np.testing.assert_array_equal(w.grad.data, [5.0, -2.0])  # each input once
    assert cf.cache_info() == {"hits": 1, "recordings": 2, "signatures": 1}
    with pytest.raises(CompileError, match=r"t\.data.*after backward\(\) into \.grad"):
        ad.compile(lambda x: (ad.sum(w * x).backward(), x[x > 0])[1])(np.ones(2))


def test_a_branch_on_a_random_draw_is_refused():
    # a replay whose branch changed would draw twice from the generator: refused
    g = np.random.default_rng(0)

    def f(x):
        r = x * ad.rand(2, rng=g)
        return r * 2 if ad.sum(r) > 0.5 else r

    with pytest.raises(CompileError, match=r"bool\(t\).*after ad.rand.*run twice"):
        ad.compile(f)(np.ones(2))


def test_a_check_that_fails_after_a_draw_raises_at_replay():
    # a validity check expected to hold (the support of log_prob's value), after a draw:
    # when it fails at replay, an error, as eager raises one, never a second draw
    g = np.random.default_rng(3)

    def f(x):
        u = ad.rand((), rng=g)
        return ad.distributions.Exponential(1.0).log_prob(u - 0.5) * x

    cf = ad.compile(f)
    draws = np.random.default_rng(3).random(40)
    start = int(np.argmax(draws >= 0.5))  # (the recording's draw is in the support)
    bad = start + 1 + int(np.argmax(draws[start + 1 :] < 0.5))
    g.random(start)
    for _ in range(bad - start):  # the recording, then replays that hold
        cf(np.ones(1))
    with pytest.raises(RuntimeError, match=r"check failed at replay.*support.*uncompiled"):
        cf(np.ones(1))


def test_a_variational_step_replays_for_new_parameters():
    # the parameters' validity is a guard on the check's outcome, not on their values
    g1, g2 = np.random.default_rng(2), np.random.default_rng(2)

    def make(g):
        def elbo(m, s):
            q = ad.distributions.Normal(m, ad.exp(s))
            z = q.rsample((8,), rng=g)
            return ad.mean(ad.distributions.Normal(0.0, 1.0).log_prob(z) - q.log_prob(z))

        return ad.value_and_grad(elbo, argnums=(0, 1))

    cf, f = ad.compile(make(g1)), make(g2)
    for k in range(4):
        m, s = np.array([0.1 * k, -0.2]), np.array([-1.0, 0.1 * k])
        _equal(cf(m, s), f(ad.tensor(m), ad.tensor(s)))
    assert cf.cache_info() == {"hits": 3, "recordings": 1, "signatures": 1}


def test_optimizer_step_with_a_closure_is_refused():
    w = ad.tensor([1.0, 2.0], requires_grad=True)
    opt = ad.optim.SGD([w], lr=0.1)
    w.grad = np.ones(2)

    def step(x):
        opt.step(lambda: None)
        return x

    with pytest.raises(CompileError, match=r"SGD.step\(closure\).*side effect"):
        ad.compile(step)(np.ones(2))
    np.testing.assert_array_equal(w.data, [1.0, 2.0])  # refused before it wrote


def test_recording_state_is_restored_after_a_refusal():
    with pytest.raises(CompileError):
        ad.compile(_inplace)(np.ones(2))
    assert ad.Tensor.__dict__["data"] is ad.compiler._SLOT
    assert ad._mode.STATE.mode == 0 and ad._mode.STATE.compiler is None
    y = ad.tensor([1.0])
    y += 1  # in-place works again
    assert y.item() == 2.0


def test_outer_modes_run_eagerly():
    cf = ad.compile(lambda x: ad.sin(x) * x)
    with ad.forward.dual_level():
        x = ad.forward.make_dual(ad.tensor(X0), ad.tensor(V))
        t = ad.forward.unpack_dual(cf(x)).tangent
    np.testing.assert_allclose(t.data, (np.cos(X0) * X0 + np.sin(X0)) * V)
    assert cf.cache_info()["recordings"] == 0
    assert len(ad.evaluation_trace(cf, x=X0).steps) == 3  # the input and two steps
    xs = np.stack([X0, X1])
    np.testing.assert_array_equal(ad.vmap(cf)(xs).data, np.sin(xs) * xs)  # per example
    per = ad.vmap(ad.grad(lambda x: ad.sum(cf(x))))(xs)
    np.testing.assert_allclose(per.data, np.cos(xs) * xs + np.sin(xs), rtol=1e-15)
    assert cf.cache_info()["recordings"] == 0


# ----- the generated source --------------------------------------------------------------------
GOLDEN = """def loss_and_grad(w, x):
    # primal
    v_1 = np.multiply(w, x)
    v_2 = np.tanh(v_1)
    del v_1
    v_3 = np.asarray(k_sum(v_2, axis=None, keepdims=False))
    # derivative rules (floating-point errors ignored, as in eager)
    _q = _fp.set(_QUIET.get(_fp.get()) or _quiet_state())
    try:
        v_4 = np.multiply(v_2, v_2)
        del v_2
        v_5 = np.subtract(1, v_4)
        del v_4
        v_6 = np.multiply(v_5, x)
        del v_5
    finally:
        _fp.reset(_q)
    return (v_3, v_6)
"""


def loss(w, x):
    return ad.sum(ad.tanh(w * x))


def loss_and_grad(w, x):
    return ad.value_and_grad(loss)(w, x)


def test_source_golden():
    cf = ad.compile(loss_and_grad)
    cf(X0, X1)
    assert cf.source == GOLDEN, cf.source
    # the seed's broadcast (ones) was folded and its product removed: bit for bit still
    _equal(cf(X1, X0), loss_and_grad(X1, X0))


def test_dead_code_is_eliminated():
    def fn(x):
        unused = ad.exp(x) * 3  # noqa: F841
        return ad.sin(x)

    cf = ad.compile(fn)
    cf(X0)
    assert "np.exp" not in cf.source and "np.sin" in cf.source


def test_source_needs_a_call():
    with pytest.raises(RuntimeError, match="call it once"):
        ad.compile(f).source


# ----- errors at replay -------------------------------------------------------------------------
def test_errors_at_replay_name_the_users_line():
    def solve(a, b):
        return ad.linalg.solve(a, b)  # the line the error names

    cf = ad.compile(solve)
    cf(np.eye(2), np.ones(2))
    with pytest.raises(np.linalg.LinAlgError, match=r"Singular.*recorded at .*test_compile.py"):
        cf(np.zeros((2, 2)), np.ones(2))


class _Scaled(ad.Function):
    @staticmethod
    def forward(ctx, x, m):
        ctx.save_for_backward(m)
        return x * 2.0

    @staticmethod
    def vjp(ctx, g):
        (m,) = ctx.saved_tensors
        return ad.linalg.solve(m, g), None  # the derivative's line the error names


def test_errors_at_replay_in_a_derivative_name_the_users_line():
    def f(x, m):
        return ad.grad(lambda x: ad.sum(_Scaled.apply(x, m)))(x)

    cf = ad.compile(f)
    _equal(cf(X0[:2], np.eye(2)), f(ad.tensor(X0[:2]), ad.tensor(np.eye(2))))
    assert "# derivative rules" in cf.source
    src, first = inspect.getsourcelines(_Scaled.vjp)
    line = first + next(i for i, ln in enumerate(src) if "linalg.solve" in ln)
    where = rf"recorded at .*test_compile.py:{line} \(vjp\)"
    with pytest.raises(
        np.linalg.LinAlgError, match=r"Singular.*replaying 'v_\d+ = k_solve.*" + where
    ):
        cf(X0[:2], np.zeros((2, 2)))


def test_every_step_is_recorded_at_the_users_line():
    # the primal and the derivative rules' steps name the line in f that ran them
    def f(x):
        return ad.value_and_grad(lambda x: ad.sum(ad.tanh(x) * x))(x)  # this line

    cf = ad.compile(f)
    cf(X0)
    prog = cf._last.program
    line = f.__code__.co_firstlineno + 1
    where = {s.where.rsplit("/", 1)[-1] for s in prog.lines.values()}
    # the primal in the lambda, the derivative rules in f (where value_and_grad ran them)
    assert where == {f"test_compile.py:{line} (<lambda>)", f"test_compile.py:{line} (f)"}


def test_a_value_read_inside_an_op_written_in_python_is_a_guard():
    # real_if_close and std decide from the values (autodiffx code outside the engine)
    cf = ad.compile(lambda x: ad.real_if_close(x * 1))
    _equal(cf(np.array([2.0 + 1e-17j])), ad.tensor([2.0]))
    _equal(cf(np.array([2.0 + 1.0j])), ad.tensor([2.0 + 1.0j]))
    assert cf.cache_info()["recordings"] == 2
    cs = ad.compile(ad.grad(lambda x: ad.std(x)))
    for x in ([1.0, 2.0], [3.0, 3.0], [1.0, 4.0]):
        _equal(cs(np.array(x)), ad.grad(lambda x: ad.std(x))(np.array(x)))


def test_an_output_the_replay_cannot_rebuild_is_refused():
    class Box:
        def __init__(self, t):
            self.t = t

    with pytest.raises(CompileError, match="returned a Box"):
        ad.compile(lambda x: Box(x * 2))(np.ones(2))


# ----- common subexpressions and copies -----------------------------------------------------
def _hvp_sin(x, v):
    return ad.hvp(lambda t: ad.sum(ad.sin(t) * t), (x,), (v,))


def test_repeated_steps_are_computed_once():
    cf = ad.compile(_hvp_sin)
    x, v = ad.tensor(np.linspace(0.1, 1.0, 10)), ad.tensor(np.ones(10))
    cf(x, v)
    src = cf.source
    # eager hvp computes cos(x) for the tangent and again in the backward rule, sin(x) in the
    # forward and again for cos' derivative; the copies of the dual inputs are no steps
    assert src.count("np.cos(") == 1 and src.count("np.sin(") == 1, src
    assert "k_alias" not in src, src
    y, w = ad.tensor(np.linspace(-2.0, 2.0, 10)), ad.tensor(np.arange(10.0))
    _equal(cf(y, w), ad.compile(_hvp_sin)(y, w))  # (replayed against recorded on Tensors)


def test_an_output_copy_keeps_its_own_buffer():
    def fn(x, v):
        y, t = ad.jvp(lambda s: ad.sin(s) * s, (x,), (v,))
        return y, t, ad.jvp(lambda s: s, (x,), (v,))[0]

    cf = ad.compile(fn)
    x, v = ad.tensor(np.linspace(0.1, 1.0, 4)), ad.tensor(np.ones(4))
    cf(x, v)
    outs = cf(x, v)
    _equal(outs, fn(x, v))
    assert outs[2] is not x and not np.shares_memory(outs[2].data, x.data)
    assert "k_alias(x)" in cf.source  # (an input's copy stays a copy)
    assert not any(np.shares_memory(a.data, b.data) for a, b in [outs[:2], outs[1:], outs[::2]])


def test_a_repeat_in_the_primal_keeps_its_warning():
    def fn(x):
        g = ad.grad(lambda s: ad.sum(ad.arcsin(s)))(x)  # x * x in a derivative rule (quiet)
        return g, ad.sum(x * x)  # the same product in the primal: it warns on overflow

    cf = ad.compile(fn)
    x = ad.tensor(np.array([0.5, 1e200]))
    with np.errstate(invalid="ignore"):
        for _ in range(2):  # recorded, replayed
            with pytest.warns(RuntimeWarning, match="overflow encountered in multiply"):
                out = cf(x)
    assert cf.source.count("np.multiply(x, x)") == 2
    with np.errstate(invalid="ignore"), pytest.warns(RuntimeWarning, match="overflow"):
        want = fn(x)
    for a, b in zip(out, want, strict=True):
        np.testing.assert_array_equal(a.data, b.data)  # (nan equal to nan)


def test_no_step_is_shared_across_a_side_effect():
    p = ad.tensor(np.array([1.0, 2.0]), requires_grad=True)
    opt = ad.optim.SGD([p], lr=0.5)
    q = p.detach()  # (p's buffer)

    def step(x):
        before = ad.sum(ad.exp(q * x))
        opt.zero_grad()
        ad.sum(p * x).backward()
        opt.step()  # changes p (and q) in place
        return before, ad.sum(ad.exp(q * x))

    cf = ad.compile(step)
    x = ad.tensor(np.array([0.5, 1.0]))
    outs = [cf(x) for _ in range(3)]
    assert cf.source.count("np.exp(") == 2, cf.source
    p.data[...] = [1.0, 2.0]
    for a, b in zip(outs, [step(x) for _ in range(3)], strict=True):
        _equal(a, b)


def _jvp_chain(x, v):
    return ad.jvp(lambda s: ad.sum(ad.tanh(ad.sin(s) * s)), (x,), (v,))


@pytest.mark.parametrize(("n", "regions"), [(10, 1), (2000, 4)])
def test_derivative_steps_on_small_arrays_wait_for_one_quiet_region(n, regions):
    # forward mode alternates primal and tangent steps; on small arrays the tangent steps
    # are moved after the primal ones (one switch of the error state), large ones stay put
    cf = ad.compile(_jvp_chain)
    x, v = ad.tensor(np.linspace(0.1, 1.0, n)), ad.tensor(np.ones(n))
    cf(x, v)
    assert cf.source.count("_q = _fp.set(") == regions, cf.source
    y, w = ad.tensor(np.linspace(-1.0, 3.0, n)), ad.tensor(np.arange(float(n)))
    _equal(cf(y, w), ad.compile(_jvp_chain)(y, w))
    _equal(cf(y, w), _jvp_chain(y, w))


def test_a_primal_step_after_a_waiting_derivative_step_still_warns():
    def fn(x, v):
        y, t = ad.jvp(lambda s: ad.exp(s) * 2.0, (x,), (v,))
        return y, t, ad.sum(ad.exp(x * 1000.0))  # overflows in the primal

    cf = ad.compile(fn)
    x, v = ad.tensor(np.array([0.5, 1.0])), ad.tensor(np.ones(2))
    for _ in range(2):  # recorded, replayed
        with pytest.warns(RuntimeWarning, match="overflow encountered in exp"):
            out = cf(x, v)
    assert cf.source.count("_q = _fp.set(") == 1
    with pytest.warns(RuntimeWarning, match="overflow"):
        _equal(out, fn(x, v))


def test_the_basis_of_a_jacobian_is_folded():
    cf = ad.compile(ad.jacrev(lambda s: ad.sum(ad.sin(s) * s)))
    x = ad.tensor(np.linspace(0.1, 1.0, 10))
    cf(x)
    assert "t_0" not in cf.source and "broadcast_to" not in cf.source, cf.source
    y = ad.tensor(np.linspace(-2.0, 1.0, 10))
    _equal(cf(y), ad.jacrev(lambda s: ad.sum(ad.sin(s) * s))(y))


@pytest.mark.parametrize("lib", ["dask.array", "array_api_strict"])
def test_arrays_of_other_libraries_are_refused_after_numpy_calls(lib):
    # the array's type is in the signature: a Dask array of the same shape and dtype as the
    # NumPy calls before it is not given to their program
    xp = pytest.importorskip(lib)
    cf = ad.compile(ad.grad(lambda x: ad.sum(ad.tanh(x))))
    x = ad.tensor(np.array([1.0, 2.0]))
    cf(x)
    cf(x)
    other = ad.tensor(xp.asarray(np.array([1.0, 2.0])))
    with pytest.raises(CompileError, match=r"holds a .*Array, not a NumPy array.*uncompiled"):
        cf(other)
    assert cf.cache_info() == {"hits": 1, "recordings": 1, "signatures": 1}


@pytest.mark.parametrize("where", ["argument", "closure"])
@pytest.mark.parametrize("lib", ["dask.array", "array_api_strict"])
def test_arrays_of_other_libraries_are_refused(lib, where):
    xp = pytest.importorskip(lib)
    other = ad.tensor(xp.asarray(np.array([1.0, 2.0])))
    w = other if where == "closure" else ad.tensor(np.ones(2))
    cf = ad.compile(lambda x: ad.sin(x) * w)
    x = other if where == "argument" else ad.tensor(np.array([3.0, 4.0]))
    with pytest.raises(CompileError, match=r"holds a .*Array, not a NumPy array.*uncompiled"):
        cf(x)
    assert cf.cache_info()["recordings"] == 0
