"""Train ``ad.nn.digits_cnn`` on the embedded digits and print test accuracy and time.

Run from the repository root (``python benchmarks/train_cnn.py``; ``--torch`` also trains
the same network in PyTorch for comparison). Adam with a ``OneCycleLR`` schedule stepped per
batch, batch 64, the seeded split of ``autodiffx.train.split_digits`` (1438 train, 359 test).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import autodiffx as ad
from autodiffx.train import evaluate, split_digits, train_epoch


def main() -> None:
    """Train for ``--epochs`` and print one line per epoch."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--max-lr", type=float, default=0.02)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    Xtr, ytr, Xte, yte = split_digits(args.seed)
    model = ad.nn.digits_cnn(rng=args.seed)
    opt = ad.optim.Adam(model.parameters(), lr=args.max_lr)
    steps = -(-len(ytr) // args.batch_size)
    sched = ad.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=args.max_lr, epochs=args.epochs, steps_per_epoch=steps
    )
    start = time.perf_counter()
    for epoch in range(args.epochs):
        rng = np.random.default_rng([args.seed, epoch])
        loss = train_epoch(model, opt, Xtr, ytr, args.batch_size, rng, lambda *_: sched.step())
        _, acc = evaluate(model, Xte, yte)
        took = time.perf_counter() - start
        print(f"epoch {epoch + 1:2d}  train loss {loss:.4f}  test accuracy {acc:.4f}  {took:.1f} s")


if __name__ == "__main__":
    main()
