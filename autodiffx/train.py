"""``autodiffx train``: an MLP on the embedded digits, with checkpoints, exact resume and a plot.

The pieces are usable on their own (the notebooks do): :func:`split_digits` (a seeded,
stratified train/test split), :func:`make_model`, :func:`make_optimizer`,
:func:`train_epoch`, :func:`evaluate`, :func:`plot_history`; :func:`fit` ties them together
and writes a checkpoint after every epoch, from which a run resumes bit for bit.

Checkpoint (``ad.save``, so no pickle; written atomically after every epoch)::

    {"format": "autodiffx.train", "version": 1,
     "config": {"hidden": [64], "activation": "tanh", "optimizer": "adam", "lr": 0.003,
                "batch_size": 32, "seed": 0},
     "epoch": 20, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
     "rng": the shuffling generator's ``bit_generator.state`` (a dict of ints),
     "history": {"loss": (epoch,), "train_acc": ..., "test_loss": ..., "test_acc": ...,
                 "seconds": ...}}

Every random number comes from the seed through ``numpy.random.SeedSequence(seed).spawn(3)``
(split, initialisation, shuffling); evaluation draws none. Resuming restores the model, the
optimizer state and the shuffling generator, so the run continues on exactly the path of an
uninterrupted one.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import sys
import time
import uuid
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TextIO

import numpy as np

from . import nn, optim
from ._argtypes import non_negative_int, positive_float, positive_int
from ._mode import no_grad
from .data import load_digits
from .io import load, save
from .nn import functional as F

__all__ = [
    "ACTIVATIONS",
    "DEFAULT_LR",
    "OPTIMIZERS",
    "TrainConfig",
    "TrainError",
    "TrainResult",
    "add_arguments",
    "evaluate",
    "fit",
    "load_checkpoint",
    "make_model",
    "make_optimizer",
    "plot_history",
    "run",
    "split_digits",
    "train_epoch",
]

FORMAT = "autodiffx.train"
VERSION = 1
CHECKPOINT = "checkpoint.npz"
PLOT = "training.png"
TEST_FRACTION = 0.2

#: The learning rate used when none is given, per optimizer.
DEFAULT_LR: dict[str, float] = {
    "adam": 3e-3,
    "adamw": 3e-3,
    "sgd": 0.05,
    "rmsprop": 1e-3,
    "adagrad": 0.05,
    "lbfgs": 1.0,
}
#: The optimizers ``--optimizer`` accepts.
OPTIMIZERS: tuple[str, ...] = tuple(DEFAULT_LR)
#: The hidden-layer activations ``--activation`` accepts.
ACTIVATIONS: tuple[str, ...] = ("tanh", "relu")
_HISTORY_KEYS = ("loss", "train_acc", "test_loss", "test_acc", "seconds")


class TrainError(Exception):
    """A problem the user can fix (bad checkpoint, bad option, unwritable output): the
    command line prints its one-line message and exits with status 1.

    Examples
    --------
    >>> from autodiffx.train import TrainError, load_checkpoint
    >>> try:
    ...     load_checkpoint("no/such/checkpoint.npz")
    ... except TrainError as e:
    ...     print(e)
    cannot resume: checkpoint 'no/such/checkpoint.npz' does not exist
    """


@dataclass(frozen=True)
class TrainConfig:
    """What defines a training run (saved in the checkpoint).

    Parameters
    ----------
    hidden : tuple of int
        Widths of the hidden layers (default ``(64,)``: a 64-64-10 network).
    activation : {"tanh", "relu"}
        Hidden activation.
    optimizer : {"adam", "adamw", "sgd", "rmsprop", "adagrad", "lbfgs"}
        ``sgd`` has momentum 0.9; ``lbfgs`` takes one full-batch step of 20 iterations with
        a strong-Wolfe line search per epoch (``batch_size`` is then unused).
    lr : float, optional
        Learning rate; None takes ``DEFAULT_LR[optimizer]``.
    batch_size : int
        Minibatch size (default 32).
    seed : int
        Seeds the split, the initialisation and the shuffling (default 0).

    Examples
    --------
    >>> from autodiffx.train import TrainConfig
    >>> TrainConfig(optimizer="sgd")
    TrainConfig(hidden=(64,), activation='tanh', optimizer='sgd', lr=0.05, batch_size=32, seed=0)
    >>> TrainConfig(batch_size=0)
    Traceback (most recent call last):
    ...
    ValueError: batch_size must be a positive integer, got 0
    """

    hidden: tuple[int, ...] = (64,)
    activation: str = "tanh"
    optimizer: str = "adam"
    lr: float | None = None
    batch_size: int = 32
    seed: int = 0

    def __post_init__(self) -> None:
        hidden = tuple(self.hidden)
        if not hidden or not all(_is_int(h) and h > 0 for h in hidden):
            raise ValueError(f"hidden must be a non-empty list of positive integers, got {hidden}")
        object.__setattr__(self, "hidden", tuple(int(h) for h in hidden))
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got {self.activation!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        lr = DEFAULT_LR[self.optimizer] if self.lr is None else self.lr
        if isinstance(lr, bool) or not isinstance(lr, int | float) or not 0 < lr < math.inf:
            raise ValueError(f"lr must be a positive finite number, got {lr!r}")
        object.__setattr__(self, "lr", float(lr))
        if not _is_int(self.batch_size) or self.batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {self.batch_size!r}")
        object.__setattr__(self, "batch_size", int(self.batch_size))
        if not _is_int(self.seed) or self.seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {self.seed!r}")
        object.__setattr__(self, "seed", int(self.seed))

    def to_dict(self) -> dict[str, Any]:
        """The config as plain values (what the checkpoint stores).

        Examples
        --------
        >>> from autodiffx.train import TrainConfig
        >>> TrainConfig().to_dict()["hidden"]
        [64]
        """
        return {
            "hidden": list(self.hidden),
            "activation": self.activation,
            "optimizer": self.optimizer,
            "lr": self.lr,
            "batch_size": self.batch_size,
            "seed": self.seed,
        }


def _is_int(v: Any) -> bool:
    return isinstance(v, int | np.integer) and not isinstance(v, bool)


@dataclass
class TrainResult:
    """What :func:`fit` returns.

    Attributes: ``config``, ``model``, ``optimizer``, ``epoch`` (epochs done in total),
    ``history`` (float64 arrays ``loss``, ``train_acc``, ``test_loss``, ``test_acc``,
    ``seconds``, one entry per epoch), ``test_accuracy`` (the last one), ``checkpoint`` and
    ``plot`` (the paths written, or None), ``trained`` (epochs run by this call), ``n_test``
    (the size of the test set).

    Examples
    --------
    >>> from autodiffx.train import TrainConfig, fit
    >>> r = fit(TrainConfig(hidden=(16,)), epochs=2)
    >>> r.epoch, r.trained, sorted(r.history), r.checkpoint
    (2, 2, ['loss', 'seconds', 'test_acc', 'test_loss', 'train_acc'], None)
    """

    config: TrainConfig
    model: nn.Module
    optimizer: optim.Optimizer
    epoch: int
    history: dict[str, np.ndarray]
    checkpoint: str | None = None
    plot: str | None = None
    trained: int = 0
    n_test: int = 0

    @property
    def test_accuracy(self) -> float:
        """The test accuracy after the last epoch."""
        return float(self.history["test_acc"][-1])


# ----- data, model, optimizer --------------------------------------------------------------
def _streams(seed: int) -> tuple[np.random.Generator, ...]:
    """Independent generators for the split, the initialisation and the shuffling."""
    return tuple(np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(3))


def split_digits(
    seed: int = 0, test_fraction: float = TEST_FRACTION
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The embedded digits split into train and test sets, stratified by class.

    Within each class the samples are put in a random order (the generator for the split
    drawn from ``seed``) and the first ``round(test_fraction * n_class)`` go to the test
    set; both sets are in the data set's order. See :func:`autodiffx.data.load_digits`.

    Parameters
    ----------
    seed : int
        The run's seed (default 0).
    test_fraction : float
        In (0, 1) (default 0.2).

    Returns
    -------
    X_train, y_train, X_test, y_test : numpy.ndarray
        float64 pixels in [0, 1] and int64 labels.

    Examples
    --------
    >>> import numpy as np
    >>> from autodiffx.train import split_digits
    >>> Xtr, ytr, Xte, yte = split_digits(seed=0)
    >>> Xtr.shape, Xte.shape
    ((1438, 64), (359, 64))
    >>> np.bincount(yte)
    array([36, 36, 35, 37, 36, 36, 36, 36, 35, 36])
    """
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    X, y = load_digits()
    gen = _streams(seed)[0]
    test = np.zeros(len(y), dtype=bool)
    for c in range(10):
        idx = np.flatnonzero(y == c)
        test[gen.permutation(idx)[: round(test_fraction * len(idx))]] = True
    return X[~test], y[~test], X[test], y[test]


