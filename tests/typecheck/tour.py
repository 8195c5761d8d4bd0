"""The README's tour, typed: `mypy --strict` passes on it (tests/test_typing.py), and it runs."""

from __future__ import annotations

from typing import Any, assert_type

import numpy as np

import autodiffx as ad


def tour() -> None:
    """The README's example (every statement of it), with the types an editor shows asserted."""
    x = ad.tensor([0.5, -1.0, 2.0], requires_grad=True)
    y = ad.sum(ad.tanh(x) ** 2)
    assert_type(ad.tanh(x), ad.Tensor)
    y.backward()
    (g,) = ad.autograd.grad(ad.sin(x).sum(), x, create_graph=True)
    assert g is not None  # grad's results are Optional (None for unused inputs if allowed)
    (h,) = ad.autograd.grad(g.sum(), x)  # second derivative: -sin(x)
    assert_type(h, ad.Tensor | None)
    assert_type(ad.sin(x), ad.Tensor)
    assert_type(ad.maximum(x, 0.0), ad.Tensor)
    assert_type(ad.prod(x, axis=0, keepdims=True), ad.Tensor)

    f = lambda v: ad.sum(ad.exp(v) * v)
    ad.grad(f)(x.detach())
    ad.hessian(f)(x.detach())
    ad.jacfwd(ad.jacrev(f))(x.detach())
    ad.jvp(f, (x.detach(),), (np.ones(3),))

    np.sin(x)
    ad.fd.gradcheck(f, x.detach())
    print(ad.evaluation_trace(lambda x1, x2: ad.log(x1) + x1 * x2 - ad.sin(x2), x1=2.0, x2=5.0))


def train(steps: int = 3) -> float:
    """A small model with ``ad.nn`` and ``ad.optim``, as ``autodiffx train`` does."""
    rng = np.random.default_rng(0)
    model = ad.nn.Sequential(ad.nn.Linear(4, 8, rng=rng), ad.nn.Tanh(), ad.nn.Linear(8, 1, rng=rng))
    opt = ad.optim.Adam(model.parameters(), lr=1e-2)
    sched = ad.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
    xs = ad.tensor(rng.normal(size=(16, 4)))
    ys = ad.tensor(rng.normal(size=(16, 1)))
    loss = ad.zeros(())
    for _ in range(steps):
        opt.zero_grad()
        loss = ad.nn.functional.mse_loss(model(xs), ys)
        assert_type(loss, ad.Tensor)
        assert_type(ad.nn.functional.tanh(loss), ad.Tensor)  # a primitive re-exported by nn
        loss.backward()
        opt.step()
        sched.step()
    state: dict[str, Any] = model.state_dict()
    model.load_state_dict(state)
    return float(loss)


if __name__ == "__main__":
    tour()
    print(train())
