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
import itertools
import math
import os
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TextIO

import numpy as np

from . import nn, optim
from ._argtypes import (
    memory_problem,
    non_negative_int,
    output_dir_problem,
    positive_float,
    positive_int,
)
from ._mode import no_grad
from .data import load_digits
from .io import CheckpointError, load, save, write_atomically
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
    "memory_estimate",
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


def _checkpoint_problem(ck: Any) -> str | None:
    """What is wrong with the loaded contents of a checkpoint, or None."""
    if not isinstance(ck, dict) or not _same(ck.get("format"), FORMAT):
        return f"no {FORMAT!r} header"
    version = ck.get("version")
    if not _is_int(version) or not 1 <= version <= VERSION:
        return f"format version {version!r}, this autodiffx reads up to {VERSION}"
    for key in ("config", "model", "optimizer", "rng"):
        if not isinstance(ck.get(key), dict):
            return f"'{key}' missing or not a dict"
    epoch = ck.get("epoch")
    if not _is_int(epoch) or epoch < 1:
        return f"epoch {epoch!r}"
    try:
        TrainConfig(**ck["config"])
    except (TypeError, ValueError) as e:
        return f"config: {e}"
    hist = ck.get("history")
    if not isinstance(hist, dict) or set(hist) != set(_HISTORY_KEYS):
        return "'history' missing or incomplete"
    for k in _HISTORY_KEYS:
        h = hist[k]
        if not isinstance(h, np.ndarray) or h.shape != (epoch,) or h.dtype.kind != "f":
            return f"history {k!r} is not {epoch} floats"
    for name, w in ck["model"].items():
        if not _is_floats(w):
            return f"model weight {name!r} is not a finite float64 array"
    return _optimizer_problem(ck["optimizer"]) or _rng_problem(ck["rng"])


def _is_floats(a: Any, shape: tuple[int, ...] | None = None) -> bool:
    return (
        isinstance(a, np.ndarray)
        and a.dtype == np.float64
        and (shape is None or a.shape == shape)
        and bool(np.all(np.isfinite(a)))
    )


def _is_number(v: Any) -> bool:
    return isinstance(v, float | int) and not isinstance(v, bool) and math.isfinite(v)


