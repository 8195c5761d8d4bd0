"""The contents of a training checkpoint (``autodiffx.train``), checked entry by entry: each
check returns a one-line problem, or None."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from . import optim

FORMAT = "autodiffx.train"
VERSION = 1
HISTORY_KEYS = ("loss", "train_acc", "test_loss", "test_acc", "seconds")


def is_int(v: Any) -> bool:
    """An int or NumPy integer, not a bool."""
    return isinstance(v, int | np.integer) and not isinstance(v, bool)


def checkpoint_problem(
    ck: Any, config_problem: Callable[[dict[str, Any]], str | None]
) -> str | None:
    """What is wrong with the loaded contents of a checkpoint, or None; ``config_problem``
    checks its ``config`` entry."""
    if not isinstance(ck, dict) or not _same(ck.get("format"), FORMAT):
        return f"no {FORMAT!r} header"
    version = ck.get("version")
    if not is_int(version) or not 1 <= version <= VERSION:
        return f"format version {version!r}, this autodiffx reads up to {VERSION}"
    for key in ("config", "model", "optimizer", "rng"):
        if not isinstance(ck.get(key), dict):
            return f"'{key}' missing or not a dict"
    epoch = ck.get("epoch")
    if not is_int(epoch) or epoch < 1:
        return f"epoch {epoch!r}"
    problem = config_problem(ck["config"])
    if problem:
        return f"config: {problem}"
    hist = ck.get("history")
    if not isinstance(hist, dict) or set(hist) != set(HISTORY_KEYS):
        return "'history' missing or incomplete"
    for k in HISTORY_KEYS:
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
    the optimizer itself by :func:`groups_problem` and :func:`state_problem`)."""
    groups, state = opt.get("param_groups"), opt.get("state")
    if not isinstance(groups, list) or not all(isinstance(g, dict) for g in groups):
        return "optimizer 'param_groups' is not a list of dicts"
    if not isinstance(state, dict) or not all(
        is_int(k) and isinstance(v, dict) for k, v in state.items()
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
        and all(is_int(v) and 0 <= v < 2**128 for v in inner.values())
        and is_int(rng["has_uint32"])
        and 0 <= rng["has_uint32"] <= 1
        and is_int(rng["uinteger"])
        and 0 <= rng["uinteger"] < 2**32
    )
    return None if ok else "'rng' is not the state of a PCG64 generator"


def state_problem(ck_state: dict[int, Any], optimizer_name: str, params: list[Any]) -> str | None:
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
        return is_int(v) and v >= 0
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


def groups_problem(saved: list[dict[str, Any]], optimizer: optim.Optimizer) -> str | None:
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
