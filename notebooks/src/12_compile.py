# %% [markdown]
# # 12 · `ad.compile`: the evaluation trace as a program
#
# Notebook 01 wrote the evaluation trace of $f(x_1, x_2) = \ln x_1 + x_1 x_2 - \sin x_2$ as
# tables: the primal steps $v_1 \dots v_5$, then the adjoints $\bar v_i$ from the output back
# to the inputs. Those tables are a program. `ad.compile(g)` records the primitives `g`
# applies the first time it is called with given input shapes and dtypes, and generates that
# program as straight-line NumPy: one call per line, the primal section, then the derivative
# rules. Later calls replay the generated function on the arrays, without Tensors, graph
# nodes or dispatch in between, and compute the same bits as eager autodiffx.
#
# This notebook shows the generated program beside the adjoint table, what happens when
# Python code branches on a value (a **guard**), and a small network trained eagerly and
# compiled, with timings and the same final weights.

# %%
import time
import unicodedata

import numpy as np

import autodiffx as ad
from autodiffx.train import make_model, split_digits


def f(x1, x2):
    return ad.log(x1) + x1 * x2 - ad.sin(x2)


tr = ad.evaluation_trace(f, x1=2.0, x2=5.0)
print(tr.primal())

# %% [markdown]
# ## The adjoint table beside the generated program
#
# `ad.value_and_grad(f, argnums=(0, 1))` computes $y$ and both adjoints eagerly. Compiled,
# its first call records and returns the eager result; `cf.source` is the program it
# generated. (Wrapping it in a function with the parameters `x1, x2` lets the program use
# those names.)

# %%
value_and_grad_f = ad.value_and_grad(f, argnums=(0, 1))


def y_and_adjoints(x1, x2):
    return value_and_grad_f(x1, x2)


cf = ad.compile(y_and_adjoints)
y, (x1_bar, x2_bar) = cf(ad.tensor(2.0), ad.tensor(5.0))  # the first call records
print(f"y = {y.item():.3f}, x̄1 = {x1_bar.item():.3f}, x̄2 = {x2_bar.item():.4f}")


def width(s):
    return sum(0 if unicodedata.combining(c) else 1 for c in s)


def side_by_side(left, right, gap=4):
    a, b = str(left).splitlines(), str(right).splitlines()
    w = max(width(s) for s in a) + gap
    a += [""] * (len(b) - len(a))
    b += [""] * (len(a) - len(b))
    return "\n".join(s + " " * (w - width(s)) + t for s, t in zip(a, b))


print(side_by_side(tr.adjoint(), cf.source))

# %% [markdown]
# Read the two columns together:
#
# * `v_1 … v_5` are the primal steps $v_1 \dots v_5$ (0-d arrays, hence `np.asarray`).
# * The adjoints $\bar v_5 = \bar y = 1$, $\bar v_3 = \bar v_2 = \bar v_1 = 1$ and
#   $\bar v_4 = -1$ are constants: the recording saw that they do not depend on the inputs
#   and **folded** them. Products by the seed 1 disappear; $\bar v_4 = -1$ survives as the
#   constant `c_1` in `v_7 = c_1 · cos(x2)`.
# * $\bar v_0 = \bar v_2 v_{-1} + \bar v_4 \cos v_0$ is `v_6`, `v_7`, `v_8`, and
#   $\bar v_{-1} = \bar v_1 / v_{-1} + \bar v_2 v_0$ is `v_9`, `v_10`: the textbook's
#   derivative program, readable and debuggable (what Google's Tangent generated from source).
# * `del` frees each intermediate after its last use, as a careful hand-written program would.
#
# Replays compute exactly what eager autodiffx computes:

# %%
rng = np.random.default_rng(0)
for _ in range(3):
    a, b = ad.tensor(rng.uniform(0.5, 3.0)), ad.tensor(rng.uniform(-3.0, 3.0))
    got, want = cf(a, b), value_and_grad_f(a, b)
    same = all(np.array_equal(g.data, w.data) for g, w in zip(ad.func.tree_flatten(got)[0], ad.func.tree_flatten(want)[0]))
    print(f"x = ({a.item():.3f}, {b.item():+.3f}): y = {got[0].item():+.4f}, bit-identical to eager: {same}")
    assert same
print(cf.cache_info())

# %% [markdown]
# ## Guards: Python control flow on values
#
# `jax.jit` traces with abstract values, so an `if` on a traced value is an error there.
# `ad.compile` records with the real values: every read of a value (`bool(t)` in an `if`,
# `float(t)`, `t.item()`) becomes a **guard**, a line of the program that checks the same
# outcome at every replay. When a guard fails, the call records another variant (up to four per
# input signature) and keeps both.

