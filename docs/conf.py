"""Sphinx configuration of the autodiffx documentation site (``make docs``)."""

from __future__ import annotations

import inspect
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(ROOT), str(HERE)]

from _apigen import write_api  # noqa: E402

import autodiffx  # noqa: E402

project = "autodiffx"
author = "the autodiffx authors"
copyright = "the autodiffx authors, MIT licence"
release = version = autodiffx.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "myst_nb",
    # NOTE: MathJax 3 is served with the site (not linked from a CDN), so that the pages show
    # their formulas offline and in CI's browser test.
    "sphinx-mathjax-offline",
]
exclude_patterns = ["_build", "**.ipynb_checkpoints"]

# ----- API pages: numpydoc-style docstrings, one page per public name -------------------------
autodoc_typehints = "signature"
autodoc_member_order = "bysource"
napoleon_numpy_docstring = True
napoleon_google_docstring = False
napoleon_use_rtype = False
write_api(HERE / "api")

# ----- notebooks: executed at build time by myst-nb in a Jupyter kernel ------------------------
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence"]
myst_heading_anchors = 3
nb_execution_mode = "force"
nb_execution_raise_on_error = True
nb_execution_timeout = 120
nb_execution_show_tb = True
nb_merge_streams = True
nb_render_image_options = {"alt": "figure"}
suppress_warnings = ["mystnb.unknown_mime_type"]

# The gallery shows the notebooks of notebooks/ (the files the tests run): they are copied
# into the source tree at each build (docs/gallery/notebooks/ is git-ignored).
GALLERY = HERE / "gallery" / "notebooks"
shutil.rmtree(GALLERY, ignore_errors=True)
GALLERY.mkdir(parents=True)
for nb in sorted((ROOT / "notebooks").glob("[0-9]*.ipynb")):
    shutil.copy2(nb, GALLERY / nb.name)

# ----- HTML -------------------------------------------------------------------------------------
html_theme = "pydata_sphinx_theme"
html_title = f"autodiffx {release}"
html_static_path: list[str] = []
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
    "footer_start": ["copyright"],
    "footer_end": ["sphinx-version"],
}
html_show_sourcelink = False


def _primitive_signature(app, what, name, obj, options, signature, return_annotation):
    """Registry primitives are callable objects: show their kernel's NumPy signature.

    A ufunc's ``out=``, ``where=``, ... are not autodiffx's: only its inputs are shown.
    """
    if not isinstance(obj, autodiffx.Primitive) or "__signature__" in vars(obj):
        return None
    try:
        sig = inspect.signature(obj.kernel)
    except (TypeError, ValueError):
        return None
    if obj.ufunc:
        params = [p for p in sig.parameters.values() if p.kind == p.POSITIONAL_ONLY]
        sig = sig.replace(parameters=params, return_annotation=inspect.Signature.empty)
    return str(sig), "Tensor" if obj.nout == 1 else return_annotation


def _skip_member(app, what, name, obj, skip, options):
    """Skip class attributes whose only docstring is their type's (a dict's, a tuple's)."""
    if skip or callable(obj) or isinstance(obj, property):
        return None
    return True if getattr(obj, "__doc__", None) == type(obj).__doc__ else None


def setup(app):
    app.connect("autodoc-process-signature", _primitive_signature)
    app.connect("autodoc-skip-member", _skip_member)
