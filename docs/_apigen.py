"""Writes the API reference pages (docs/api/*.rst, git-ignored) from the package's names."""

from __future__ import annotations

import importlib
import inspect
import shutil
from pathlib import Path

import autodiffx as ad

# (page, title, module, names or None for the module's __all__, intro)
SECTIONS = [
    (
        "tensor",
        "Tensors and creation",
        "autodiffx",
        "tensor",
        "The array type and its constructors.",
    ),
    (
        "ops",
        "Operations",
        "autodiffx",
        "ops",
        "Differentiable NumPy-style functions "
        "(registry primitives and compositions of them); NumPy's own functions dispatch to these "
        "on Tensors.",
    ),
    (
        "autograd",
        "Reverse mode (autograd)",
        "autodiffx",
        "autograd",
        "Gradients PyTorch-style: ``backward``, ``autograd.grad``, grad modes, custom rules.",
    ),
    (
        "autograd_module",
        "autodiffx.autograd",
        "autodiffx.autograd",
        ["grad", "Function", "FunctionCtx"],
        "PyTorch's ``torch.autograd`` names.",
    ),
    (
        "forward",
        "Forward mode (dual tensors)",
        "autodiffx.forward",
        ["dual_level", "make_dual", "unpack_dual", "UnpackedDual"],
        "PyTorch's ``torch.autograd.forward_ad``: tensors carrying a tangent.",
    ),
    (
        "func",
        "Function transforms",
        "autodiffx.func",
        None,
        "JAX-style transforms over pytrees (also at the top level: ``ad.grad`` ...).",
    ),
    (
        "fd",
        "Finite differences",
        "autodiffx.fd",
        None,
        "Derivatives by differences and gradient checking.",
    ),
    (
        "trace",
        "Evaluation traces",
        "autodiffx.wengert",
        None,
        "Wengert lists: primal, tangent and adjoint tables.",
    ),
    (
        "linalg",
        "Linear algebra",
        "autodiffx.linalg",
        None,
        "``numpy.linalg`` names, plus iterative solvers differentiated implicitly.",
    ),
    (
        "implicit",
        "Implicit differentiation",
        "autodiffx.implicit",
        None,
        "Roots and fixed points differentiated by the implicit function theorem.",
    ),
    ("nn", "Neural networks", "autodiffx.nn", None, "``torch.nn`` names."),
    (
        "nn_functional",
        "autodiffx.nn.functional",
        "autodiffx.nn.functional",
        None,
        "Activations and losses as functions.",
    ),
    ("nn_init", "autodiffx.nn.init", "autodiffx.nn.init", None, "Parameter initialisation."),
    (
        "nn_utils",
        "autodiffx.nn.utils",
        "autodiffx.nn.utils",
        None,
        "Gradient clipping, parameter vectors.",
    ),
    (
        "optim",
        "Optimizers",
        "autodiffx.optim",
        None,
        "``torch.optim`` names, steepest "
        "descent in any norm, SciPy's minimize with AD derivatives.",
    ),
    (
        "lr_scheduler",
        "autodiffx.optim.lr_scheduler",
        "autodiffx.optim.lr_scheduler",
        None,
        "Learning-rate schedules.",
    ),
    (
        "distributions",
        "Distributions",
        "autodiffx.distributions",
        None,
        "``torch.distributions`` names; see also the user guide page.",
    ),
    (
        "stochastic",
        "Stochastic gradient estimators",
        "autodiffx.stochastic",
        None,
        "Gradients of expectations.",
    ),
]
TRANSFORMS = {"grad", "value_and_grad", "vjp", "jvp", "jacfwd", "jacrev", "jacobian"}
TRANSFORMS |= {"hessian", "hvp", "vmap"}
AUTOGRAD = {"no_grad", "enable_grad", "is_grad_enabled", "detect_anomaly", "Function"}
TENSOR = {"Tensor", "save", "load", "CheckpointError", "evaluation_trace"}


def _top_level(group: str) -> list[str]:
    """The top-level names of one group (every public name is in exactly one)."""
    creation = importlib.import_module("autodiffx.creation")
    out = []
    for name in ad.__all__:
        obj = getattr(ad, name)
        if inspect.ismodule(obj):
            continue
        if name in TENSOR or getattr(creation, name, None) is obj:
            kind = "tensor"
        elif name in AUTOGRAD or name in TRANSFORMS:
            kind = "autograd"
        else:
            kind = "ops"
        if kind == group:
            out.append(name)
    return out


def _names(module: str, spec) -> list[str]:
    if isinstance(spec, list):
        return spec
    if spec is not None:
        return _top_level(spec)
    mod = importlib.import_module(module)
    return [n for n in mod.__all__ if not inspect.ismodule(getattr(mod, n))]


def _summary(obj) -> str:
    doc = inspect.getdoc(obj) or ""
    return doc.strip().split("\n\n")[0].replace("\n", " ")


def _stub(full: str, obj) -> str:
    """The page of one name: autoclass (with its documented members) or autofunction."""
    title = full.removeprefix("autodiffx.")
    head = f"{title}\n{'=' * len(title)}\n\n.. currentmodule:: {full.rpartition('.')[0]}\n\n"
    short = full.rpartition(".")[2]
    if inspect.isclass(obj):
        return head + f".. autoclass:: {short}\n   :members:\n   :show-inheritance:\n"
    if callable(obj):
        return head + f".. autofunction:: {short}\n"
    return head + f".. autodata:: {short}\n   :no-value:\n"


def _section(page: str, title: str, module: str, names: list[str], intro: str) -> str:
    lines = [f".. _api-{page}:", "", title, "=" * len(title), "", intro, ""]
    lines += [".. list-table::", "   :widths: 30 70", ""]
    mod = importlib.import_module(module)
    for name in names:
        full = f"{module}.{name}"
        lines += [f"   * - :py:obj:`~{full}`", f"     - {_summary(getattr(mod, name))}"]
    lines += ["", ".. toctree::", "   :hidden:", ""]
    lines += [f"   generated/{module}.{name}" for name in names]
    return "\n".join(lines) + "\n"


def write_api(api_dir: Path) -> None:
    """Write one page per section and one per documented name under ``api_dir``."""
    gen = api_dir / "generated"
    shutil.rmtree(gen, ignore_errors=True)
    gen.mkdir(parents=True)
    for page, title, module, spec, intro in SECTIONS:
        names = _names(module, spec)
        mod = importlib.import_module(module)
        text = _section(page, title, module, names, intro)
        (api_dir / f"{page}.rst").write_text(text, encoding="utf-8")
        for name in names:
            full = f"{module}.{name}"
            (gen / f"{full}.rst").write_text(_stub(full, getattr(mod, name)), encoding="utf-8")