def make_model(
    hidden: tuple[int, ...] = (64,), activation: str = "tanh", rng: Any = 0
) -> nn.Sequential:
    """A multilayer perceptron 64 → hidden… → 10 (logits) for the digits.

    Parameters
    ----------
    hidden : tuple of int
        Hidden widths.
    activation : {"tanh", "relu"}
        After every hidden layer.
    rng : numpy.random.Generator or int
        Draws the initial weights (PyTorch's uniform initialisation).

    Examples
    --------
    >>> from autodiffx.train import make_model
    >>> make_model((32,), "relu")
    Sequential(
      (0): Linear(in_features=64, out_features=32, bias=True)
      (1): ReLU()
      (2): Linear(in_features=32, out_features=10, bias=True)
    )
    """
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
    gen = F.as_generator(rng)
    layers: list[nn.Module] = []
    width = 64
    for h in hidden:
        layers += [nn.Linear(width, h, rng=gen), nn.Tanh() if activation == "tanh" else nn.ReLU()]
        width = h
    layers.append(nn.Linear(width, 10, rng=gen))
    return nn.Sequential(*layers)


def make_optimizer(name: str, params: Any, lr: float | None = None) -> optim.Optimizer:
    """The optimizer ``name`` (one of :data:`OPTIMIZERS`) on ``params``.

    ``sgd`` is SGD with momentum 0.9, ``adamw`` has weight decay 1e-2, ``lbfgs`` runs 20
    iterations per step with a strong-Wolfe line search and a history of 20; the rest use
    PyTorch's defaults. ``lr=None`` takes ``DEFAULT_LR[name]``.

    Examples
    --------
    >>> import autodiffx as ad
    >>> from autodiffx.train import make_optimizer
    >>> make_optimizer("sgd", [ad.zeros(2, requires_grad=True)]).param_groups[0]["momentum"]
    0.9
    """
    if name not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {name!r}")
    lr = DEFAULT_LR[name] if lr is None else lr
    if name == "sgd":
        return optim.SGD(params, lr=lr, momentum=0.9)
    if name == "adam":
        return optim.Adam(params, lr=lr)
    if name == "adamw":
        return optim.AdamW(params, lr=lr)
    if name == "rmsprop":
        return optim.RMSprop(params, lr=lr)
    if name == "adagrad":
        return optim.Adagrad(params, lr=lr)
    return optim.LBFGS(params, lr=lr, max_iter=20, history_size=20, line_search_fn="strong_wolfe")


