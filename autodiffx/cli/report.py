"""How the commands report: progress (a tqdm bar on a terminal when tqdm is installed, lines
that stay) and one format per kind of number."""

from __future__ import annotations

import importlib
import sys
from typing import Any, TextIO


def fmt_seconds(s: float) -> str:
    """A duration with three significant digits in µs, ms or s.

    >>> fmt_seconds(2.5e-5), fmt_seconds(0.0123), fmt_seconds(61.0)
    ('25.0 µs', '12.3 ms', '61.0 s')
    """
    if s < 1e-3:
        return f"{s * 1e6:.1f} µs"
    if s < 1:
        return f"{s * 1e3:.1f} ms"
    return f"{s:.1f} s"


def fmt_loss(v: float) -> str:
    """A loss, with four decimals whatever its size (a column of them lines up).

    >>> fmt_loss(2.302585), fmt_loss(0.01)
    ('2.3026', '0.0100')
    """
    return f"{v:.4f}"


def fmt_fraction(v: float) -> str:
    """An accuracy or another fraction in [0, 1], with four decimals.

    >>> fmt_fraction(0.96658)
    '0.9666'
    """
    return f"{v:.4f}"


def fmt_error(v: float) -> str:
    """An error (absolute or relative), in scientific notation with two digits.

    >>> fmt_error(3.2e-11)
    '3.2e-11'
    """
    return f"{v:.1e}"


def optional_module(name: str) -> Any:
    """The module ``name``, or None if it is not installed (tqdm and threadpoolctl come with
    the plot extra).

    >>> optional_module("json").__name__, optional_module("no_such_module")
    ('json', None)
    """
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


def _is_terminal(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


class Progress:
    """The progress of a command on ``stream`` (default stderr): lines that stay
    (:meth:`line`) and, on a terminal with tqdm installed, a bar of the current task
    (:meth:`update`), removed when the task changes, a line is written or the progress is
    closed. ``quiet=True`` writes nothing. Without tqdm, or when ``stream`` is not a
    terminal (a log file), only the lines are written.

    Examples
    --------
    >>> import io
    >>> log = io.StringIO()  # not a terminal: no bar, only the lines
    >>> with Progress(log) as progress:
    ...     progress.update("epoch 1/1", 1, 2, "loss 0.5000")
    ...     progress.line("epoch 1/1  loss 0.5000")
    >>> log.getvalue()
    'epoch 1/1  loss 0.5000\\n'
    """

    def __init__(self, stream: TextIO | None = None, quiet: bool = False) -> None:
        self.stream = None if quiet else (sys.stderr if stream is None else stream)
        terminal = self.stream is not None and _is_terminal(self.stream)
        tqdm = optional_module("tqdm") if terminal else None
        self._bar_class = None if tqdm is None else tqdm.tqdm
        self._bar: Any = None
        self._task: str | None = None

    @property
    def has_bar(self) -> bool:
        """Whether :meth:`update` draws a bar."""
        return self._bar_class is not None

    def update(self, task: str, done: int, total: int, status: str = "") -> None:
        """``done`` of the ``total`` steps of ``task`` are finished; ``status`` (such as the
        last loss) is shown after the bar."""
        if self._bar_class is None:
            return
        if self._bar is None or task != self._task:
            self._close_bar()
            self._bar = self._bar_class(
                total=total, desc=task, file=self.stream, leave=False, dynamic_ncols=True
            )
            self._task = task
        if status:
            self._bar.set_postfix_str(status, refresh=False)
        self._bar.update(done - self._bar.n)

    def line(self, text: str) -> None:
        """Write ``text`` as a line that stays (after removing the bar)."""
        if self.stream is None:
            return
        self._close_bar()
        self.stream.write(text + "\n")
        self.stream.flush()

    def close(self) -> None:
        """Remove the bar, if any."""
        self._close_bar()

    def _close_bar(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar, self._task = None, None

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
