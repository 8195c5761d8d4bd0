"""Stand-ins for the optional packages of the command line (tqdm, threadpoolctl) and a
terminal, so that both paths (installed or not) run whatever the environment holds."""

from __future__ import annotations

import io
import sys
import types
from typing import Any, ClassVar

import pytest


class Terminal(io.StringIO):
    """A text stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


class FakeBar:
    """tqdm's bar, as far as the command line uses it; every bar made is kept in ``made``."""

    made: ClassVar[list[FakeBar]] = []

    def __init__(self, *, total: int, desc: str, file: Any, leave: bool, **_: Any) -> None:
        self.total, self.desc, self.file, self.leave = total, desc, file, leave
        self.n, self.postfix, self.closed = 0, "", False
        FakeBar.made.append(self)

    def set_postfix_str(self, s: str, refresh: bool = True) -> None:
        self.postfix = s

    def update(self, n: int = 1) -> None:
        assert not self.closed
        self.n += n
        self.file.write(f"\r{self.desc} {self.n}/{self.total} {self.postfix}")

    def close(self) -> None:
        self.closed = True
        self.file.write("\r")


def install_fake_tqdm(monkeypatch: pytest.MonkeyPatch) -> type[FakeBar]:
    FakeBar.made = []
    monkeypatch.setitem(sys.modules, "tqdm", types.SimpleNamespace(tqdm=FakeBar))
    return FakeBar


class FakeThreadpoolctl(types.SimpleNamespace):
    """threadpoolctl, as far as ``bench`` uses it: records the limits it was asked for."""

    def __init__(self) -> None:
        super().__init__(limits=[], active=[])

    def threadpool_limits(self, limits: int, user_api: str) -> Any:
        fake = self

        class Limits:
            def __enter__(self) -> None:
                fake.limits.append((limits, user_api))
                fake.active.append(limits)

            def __exit__(self, *exc: object) -> None:
                fake.active.pop()

        return Limits()

    def threadpool_info(self) -> list[dict[str, Any]]:
        threads = self.active[-1] if self.active else 8
        return [
            {"user_api": "openmp", "internal_api": "openmp", "num_threads": 8},
            {
                "user_api": "blas",
                "internal_api": "openblas",
                "version": "0.3.99",
                "num_threads": threads,
                "filepath": "/lib/libscipy_openblas64_.so",
            },
        ]
