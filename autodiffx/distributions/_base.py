"""The ``Distribution`` base class and the helpers every distribution shares."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from .. import ops
from .._mode import COMPILE, STATE, no_grad
from .._tensor import Tensor
from ..nn.functional import _draw, as_generator
from .constraints import Constraint

__all__ = ["Distribution"]


def as_shape(shape: Any) -> tuple[int, ...]:
    """A sample shape from an int, a tuple/list of ints, or ``()``."""
    if isinstance(shape, int | np.integer):
        return (int(shape),)
    try:
        return tuple(int(s) for s in shape)
    except TypeError:
        raise TypeError(
            f"sample_shape must be an int or a tuple of ints, not {type(shape).__name__}"
        ) from None


def param_dtype(values: Sequence[Any]) -> np.dtype:
    """The floating dtype of parameters: NumPy's rules with Python numbers weak (NEP 50)."""
    arrays = [v.dtype for v in values if isinstance(v, Tensor | np.ndarray | np.generic)]
    arrays += [np.asarray(v).dtype for v in values if isinstance(v, list | tuple)]
    if not arrays:
        return np.dtype(np.float64)
    weak = [v for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
    dtype = np.result_type(*arrays, *weak)
    return dtype if dtype.kind == "f" else np.dtype(np.float64)


def as_tensor(value: Any, dtype: Any = None) -> Tensor:
    """``value`` as a Tensor of ``dtype``; a Tensor of that dtype is returned as is (its graph)."""
    if isinstance(value, Tensor):
        if dtype is None or value.dtype == np.dtype(dtype):
            return value
        return value.astype(dtype)
    return Tensor(np.asarray(value, dtype=dtype))


def broadcast_all(*values: Any) -> tuple[Tensor, ...]:
    """Parameters as Tensors of one floating dtype, broadcast to one shape (differentiably)."""
    dtype = param_dtype(values)
    ts = [as_tensor(v, dtype) for v in values]
    shape = np.broadcast_shapes(*(t.shape for t in ts))
    return tuple(t if t.shape == shape else ops.broadcast_to(t, shape) for t in ts)


def sum_rightmost(value: Any, dim: int) -> Any:
    """Sum over the rightmost ``dim`` axes (none for ``dim == 0``)."""
    if dim == 0:
        return value
    return value.sum(axis=tuple(range(-dim, 0)))


def xlogy(x: Any, y: Any) -> Tensor:
    """``x * log(y)``, 0 at ``x == y == 0`` (PyTorch's ``xlogy``).

    d/dx = log(y) (0 at the corner), d/dy = x / y (0 at the corner, where PyTorch gives NaN).
    """
    xv = np.asarray(x.data if isinstance(x, Tensor) else x)
    yv = np.asarray(y.data if isinstance(y, Tensor) else y)
    corner = (xv == 0) & (yv == 0)
    if not corner.any():
        return x * ops.log(y)
    return x * ops.log(ops.where(corner, 1.0, y))


def _noise_of(gen: np.random.Generator, kind: str, args: Any, shape: Any, dt: Any) -> np.ndarray:
    return getattr(gen, kind)(*args, size=shape).astype(dt, copy=False)  # type: ignore[no-any-return]


def _holds(constraint: Constraint, value: Any, what: str) -> bool:
    """Whether every entry of ``value`` satisfies ``constraint`` (inside ``ad.compile``, a
    guard on that outcome only, not on the values)."""
    if STATE.mode & COMPILE and isinstance(value, Tensor):
        ok = STATE.compiler.check(value, lambda d: bool(np.all(constraint.check(d))), what)
        return ok is not None
    return bool(np.all(constraint.check(value)))


def detached(t: Tensor) -> Tensor:
    """A new leaf holding ``t``'s values: no gradient and no forward-mode tangent.

    (A copy by an op, not of ``t.data``: inside ``ad.compile`` a value read is a guard, and
    a sample's values differ at every replay.)
    """
    return t.detach().copy()


class Distribution:
    """Base class of probability distributions (PyTorch's ``torch.distributions`` semantics).

    ``batch_shape`` indexes independent distributions, ``event_shape`` the shape of one draw;
    ``sample(sample_shape, rng=)`` has shape ``sample_shape + batch_shape + event_shape``.
    Randomness comes only from ``rng`` (a ``numpy.random.Generator``, an int seed, or None
    for fresh entropy). ``validate_args`` (default on, as PyTorch) checks parameters when the
    distribution is made and values given to ``log_prob``/``cdf``, raising ``ValueError``
    that names the distribution and the argument.

    Examples
    --------
    >>> import autodiffx as ad
    >>> d = ad.distributions.Normal(0.0, 1.0)
    >>> d.batch_shape, d.event_shape, d.has_rsample
    ((), (), True)
    >>> d.sample((3,), rng=0).shape
    (3,)
    """

    arg_constraints: ClassVar[dict[str, Constraint]] = {}
    support: Any = None
    has_rsample = False
    _validate_default = True

    def __init__(
        self,
        batch_shape: Any = (),
        event_shape: Any = (),
        validate_args: bool | None = None,
    ) -> None:
        self._batch_shape = tuple(batch_shape)
        self._event_shape = tuple(event_shape)
        self._validate_args = self._validate_default if validate_args is None else validate_args
        if self._validate_args:
            self._check_parameters()

    @staticmethod
    def set_default_validate_args(value: bool) -> None:
        """Turn argument validation on or off for distributions made afterwards.

        Examples
        --------
        >>> import autodiffx as ad
        >>> ad.distributions.Distribution.set_default_validate_args(True)
        """
        Distribution._validate_default = bool(value)

    @property
    def batch_shape(self) -> tuple[int, ...]:
        """The shape over which the parameters are batched."""
        return self._batch_shape

    @property
    def event_shape(self) -> tuple[int, ...]:
        """The shape of a single sample (without batching)."""
        return self._event_shape

    def _extended_shape(self, sample_shape: Any = ()) -> tuple[int, ...]:
        return as_shape(sample_shape) + self._batch_shape + self._event_shape

    # ----- validation ---------------------------------------------------------------------
    def _check_parameters(self) -> None:
        for name, constraint in self.arg_constraints.items():
            if name not in self.__dict__:
                continue  # a lazy alternative parametrisation (logits of probs, ...)
            value = self.__dict__[name]
            if not _holds(constraint, value, f"{type(self).__name__}'s {name} is valid"):
                ok = constraint.check(value)
                raise ValueError(
                    f"{type(self).__name__}: parameter {name} (shape {np.shape(value.data)}) "
                    f"must be {constraint!r}, but found invalid values "
                    f"{_bad_values(value.data, ok, constraint)}"
                )

    def _validate_sample(self, value: Tensor) -> None:
        n = len(self._event_shape)
        vshape = value.shape
        if n and vshape[len(vshape) - n :] != self._event_shape:
            raise ValueError(
                f"{type(self).__name__}: value of shape {vshape} does not end with the event "
                f"shape {self._event_shape}"
            )
        try:
            np.broadcast_shapes(vshape, self._batch_shape + self._event_shape)
        except ValueError:
            raise ValueError(
                f"{type(self).__name__}: value of shape {vshape} does not broadcast with "
                f"batch_shape + event_shape = {self._batch_shape + self._event_shape}"
            ) from None
        support = self.support
        if support is None:
            return
        if not _holds(support, value, f"a value in {type(self).__name__}'s support"):
            ok = support.check(value)
            raise ValueError(
                f"{type(self).__name__}: value is outside the support {support!r}: "
                f"{_bad_values(value.data, ok, support)} (pass validate_args=False to skip "
                "this check)"
            )

    def _value(self, value: Any, dtype: Any = None) -> Tensor:
        v = as_tensor(value, dtype if dtype is not None else self._dtype())
        if self._validate_args:
            self._validate_sample(v)
        return v

    def _dtype(self) -> np.dtype:
        return np.dtype(np.float64)

    # ----- sampling -----------------------------------------------------------------------
    def sample(self, sample_shape: Any = (), *, rng: Any = None) -> Tensor:
        """Draw ``sample_shape`` samples: a Tensor without gradient (nor tangent)."""
        with no_grad():
            return detached(self.rsample(sample_shape, rng=rng))

    def rsample(self, sample_shape: Any = (), *, rng: Any = None) -> Tensor:
        """Draw reparameterised samples: differentiable with respect to the parameters."""
        raise NotImplementedError(
            f"{type(self).__name__} has no reparameterised sampler (has_rsample is False): "
            "use .sample() (no gradient) and a score-function estimator, whose gradient "
            "comes from log_prob(sample)"
        )

    def _generator(self, rng: Any) -> np.random.Generator:
        return as_generator(rng)

    def _noise(
        self, rng: Any, sample_shape: Any, kind: str, *args: Any, dtype: Any = None
    ) -> np.ndarray:
        """``Generator.<kind>(*args)`` of the sample's shape, in ``dtype`` (default: the
        parameters'); inside ``ad.compile``, a draw that each replay makes again from ``rng``,
        as eager code does."""
        shape = self._extended_shape(sample_shape)
        dt = self._dtype() if dtype is None else dtype
        return _draw(_noise_of, rng, kind, args, shape, dt, what=f"{type(self).__name__}'s noise")

    # ----- densities and moments (overridden where defined) -------------------------------
    def _missing(self, what: str) -> NotImplementedError:
        return NotImplementedError(f"{type(self).__name__}.{what} is not implemented")

    def log_prob(self, value: Any) -> Tensor:
        """Log of the density (or mass) at ``value``."""
        raise self._missing("log_prob")

    def cdf(self, value: Any) -> Tensor:
        """Cumulative distribution function at ``value``."""
        raise self._missing("cdf")

    def icdf(self, value: Any) -> Tensor:
        """Inverse of the cumulative distribution function."""
        raise self._missing("icdf")

    def entropy(self) -> Tensor:
        """Differential (or Shannon) entropy, in nats, with shape ``batch_shape``."""
        raise self._missing("entropy")

    @property
    def mean(self) -> Tensor:
        """The mean."""
        raise self._missing("mean")

    @property
    def variance(self) -> Tensor:
        """The variance."""
        raise self._missing("variance")

    @property
    def stddev(self) -> Tensor:
        """The standard deviation, ``sqrt(variance)``."""
        return ops.sqrt(self.variance)

    # ----- reshaping ----------------------------------------------------------------------
    def _init_params(self) -> dict[str, tuple[Tensor, int]]:
        """Constructor arguments and their event ndim, for ``expand``."""
        raise self._missing("expand")

    def expand(self, batch_shape: Any) -> Distribution:
        """The same distribution with its parameters broadcast to ``batch_shape``.

        Examples
        --------
        >>> import autodiffx as ad
        >>> ad.distributions.Normal(0.0, 1.0).expand((2, 3)).batch_shape
        (2, 3)
        """
        batch_shape = as_shape(batch_shape)
        kwargs = {}
        for name, (p, nd) in self._init_params().items():
            shape = batch_shape + (p.shape[p.ndim - nd :] if nd else ())
            kwargs[name] = p if p.shape == shape else ops.broadcast_to(p, shape)
        return type(self)(**kwargs, validate_args=False)

    def __repr__(self) -> str:
        try:
            params = self._init_params()
        except NotImplementedError:
            return f"{type(self).__name__}()"
        parts = []
        for name, (p, _) in params.items():
            parts.append(f"{name}: {p.data.item()!r}" if p.size == 1 else f"{name}: {p.shape}")
        return f"{type(self).__name__}({', '.join(parts)})"


def _bad_values(data: Any, ok: np.ndarray, constraint: Constraint) -> str:
    data = np.asarray(data)
    bad = ~np.asarray(ok)
    if data.ndim == 0:
        return repr(data.item())
    if constraint.event_dim == 0 and bad.shape == data.shape:
        return f"{data[bad][:4].tolist()} at {np.argwhere(bad)[:4].tolist()}"
    return f"at batch index {np.argwhere(bad)[:4].tolist() if bad.ndim else '()'}"


LOG_SQRT_2PI = math.log(math.sqrt(2 * math.pi))
