"""The digits training library (what ``autodiffx train`` runs, and the notebooks use): an MLP
or a small CNN (``ad.nn.digits_cnn``) on the embedded digits, with checkpoints, exact resume
and a plot; no printing, no argparse.

The pieces are usable on their own: :func:`split_digits` (a seeded, stratified train/test
split), :func:`make_model`, :func:`make_optimizer`, :func:`train_epoch`, :func:`evaluate`,
:func:`plot_history`; :func:`fit` ties them together and writes a checkpoint after every
epoch, from which a run resumes bit for bit (:func:`load_checkpoint` reads and checks one).

Checkpoint (``ad.save``, so no pickle; written atomically after every epoch)::

    {"format": "autodiffx.train", "version": 1,
     "config": {"hidden": [64], "activation": "tanh", "optimizer": "adam", "lr": 0.003,
                "batch_size": 32, "seed": 0, "model": "mlp"},
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

import math
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import nn, optim
from ._mode import no_grad
from ._train_checks import (
    FORMAT,
    HISTORY_KEYS,
    VERSION,
    checkpoint_problem,
    groups_problem,
    is_int,
    state_problem,
)
from .compiler import compile as ad_compile
from .data import load_digits
from .io import CheckpointError, load, save, write_atomically
from .nn import functional as F

__all__ = [
    "ACTIVATIONS",
    "CHECKPOINT",
    "DEFAULT_LR",
    "MODELS",
    "OPTIMIZERS",
    "PLOT",
    "TrainConfig",
    "TrainError",
    "TrainResult",
    "evaluate",
    "fit",
    "load_checkpoint",
    "make_model",
    "make_optimizer",
    "plot_history",
    "split_digits",
    "train_epoch",
    "training_step",
]

#: The files :func:`fit` writes into its ``out`` directory.
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
#: The networks ``--model`` accepts: the MLP of :func:`make_model` or ``nn.digits_cnn()``.
MODELS: tuple[str, ...] = ("mlp", "cnn")


class TrainError(Exception):
    """A problem the user can fix (bad checkpoint, bad option, unwritable output): the
    command line prints its one-line message and exits with ``status``: 2 for what is wrong
    with the input (the ``--resume`` checkpoint, an option), 1 for what went wrong while
    running (divergence, an unwritable checkpoint).

    Examples
    --------
    >>> from autodiffx.train import TrainError, load_checkpoint
    >>> try:
    ...     load_checkpoint("no/such/checkpoint.npz")
    ... except TrainError as e:
    ...     print(e, e.status)
    cannot resume: checkpoint 'no/such/checkpoint.npz' does not exist 2
    """

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class TrainConfig:
    """What defines a training run (saved in the checkpoint).

    Parameters
    ----------
    hidden : tuple of int
        Widths of the hidden layers (default ``(64,)``: a 64-64-10 network); MLP only.
    activation : {"tanh", "relu"}
        Hidden activation; MLP only.
    optimizer : {"adam", "adamw", "sgd", "rmsprop", "adagrad", "lbfgs"}
        ``sgd`` has momentum 0.9; ``lbfgs`` takes one full-batch step of 20 iterations with
        a strong-Wolfe line search per epoch (``batch_size`` is then unused).
    lr : float, optional
        Learning rate; None takes ``DEFAULT_LR[optimizer]``.
    batch_size : int
        Minibatch size (default 32).
    seed : int
        Seeds the split, the initialisation and the shuffling (default 0).
    model : {"mlp", "cnn"}
        ``"mlp"`` (default) is :func:`make_model` of ``hidden`` and ``activation``; ``"cnn"``
        is ``nn.digits_cnn()`` (two 3x3 convolution + ReLU + 2x2 max-pool blocks and a
        linear layer, 6090 parameters), for which ``hidden`` and ``activation`` must keep
        their defaults. The defaults (Adam, lr 3e-3, batch 32) train both; 20 epochs of the
        CNN reach 0.99 test accuracy.

    Examples
    --------
    >>> from autodiffx.train import TrainConfig
    >>> TrainConfig(optimizer="sgd")  # doctest: +NORMALIZE_WHITESPACE
    TrainConfig(hidden=(64,), activation='tanh', optimizer='sgd', lr=0.05, batch_size=32,
                seed=0, model='mlp')
    >>> TrainConfig(batch_size=0)
    Traceback (most recent call last):
    ...
    ValueError: batch_size must be a positive integer, got 0
    >>> TrainConfig(model="cnn", hidden=(32,))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: hidden and activation describe the MLP; model 'cnn' is nn.digits_cnn() ...
    """

    hidden: tuple[int, ...] = (64,)
    activation: str = "tanh"
    optimizer: str = "adam"
    lr: float | None = None
    batch_size: int = 32
    seed: int = 0
    model: str = "mlp"

    def __post_init__(self) -> None:
        hidden = tuple(self.hidden)
        if not hidden or not all(is_int(h) and h > 0 for h in hidden):
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
        if not is_int(self.batch_size) or self.batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {self.batch_size!r}")
        object.__setattr__(self, "batch_size", int(self.batch_size))
        if not is_int(self.seed) or self.seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {self.seed!r}")
        object.__setattr__(self, "seed", int(self.seed))
        self._check_model()

    def _check_model(self) -> None:
        if not isinstance(self.model, str) or self.model not in MODELS:
            raise ValueError(f"model must be one of {MODELS}, got {self.model!r}")
        if self.model == "cnn" and (self.hidden != (64,) or self.activation != "tanh"):
            raise ValueError(
                f"hidden and activation describe the MLP; model 'cnn' is nn.digits_cnn() "
                f"(got hidden={self.hidden}, activation={self.activation!r})"
            )

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
            "model": self.model,
        }


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
def training_step(
    model: nn.Module, optimizer: optim.Optimizer, compile: bool = False
) -> Callable[..., Any]:
    """The minibatch step ``step(X, y, training) -> loss``: ``zero_grad``, the softmax
    cross-entropy of ``model(X)``, ``backward``, ``optimizer.step()``; with ``compile``,
    ``ad.compile`` of it (the same updates bit for bit; the model's ``training`` flag is an
    argument so that the signature covers it). ``optim.LBFGS`` (a step with a closure) is
    not compiled: :class:`TrainError`.

    Examples
    --------
    >>> import numpy as np
    >>> import autodiffx as ad
    >>> from autodiffx.train import make_model, split_digits, training_step
    >>> Xtr, ytr, _, _ = split_digits()
    >>> model = make_model((16,))
    >>> step = training_step(model, ad.optim.SGD(model.parameters(), lr=0.1), compile=True)
    >>> first = step(Xtr[:32], ytr[:32], True)  # records
    >>> bool(step(Xtr[:32], ytr[:32], True) < first)  # replays
    True
    """
    if compile and isinstance(optimizer, optim.LBFGS):
        raise TrainError("--compile: the lbfgs optimizer's step takes a closure; train it eagerly")

    def step(X: Any, y: Any, training: bool) -> Any:
        optimizer.zero_grad()
        loss = F.cross_entropy(model(X), y)
        loss.backward()
        optimizer.step()
        return loss

    return ad_compile(step) if compile else step


def train_epoch(
    model: nn.Module,
    optimizer: optim.Optimizer,
    X: np.ndarray,
    y: np.ndarray,
    batch_size: int,
    rng: np.random.Generator,
    on_batch: Any = None,
    step: Callable[..., Any] | None = None,
) -> float:
    """One pass over ``(X, y)`` in a random order (``rng.permutation``) with the softmax
    cross-entropy loss; returns the mean of the minibatch losses over the samples.

    ``optim.LBFGS`` instead takes one step on the full batch (its closure re-evaluates the
    loss); the loss returned is the one before that step. ``on_batch(done, total, loss)``
    is called after every minibatch, if given. ``step`` (:func:`training_step`, compiled or
    not) takes the minibatches (default: an eager step).

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
    if step is None:
        step = training_step(model, optimizer)
    for b in range(nb):
        idx = order[b * batch_size : (b + 1) * batch_size]
        loss = step(X[idx], y[idx], model.training)
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
    (status 2) with a one-line message if it is missing, unreadable, corrupt or not a
    checkpoint: the file as :func:`autodiffx.load` reads it, then every entry's type, and the
    type, dtype and finiteness of every array (shapes are checked against the model when
    it is restored).

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
        raise TrainError(f"cannot resume: {where} does not exist", 2)
    try:
        ck = load(path)
    except OSError as e:
        raise TrainError(f"cannot resume: cannot read {where}: {e.strerror or e}", 2) from e
    except CheckpointError as e:
        raise TrainError(f"cannot resume: {str(e).removeprefix('load: ')}", 2) from e
    problem = _checkpoint_problem(ck)
    if problem:
        raise TrainError(
            f"cannot resume: {where} is not a valid training checkpoint ({problem})", 2
        )
    return ck


