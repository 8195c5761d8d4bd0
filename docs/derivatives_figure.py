"""Draws docs/_static/derivatives.png, the figure of the site's index page and the README."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

import autodiffx as ad


def derivative(f):
    """The derivative of an elementwise function, on a whole array at once."""
    return lambda v: ad.grad(lambda u: ad.sum(f(u)))(v)


def main() -> None:
    x = np.linspace(-4, 4, 401)
    f = ad.tanh
    fig, ax = plt.subplots(figsize=(7, 3.6), layout="constrained")
    for label in ["tanh", "1st derivative", "2nd", "3rd", "4th"]:
        ax.plot(x, f(ad.tensor(x)).data, label=label)
        f = derivative(f)
    ax.set(xlabel="x", title="tanh and its derivatives, each by ad.grad of the previous one")
    ax.grid(alpha=0.3)
    ax.legend(ncols=5, loc="upper center", bbox_to_anchor=(0.5, -0.2), frameon=False)
    fig.savefig(Path(__file__).resolve().parent / "_static" / "derivatives.png", dpi=100)


if __name__ == "__main__":
    main()
