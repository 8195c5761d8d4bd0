"""Build the notebooks from their readable sources: ``src/NN_name.py`` -> ``NN_name.ipynb``.

The sources use the "percent" cell format: a line ``# %%`` starts a code cell and
``# %% [markdown]`` a markdown cell whose lines are comments (``# `` is stripped). The
notebooks are written without outputs (nbformat 4.5 JSON, deterministic cell ids), so git
only ever holds stripped notebooks. ``python notebooks/build.py --check`` fails if a
notebook is out of date with its source (the test suite runs it).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SRC = HERE / "src"

METADATA = {
    "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
    "language_info": {"name": "python", "pygments_lexer": "ipython3"},
}


def _lines(text: str) -> list[str]:
    parts = text.split("\n")
    return [p + "\n" for p in parts[:-1]] + ([parts[-1]] if parts[-1] else [])


def cells_of(source: str) -> list[tuple[str, str]]:
    """(kind, text) of every cell of a percent-format script."""
    cells: list[tuple[str, list[str]]] = []
    for line in source.splitlines():
        if line.startswith("# %%"):
            kind = "markdown" if "[markdown]" in line else "code"
            cells.append((kind, []))
        elif not cells:
            if line.strip():
                raise ValueError(f"text before the first '# %%' cell marker: {line!r}")
        elif cells[-1][0] == "markdown":
            if line and not line.startswith("#"):
                raise ValueError(f"markdown cell line is not a comment: {line!r}")
            cells[-1][1].append(line[2:] if line.startswith("# ") else line[1:])
        else:
            cells[-1][1].append(line)
    out = []
    for kind, lines in cells:
        text = "\n".join(lines).strip("\n")
        if text:
            out.append((kind, text))
    return out


def notebook_of(source: str, stem: str) -> dict:
    """The nbformat-4.5 notebook (as a dict) of a percent-format script."""
    cells = []
    for i, (kind, text) in enumerate(cells_of(source)):
        cell: dict = {"cell_type": kind, "id": f"{stem[:40]}-{i:03d}", "metadata": {}}
        if kind == "code":
            cell.update(execution_count=None, outputs=[])
        cell["source"] = _lines(text)
        cells.append(cell)
    return {"cells": cells, "metadata": METADATA, "nbformat": 4, "nbformat_minor": 5}


def render(nb: dict) -> str:
    return json.dumps(nb, indent=1, ensure_ascii=False) + "\n"


def targets() -> list[tuple[Path, Path]]:
    return [(src, HERE / (src.stem + ".ipynb")) for src in sorted(SRC.glob("[0-9]*.py"))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report stale notebooks")
    args = parser.parse_args(argv)
    stale = []
    for src, dst in targets():
        text = render(notebook_of(src.read_text(encoding="utf-8"), src.stem))
        if dst.exists() and dst.read_text(encoding="utf-8") == text:
            continue
        stale.append(dst.name)
        if not args.check:
            dst.write_text(text, encoding="utf-8")
            print(f"wrote {dst.relative_to(HERE.parent)}")
    if args.check and stale:
        print(f"stale notebooks (run python notebooks/build.py): {', '.join(stale)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
