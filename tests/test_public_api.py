"""Every name of the public contract (shared/spec/api.md) that has landed exists."""

from __future__ import annotations

import pytest

import autodiffx as ad

SECTION_2 = [
    "tensor",
    "Tensor",
    "asarray",
    "zeros",
    "ones",
    "full",
    "empty",
    "zeros_like",
    "ones_like",
    "full_like",
    "arange",
    "linspace",
    "eye",
]
SECTION_3 = [
    "exp",
    "expm1",
    "log",
    "log1p",
    "log2",
    "log10",
    "sqrt",
    "cbrt",
    "square",
    "reciprocal",
    "sin",
    "cos",
    "tan",
    "arcsin",
    "arccos",
    "arctan",
    "arctan2",
    "sinh",
    "cosh",
    "tanh",
    "arcsinh",
    "arccosh",
    "arctanh",
    "abs",
    "sign",
    "maximum",
    "minimum",
    "clip",
    "where",
    "power",
    "hypot",
    "erf",
    "logaddexp",
    "sum",
    "mean",
    "prod",
    "max",
    "min",
    "amax",
    "amin",
    "var",
    "std",
    "logsumexp",
    "norm",
    "cumsum",
    "cumprod",
    "argmax",
    "argmin",
    "reshape",
    "transpose",
    "swapaxes",
    "moveaxis",
    "squeeze",
    "expand_dims",
    "broadcast_to",
    "ravel",
    "flatten",
    "concatenate",
    "stack",
    "split",
    "flip",
    "roll",
    "pad",
    "tile",
    "repeat",
    "tril",
    "triu",
    "diagonal",
    "matmul",
    "dot",
    "inner",
    "outer",
    "tensordot",
    "einsum",
    "trace",
]
LINALG = [
    "solve",
    "inv",
    "det",
    "slogdet",
    "cholesky",
    "eigh",
    "svd",
    "qr",
    "norm",
    "lstsq",
    "pinv",
]
SECTION_4_5 = [
    "no_grad",
    "enable_grad",
    "is_grad_enabled",
    "detect_anomaly",
    "autograd",
    "forward",
    "fd",
]
TENSOR_ATTRS = [
    "shape",
    "ndim",
    "size",
    "dtype",
    "T",
    "mT",
    "grad",
    "requires_grad",
    "is_leaf",
    "grad_fn",
    "data",
    "numpy",
    "item",
    "tolist",
    "detach",
    "requires_grad_",
    "astype",
    "copy",
    "backward",
    "register_hook",
]
FD = (
    "derivative directional gradient jacobian hessian gradcheck gradgradcheck GradcheckError "
    "step_study"
)


@pytest.mark.parametrize("name", SECTION_2 + SECTION_3 + SECTION_4_5)
def test_top_level_name(name):
    assert hasattr(ad, name), f"ad.{name} is missing"


@pytest.mark.parametrize("name", LINALG)
def test_linalg_name(name):
    assert hasattr(ad.linalg, name), f"ad.linalg.{name} is missing"


@pytest.mark.parametrize("name", TENSOR_ATTRS)
def test_tensor_attribute(name):
    t = ad.tensor([[1.0]], requires_grad=True)
    assert hasattr(t, name)


@pytest.mark.parametrize("name", FD.split())
def test_fd_name(name):
    assert hasattr(ad.fd, name)


def test_autograd_and_forward_names():
    assert callable(ad.autograd.grad)
    for name in ("dual_level", "make_dual", "unpack_dual"):
        assert callable(getattr(ad.forward, name))


def test_trace_is_numpys_matrix_trace():
    assert ad.trace(ad.eye(3)).item() == 3.0


