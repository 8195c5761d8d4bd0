# %% [markdown]
# # 1. The evaluation trace
#
# A program that computes $y = f(x)$ is a sequence of elementary operations. Written out, one
# operation per line, it is the **evaluation trace** (or *Wengert list*). Griewank and Walther
# (*Evaluating Derivatives*, 2nd ed., 2008) number its variables
#
# * $v_{1-n}, \dots, v_0$: the $n$ inputs,
# * $v_1, \dots, v_l$: the intermediate steps, each an elementary function of earlier $v$'s,
# * $y = v_l$: the output.
#
# Both modes of automatic differentiation walk this list: forward mode carries a **tangent**
# $\dot v_i$ along with every value, reverse mode goes back from $y$ and accumulates the
# **adjoints** $\bar v_i = \partial y / \partial v_i$.
#
# The textbook example (also table 2 of Baydin et al., *Automatic differentiation in machine
# learning: a survey*, JMLR 2018) is
#
# $$f(x_1, x_2) = \ln x_1 + x_1 x_2 - \sin x_2 \quad \text{at } (x_1, x_2) = (2, 5).$$

# %%
import math
import unicodedata

import numpy as np

import autodiffx as ad
from autodiffx.wengert import evaluation_trace


def f(x1, x2):
    return ad.log(x1) + x1 * x2 - ad.sin(x2)


tr = evaluation_trace(f, x1=2.0, x2=5.0)
tr  # Jupyter shows the primal, tangent and adjoint tables side by side

# %% [markdown]
# ## The forward primal trace
#
# `evaluation_trace` runs `f` once and records every primitive it applies, in the order Python
# evaluates them. Python computes `ln(x1) + x1*x2` before `sin(x2)`, so the sine is $v_4$ here
# where the textbook lists it as $v_3$: any order in which every operand comes before its use is
# a valid evaluation trace, and the values are the same.

# %%
print(tr.primal())

# %% [markdown]
# ## The forward tangent trace
#
# Seed the input tangents with a direction $\dot x$, here $\dot x = (1, 0)$, and apply the chain
# rule line by line: $\dot v_i = \sum_j \frac{\partial \varphi_i}{\partial v_j} \dot v_j$. The last
# line is the directional derivative $\dot y = \nabla f \cdot \dot x = \partial y / \partial x_1$.

# %%
print(tr.tangent(seed={"x1": 1.0}))

# %% [markdown]
# ## The reverse adjoint trace
#
# Seed $\bar y = 1$ and walk the list backwards: every variable collects
# $\bar v_j = \sum_{i \text{ reads } v_j} \bar v_i \, \partial \varphi_i / \partial v_j$ from the
# steps that read it. One backward sweep gives the whole gradient.

# %%
print(tr.adjoint())

# %% [markdown]
# ## Forward and reverse mode side by side
#
# Forward mode needs one sweep per input direction; reverse mode one sweep for all inputs.
# Both give $\partial y / \partial x_1 = 5.5$ and $\partial y / \partial x_2 = 1.716$.

# %%
def width(s):
    return sum(0 if unicodedata.combining(c) else 1 for c in s)


def side_by_side(left, right, gap=4):
    a, b = str(left).splitlines(), str(right).splitlines()
    w = max(width(s) for s in a) + gap
    a += [""] * (len(b) - len(a))
    b += [""] * (len(a) - len(b))
    return "\n".join(s + " " * (w - width(s)) + t for s, t in zip(a, b))


print(side_by_side(tr.tangent(seed="x2"), tr.adjoint()))
print()
gradient = tr.adjoint().grad
for name in tr.names:
    forward = tr.tangent(seed=name).y_dot.item()
    print(f"dy/d{name}: forward mode {forward:.3f}  (seed {name}),  reverse mode {gradient[name].item():.3f}")

# %% [markdown]
# ## Dual numbers: (value, tangent) pairs
#
# Forward mode is arithmetic on **dual numbers** $a + b\varepsilon$ with $\varepsilon^2 = 0$:
# $(a + b\varepsilon)(c + d\varepsilon) = ac + (ad + bc)\varepsilon$, and
# $g(a + b\varepsilon) = g(a) + g'(a)\, b\, \varepsilon$. A dozen lines are enough:

# %%
class Dual:
    # a + b ε with ε² = 0: the value a and the tangent b travel together
    def __init__(self, value, tangent=0.0):
        self.value, self.tangent = value, tangent

    def __add__(self, other):
        return Dual(self.value + other.value, self.tangent + other.tangent)

    def __sub__(self, other):
        return Dual(self.value - other.value, self.tangent - other.tangent)

    def __mul__(self, other):
        return Dual(self.value * other.value, self.tangent * other.value + self.value * other.tangent)

    def __repr__(self):
        return f"({self.value:.3f}, {self.tangent:.3f})"


def log(d):
    return Dual(math.log(d.value), d.tangent / d.value)


def sin(d):
    return Dual(math.sin(d.value), d.tangent * math.cos(d.value))


x1, x2 = Dual(2.0, 1.0), Dual(5.0, 0.0)  # seed: d/dx1
v1 = log(x1)
v2 = x1 * x2
v3 = v1 + v2
v4 = sin(x2)
v5 = v3 - v4
for name, v in [("v-1", x1), ("v0", x2), ("v1", v1), ("v2", v2), ("v3", v3), ("v4", v4), ("v5", v5)]:
    print(f"{name:>4} = {v}")

# %% [markdown]
# The library's forward mode does the same with dual tensors: `make_dual` attaches a tangent,
# every operation pushes it through its JVP rule, `unpack_dual` reads it back. The pairs are
# exactly the two columns of the primal and tangent tables.

# %%
with ad.forward.dual_level():
    d1 = ad.forward.make_dual(ad.tensor(2.0), ad.tensor(1.0))
    d2 = ad.forward.make_dual(ad.tensor(5.0), ad.tensor(0.0))
    value, tangent = ad.forward.unpack_dual(f(d1, d2))
print(f"y as a dual number: ({value.item():.3f}, {tangent.item():.3f})")

primal, tangents = tr.primal().values, tr.tangent(seed="x1").values
for i in primal:
    print(f"v{i:<3} ({primal[i].item():8.3f}, {tangents[i].item():6.3f})")

# %% [markdown]
# ## The graph
#
# `to_dot()` gives the computational graph as Graphviz text (`dot -Tpng trace.dot -o trace.png`):
# inputs are boxes, the output is circled twice.

# %%
print(tr.to_dot())

# %% [markdown]
# ## Any program, scalars or arrays
#
# The trace records whatever the program does, here $y = \sum_i \tanh((A x)_i)$ with
# $x \in \mathbb{R}^8$. Array-valued steps are summarised by their shape and range, constants
# (the matrix $A$) appear inline, and the adjoint of $x$ is the gradient
# $A^\top (1 - \tanh^2(Ax))$.

# %%
rng = np.random.default_rng(0)
A = rng.standard_normal((8, 8)) / np.sqrt(8)
x0 = np.linspace(-1.0, 1.0, 8)
tr2 = evaluation_trace(lambda x: ad.sum(ad.tanh(A @ x)), x=x0)
print(tr2.primal())
print()
print(tr2.adjoint())
exact = A.T @ (1 - np.tanh(A @ x0) ** 2)
print("\nmax |x̄ - exact gradient| =", np.abs(tr2.adjoint().grad["x"] - exact).max())
