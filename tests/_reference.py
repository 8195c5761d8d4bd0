"""PyTorch's results stored in tests/reference/*.npz (read without pickle), for the tests that
compare with PyTorch when it is not installed; tests/reference/make_torch_references.py
writes them and records the versions it ran with."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import numpy as np

DIRECTORY = Path(__file__).resolve().parent / "reference"
STALE = (
    "the stored PyTorch results do not cover this case: regenerate them with "
    "`python tests/reference/make_torch_references.py` in an environment with the oracle "
    "extra (make test-oracles installs one in .venv-oracle)"
)


class Stored(dict):
    """The arrays of one reference file; a missing key says how to regenerate the file."""

    def __missing__(self, key: str) -> np.ndarray:
        raise KeyError(f"{key!r} is not stored: {STALE}")


@functools.cache
def load(name: str) -> Stored:
    """The arrays of tests/reference/{name}.npz (read-only), keyed as the file stores them."""
    with np.load(DIRECTORY / f"{name}.npz", allow_pickle=False) as f:
        arrays = Stored((k, f[k]) for k in f.files)
    for a in arrays.values():
        a.flags.writeable = False
    return arrays


def meta(name: str) -> dict[str, Any]:
    """What tests/reference/{name}.npz records about how it was made (versions, script)."""
    return json.loads(str(load(name)["_meta"]))
