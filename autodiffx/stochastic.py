"""``ad.stochastic``: estimators of gradients of expectations and stochastic computation graphs.

Each estimator returns a *surrogate loss*: a Tensor whose value is the Monte-Carlo estimate
of ``E_{x ~ p_theta}[f(x)]`` and whose gradient (by ``backward()``, ``ad.grad`` or any
transform) is an unbiased estimator of ``grad_theta E[f(x)]``. ``magic_box`` and
``dice_objective`` (DiCE, Foerster et al. 2018) make derivatives of every order unbiased on
stochastic computation graphs (Schulman et al. 2015). See docs/stochastic.md.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np

from . import ops
from ._tensor import Tensor
from .distributions import Distribution

__all__ = [
    "ControlVariate",
    "RunningMeanBaseline",
    "dice_objective",
    "magic_box",
    "pathwise",
    "score_function",
    "stop_gradient",
]


def stop_gradient(x: Any) -> Tensor:
    """The values of ``x`` with no derivative of any order, in either mode (``x.detach()``).

    Examples
    --------
    >>> import autodiffx as ad
    >>> x = ad.tensor(3.0, requires_grad=True)
    >>> y = x * ad.stochastic.stop_gradient(x)
    >>> y.backward()
    >>> x.grad
    tensor(3.)
    """
    if isinstance(x, Tensor):
        return x.detach()
    return Tensor(np.asarray(x))


def magic_box(logp: Any) -> Tensor:
    """DiCE's operator ``exp(logp - stop_gradient(logp))`` (Foerster et al. 2018).

    Its value is 1 and its derivative is ``magic_box(logp) * d logp``, so that every order of
    derivative of ``magic_box(sum of log-probabilities) * cost`` brings down the score
    terms of the stochastic nodes the cost depends on. ``logp`` is the log-probability of
    *detached* samples (``dist.sample``), summed over the nodes that influence the cost.

    Examples
    --------
    >>> import autodiffx as ad
    >>> logp = ad.tensor(-1.5, requires_grad=True)
    >>> box = ad.stochastic.magic_box(logp)
    >>> box
    tensor(1., grad_fn=<exp>)
    >>> (g,) = ad.autograd.grad(box, logp, create_graph=True)
    >>> g, ad.autograd.grad(g, logp)[0]
    (tensor(1., grad_fn=<...>), tensor(1.))
    """
    if not isinstance(logp, Tensor):
        logp = Tensor(np.asarray(logp, dtype=float))
    if logp.dtype.kind != "f":
        raise TypeError(
            f"magic_box: logp must be a real floating Tensor (a log-probability), "
            f"not dtype {logp.dtype}"
        )
    return ops.exp(logp - stop_gradient(logp))


# ----- shared checks ---------------------------------------------------------------------------
def _check_n(n: Any, who: str, minimum: int = 1, why: str = "") -> int:
    if not isinstance(n, numbers.Integral) or isinstance(n, bool) or n < minimum:
        raise ValueError(f"{who}: n must be an integer >= {minimum}{why}, got {n!r}")
    return int(n)


def _per_sample(f: Callable[[Tensor], Any], x: Tensor, n: int, who: str) -> Tensor:
    """``f(x)`` checked to be one real value per sample (shape ``(n,)``)."""
    v = f(x)
    if not isinstance(v, Tensor):
        v = Tensor(np.asarray(v))
    if v.shape != (n,):
        raise ValueError(
            f"{who}: f(x) must return one value per sample, shape ({n},), but returned shape "
            f"{v.shape} for x of shape {x.shape}; reduce the batch and event axes of x inside "
            "f (e.g. ad.sum(x ** 2, axis=-1))"
        )
    if v.dtype.kind in "biu":
        v = v.astype(x.dtype if x.dtype.kind == "f" else np.float64)
    if v.dtype.kind != "f":
        raise TypeError(f"{who}: f(x) must be real, but has dtype {v.dtype}")
    return v


def _joint_log_prob(dist: Distribution, x: Tensor) -> Tensor:
    """``log p(x_i)`` of each sample, summed over the batch axes (shape ``(n,)``)."""
    logp = dist.log_prob(x)
    if logp.ndim > 1:
        logp = logp.sum(axis=tuple(range(1, logp.ndim)))
    return logp


def _reduce(terms: Tensor, reduction: str, who: str) -> Tensor:
    if reduction == "mean":
        return terms.mean()
    if reduction == "none":
        return terms
    raise ValueError(f"{who}: reduction must be 'mean' or 'none', got {reduction!r}")


def _check_dist(dist: Any, who: str) -> None:
    if not isinstance(dist, Distribution):
        raise TypeError(
            f"{who}: dist must be an ad.distributions.Distribution, not {type(dist).__name__}"
        )


def _loo_mean(v: np.ndarray) -> np.ndarray:
    """The mean of the other samples, for each sample."""
    return (v.sum() - v) / (v.size - 1)


# ----- baselines and control variates ----------------------------------------------------------
class RunningMeanBaseline:
    """A baseline that is the exponential moving average of past Monte-Carlo estimates.

    ``score_function(..., baseline=b)`` uses ``b.value`` (which depends only on earlier
    calls, so the estimator stays unbiased) and then calls ``b.update(values)`` with the
    current per-sample values. The first update sets ``value`` to the batch mean; later
    ones ``value = decay * value + (1 - decay) * mean``. Before any update ``value`` is
    ``initial`` (0.0: no variance reduction on the first call).

    Examples
    --------
    >>> import autodiffx as ad
    >>> b = ad.stochastic.RunningMeanBaseline(decay=0.5)
    >>> b.update(ad.tensor([1.0, 3.0])); b.value
    2.0
    >>> b.update(ad.tensor([4.0, 4.0])); b.value
    3.0
    """

    def __init__(self, decay: float = 0.9, initial: float = 0.0) -> None:
        if not 0.0 <= float(decay) < 1.0:
            raise ValueError(f"RunningMeanBaseline: decay must be in [0, 1), got {decay!r}")
        self.decay = float(decay)
        self.value = float(initial)
        self.count = 0

    def update(self, values: Any) -> None:
        """Fold the mean of ``values`` (detached) into the running mean."""
        data = values.data if isinstance(values, Tensor) else np.asarray(values)
        mean = float(np.mean(data))
        if self.count == 0:
            self.value = mean
        else:
            self.value = self.decay * self.value + (1.0 - self.decay) * mean
        self.count += 1

    def __repr__(self) -> str:
        return f"RunningMeanBaseline(decay={self.decay}, value={self.value}, count={self.count})"


class ControlVariate:
    """A control variate ``h`` with known expectation ``mean = E_{p_theta}[h(x)]``.

    The estimators replace ``f`` by ``f - c (h - mean)``: the value and the gradient stay
    unbiased for any coefficient ``c`` that does not depend on the sample it multiplies,
    *provided* ``mean`` is the exact expectation as a differentiable function of the
    parameters (``dist.mean``, not a detached number, unless ``E[h]`` really is constant, as
    for a score). ``h(x)`` returns one value per sample, like ``f``.

    ``coef`` is a number, or ``"optimal"``: for each sample, ``c = Cov(f, h) / Var(h)``
    estimated from the *other* samples (leave-one-out, detached, so the estimator stays
    unbiased; 0 where the other samples' ``h`` has no variance). That coefficient minimises
    the variance of the Monte-Carlo value; for the gradient it is the classical choice, not
    the per-parameter optimum. ``"optimal"`` needs ``n >= 3``.

    Examples
    --------
    >>> import autodiffx as ad
    >>> mu = ad.tensor(1.0, requires_grad=True)
    >>> d = ad.distributions.Normal(mu, 0.5)
    >>> cv = ad.stochastic.ControlVariate(lambda x: x, mean=d.mean)
    >>> loss = ad.stochastic.score_function(lambda x: x**2, d, 1000, rng=0, control_variate=cv)
    >>> loss.backward()
    >>> round(mu.grad.item(), 1)              # exact: 2 mu = 2
    2.0
    """

    def __init__(self, h: Callable[[Tensor], Any], mean: Any, coef: Any = "optimal") -> None:
        if not callable(h):
            raise TypeError(f"ControlVariate: h must be callable, not {type(h).__name__}")
        if isinstance(coef, str) and coef != "optimal":
            raise ValueError(f"ControlVariate: coef must be a number or 'optimal', got {coef!r}")
        if not isinstance(coef, str | numbers.Real) or isinstance(coef, bool):
            raise TypeError(
                f"ControlVariate: coef must be a real number or 'optimal', got {coef!r}"
            )
        mean = mean if isinstance(mean, Tensor) else Tensor(np.asarray(mean, dtype=float))
        if mean.shape != ():
            raise ValueError(
                f"ControlVariate: mean must be a scalar (E[h(x)] of one value per sample), "
                f"got shape {mean.shape}"
            )
        self.h, self.mean, self.coef = h, mean, coef

    def _coefficients(self, f: np.ndarray, h: np.ndarray) -> Any:
        if self.coef != "optimal":
            return float(self.coef)
        fc, hc = f - f.mean(), h - h.mean()
        m = f.size - 1
        mf, mh = (fc.sum() - fc) / m, (hc.sum() - hc) / m
        cov = ((fc * hc).sum() - fc * hc) / m - mf * mh
        var = ((hc * hc).sum() - hc * hc) / m - mh * mh
        ok = var > 1e-14 * max(float((hc * hc).mean()), np.finfo(float).tiny)
        return np.where(ok, cov / np.where(ok, var, 1.0), 0.0)

    def _split(self, x: Tensor, values: Tensor, who: str) -> tuple[Tensor, Tensor]:
        """``(f - c h, c * mean)`` per sample: the boxed and the unboxed parts."""
        n = values.shape[0]
        if self.coef == "optimal":
            _check_n(n, who, 3, " for a control variate with coef='optimal'")
        hv = _per_sample(self.h, x, n, f"{who} (control variate h)")
        c = self._coefficients(values.data.astype(float), hv.data.astype(float))
        c = Tensor(np.asarray(c, dtype=values.dtype))
        return values - c * hv, c * self.mean.astype(values.dtype)


def _baseline(baseline: Any, dist: Distribution, values: Tensor, who: str) -> Tensor | None:
    """The baseline of each sample (detached), or None; updates a running-mean baseline."""
    v = values.data
    if baseline is None:
        return None
    if isinstance(baseline, str):
        if baseline != "loo":
            raise ValueError(f"{who}: baseline must be 'loo', not {baseline!r}")
        _check_n(v.shape[0], who, 2, " for baseline='loo'")
        return Tensor(_loo_mean(v))
    if isinstance(baseline, RunningMeanBaseline):
        b = Tensor(np.asarray(baseline.value, dtype=v.dtype))
        baseline.update(v)
        return b
    b = baseline(dist) if callable(baseline) else baseline
    b = stop_gradient(b)
    if b.shape != () or b.dtype.kind not in "biuf":
        raise ValueError(
            f"{who}: a baseline (or the value of a callable baseline) must be a real scalar, "
            f"got shape {b.shape} and dtype {b.dtype}; a baseline must not depend on the "
            "sample it is subtracted from (use baseline='loo' for the other samples' mean)"
        )
    return b.astype(v.dtype)


# ----- estimators ------------------------------------------------------------------------------
def pathwise(
    f: Callable[[Tensor], Any],
    dist: Distribution,
    n: int,
    *,
    rng: Any = None,
    control_variate: ControlVariate | None = None,
    reduction: str = "mean",
) -> Tensor:
    """Pathwise (reparameterisation) estimator of ``grad E_{x ~ dist}[f(x)]`` as a surrogate.

    Draws ``x = dist.rsample((n,), rng=rng)`` (differentiable in the parameters) and
    returns ``mean_i f(x_i)``: its value is the Monte-Carlo estimate of ``E[f(x)]``, its
    gradient the pathwise estimator ``mean_i grad f(x_i)`` (any order, either mode).
    ``f`` maps the samples, shape ``(n,) + batch_shape + event_shape``, to one value per
    sample, shape ``(n,)``. ``control_variate`` (a :class:`ControlVariate`) replaces ``f``
    by ``f - c (h - E[h])``. ``reduction="none"`` returns the ``n`` per-sample terms instead
    of their mean (for variance estimates). A distribution without ``rsample`` (Bernoulli,
    Categorical, Poisson) raises ``NotImplementedError``: use :func:`score_function`.

    Examples
    --------
    >>> import autodiffx as ad
    >>> mu = ad.tensor(1.0, requires_grad=True)
    >>> sigma = ad.tensor(0.5, requires_grad=True)
    >>> loss = ad.stochastic.pathwise(lambda x: x**2, ad.distributions.Normal(mu, sigma),
    ...                               10_000, rng=0)
    >>> loss.backward()                # exact: E[x^2] = mu^2 + sigma^2 = 1.25, (2 mu, 2 sigma)
    >>> round(loss.item(), 2), round(mu.grad.item(), 2), round(sigma.grad.item(), 2)
    (1.26, 2.01, 1.01)
    """
    _check_dist(dist, "pathwise")
    n = _check_n(n, "pathwise")
    if not dist.has_rsample:
        raise NotImplementedError(
            f"pathwise: {type(dist).__name__} has no reparameterised sampler (has_rsample is "
            "False), so there is no pathwise gradient; use ad.stochastic.score_function(f, "
            "dist, n), whose gradient comes from log_prob of detached samples"
        )
    x = dist.rsample((n,), rng=rng)
    terms = _per_sample(f, x, n, "pathwise")
    if control_variate is not None:
        boxed, unboxed = control_variate._split(x, terms, "pathwise")
        terms = boxed + unboxed
    return _reduce(terms, reduction, "pathwise")


def score_function(
    f: Callable[[Tensor], Any],
    dist: Distribution,
    n: int,
    *,
    rng: Any = None,
    baseline: Any = None,
    control_variate: ControlVariate | None = None,
    reduction: str = "mean",
) -> Tensor:
    """Score-function (REINFORCE) estimator of ``grad E_{x ~ dist}[f(x)]`` as a surrogate.

    Draws detached samples ``x = dist.sample((n,), rng=rng)`` and returns the DiCE form
    ``mean_i [B_i f(x_i) + (1 - B_i) b_i]`` with ``B_i = magic_box(log p(x_i))`` (summed
    over batch axes). Its value is ``mean_i f(x_i)``; its gradient is
    ``mean_i [(f(x_i) - b_i) grad log p(x_i) + grad f(x_i)]`` (the last term where ``f``
    reads the parameters itself), and every higher derivative is unbiased too. ``f`` maps
    the samples to one value per sample, shape ``(n,)``.

    ``baseline`` (detached; it changes the variance, never the expectation):

    - a real scalar, or a callable ``baseline(dist)`` returning one (it cannot see the
      samples, so it cannot bias the estimator);
    - ``"loo"``: for each sample the mean of the other samples' ``f`` (Kool et al. 2019),
      ``n >= 2``;
    - a :class:`RunningMeanBaseline`: its value from earlier calls, updated afterwards.

    ``control_variate`` (a :class:`ControlVariate`) replaces ``f`` by ``f - c (h - E[h])``
    (the baseline then applies to ``f - c h``). ``reduction="none"`` returns the per-sample
    terms. Works for every distribution with ``log_prob``, with or without ``rsample``.

    Examples
    --------
    >>> import autodiffx as ad
    >>> logits = ad.tensor(0.0, requires_grad=True)
    >>> d = ad.distributions.Bernoulli(logits=logits)
    >>> loss = ad.stochastic.score_function(lambda x: (x - 0.25)**2, d, 20_000, rng=0,
    ...                                     baseline="loo")
    >>> loss.backward()                # exact: E = 0.3125, gradient p (1 - p) (1 - 2 c) = 0.125
    >>> round(loss.item(), 2), round(logits.grad.item(), 2)
    (0.31, 0.13)
    """
    _check_dist(dist, "score_function")
    n = _check_n(n, "score_function")
    x = stop_gradient(dist.sample((n,), rng=rng))
    values = _per_sample(f, x, n, "score_function")
    unboxed = None
    if control_variate is not None:
        values, unboxed = control_variate._split(x, values, "score_function")
    b = _baseline(baseline, dist, values, "score_function")
    box = magic_box(_joint_log_prob(dist, x))
    terms = box * values
    if b is not None:
        terms = terms + (1 - box) * b
    if unboxed is not None:
        terms = terms + unboxed
    return _reduce(terms, reduction, "score_function")


# ----- stochastic computation graphs -----------------------------------------------------------
def _named(tensors: Any, what: str) -> dict[str, Tensor]:
    if not isinstance(tensors, Mapping):
        raise TypeError(
            f"dice_objective: {what} must be a mapping from names to Tensors, not "
            f"{type(tensors).__name__}"
        )
    out = {}
    for name, t in tensors.items():
        t = t if isinstance(t, Tensor) else Tensor(np.asarray(t, dtype=float))
        if t.dtype.kind != "f":
            raise TypeError(f"dice_objective: {what}[{name!r}] must be real, not {t.dtype}")
        out[str(name)] = t
    return out


def _direct_parents(depends_on: Any, names: list[str], nodes: set[str]) -> dict[str, set[str]]:
    if not isinstance(depends_on, Mapping):
        raise TypeError(
            f"dice_objective: depends_on must be a mapping, not {type(depends_on).__name__}"
        )
    unknown = sorted(set(map(str, depends_on)) - set(names))
    missing = [k for k in names if k not in depends_on]
    if unknown or missing:
        raise ValueError(
            "dice_objective: depends_on needs one entry for every cost and every stochastic "
            f"node (an empty list for none); missing {missing}, unknown {unknown}"
        )
    parents = {}
    for k in names:
        deps = depends_on[k]
        deps = {deps} if isinstance(deps, str) else set(map(str, deps))
        wrong = sorted(deps - nodes)
        if wrong:
            raise ValueError(
                f"dice_objective: depends_on[{k!r}] lists {wrong}, which are not stochastic "
                f"nodes (keys of log_probs: {sorted(nodes)}); list the stochastic nodes that "
                "its inputs are computed from"
            )
        parents[k] = deps
    return parents


def _ancestors(parents: dict[str, set[str]]) -> dict[str, frozenset[str]]:
    """Every stochastic node each name depends on, directly or through other nodes."""
    done: dict[str, frozenset[str]] = {}

    def visit(k: str, path: tuple[str, ...]) -> frozenset[str]:
        if k in done:
            return done[k]
        if k in path:
            cycle = " -> ".join((*path[path.index(k) :], k))
            raise ValueError(f"dice_objective: depends_on has a cycle: {cycle}")
        out = set(parents[k])
        for p in parents[k]:
            out |= visit(p, (*path, k))
        done[k] = frozenset(out)
        return done[k]

    for k in parents:
        visit(k, ())
    return done


def _common_shape(groups: Iterable[tuple[str, dict[str, Tensor]]]) -> tuple[int, ...]:
    """The one shape of the non-scalar Tensors (the runs); refuses broadcasting otherwise."""
    shapes = {f"{what}[{k!r}]": t.shape for what, d in groups for k, t in d.items()}
    distinct = {s for s in shapes.values() if s != ()}
    if len(distinct) > 1:
        # NOTE: no broadcasting between run shapes: (n,) against (n, n) would pair runs wrongly.
        raise ValueError(
            "dice_objective: the costs, log-probabilities and baselines must all have the same "
            "shape (one entry per independent run of the graph) or be scalars; sum a node's "
            f"batch axes into its log-probability first. Got {shapes}"
        )
    return distinct.pop() if distinct else ()


def _graph(costs: Any, log_probs: Any, depends_on: Any, baselines: Any) -> tuple[Any, ...]:
    """The checked inputs of ``dice_objective``, the ancestors of each name and the run shape."""
    costs_t, logps = _named(costs, "costs"), _named(log_probs, "log_probs")
    base = _named(baselines if baselines is not None else {}, "baselines")
    clash = sorted(set(costs_t) & set(logps))
    if clash or set(base) - set(logps):
        raise ValueError(
            f"dice_objective: names {clash} are both costs and stochastic nodes, or baselines "
            f"{sorted(set(base) - set(logps))} name no stochastic node; use distinct names"
        )
    anc = _ancestors(_direct_parents(depends_on, [*costs_t, *logps], set(logps)))
    shape = _common_shape((("costs", costs_t), ("log_probs", logps), ("baselines", base)))
    return costs_t, logps, base, anc, shape


def dice_objective(
    costs: Mapping[str, Any],
    log_probs: Mapping[str, Any],
    depends_on: Mapping[str, Any],
    *,
    baselines: Mapping[str, Any] | None = None,
    reduction: str = "mean",
) -> Tensor:
    """DiCE surrogate of a stochastic computation graph: derivatives of every order unbiased.

    ``costs`` maps names to cost Tensors, ``log_probs`` names of stochastic nodes to the
    log-probability of their *detached* samples (``d.log_prob(d.sample(...))``; a node
    sampled with ``rsample`` is deterministic given its noise and is not listed), with one
    entry per independent run of the graph (all the same shape, or scalars).
    ``depends_on`` gives, for every cost and every stochastic node, the stochastic nodes
    its inputs are computed from (an empty list for none); dependencies through other
    nodes are added. The objective is the mean over runs of (Foerster et al. 2018)

        sum_c magic_box(sum_{w influences c} log p_w) * c
        + sum_w (1 - magic_box(log p_w)) * b_w

    with the optional detached ``baselines`` ``b_w`` (Mao et al. 2019; Farquhar et al.'s
    Loaded DiCE): estimates of the costs that depend on ``w``, computed only from what ``w``
    depends on. That term is 0 in value with zero expectation at every order. The value is
    the Monte-Carlo estimate of the expected total cost; ``backward()``, ``ad.grad`` and
    ``ad.hessian`` give unbiased estimators of derivatives of any order.
    ``reduction="none"`` returns the per-run terms. See docs/stochastic.md.

    Examples
    --------
    >>> import autodiffx as ad
    >>> D = ad.distributions
    >>> theta = ad.tensor(0.5, requires_grad=True)
    >>> d1 = D.Normal(theta, 1.0); x1 = d1.sample((20_000,), rng=0)
    >>> d2 = D.Bernoulli(logits=x1 * theta); x2 = d2.sample(rng=1)
    >>> L = ad.stochastic.dice_objective(
    ...     costs={"c1": x1**2, "c2": x2 * theta},
    ...     log_probs={"x1": d1.log_prob(x1), "x2": d2.log_prob(x2)},
    ...     depends_on={"x1": [], "x2": ["x1"], "c1": ["x1"], "c2": ["x2"]})
    >>> (g,) = ad.autograd.grad(L, theta, create_graph=True)
    >>> (h,) = ad.autograd.grad(g, theta)     # second-order estimate, same objective
    >>> L.shape, g.shape, h.shape
    ((), (), ())
    """
    costs_t, logps, base, anc, shape = _graph(costs, log_probs, depends_on, baselines)
    total: Any = 0.0
    for name, c in costs_t.items():
        deps = sorted(anc[name])
        if deps:
            c = magic_box(sum(logps[w] for w in deps)) * c
        total = total + c
    for w, b in base.items():
        total = total + (1 - magic_box(logps[w])) * stop_gradient(b)
    total = total if isinstance(total, Tensor) else Tensor(np.asarray(total))
    if total.shape != shape:
        total = ops.broadcast_to(total, shape)
    return _reduce(total, reduction, "dice_objective")
