"""``autodiffx train``: the digits MLP or CNN of :mod:`autodiffx.train` from the command line,
with a progress bar, up-front checks of the options and one-line errors."""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..train import (
    ACTIVATIONS,
    CHECKPOINT,
    DEFAULT_LR,
    MODELS,
    OPTIMIZERS,
    PLOT,
    TrainConfig,
    TrainError,
    TrainResult,
    fit,
    load_checkpoint,
)
from .argtypes import (
    memory_problem,
    non_negative_int,
    output_dir_problem,
    positive_float,
    positive_int,
    widths,
)
from .report import Progress, fmt_fraction, fmt_loss, fmt_seconds

_RUN_OPTIONS = ("model", "hidden", "activation", "optimizer", "lr", "batch_size", "seed")
_MLP_OPTIONS = ("hidden", "activation")


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``train`` subparser. Options that define the run default to None, meaning "the
    checkpoint's value" with ``--resume`` and the TrainConfig default otherwise.

    >>> from autodiffx.cli import build_parser
    >>> build_parser().parse_args(["train", "--epochs", "5", "--hidden", "128,64"]).hidden
    (128, 64)
    """
    parser = subparsers.add_parser(
        "train",
        help="train an MLP or a CNN on the embedded digits (checkpoint, resume, loss plot)",
        description="Train a multilayer perceptron (or, with --model cnn, a small "
        "convolutional network) on the handwritten digits shipped with "
        "autodiffx (1797 8x8 images; a seeded, stratified 80/20 split), showing a progress "
        "bar (on a terminal, with tqdm installed) and a line per epoch, then the final test "
        "accuracy; a checkpoint is written after every epoch and a loss/accuracy PNG at the "
        "end.",
    )
    _add_run_options(parser)
    _add_output_options(parser)
    parser.set_defaults(func=run, parser=parser)
    return parser


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    defaults = TrainConfig()
    lrs = ", ".join(f"{k} {v:g}" for k, v in DEFAULT_LR.items())
    parser.add_argument(
        "--model",
        choices=MODELS,
        default=None,
        help=f"default {defaults.model}; cnn is ad.nn.digits_cnn(): two blocks of 3x3 conv "
        "(16, 32 channels), ReLU and 2x2 max-pool, then a linear layer (20 epochs reach "
        "about 0.99 test accuracy; --hidden and --activation are the MLP's)",
    )
    parser.add_argument(
        "--epochs",
        type=positive_int,
        default=20,
        help="total number of epochs, counting those of a resumed checkpoint (default 20)",
    )
    parser.add_argument(
        "--optimizer",
        choices=OPTIMIZERS,
        default=None,
        help=f"default {defaults.optimizer}; sgd has momentum 0.9; lbfgs takes one full-batch "
        "step of 20 iterations per epoch",
    )
    parser.add_argument(
        "--lr", type=positive_float, default=None, help=f"learning rate (default: {lrs})"
    )
    parser.add_argument(
        "--batch-size",
        type=positive_int,
        default=None,
        help=f"minibatch size (default {defaults.batch_size})",
    )
    parser.add_argument(
        "--hidden",
        type=widths,
        default=None,
        metavar="W[,W...]",
        help="hidden layer widths (default 64: a 64-64-10 network)",
    )
    parser.add_argument(
        "--activation",
        choices=ACTIVATIONS,
        default=None,
        help=f"hidden activation (default {defaults.activation})",
    )
    parser.add_argument(
        "--seed",
        type=non_negative_int,
        default=None,
        help=f"seeds the train/test split, the initial weights and the shuffling "
        f"(default {defaults.seed})",
    )


def _add_output_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--out",
        default="out",
        metavar="DIR",
        help=f"where {CHECKPOINT} (after every epoch) and {PLOT} are written (default ./out)",
    )
    parser.add_argument(
        "--resume",
        default=None,
        metavar="CHECKPOINT",
        help="continue from a checkpoint to --epochs in total, exactly as an uninterrupted "
        "run; its settings are used unless given (--lr and --batch-size may change)",
    )
    parser.add_argument("--no-plot", action="store_true", help=f"do not write {PLOT}")
    parser.add_argument(
        "--compile",
        action="store_true",
        help="run the minibatch steps through ad.compile (recorded once per batch shape, "
        "replayed as generated NumPy; the same weights as eager, bit for bit; not lbfgs)",
    )
    parser.add_argument(
        "--quiet",
        action="store_true",
        help="no progress bar and no epoch lines on stderr, only the result and errors",
    )


def memory_estimate(config: TrainConfig) -> float:
    """Bytes that training ``config`` needs at its peak, roughly (an upper estimate).

    The parameters, their gradients, the optimizer's state (LBFGS keeps ``2 * 20`` vectors
    of history) and the checkpoint's copies of both, plus the activations of the whole
    data set (the evaluation after every epoch, and LBFGS's full batch, which keeps them for
    the backward pass).

    Examples
    --------
    >>> from autodiffx.train import TrainConfig
    >>> memory_estimate(TrainConfig()) < 200e6
    True
    >>> f"{memory_estimate(TrainConfig(hidden=(10**8,))):.1e}"
    '3.2e+12'
    """
    if config.model == "cnn":
        # 6090 parameters; per image about 7000 floats of activations, im2col copies and
        # pooling choices in the forward pass
        n_params, per_image = 6090, 7000
    else:
        widths = (64, *config.hidden, 10)
        n_params = sum(a * b + b for a, b in itertools.pairwise(widths))
        per_image = 2 * sum(widths)
    copies = {"sgd": 1, "rmsprop": 1, "adagrad": 1, "adam": 2, "adamw": 2, "lbfgs": 44}
    state = n_params * (2 + 2 * copies[config.optimizer])
    activations = 1797 * per_image * (2 if config.optimizer == "lbfgs" else 1)
    return 8.0 * (state + activations) + _BASE_MEMORY


# NOTE: measured peaks (ru_maxrss, one epoch with the plot) are 0.7x to 0.85x of the
# estimate: 101 MB for --hidden 8, 167 MB for 4000 (adam), 368 MB for 4000 (lbfgs), 2.6 GB
# for 100000 (sgd). The base is a Python + NumPy + autodiffx + matplotlib process.
_BASE_MEMORY = 100e6


def _options_problem(args: argparse.Namespace, config: TrainConfig) -> str | None:
    """A one-line reason to refuse the run before it starts, or None."""
    files = {CHECKPOINT: "checkpoint"} if args.no_plot else {CHECKPOINT: "checkpoint", PLOT: "png"}
    problem = output_dir_problem(args.out, files, "--out")
    if problem:
        return problem
    net = (
        "the digits CNN"
        if config.model == "cnn"
        else "a " + "-".join(map(str, (64, *config.hidden, 10))) + " network"
    )
    return memory_problem(memory_estimate(config), f"training {net} with {config.optimizer}")


def _checked_run(args: argparse.Namespace) -> tuple[TrainConfig, dict[str, Any] | None]:
    """The run's config and the checkpoint to resume (or None); TrainError if refused."""
    given = {k: getattr(args, k) for k in _RUN_OPTIONS if getattr(args, k) is not None}
    ck = None
    saved = {}
    if args.resume is not None:
        ck = load_checkpoint(args.resume)
        saved = ck["config"]
    trained = saved.get("model", TrainConfig.model)
    model = given.get("model", trained)
    if ck is not None and model != trained:  # checked before the MLP options below
        raise TrainError(
            f"cannot resume: the checkpoint was trained with model {trained!r}, not {model!r} "
            "(omit --model to continue with the checkpoint's)",
            2,
        )
    if model == "cnn" and any(k in given for k in _MLP_OPTIONS):
        options = " and ".join("--" + k for k in _MLP_OPTIONS if k in given)
        raise TrainError(f"{options}: only for --model mlp (the cnn has a fixed shape)", 2)
    config = TrainConfig(**{**saved, **given})
    problem = _options_problem(args, config)
    if problem:
        raise TrainError(problem, 2)
    return config, ck


