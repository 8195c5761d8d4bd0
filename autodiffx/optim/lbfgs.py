"""L-BFGS with an optional strong-Wolfe line search: PyTorch's ``LBFGS`` on NumPy arrays."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from .._mode import enable_grad, no_grad
from .._tensor import Tensor
from .._xp import backend, is_foreign, is_lazy
from .optimizer import (
    Optimizer,
    _bump,
    _grad_view,
    _hyperparameters,
    _lazy,
    _real_view,
    _scalar,
)

__all__ = ["LBFGS"]


def _cubic_interpolate(
    x1: float,
    f1: float,
    g1: float,
    x2: float,
    f2: float,
    g2: float,
    bounds: tuple[float, float] | None = None,
) -> float:
    """Minimiser of the cubic through (x1, f1, g1), (x2, f2, g2), clipped to ``bounds``."""
    # NOTE: Nocedal & Wright (3.59), as minFunc and PyTorch.
    if bounds is not None:
        xmin_bound, xmax_bound = bounds
    else:
        xmin_bound, xmax_bound = (x1, x2) if x1 <= x2 else (x2, x1)
    d1 = g1 + g2 - 3 * (f1 - f2) / (x1 - x2)
    d2_square = d1**2 - g1 * g2
    if d2_square >= 0:
        d2 = math.sqrt(d2_square)
        if x1 <= x2:
            min_pos = x2 - (x2 - x1) * ((g2 + d2 - d1) / (g2 - g1 + 2 * d2))
        else:
            min_pos = x1 - (x1 - x2) * ((g1 + d2 - d1) / (g1 - g2 + 2 * d2))
        return min(max(min_pos, xmin_bound), xmax_bound)
    return (xmin_bound + xmax_bound) / 2.0


def _strong_wolfe(
    obj_func: Callable[[list[np.ndarray], float, np.ndarray], tuple[float, np.ndarray]],
    x: list[np.ndarray],
    t: float,
    d: np.ndarray,
    f: float,
    g: np.ndarray,
    gtd: float,
    c1: float = 1e-4,
    c2: float = 0.9,
    tolerance_change: float = 1e-9,
    max_ls: int = 25,
) -> tuple[float, np.ndarray, float, int]:
    """Line search for a step satisfying the strong Wolfe conditions (bracket, then zoom)."""
    d_norm = float(np.max(np.abs(d)))
    g = g.copy()
    f_new, g_new = obj_func(x, t, d)
    ls_func_evals = 1
    gtd_new = float(g_new @ d)

    t_prev, f_prev, g_prev, gtd_prev = 0.0, f, g, gtd
    done = False
    ls_iter = 0
    bracket: list[float] = []
    bracket_f: list[float] = []
    bracket_g: list[np.ndarray] = []
    bracket_gtd: list[float] = []
    while ls_iter < max_ls:
        if f_new > (f + c1 * t * gtd) or (ls_iter > 1 and f_new >= f_prev):
            bracket, bracket_f = [t_prev, t], [f_prev, f_new]
            bracket_g, bracket_gtd = [g_prev, g_new.copy()], [gtd_prev, gtd_new]
            break
        if abs(gtd_new) <= -c2 * gtd:
            bracket, bracket_f, bracket_g = [t], [f_new], [g_new]
            done = True
            break
        if gtd_new >= 0:
            bracket, bracket_f = [t_prev, t], [f_prev, f_new]
            bracket_g, bracket_gtd = [g_prev, g_new.copy()], [gtd_prev, gtd_new]
            break
        min_step = t + 0.01 * (t - t_prev)
        max_step = t * 10
        tmp = t
        t = _cubic_interpolate(t_prev, f_prev, gtd_prev, t, f_new, gtd_new, (min_step, max_step))
        t_prev, f_prev, g_prev, gtd_prev = tmp, f_new, g_new.copy(), gtd_new
        f_new, g_new = obj_func(x, t, d)
        ls_func_evals += 1
        gtd_new = float(g_new @ d)
        ls_iter += 1

    if ls_iter == max_ls:
        bracket, bracket_f, bracket_g = [0.0, t], [f, f_new], [g, g_new]

    # Zoom: shrink the bracket until a point satisfies the strong Wolfe conditions.
    insuf_progress = False
    low_pos, high_pos = (0, 1) if bracket_f[0] <= bracket_f[-1] else (1, 0)
    while not done and ls_iter < max_ls:
        if abs(bracket[1] - bracket[0]) * d_norm < tolerance_change:
            break
        t = _cubic_interpolate(
            bracket[0], bracket_f[0], bracket_gtd[0], bracket[1], bracket_f[1], bracket_gtd[1]
        )
        # NOTE: PyTorch's safeguard against steps too close to the bracket's ends.
        eps = 0.1 * (max(bracket) - min(bracket))
        if min(max(bracket) - t, t - min(bracket)) < eps:
            if insuf_progress or t >= max(bracket) or t <= min(bracket):
                if abs(t - max(bracket)) < abs(t - min(bracket)):
                    t = max(bracket) - eps
                else:
                    t = min(bracket) + eps
                insuf_progress = False
            else:
                insuf_progress = True
        else:
            insuf_progress = False
        f_new, g_new = obj_func(x, t, d)
        ls_func_evals += 1
        gtd_new = float(g_new @ d)
        ls_iter += 1
        if f_new > (f + c1 * t * gtd) or f_new >= bracket_f[low_pos]:
            bracket[high_pos] = t
            bracket_f[high_pos] = f_new
            bracket_g[high_pos] = g_new.copy()
            bracket_gtd[high_pos] = gtd_new
            low_pos, high_pos = (0, 1) if bracket_f[0] <= bracket_f[1] else (1, 0)
        else:
            if abs(gtd_new) <= -c2 * gtd:
                done = True
            elif gtd_new * (bracket[high_pos] - bracket[low_pos]) >= 0:
                bracket[high_pos] = bracket[low_pos]
                bracket_f[high_pos] = bracket_f[low_pos]
                bracket_g[high_pos] = bracket_g[low_pos]
                bracket_gtd[high_pos] = bracket_gtd[low_pos]
            bracket[low_pos] = t
            bracket_f[low_pos] = f_new
            bracket_g[low_pos] = g_new.copy()
            bracket_gtd[low_pos] = gtd_new
    return bracket_f[low_pos], bracket_g[low_pos], bracket[low_pos], ls_func_evals


def _numpy_only(p: Tensor, a: Any, what: str) -> None:
    """TypeError unless ``a``, a parameter's array or its ``.grad``'s, is a NumPy array."""
    if type(a) is np.ndarray or not is_foreign(a):
        return
    where = f"LBFGS.step(): a parameter of shape {p.shape}"
    if what and is_lazy(a):
        raise _lazy("LBFGS", p)
    raise TypeError(
        f"{where}{' has a ' + what + ' that' if what else ''} is a {backend(a)} array; LBFGS "
        "runs on NumPy arrays only (its flat vectors and line search are NumPy code): use "
        "SGD, Adam, AdamW, RMSprop or Adagrad on such parameters, or NumPy parameters and "
        "data (model.to(numpy)) with LBFGS (docs/backends.md)"
    )


class LBFGS(Optimizer):
    """Limited-memory BFGS, PyTorch's algorithm (after minFunc), with a closure.

    Each :meth:`step` runs up to ``max_iter`` iterations: the two-loop recursion builds the
    quasi-Newton direction from the last ``history_size`` curvature pairs (a pair is kept
    when ``y^T s > 1e-10``; the initial Hessian is ``y^T s / y^T y``), then the step is
    ``lr`` (``min(1, 1/||g||_1) lr`` on the very first iteration) or, with
    ``line_search_fn="strong_wolfe"``, found by a strong-Wolfe line search with cubic
    interpolation. It stops when ``max|g| <= tolerance_grad``, the step or loss change is
    below ``tolerance_change``, or ``max_eval`` evaluations were spent. One parameter group
    only; all parameters are treated as one flat vector (complex ones as (re, im) pairs).

    Parameters
    ----------
    params : iterable
        Tensors.
    lr : float
        Default 1.
    max_iter : int
        Iterations per step (default 20).
    max_eval : int, optional
        Function evaluations per step (default ``max_iter * 5 // 4``).
    tolerance_grad, tolerance_change : float
        Default 1e-7 and 1e-9.
    history_size : int
        Default 100.
    line_search_fn : None or "strong_wolfe"
        Default None (fixed step).

    Examples
    --------
    >>> import autodiffx as ad
    >>> x = ad.tensor([1.5, -0.5], requires_grad=True)
    >>> opt = ad.optim.LBFGS([x], line_search_fn="strong_wolfe")
    >>> def closure():
    ...     opt.zero_grad()
    ...     loss = ((x - ad.tensor([1.0, 2.0])) ** 2).sum() + (x[0] * x[1]) ** 2
    ...     loss.backward()
    ...     return loss
    >>> _ = opt.step(closure)
    >>> x
    tensor([0.21482907, 1.91177056], requires_grad=True)
    """

    def __init__(
        self,
        params: Any,
        lr: float = 1.0,
        max_iter: int = 20,
        max_eval: int | None = None,
        tolerance_grad: float = 1e-7,
        tolerance_change: float = 1e-9,
        history_size: int = 100,
        line_search_fn: str | None = None,
    ) -> None:
        if max_eval is None:
            max_eval = max_iter * 5 // 4
        defaults = _hyperparameters(locals())
        if line_search_fn not in (None, "strong_wolfe"):
            raise ValueError(f"only 'strong_wolfe' is supported, got {line_search_fn!r}")
        super().__init__(params, defaults)
        if len(self.param_groups) != 1:
            raise ValueError("LBFGS doesn't support per-parameter options (parameter groups)")
        self._params: list[Tensor] = self.param_groups[0]["params"]
        self._numel = sum(2 * p.size if p.dtype.kind == "c" else p.size for p in self._params)

    def add_param_group(self, param_group: Any) -> None:
        """Not supported after construction: LBFGS has exactly one group.

        Examples
        --------
        >>> import autodiffx as ad
        >>> opt = ad.optim.LBFGS([ad.zeros(2, requires_grad=True)])
        >>> opt.add_param_group({"params": [ad.zeros(1, requires_grad=True)]})
        Traceback (most recent call last):
        ...
        ValueError: LBFGS doesn't support per-parameter options (parameter groups)
        """
        if self.param_groups:
            raise ValueError("LBFGS doesn't support per-parameter options (parameter groups)")
        super().add_param_group(param_group)

    # ----- flat-vector helpers -----------------------------------------------------------------
    def _gather_flat_grad(self) -> np.ndarray:
        views = []
        for p in self._params:
            if p.grad is None:
                views.append(np.zeros(2 * p.size if p.dtype.kind == "c" else p.size, p.real.dtype))
            else:
                _numpy_only(p, p.grad.data, ".grad")
                views.append(np.ravel(_grad_view(p)))
        return np.concatenate(views)

    def _add_grad(self, step_size: float, update: np.ndarray) -> None:
        offset = 0
        for p in self._params:
            x = _real_view(p.data)
            n = x.size
            x += step_size * update[offset : offset + n].reshape(x.shape)
            _bump(p)
            offset += n

    def _clone_param(self) -> list[np.ndarray]:
        return [p.data.copy() for p in self._params]

    def _set_param(self, params_data: list[np.ndarray]) -> None:
        for p, pdata in zip(self._params, params_data, strict=True):
            p.data[...] = pdata
            _bump(p)

    def _directional_evaluate(
        self, closure: Callable[[], Any], x: list[np.ndarray], t: float, d: np.ndarray
    ) -> tuple[float, np.ndarray]:
        self._add_grad(t, d)
        with enable_grad():
            loss = _scalar(closure())
        flat_grad = self._gather_flat_grad()
        self._set_param(x)
        return loss, flat_grad

    def _load_param_state(self, p: Tensor, key: int, saved: Any) -> dict[str, Any]:
        out = super()._load_param_state(p, key, saved)
        n = self._numel
        for name in ("d", "prev_flat_grad"):
            v = out.get(name)
            if v is not None and np.shape(v) != (n,):
                raise ValueError(f"LBFGS state {name!r} has shape {np.shape(v)}, expected ({n},)")
        for name in ("old_dirs", "old_stps"):
            for v in out.get(name) or []:
                if np.shape(v) != (n,):
                    raise ValueError(
                        f"LBFGS state {name!r} holds shape {np.shape(v)}, expected ({n},)"
                    )
        return out

    # ----- the step --------------------------------------------------------------------------
    def step(self, closure: Callable[[], Any] | None = None) -> Any:  # type: ignore[override]
        """Run up to ``max_iter`` L-BFGS iterations; ``closure`` re-evaluates the loss.

        The closure must zero the gradients, compute the loss, call ``backward()`` and
        return the loss; the value of its first call is returned.

        Examples
        --------
        >>> import autodiffx as ad
        >>> x = ad.tensor([2.0], requires_grad=True)
        >>> opt = ad.optim.LBFGS([x])
        >>> def closure():
        ...     opt.zero_grad()
        ...     loss = ((x - 1) ** 2).sum()
        ...     loss.backward()
        ...     return loss
        >>> opt.step(closure)
        tensor(1., grad_fn=<sum>)
        >>> x
        tensor([1.], requires_grad=True)
        """
        if closure is None:
            raise RuntimeError("LBFGS.step() requires a closure that re-evaluates the loss")
        for p in self._params:
            _numpy_only(p, p.data, "")
        with no_grad():
            return self._step(closure)

    def _step(self, closure: Callable[[], Any]) -> Any:
        group = self.param_groups[0]
        lr = group["lr"]
        max_iter = group["max_iter"]
        max_eval = group["max_eval"]
        tolerance_grad = group["tolerance_grad"]
        tolerance_change = group["tolerance_change"]
        line_search_fn = group["line_search_fn"]
        history_size = group["history_size"]

        # NOTE: all of the state lives on the first parameter (as PyTorch).
        state = self.state[self._params[0]]
        state.setdefault("func_evals", 0)
        state.setdefault("n_iter", 0)

        with enable_grad():
            orig_loss = closure()
        loss = _scalar(orig_loss)
        current_evals = 1
        state["func_evals"] += 1

        flat_grad = self._gather_flat_grad()
        opt_cond = float(np.max(np.abs(flat_grad))) <= tolerance_grad
        if opt_cond:
            return orig_loss

        d = state.get("d")
        t = state.get("t")
        old_dirs = state.get("old_dirs")
        old_stps = state.get("old_stps")
        ro = state.get("ro")
        h_diag = state.get("H_diag")
        prev_flat_grad = state.get("prev_flat_grad")
        prev_loss = state.get("prev_loss")

        n_iter = 0
        while n_iter < max_iter:
            n_iter += 1
            state["n_iter"] += 1

            # The direction: -H g by the two-loop recursion.
            if state["n_iter"] == 1:
                d = -flat_grad
                old_dirs, old_stps, ro = [], [], []
                h_diag = 1.0
            else:
                y = flat_grad - prev_flat_grad
                s = d * t
                ys = float(y @ s)
                if ys > 1e-10:
                    if len(old_dirs) == history_size:
                        old_dirs.pop(0)
                        old_stps.pop(0)
                        ro.pop(0)
                    old_dirs.append(y)
                    old_stps.append(s)
                    ro.append(1.0 / ys)
                    h_diag = ys / float(y @ y)
                num_old = len(old_dirs)
                if "al" not in state:
                    state["al"] = [None] * history_size
                al = state["al"]
                q = -flat_grad
                for i in range(num_old - 1, -1, -1):
                    al[i] = float(old_stps[i] @ q) * ro[i]
                    q -= al[i] * old_dirs[i]
                d = r = q * h_diag
                for i in range(num_old):
                    be_i = float(old_dirs[i] @ r) * ro[i]
                    r += (al[i] - be_i) * old_stps[i]

            prev_flat_grad = flat_grad.copy()
            prev_loss = loss

            # The step length.
            if state["n_iter"] == 1:
                t = min(1.0, 1.0 / float(np.sum(np.abs(flat_grad)))) * lr
            else:
                t = lr
            gtd = float(flat_grad @ d)
            if gtd > -tolerance_change:
                break

            ls_func_evals = 0
            if line_search_fn is not None:
                x_init = self._clone_param()

                def obj_func(x: list[np.ndarray], t: float, d: np.ndarray) -> Any:
                    return self._directional_evaluate(closure, x, t, d)

                loss, flat_grad, t, ls_func_evals = _strong_wolfe(
                    obj_func, x_init, t, d, loss, flat_grad, gtd, max_ls=max_eval - current_evals
                )
                self._add_grad(t, d)
                opt_cond = float(np.max(np.abs(flat_grad))) <= tolerance_grad
            else:
                self._add_grad(t, d)
                if n_iter != max_iter:
                    with enable_grad():
                        loss = _scalar(closure())
                    flat_grad = self._gather_flat_grad()
                    opt_cond = float(np.max(np.abs(flat_grad))) <= tolerance_grad
                    ls_func_evals = 1
            current_evals += ls_func_evals
            state["func_evals"] += ls_func_evals

            if n_iter == max_iter:
                break
            if current_evals >= max_eval:
                break
            if opt_cond:
                break
            if float(np.max(np.abs(d * t))) <= tolerance_change:
                break
            if abs(loss - prev_loss) < tolerance_change:
                break

        state["d"] = d
        state["t"] = t
        state["old_dirs"] = old_dirs
        state["old_stps"] = old_stps
        state["ro"] = ro
        state["H_diag"] = h_diag
        state["prev_flat_grad"] = prev_flat_grad
        state["prev_loss"] = prev_loss
        return orig_loss