def _same(a: Any, b: Any) -> bool:
    """Equal, with the same types all the way down (no array truth values, no 1 == True)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


# The per-parameter state each optimizer of make_optimizer keeps: "count" (an int >= 0),
# "param" (a float64 array of the parameter's shape), "number" (a finite float), "flat" (a
# float64 vector of all parameters), "numbers"/"flats" (lists of those; numbers may be None).
_STATE_SCHEMA: dict[str, dict[str, str]] = {
    "adam": {"step": "count", "exp_avg": "param", "exp_avg_sq": "param"},
    "adamw": {"step": "count", "exp_avg": "param", "exp_avg_sq": "param"},
    "sgd": {"momentum_buffer": "param"},
    "rmsprop": {"step": "count", "square_avg": "param"},
    "adagrad": {"step": "count", "sum": "param"},
    "lbfgs": {
        "func_evals": "count",
        "n_iter": "count",
        "d": "flat",
        "t": "number",
        "old_dirs": "flats",
        "old_stps": "flats",
        "ro": "numbers",
        "al": "numbers",
        "H_diag": "number",
        "prev_flat_grad": "flat",
        "prev_loss": "number",
    },
}


def _optimizer_problem(opt: dict[str, Any]) -> str | None:
    """Type checks of a saved optimizer state (hyper-parameters and shapes are compared with
    the optimizer itself in :func:`_restore`)."""
    groups, state = opt.get("param_groups"), opt.get("state")
    if not isinstance(groups, list) or not all(isinstance(g, dict) for g in groups):
        return "optimizer 'param_groups' is not a list of dicts"
    if not isinstance(state, dict) or not all(
        _is_int(k) and isinstance(v, dict) for k, v in state.items()
    ):
        return "optimizer 'state' is not a dict of per-parameter dicts"
    return None


def _rng_problem(rng: dict[str, Any]) -> str | None:
    inner = rng.get("state")
    ok = (
        _same(rng.get("bit_generator"), "PCG64")
        and set(rng) == {"bit_generator", "state", "has_uint32", "uinteger"}
        and isinstance(inner, dict)
        and set(inner) == {"state", "inc"}
        and all(_is_int(v) and 0 <= v < 2**128 for v in inner.values())
        and _is_int(rng["has_uint32"])
        and 0 <= rng["has_uint32"] <= 1
        and _is_int(rng["uinteger"])
        and 0 <= rng["uinteger"] < 2**32
    )
    return None if ok else "'rng' is not the state of a PCG64 generator"


def _state_problem(ck_state: dict[int, Any], optimizer_name: str, params: list[Any]) -> str | None:
    """What in a saved per-parameter optimizer state does not fit ``params``, or None.

    After an epoch every parameter has its state (LBFGS keeps all of it on parameter 0).
    """
    schema = _STATE_SCHEMA[optimizer_name]
    expected = {0} if optimizer_name == "lbfgs" else set(range(len(params)))
    if set(ck_state) != expected:
        return f"state of parameters {sorted(ck_state)}, expected {sorted(expected)}"
    n = sum(p.size for p in params)
    for i, entry in ck_state.items():
        keys = set(entry)
        required = set(schema)
        if optimizer_name == "lbfgs":  # before its first iteration only the counters exist
            required = required - {"al"} if entry.get("n_iter") else {"func_evals", "n_iter"}
        if not required <= keys <= set(schema):
            return f"state of parameter {i} has {sorted(keys)}, expected {sorted(required)}"
        for key in keys:
            if not _fits(entry[key], schema[key], params[i].shape, n):
                return f"state {key!r} of parameter {i} is not a valid {schema[key]}"
    if optimizer_name == "lbfgs":
        history = [len(ck_state[0].get(k, [])) for k in ("old_dirs", "old_stps", "ro")]
        al = len(ck_state[0].get("al", [None] * 20))
        if len(set(history)) != 1 or history[0] > 20 or al != 20:
            return f"LBFGS history of lengths {history} and {al}"
    return None


def _fits(v: Any, kind: str, shape: tuple[int, ...], n: int) -> bool:
    if kind == "count":
        return _is_int(v) and v >= 0
    if kind == "number":  # saved from a Python float (an int here is not from fit)
        return isinstance(v, float) and math.isfinite(v)
    if kind == "param":
        return _is_floats(v, shape)
    if kind == "flat":
        return _is_floats(v, (n,))
    item = "number" if kind == "numbers" else "flat"
    return isinstance(v, list) and all(
        (kind == "numbers" and x is None) or _fits(x, item, shape, n) for x in v
    )


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


def _groups_problem(saved: list[dict[str, Any]], optimizer: optim.Optimizer) -> str | None:
    """Hyper-parameters that differ from the ones make_optimizer set (lr may differ)."""
    mine = optimizer.state_dict()["param_groups"]
    if len(saved) != len(mine):
        return f"{len(saved)} parameter groups, the optimizer has {len(mine)}"
    for s, m in zip(saved, mine, strict=True):
        if set(s) != set(m):
            return f"optimizer settings {sorted(s)}, expected {sorted(m)}"
        for k in m:
            ok = _is_number(s[k]) and s[k] > 0 if k == "lr" else _same(s[k], m[k])
            if not ok:
                return f"optimizer setting {k!r} is {s[k]!r}, make_optimizer sets {m[k]!r}"
    return None


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
    for name in ("seed", "activation", "optimizer"):
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
    problem = _groups_problem(ck["optimizer"]["param_groups"], optimizer) or _state_problem(
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
        problem = _checkpoint_problem(dict(ck))
        if problem:
            raise TrainError(f"cannot resume: not a valid training checkpoint ({problem})", 2)
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
    write_atomically(path, lambda fh: fig.savefig(fh, format="png"))
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


def memory_estimate(config: TrainConfig) -> float:
    """Bytes that training ``config`` needs at its peak, roughly (an upper estimate).

    The parameters, their gradients, the optimizer's state (LBFGS keeps ``2 * 20`` vectors
    of history) and the checkpoint's copies of both, plus the activations of the whole
    data set (the evaluation after every epoch, and LBFGS's full batch, which keeps them for
    the backward pass).

    Examples
    --------
    >>> from autodiffx.train import TrainConfig, memory_estimate
    >>> memory_estimate(TrainConfig()) < 200e6
    True
    >>> f"{memory_estimate(TrainConfig(hidden=(10**8,))):.1e}"
    '3.1e+12'
    """
    widths = (64, *config.hidden, 10)
    n_params = sum(a * b + b for a, b in itertools.pairwise(widths))
    copies = {"sgd": 1, "rmsprop": 1, "adagrad": 1, "adam": 2, "adamw": 2, "lbfgs": 44}
    state = n_params * (2 + 2 * copies[config.optimizer])
    activations = 1797 * sum(widths) * (4 if config.optimizer == "lbfgs" else 2)
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
    net = "-".join(map(str, (64, *config.hidden, 10)))
    return memory_problem(
        memory_estimate(config), f"training a {net} network with {config.optimizer}"
    )


def run(args: argparse.Namespace) -> int:
    """Run ``autodiffx train`` with parsed arguments; return the exit status.

    Progress goes to stderr, the result to stdout; a :class:`TrainError` is printed as one
    line on stderr and its status returned (2 for a bad ``--resume`` checkpoint, an ``--out``
    that holds files the run would overwrite but did not write, or a network that needs more
    memory than the machine has available; 1 for failures while training); an interruption
    (Ctrl-C) returns 130.

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
        problem = _options_problem(args, config)
        if problem:
            raise TrainError(problem, 2)
        result = fit(
            config, args.epochs, out=args.out, resume=ck, plot=not args.no_plot, log=sys.stderr
        )
    except TrainError as e:
        print(f"autodiffx train: error: {e}", file=sys.stderr)
        return e.status
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