def _train(args: argparse.Namespace, config: TrainConfig, ck: Any) -> TrainResult:
    """fit with the progress on stderr: a bar per epoch, a line after it."""
    digits = len(str(args.epochs))

    def head(epoch: int) -> str:
        return f"epoch {epoch:>{digits}}/{args.epochs}"

    def on_batch(epoch: int, done: int, total: int, loss: float) -> None:
        progress.update(head(epoch), done, total, f"loss {fmt_loss(loss)}")

    def on_epoch(epoch: int, h: Mapping[str, list[float]]) -> None:
        progress.line(
            f"{head(epoch)}  loss {fmt_loss(h['loss'][-1])}  train acc "
            f"{fmt_fraction(h['train_acc'][-1])}  test acc {fmt_fraction(h['test_acc'][-1])}  "
            f"{fmt_seconds(h['seconds'][-1])}"
        )

    with Progress(sys.stderr, quiet=args.quiet) as progress:
        return fit(
            config,
            args.epochs,
            out=args.out,
            resume=ck,
            plot=not args.no_plot,
            on_batch=on_batch if progress.has_bar else None,
            on_epoch=on_epoch,
            compile=args.compile,
        )


def run(args: argparse.Namespace) -> int:
    """Run ``autodiffx train`` with parsed arguments; return the exit status.

    Progress goes to stderr, the result to stdout; a :class:`~autodiffx.train.TrainError`
    is printed as one line on stderr and its status returned (2 for a bad ``--resume``
    checkpoint, an ``--out`` that holds files the run would overwrite but did not write, or
    a network that needs more memory than the machine has available; 1 for failures while
    training); an interruption (Ctrl-C) returns 130.

    Examples
    --------
    >>> import tempfile
    >>> from autodiffx.cli import build_parser
    >>> run(build_parser().parse_args(["train", "--epochs", "1", "--hidden", "8", "--out",
    ...                                tempfile.mkdtemp(), "--no-plot", "--quiet"]))
    ... # doctest: +ELLIPSIS
    test accuracy ... after 1 epoch ...
    0
    """
    t0 = time.perf_counter()
    try:
        result = _train(args, *_checked_run(args))
    except TrainError as e:
        print(f"autodiffx train: error: {e}", file=sys.stderr)
        return e.status
    except KeyboardInterrupt:
        where = os.path.join(args.out, CHECKPOINT)
        hint = f" (resume with --resume {where})" if os.path.exists(where) else ""
        print(f"\nautodiffx train: interrupted{hint}", file=sys.stderr)
        return 130
    _print_result(args, result, time.perf_counter() - t0)
    return 0


def _print_result(args: argparse.Namespace, result: TrainResult, seconds: float) -> None:
    if not result.trained:
        print(
            f"the checkpoint is already at epoch {result.epoch} (--epochs {args.epochs}): "
            "nothing to train"
        )
    n_test = result.n_test
    correct = round(result.test_accuracy * n_test)
    best = fmt_fraction(float(np.max(result.history["test_acc"])))
    print(
        f"test accuracy {fmt_fraction(result.test_accuracy)} ({correct}/{n_test}) after "
        f"{result.epoch} epoch{'s' if result.epoch != 1 else ''} (best {best}); "
        f"{fmt_seconds(seconds)}"
    )
    if result.checkpoint:
        print(f"checkpoint: {result.checkpoint}")
    if result.plot:
        print(f"plot: {result.plot}")
    elif result.trained and not args.no_plot:
        print(
            "matplotlib is not installed: no plot written (pip install matplotlib)",
            file=sys.stderr,
        )