# ----- one epoch, evaluation -----------------------------------------------------------------
def train_epoch(
    model: nn.Module,
    optimizer: optim.Optimizer,
    X: np.ndarray,
    y: np.ndarray,
    batch_size: int,
    rng: np.random.Generator,
    on_batch: Any = None,
) -> float:
    """One pass over ``(X, y)`` in a random order (``rng.permutation``) with the softmax
    cross-entropy loss; returns the mean of the minibatch losses over the samples.

    ``optim.LBFGS`` instead takes one step on the full batch (its closure re-evaluates the
    loss); the loss returned is the one before that step. ``on_batch(done, total, loss)``
    is called after every minibatch, if given.

    Examples
    --------
    >>> import numpy as np
    >>> import autodiffx as ad
    >>> from autodiffx.train import make_model, split_digits, train_epoch
    >>> Xtr, ytr, _, _ = split_digits()
    >>> model = make_model((16,))
    >>> opt = ad.optim.Adam(model.parameters(), lr=0.01)
    >>> first = train_epoch(model, opt, Xtr, ytr, 32, np.random.default_rng(0))
    >>> second = train_epoch(model, opt, Xtr, ytr, 32, np.random.default_rng(1))
    >>> bool(second < first < np.log(10))
    True
    """
    model.train()
    if isinstance(optimizer, optim.LBFGS):

        def closure() -> Any:
            optimizer.zero_grad()
            loss = F.cross_entropy(model(X), y)
            loss.backward()
            return loss

        loss = float(optimizer.step(closure).item())
        if on_batch is not None:
            on_batch(1, 1, loss)
        return loss
    n = len(y)
    order = rng.permutation(n)
    nb = -(-n // batch_size)
    total = 0.0
    for b in range(nb):
        idx = order[b * batch_size : (b + 1) * batch_size]
        optimizer.zero_grad()
        loss = F.cross_entropy(model(X[idx]), y[idx])
        loss.backward()
        optimizer.step()
        value = float(loss.item())
        total += value * len(idx)
        if on_batch is not None:
            on_batch(b + 1, nb, value)
    return total / n


def evaluate(model: nn.Module, X: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Mean cross-entropy loss and accuracy of ``model`` on ``(X, y)``, without a graph.

    Examples
    --------
    >>> import numpy as np
    >>> from autodiffx.train import evaluate, make_model, split_digits
    >>> _, _, Xte, yte = split_digits()
    >>> loss, acc = evaluate(make_model(), Xte, yte)  # untrained: about chance
    >>> bool(abs(loss - np.log(10)) < 0.5), bool(acc < 0.3)
    (True, True)
    """
    model.eval()
    with no_grad():
        logits = model(X)
        loss = float(F.cross_entropy(logits, y).item())
    return loss, float(np.mean(np.argmax(logits.data, axis=1) == y))


# ----- checkpoints ----------------------------------------------------------------------------
def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and validate a checkpoint written by :func:`fit`; raise :class:`TrainError`
    with a one-line message if it is missing, unreadable, corrupt or not a checkpoint.

    Examples
    --------
    >>> import os, tempfile
    >>> from autodiffx.train import TrainConfig, fit, load_checkpoint
    >>> out = tempfile.mkdtemp()
    >>> _ = fit(TrainConfig(hidden=(8,)), epochs=1, out=out, plot=False)
    >>> ck = load_checkpoint(os.path.join(out, "checkpoint.npz"))
    >>> ck["epoch"], ck["config"]["hidden"], sorted(ck["model"])
    (1, [8], ['0.bias', '0.weight', '2.bias', '2.weight'])
    """
    path = os.fspath(path)
    where = f"checkpoint {path!r}"
    if not os.path.exists(path):
        raise TrainError(f"cannot resume: {where} does not exist")
    try:
        ck = load(path)
    except OSError as e:
        raise TrainError(f"cannot resume: cannot read {where}: {e.strerror or e}") from e
    except (ValueError, EOFError, KeyError, zipfile.BadZipFile) as e:
        msg = str(e).removeprefix("load: ")
        raise TrainError(f"cannot resume: {where} is corrupt or not a checkpoint ({msg})") from e

    def bad(what: str) -> TrainError:
        return TrainError(f"cannot resume: {where} is not a valid training checkpoint ({what})")

    if not isinstance(ck, dict) or ck.get("format") != FORMAT:
        raise bad(f"no {FORMAT!r} header")
    version = ck.get("version")
    if not _is_int(version) or version > VERSION:
        raise bad(f"format version {version!r}, this autodiffx reads up to {VERSION}")
    for key, kind in (("config", dict), ("model", dict), ("optimizer", dict), ("rng", dict)):
        if not isinstance(ck.get(key), kind):
            raise bad(f"'{key}' missing or not a dict")
    epoch = ck.get("epoch")
    if not _is_int(epoch) or epoch < 1:
        raise bad(f"epoch {epoch!r}")
    try:
        TrainConfig(**ck["config"])
    except (TypeError, ValueError) as e:
        raise bad(f"config: {e}") from e
    hist = ck.get("history")
    if not isinstance(hist, dict) or set(hist) != set(_HISTORY_KEYS):
        raise bad("'history' missing or incomplete")
    for k in _HISTORY_KEYS:
        h = hist[k]
        if not isinstance(h, np.ndarray) or h.shape != (epoch,) or h.dtype.kind != "f":
            raise bad(f"history {k!r} is not {epoch} floats")
    return ck


def _snapshot(
    config: TrainConfig,
    epoch: int,
    model: nn.Module,
    optimizer: optim.Optimizer,
    rng: np.random.Generator,
    history: Mapping[str, list[float]],
) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "version": VERSION,
        "config": config.to_dict(),
        "epoch": epoch,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "rng": rng.bit_generator.state,
        "history": {k: np.asarray(history[k], dtype=np.float64) for k in _HISTORY_KEYS},
    }


def _restore(
    ck: Mapping[str, Any],
    config: TrainConfig,
    model: nn.Module,
    optimizer: optim.Optimizer,
    rng: np.random.Generator,
) -> None:
    """Load a checkpoint into freshly built objects; on any mismatch raise TrainError, and
    nothing that existed before the call has changed."""
    saved = TrainConfig(**ck["config"])
    for name in ("seed", "activation", "optimizer"):
        mine, theirs = getattr(config, name), getattr(saved, name)
        if mine != theirs:
            raise TrainError(
                f"cannot resume: the checkpoint was trained with {name} {theirs!r}, not {mine!r} "
                f"(omit --{name} to continue with the checkpoint's)"
            )
    try:
        model.load_state_dict(ck["model"])
    except (RuntimeError, TypeError) as e:
        lines = [ln.strip().rstrip(".") for ln in str(e).splitlines()]
        detail = "; ".join(lines[1:] if len(lines) > 1 else lines)
        raise TrainError(f"cannot resume: the checkpoint does not fit the model: {detail}") from e
    try:
        optimizer.load_state_dict(ck["optimizer"])
    except (ValueError, TypeError, KeyError) as e:
        raise TrainError(f"cannot resume: the optimizer state does not fit: {e}") from e
    for g in optimizer.param_groups:  # an explicit learning rate overrides the saved one
        g["lr"] = config.lr
    try:
        rng.bit_generator.state = ck["rng"]
    except (ValueError, TypeError, KeyError) as e:
        raise TrainError(f"cannot resume: the checkpoint's generator state is invalid: {e}") from e


# ----- progress -------------------------------------------------------------------------------
class _Progress:
    """One line per epoch; on a terminal the line's bar fills in place as batches finish."""

    WIDTH = 24

    def __init__(self, stream: TextIO | None, epochs: int) -> None:
        self.stream = stream
        self.epochs = epochs
        self.digits = len(str(epochs))
        try:
            self.tty = stream is not None and stream.isatty()
        except (AttributeError, ValueError):
            self.tty = False
        self._last = 0.0
        self._len = 0

    def _head(self, epoch: int, frac: float) -> str:
        if not self.tty:
            return f"epoch {epoch:>{self.digits}}/{self.epochs}"
        full = round(frac * self.WIDTH)
        bar = "#" * full + "." * (self.WIDTH - full)
        return f"epoch {epoch:>{self.digits}}/{self.epochs} [{bar}]"

    def _write(self, text: str, end: str) -> None:
        assert self.stream is not None
        if self.tty:
            pad = " " * max(0, self._len - len(text))
            self.stream.write("\r" + text + pad + end)
            self._len = 0 if end else len(text)
        else:
            self.stream.write(text + end)
        self.stream.flush()

    def batch(self, epoch: int, done: int, total: int, loss: float) -> None:
        if not self.tty:
            return
        now = time.monotonic()
        if done < total and now - self._last < 0.05:
            return
        self._last = now
        self._write(f"{self._head(epoch, done / total)} loss {loss:.4g}", "")

    def epoch_end(self, epoch: int, h: Mapping[str, list[float]]) -> None:
        if self.stream is None:
            return
        self._write(
            f"{self._head(epoch, 1.0)} loss {h['loss'][-1]:.4g}  train acc "
            f"{h['train_acc'][-1]:.4f}  test acc {h['test_acc'][-1]:.4f}  "
            f"{h['seconds'][-1]:.2f} s",
            "\n",
        )


# ----- the loop -------------------------------------------------------------------------------
def fit(
    config: TrainConfig | None = None,
    epochs: int = 20,
    *,
    out: str | os.PathLike[str] | None = None,
    resume: str | os.PathLike[str] | Mapping[str, Any] | None = None,
    plot: bool = True,
    log: TextIO | None = None,
) -> TrainResult:
    """Train an MLP on the digits for ``epochs`` epochs in total (see :class:`TrainConfig`).

    After every epoch the model is evaluated on the whole train and test sets and, when
    ``out`` is given, a checkpoint is written there atomically (``checkpoint.npz``); at the
    end a loss/accuracy plot ``training.png`` is written too (``plot=True``; skipped with a
    message if matplotlib cannot be imported). An interruption (Ctrl-C) therefore loses at
    most the current epoch.

    ``resume`` (a path or the dict :func:`load_checkpoint` returned) continues a run to
    ``epochs`` in total, bit for bit as if it had never stopped: the model, the optimizer
    state, the shuffling generator and the history are restored. ``config`` must then
    have the checkpoint's seed, activation and optimizer (default: the checkpoint's config);
    a different ``lr`` or ``batch_size`` is allowed and applies from then on; a different
    architecture fails when the weights are loaded. On any mismatch a :class:`TrainError`
    is raised before anything is written. A checkpoint already at ``epochs`` or beyond is
    returned as it is.

    Parameters
    ----------
    config : TrainConfig, optional
        The run; default ``TrainConfig()`` (or the checkpoint's when resuming).
    epochs : int
        Total number of epochs (default 20).
    out : str or PathLike, optional
        Directory for the checkpoint and the plot (created if needed); None writes nothing.
    resume : str, PathLike or dict, optional
        A checkpoint to continue from.
    plot : bool
        Write the PNG (default True).
    log : file, optional
        Where the progress lines go (e.g. ``sys.stderr``); None is silent.

    Returns
    -------
    TrainResult

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> from autodiffx.train import TrainConfig, fit
    >>> out = tempfile.mkdtemp()
    >>> full = fit(TrainConfig(hidden=(16,)), epochs=3)
    >>> part = fit(TrainConfig(hidden=(16,)), epochs=2, out=out, plot=False)
    >>> rest = fit(epochs=3, resume=os.path.join(out, "checkpoint.npz"), out=out, plot=False)
    >>> all(np.array_equal(a, b) for a, b in zip(full.model.parameters(), rest.model.parameters()))
    True
    >>> bool(full.test_accuracy > 0.8)
    True
    """
    if not _is_int(epochs) or epochs < 1:
        raise TrainError(f"epochs must be a positive integer, got {epochs!r}")
    ck: Mapping[str, Any] | None = None
    if resume is not None:
        ck = resume if isinstance(resume, Mapping) else load_checkpoint(resume)
        if config is None:
            config = TrainConfig(**ck["config"])
    config = TrainConfig() if config is None else config
    _, init_rng, shuffle_rng = _streams(config.seed)
    Xtr, ytr, Xte, yte = split_digits(config.seed)
    model = make_model(config.hidden, config.activation, init_rng)
    optimizer = make_optimizer(config.optimizer, model.parameters(), config.lr)
    history: dict[str, list[float]] = {k: [] for k in _HISTORY_KEYS}
    start = 0
    if ck is not None:
        _restore(ck, config, model, optimizer, shuffle_rng)
        start = int(ck["epoch"])
        history = {k: [float(v) for v in ck["history"][k]] for k in _HISTORY_KEYS}
    result = TrainResult(config, model, optimizer, start, {}, n_test=len(yte))
    ckpt_path = plot_path = None
    if out is not None and start < epochs:
        out = os.fspath(out)
        try:
            os.makedirs(out, exist_ok=True)
        except OSError as e:
            raise TrainError(f"cannot create the output directory {out!r}: {e.strerror}") from e
        ckpt_path, plot_path = os.path.join(out, CHECKPOINT), os.path.join(out, PLOT)
    progress = _Progress(log, epochs)
    for epoch in range(start + 1, epochs + 1):
        t0 = time.perf_counter()
        loss = train_epoch(
            model,
            optimizer,
            Xtr,
            ytr,
            config.batch_size,
            shuffle_rng,
            lambda done, total, value, e=epoch: progress.batch(e, done, total, value),
        )
        if not math.isfinite(loss):
            if progress.tty:
                progress._write("", "\n")
            raise TrainError(
                f"training diverged in epoch {epoch}: the loss is {loss}; try a smaller --lr "
                f"(now {config.lr:g})"
            )
        _, train_acc = evaluate(model, Xtr, ytr)
        test_loss, test_acc = evaluate(model, Xte, yte)
        for k, v in zip(
            _HISTORY_KEYS, (loss, train_acc, test_loss, test_acc, time.perf_counter() - t0)
        ):
            history[k].append(v)
        if ckpt_path is not None:
            state = _snapshot(config, epoch, model, optimizer, shuffle_rng, history)
            try:
                save(state, ckpt_path)
            except OSError as e:
                raise TrainError(f"cannot write the checkpoint {ckpt_path!r}: {e}") from e
            result.checkpoint = ckpt_path
        progress.epoch_end(epoch, history)
        result.epoch, result.trained = epoch, result.trained + 1
    result.history = {k: np.asarray(v, dtype=np.float64) for k, v in history.items()}
    if plot_path is not None and plot and result.trained:
        title = (
            f"MLP 64-{'-'.join(map(str, config.hidden))}-10 ({config.activation}), "
            f"{config.optimizer} lr={config.lr:g}, batch {config.batch_size}, seed {config.seed}"
        )
        if plot_history(result.history, plot_path, title=title):
            result.plot = plot_path
        elif log is not None:
            log.write("matplotlib is not installed: no plot written (pip install matplotlib)\n")
    return result


# ----- plot -----------------------------------------------------------------------------------
def plot_history(history: Mapping[str, Any], path: str | os.PathLike[str], title: str = "") -> bool:
    """Write the loss and accuracy curves of ``history`` (as in :class:`TrainResult`) to a
    PNG at ``path``, atomically; return False (writing nothing) if matplotlib is missing.

    Uses matplotlib's object-oriented API with the Agg canvas: no display, no global state
    (pyplot's backend is left alone).

    Examples
    --------
    >>> import os, tempfile
    >>> from autodiffx.train import plot_history
    >>> path = os.path.join(tempfile.mkdtemp(), "curves.png")
    >>> hist = {"loss": [1.0, 0.5], "test_loss": [1.1, 0.6],
    ...         "train_acc": [0.7, 0.9], "test_acc": [0.65, 0.85]}
    >>> plot_history(hist, path), os.path.getsize(path) > 1000
    (True, True)
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        return False
    epochs = np.arange(1, len(history["loss"]) + 1)
    fig = Figure(figsize=(10, 4), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    ax_loss, ax_acc = fig.subplots(1, 2)
    ax_loss.plot(epochs, history["loss"], "o-", ms=3, label="train (mean over the epoch)")
    ax_loss.plot(epochs, history["test_loss"], "s-", ms=3, label="test (after the epoch)")
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy loss", yscale="log", title="loss")
    ax_acc.plot(epochs, history["train_acc"], "o-", ms=3, label="train")
    ax_acc.plot(epochs, history["test_acc"], "s-", ms=3, label="test")
    best = float(np.max(history["test_acc"]))
    last = float(history["test_acc"][-1])
    ax_acc.set(
        xlabel="epoch",
        ylabel="accuracy",
        title=f"accuracy (test: {last:.4f} last, {best:.4f} best)",
    )
    for ax in (ax_loss, ax_acc):
        ax.grid(True, alpha=0.3)
        ax.legend()
        ax.xaxis.get_major_locator().set_params(integer=True)
    if title:
        fig.suptitle(title)
    path = os.fspath(path)
    tmp = os.path.join(
        os.path.dirname(os.path.abspath(path)), f".{os.path.basename(path)}.{uuid.uuid4().hex}"
    )
    try:
        fig.savefig(tmp, format="png")
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
    return True


# ----- command line -------------------------------------------------------------------------
def _widths(s: str) -> tuple[int, ...]:
    try:
        return tuple(positive_int(p) for p in s.split(","))
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated positive widths such as 64 or 128,64, got {s!r}"
        ) from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``autodiffx train`` to ``parser``.

    Options that define the run default to None, meaning "the checkpoint's value" with
    ``--resume`` and the :class:`TrainConfig` default otherwise.

    Examples
    --------
    >>> import argparse
    >>> from autodiffx.train import add_arguments
    >>> p = argparse.ArgumentParser()
    >>> add_arguments(p)
    >>> p.parse_args(["--epochs", "5", "--hidden", "128,64"]).hidden
    (128, 64)
    """
    defaults = TrainConfig()
    lrs = ", ".join(f"{k} {v:g}" for k, v in DEFAULT_LR.items())
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
        type=_widths,
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


def run(args: argparse.Namespace) -> int:
    """Run ``autodiffx train`` with parsed arguments; return the exit status.

    Progress goes to stderr, the result to stdout; a :class:`TrainError` is printed as one
    line on stderr with status 1, an interruption (Ctrl-C) returns 130.

    Examples
    --------
    >>> import argparse, tempfile
    >>> from autodiffx.train import add_arguments, run
    >>> p = argparse.ArgumentParser()
    >>> add_arguments(p)
    >>> run(p.parse_args(["--epochs", "1", "--hidden", "8", "--out", tempfile.mkdtemp(),
    ...                   "--no-plot"]))  # doctest: +ELLIPSIS
    test accuracy ... after 1 epoch ...
    0
    """
    t0 = time.perf_counter()
    given = {
        k: getattr(args, k)
        for k in ("hidden", "activation", "optimizer", "lr", "batch_size", "seed")
        if getattr(args, k) is not None
    }
    try:
        ck = None
        if args.resume is not None:
            ck = load_checkpoint(args.resume)
            config = TrainConfig(**{**ck["config"], **given})
        else:
            config = TrainConfig(**given)
        result = fit(
            config, args.epochs, out=args.out, resume=ck, plot=not args.no_plot, log=sys.stderr
        )
    except TrainError as e:
        print(f"autodiffx train: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        where = os.path.join(args.out, CHECKPOINT)
        hint = f" (resume with --resume {where})" if os.path.exists(where) else ""
        print(f"\nautodiffx train: interrupted{hint}", file=sys.stderr)
        return 130
    h = result.history
    n_test = result.n_test
    if not result.trained:
        print(
            f"the checkpoint is already at epoch {result.epoch} (--epochs {args.epochs}): "
            "nothing to train"
        )
    correct = round(result.test_accuracy * n_test)
    print(
        f"test accuracy {result.test_accuracy:.4f} ({correct}/{n_test}) after {result.epoch} "
        f"epoch{'s' if result.epoch != 1 else ''} (best {np.max(h['test_acc']):.4f}); "
        f"{time.perf_counter() - t0:.1f} s"
    )
    if result.checkpoint:
        print(f"checkpoint: {result.checkpoint}")
    if result.plot:
        print(f"plot: {result.plot}")
    return 0
