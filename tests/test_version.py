"""``autodiffx --version``: one version, from ``autodiffx.__version__`` (which the package
metadata reads), printed by the command, ``python -m autodiffx`` and named in the changelog."""

from __future__ import annotations

import importlib.metadata
import re
import subprocess
import sys
from pathlib import Path

import pytest

import autodiffx as ad
from autodiffx.__main__ import main

ROOT = Path(__file__).resolve().parents[1]


def test_version_is_a_release_number():
    assert re.fullmatch(r"\d+\.\d+\.\d+", ad.__version__)


def test_main_prints_the_version(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out == f"autodiffx {ad.__version__}\n"


@pytest.mark.parametrize(
    "argv",
    [[sys.executable, "-m", "autodiffx"], [str(Path(sys.executable).with_name("autodiffx"))]],
    ids=["python -m autodiffx", "autodiffx"],
)
def test_the_commands_print_the_version(argv):
    if not Path(argv[0]).is_file():
        pytest.fail(f"{argv[0]} is missing: install the package (pip install -e .)")
    proc = subprocess.run(
        [*argv, "--version"], capture_output=True, text=True, timeout=120, check=False
    )
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, f"autodiffx {ad.__version__}\n", "")


def test_the_package_metadata_has_the_same_version():
    assert importlib.metadata.version("autodiffx") == ad.__version__


def test_the_changelog_has_a_section_for_this_version():
    changelog = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    assert f"\n## [{ad.__version__}] - " in changelog
    assert "\n## [Unreleased]\n" in changelog