SECTION_6 = [
    "grad",
    "value_and_grad",
    "vjp",
    "jvp",
    "jacfwd",
    "jacrev",
    "jacobian",
    "hessian",
    "hvp",
]
NN = [
    "Module",
    "Parameter",
    "Linear",
    "Sequential",
    "Dropout",
    "Identity",
    "ReLU",
    "Sigmoid",
    "Tanh",
]
FUNCTIONAL = [
    "heaviside",
    "sigmoid",
    "relu",
    "leaky_relu",
    "softplus",
    "elu",
    "gelu",
    "tanh",
    "softmax",
    "log_softmax",
    "logsumexp",
    "dropout",
    "mse_loss",
    "l1_loss",
    "cross_entropy",
    "binary_cross_entropy",
    "binary_cross_entropy_with_logits",
    "hinge_loss",
]
OPTIM = [
    "Optimizer",
    "SGD",
    "Adam",
    "AdamW",
    "RMSprop",
    "Adagrad",
    "LBFGS",
    "SteepestDescent",
    "minimize",
]
SCHEDULERS = ["StepLR", "ExponentialLR", "CosineAnnealingLR", "LambdaLR", "ReduceLROnPlateau"]


@pytest.mark.parametrize("name", SECTION_6)
def test_transforms_at_top_level_and_in_func(name):
    assert getattr(ad, name) is getattr(ad.func, name)


@pytest.mark.parametrize("name", NN)
def test_nn_name(name):
    assert hasattr(ad.nn, name)


@pytest.mark.parametrize("name", FUNCTIONAL)
def test_functional_name(name):
    assert callable(getattr(ad.nn.functional, name))


@pytest.mark.parametrize("name", OPTIM)
def test_optim_name(name):
    assert hasattr(ad.optim, name)


@pytest.mark.parametrize("name", SCHEDULERS)
def test_scheduler_name(name):
    assert hasattr(ad.optim.lr_scheduler, name)


def test_sections_8_11_names():
    assert callable(ad.evaluation_trace)
    assert callable(ad.save)
    assert callable(ad.load)
    assert issubclass(ad.Function, object)
    for name in ("custom_linear_solve", "cg", "minres"):
        assert callable(getattr(ad.linalg, name))
    for name in ("root", "fixed_point"):
        assert callable(getattr(ad.implicit, name))


def test_textbook_trace_values():
    tr = ad.evaluation_trace(lambda x1, x2: ad.log(x1) + x1 * x2 - ad.sin(x2), x1=2.0, x2=5.0)
    text = str(tr.primal()) + str(tr.tangent(seed={"x1": 1.0})) + str(tr.adjoint())
    for value in ("11.652", "5.5", "1.716", "0.693", "10.693", "-0.959"):
        assert value in text


def _public(p, name):
    """Whether primitive ``p`` (registered as ``name``) is reachable from a public namespace:
    as itself, or as a public function of its name that wraps it."""
    spaces = [ad, ad.linalg, ad.fft, ad.nn.functional]
    spaces += [ad.scipy.special, ad.scipy.linalg, ad.scipy.signal, ad.scipy.stats]
    return any(
        callable(getattr(m, name, None))
        or any(v is p for k, v in vars(m).items() if not k.startswith("_"))
        for m in spaces
    )


def test_every_registered_primitive_is_exported_or_marked_internal():
    unexported = [n for n, p in ad.REGISTRY.items() if p.export and not _public(p, n)]
    assert not unexported, (
        f"registered primitives with no public function: {unexported}. Export each as ad.<name> "
        "(import it from .ops in autodiffx/__init__.py, add it to __all__, run `python -m "
        "autodiffx._stubgen`), or pass export=False to its defprim if it is internal"
    )
    top = {n for n, p in ad.REGISTRY.items() if getattr(ad, n, None) is p}
    assert not top - set(ad.__all__), f"add to ad.__all__: {sorted(top - set(ad.__all__))}"
    marked = [n for n, p in ad.REGISTRY.items() if not p.export and getattr(ad, n, None) is p]
    assert not marked, f"exported as ad.<name> but marked export=False: {marked}"