def _config_problem(config: dict[str, Any]) -> str | None:
    try:
        TrainConfig(**config)
    except (TypeError, ValueError) as e:
        return str(e)
    return None


def _checkpoint_problem(ck: Any) -> str | None:
    """What is wrong with the loaded contents of a checkpoint, or None."""
    return checkpoint_problem(ck, _config_problem)


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
        "history": {k: np.asarray(history[k], dtype=np.float64) for k in HISTORY_KEYS},
    }


def _restore(
    ck: Mapping[str, Any],
    config: TrainConfig,
    model: nn.Module,
    optimizer: optim.Optimizer,
    rng: np.random.Generator,
) -> None:
    """Load a checkpoint into freshly built objects; on any mismatch raise TrainError
    (status 2), and nothing that existed before the call has changed."""
    saved = TrainConfig(**ck["config"])
    for name in ("model", "seed", "activation", "optimizer"):
        mine, theirs = getattr(config, name), getattr(saved, name)
        if mine != theirs:
            raise TrainError(
                f"cannot resume: the checkpoint was trained with {name} {theirs!r}, not {mine!r} "
                f"(omit --{name} to continue with the checkpoint's)",
                2,
            )
    try:
        model.load_state_dict(ck["model"])
    except (RuntimeError, TypeError) as e:
        lines = [ln.strip().rstrip(".") for ln in str(e).splitlines()]
        detail = "; ".join(lines[1:] if len(lines) > 1 else lines)
        raise TrainError(
            f"cannot resume: the checkpoint does not fit the model: {detail}", 2
        ) from e
    problem = groups_problem(ck["optimizer"]["param_groups"], optimizer) or state_problem(
        ck["optimizer"]["state"], config.optimizer, list(model.parameters())
    )
    if problem:
        raise TrainError(f"cannot resume: the optimizer state does not fit: {problem}", 2)
    try:
        optimizer.load_state_dict(ck["optimizer"])
    except (ValueError, TypeError, KeyError) as e:
        raise TrainError(f"cannot resume: the optimizer state does not fit: {e}", 2) from e
    for g in optimizer.param_groups:  # an explicit learning rate overrides the saved one
        g["lr"] = config.lr
    rng.bit_generator.state = ck["rng"]  # checked by load_checkpoint