# %%
def loss(x):
    if ad.sum(x) > 0:  # a branch on a value: recorded as a guard
        return ad.sum(x**2)
    return ad.sum(ad.sin(x))


cg = ad.compile(ad.grad(loss))
pos, neg = np.array([0.5, 1.0, 2.0]), np.array([-0.5, -1.0, 0.2])

print("positive:", cg(pos), cg.cache_info())  # records
print("positive:", cg(2 * pos), cg.cache_info())  # replays: the guard holds
print(cg.source)

# %%
print("negative:", cg(neg), cg.cache_info())  # the guard fails: another recording
print(cg.source)
print("positive again:", cg(pos), cg.cache_info())  # replays the first variant
for x in (pos, neg, 3 * neg):
    assert np.array_equal(cg(x).data, ad.grad(loss)(x).data)

# %% [markdown]
# Both programs check `if v_2.tobytes() != g_0: return MISS  # bool(t)`: `v_2` is the
# comparison `sum(x) > 0`, `g_0` its bytes when the variant was recorded. On the negative input the check fails,
# the call runs `loss` eagerly while recording the other branch (`cos` instead of `2x`), and
# from then on both variants are replayed, each under its own guard.
#
# ## A small model trained eagerly and compiled
#
# A training step (forward, `loss.backward()`, `optimizer.step()`) compiles as well: the
# effects on the parameters, their `.grad` and the optimizer's state are lines of the program,
# replayed in order. Two copies of the digits MLP of `autodiffx train` (64 → 32 tanh → 10,
# Adam), from the same initial weights on the same minibatches: one eager, one compiled.

# %%
Xtr, ytr, Xte, yte = split_digits(seed=0)
EPOCHS, BATCH = 10, 64


def make():
    model = make_model((32,), "tanh", rng=0)
    return model, ad.optim.Adam(model.parameters(), lr=0.01)


def step_of(model, opt):
    def step(X, y):
        opt.zero_grad()
        loss = ad.nn.functional.cross_entropy(model(X), y)
        loss.backward()
        opt.step()
        return loss

    return step


def train(step):
    """Seconds and loss of every step, and which steps met a new minibatch size."""
    order = np.random.default_rng(1)
    times, losses, sizes = [], [], []
    for _ in range(EPOCHS):
        perm = order.permutation(len(Xtr))
        for i in range(0, len(perm), BATCH):
            idx = perm[i : i + BATCH]
            t0 = time.perf_counter()
            losses.append(step(Xtr[idx], ytr[idx]).item())
            times.append(time.perf_counter() - t0)
            sizes.append(len(idx))
    first = [sizes.index(n) for n in set(sizes)]  # a compiled step records there
    return np.array(times), np.array(losses), first


eager_model, eager_opt = make()
compiled_model, compiled_opt = make()
compiled_step = ad.compile(step_of(compiled_model, compiled_opt))
t_eager, loss_eager, _ = train(step_of(eager_model, eager_opt))
t_compiled, loss_compiled, recorded = train(compiled_step)

print(f"{len(t_eager)} steps; {compiled_step.cache_info()}")
print("(two signatures: the full minibatches and the last, smaller one of each epoch)")
print(f"eager:    {t_eager.sum() * 1e3:7.1f} ms in total, median step {np.median(t_eager) * 1e6:6.0f} µs")
print(f"compiled: {t_compiled.sum() * 1e3:7.1f} ms in total, median step {np.median(t_compiled) * 1e6:6.0f} µs")
print(f"          of which the two recordings: {t_compiled[recorded].sum() * 1e3:.1f} ms")
print(f"median step: compiled {np.median(t_eager) / np.median(t_compiled):.1f}× faster")

# %% [markdown]
# The compiled step spends no time on Tensors, graph nodes or the backward sweep's
# bookkeeping: on a network this small that is a good part of a step (on a large one the
# matrix products dominate and both take about the same time). The recordings cost a few
# eager steps, paid once per minibatch size. And it trains the same network, bit for bit:
# the same losses at every step and the same final weights.

# %%
assert np.array_equal(loss_eager, loss_compiled)
for p, q in zip(eager_model.parameters(), compiled_model.parameters()):
    assert np.array_equal(p.data, q.data)
accuracy = (np.argmax(compiled_model(Xte).data, axis=1) == yte).mean()
print(f"final loss {loss_compiled[-1]:.4f}; same weights; test accuracy {accuracy:.3f}")

# %% [markdown]
# What the program does not see is documented in `docs/compile.md`: a module's `training` flag
# flipped between calls (pass it as an argument: `autodiffx train --compile` does), a parameter
# rebound to another tensor, NumPy's own random functions. Reads of `.grad` by your code and
# random draws inside the function (Dropout) are refused while recording, with what to do.
