"""Command line: ``python -m autodiffx`` (installed as ``autodiffx``)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import numpy as np


def _demo(args: argparse.Namespace) -> int:
    import autodiffx as ad

    rng = np.random.default_rng(args.seed)
    n = args.n
    a = rng.standard_normal((n, n)) / np.sqrt(n)
    x = ad.tensor(rng.standard_normal(n), requires_grad=True)

    def f(v: ad.Tensor) -> ad.Tensor:
        return ad.sum(ad.tanh(a @ v) ** 2)

    y = f(x)
    y.backward()
    exact = 2 * a.T @ (np.tanh(a @ x.data) * (1 - np.tanh(a @ x.data) ** 2))
    print(f"f(x) = sum(tanh(A @ x)**2), A: {n}x{n}, f = {y.item():.12g}")
    print("reverse mode vs the hand-derived gradient:")
    print(f"  max |AD           - exact| = {np.abs(x.grad.data - exact).max():.3e}")
    for scheme in ("forward", "central", "complex"):
        fd = ad.fd.gradient(lambda v: f(ad.tensor(v)), x.data, scheme=scheme)
        print(f"  max |FD {scheme:<9s}- exact| = {np.abs(fd - exact).max():.3e}")
    v = rng.standard_normal(n)
    with ad.forward.dual_level():
        _, t = ad.forward.unpack_dual(f(ad.forward.make_dual(x.detach(), v)))
    print(f"forward mode: |<grad, v> - jvp| = {abs(exact @ v - t.item()):.3e}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``autodiffx`` command.

    Examples
    --------
    >>> main(["demo", "--n", "3"])  # doctest: +ELLIPSIS
    f(x) = sum(tanh(A @ x)**2), A: 3x3, ...
    0
    """
    parser = argparse.ArgumentParser(prog="autodiffx", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser(
        "demo", help="gradients by reverse mode, forward mode and finite differences"
    )
    demo.add_argument("--n", type=int, default=50, help="problem size (default 50)")
    demo.add_argument("--seed", type=int, default=0, help="random seed")
    demo.set_defaults(func=_demo)
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