# ----- the loop -------------------------------------------------------------------------------
def fit(
    config: TrainConfig | None = None,
    epochs: int = 20,
    *,
    out: str | os.PathLike[str] | None = None,
    resume: str | os.PathLike[str] | Mapping[str, Any] | None = None,
    plot: bool = True,
    on_batch: Callable[[int, int, int, float], Any] | None = None,
    on_epoch: Callable[[int, Mapping[str, list[float]]], Any] | None = None,
    compile: bool = False,
) -> TrainResult:
    """Train an MLP or the CNN on the digits for ``epochs`` epochs in total (see
    :class:`TrainConfig`).

    After every epoch the model is evaluated on the whole train and test sets and, when
    ``out`` is given, ``checkpoint.npz`` is written there atomically (so Ctrl-C loses at most
    the current epoch); at the end the loss/accuracy plot ``training.png`` too (``plot=True``;
    ``result.plot`` stays None if matplotlib cannot be imported). Nothing is printed:
    ``on_batch(epoch, done, total, loss)`` is called after every minibatch and
    ``on_epoch(epoch, history)`` after every epoch (``history``: lists, as in
    :class:`TrainResult`), if given. ``compile=True`` runs the minibatch steps through
    ``ad.compile`` (:func:`training_step`): the same weights, bit for bit.

    ``resume`` (a path or the dict :func:`load_checkpoint` returned) continues a run to
    ``epochs`` in total, bit for bit as if it had never stopped (model, optimizer state,
    shuffling generator and history are restored). ``config`` must then have the
    checkpoint's model, seed, activation and optimizer (default: the checkpoint's config);
    ``lr`` and ``batch_size`` may differ and apply from then on. On any mismatch a
    :class:`TrainError` is raised before anything is written. A checkpoint already at
    ``epochs`` is returned as it is.

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
    if not is_int(epochs) or epochs < 1:
        raise TrainError(f"epochs must be a positive integer, got {epochs!r}")
    result, shuffle_rng, data, history = _start(config, resume)
    ckpt_path, plot_path = _output_paths(out) if result.epoch < epochs else (None, None)
    step = training_step(result.model, result.optimizer, compile) if compile else None
    for epoch in range(result.epoch + 1, epochs + 1):
        row = _run_epoch(result, data, shuffle_rng, epoch, on_batch, step)
        for k, v in zip(HISTORY_KEYS, row):
            history[k].append(v)
        if ckpt_path is not None:
            _save_checkpoint(ckpt_path, result, epoch, shuffle_rng, history)
        if on_epoch is not None:
            on_epoch(epoch, history)
        result.epoch, result.trained = epoch, result.trained + 1
    result.history = {k: np.asarray(v, dtype=np.float64) for k, v in history.items()}
    title = _title(result.config)
    if plot_path and plot and result.trained and plot_history(result.history, plot_path, title):
        result.plot = plot_path
    return result


def _save_checkpoint(
    path: str,
    result: TrainResult,
    epoch: int,
    rng: np.random.Generator,
    history: Mapping[str, list[float]],
) -> None:
    state = _snapshot(result.config, epoch, result.model, result.optimizer, rng, history)
    try:
        save(state, path)
    except OSError as e:
        raise TrainError(f"cannot write the checkpoint {path!r}: {e}") from e
    result.checkpoint = path


def _start(
    config: TrainConfig | None, resume: str | os.PathLike[str] | Mapping[str, Any] | None
) -> tuple[TrainResult, np.random.Generator, tuple[np.ndarray, ...], dict[str, list[float]]]:
    """The run :func:`fit` starts from: fresh, or restored from the checkpoint ``resume``."""
    ck: Mapping[str, Any] | None = None
    if resume is not None:
        ck = resume if isinstance(resume, Mapping) else load_checkpoint(resume)
        problem = _checkpoint_problem(dict(ck))
        if problem:
            raise TrainError(f"cannot resume: not a valid training checkpoint ({problem})", 2)
        if config is None:
            config = TrainConfig(**ck["config"])
    config = TrainConfig() if config is None else config
    _, init_rng, shuffle_rng = _streams(config.seed)
    data = split_digits(config.seed)
    if config.model == "cnn":
        model: nn.Module = nn.digits_cnn(rng=init_rng)
    else:
        model = make_model(config.hidden, config.activation, init_rng)
    optimizer = make_optimizer(config.optimizer, model.parameters(), config.lr)
    history: dict[str, list[float]] = {k: [] for k in HISTORY_KEYS}
    start = 0
    if ck is not None:
        _restore(ck, config, model, optimizer, shuffle_rng)
        start = int(ck["epoch"])
        history = {k: [float(v) for v in ck["history"][k]] for k in HISTORY_KEYS}
    result = TrainResult(config, model, optimizer, start, {}, n_test=len(data[3]))
    return result, shuffle_rng, data, history


def _output_paths(out: str | os.PathLike[str] | None) -> tuple[str | None, str | None]:
    """The checkpoint's and the plot's paths in ``out`` (created), or None."""
    if out is None:
        return None, None
    out = os.fspath(out)
    try:
        os.makedirs(out, exist_ok=True)
    except OSError as e:
        raise TrainError(f"cannot create the output directory {out!r}: {e.strerror}") from e
    return os.path.join(out, CHECKPOINT), os.path.join(out, PLOT)


def _run_epoch(
    result: TrainResult,
    data: tuple[np.ndarray, ...],
    shuffle_rng: np.random.Generator,
    epoch: int,
    on_batch: Callable[[int, int, int, float], Any] | None,
    step: Callable[..., Any] | None = None,
) -> tuple[float, ...]:
    """Train and evaluate one epoch: the history row (loss, accuracies, seconds)."""
    Xtr, ytr, Xte, yte = data
    model, optimizer, config = result.model, result.optimizer, result.config
    t0 = time.perf_counter()
    hook = (
        None if on_batch is None else lambda done, total, value: on_batch(epoch, done, total, value)
    )
    loss = train_epoch(model, optimizer, Xtr, ytr, config.batch_size, shuffle_rng, hook, step)
    if not math.isfinite(loss):
        raise TrainError(
            f"training diverged in epoch {epoch}: the loss is {loss}; try a smaller learning "
            f"rate (now {config.lr:g})"
        )
    _, train_acc = evaluate(model, Xtr, ytr)
    test_loss, test_acc = evaluate(model, Xte, yte)
    return loss, train_acc, test_loss, test_acc, time.perf_counter() - t0


def _title(config: TrainConfig) -> str:
    if config.model == "cnn":
        net = "CNN (3x3 conv 16, pool, 3x3 conv 32, pool, linear)"
    else:
        net = f"MLP 64-{'-'.join(map(str, config.hidden))}-10 ({config.activation})"
    return (
        f"{net}, {config.optimizer} lr={config.lr:g}, batch {config.batch_size}, seed {config.seed}"
    )


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
    write_atomically(path, lambda fh: fig.savefig(fh, format="png"))
    return True
