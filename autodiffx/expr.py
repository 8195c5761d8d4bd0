"""A small, safe expression language: numbers, variables, + - * / ** and autodiffx functions.

The text is read by a hand-written tokenizer and recursive-descent parser; nothing is ever given
to ``eval``, ``exec`` or ``compile``. Only the grammar below is accepted; anything else
(attributes, subscripts, strings, keyword arguments, lambdas, comprehensions, names starting
with ``_``, unknown functions, huge constant exponents) raises :class:`ExpressionError` with a
message that says what was refused and where::

    expr   := term (("+" | "-") term)*
    term   := unary (("*" | "/") unary)*
    unary  := ("-" | "+") unary | power
    power  := atom ("**" unary)?          # right-associative; -x**2 is -(x**2), as in Python
    atom   := NUMBER | NAME | NAME "(" expr ("," expr)* ")" | "(" expr ")"

Functions (:data:`FUNCTIONS`) are the elementwise autodiffx functions of one argument (``sin``,
``ln``/``log``, ``exp``, ``sqrt``, ``tanh`` …) and a few of two (``arctan2``, ``hypot``,
``maximum``, ``minimum``, ``logaddexp``, ``power``); ``pi`` and ``e`` are constants; every
other name is a variable.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, make_dataclass
from typing import Any

import numpy as np

from ._registry import REGISTRY, Primitive

__all__ = ["CONSTANTS", "FUNCTIONS", "Expression", "ExpressionError", "parse"]

MAX_LENGTH = 2000
MAX_DEPTH = 64
MAX_EXPONENT = 1024.0


class ExpressionError(ValueError):
    """An expression that is not in the language (the message says what and where).

    Examples
    --------
    >>> try:
    ...     parse("x.real")
    ... except ExpressionError as e:
    ...     print(e)
    attribute access ('.real') is not allowed, at position 1: x.real
    """


# NOTE: the functions are the registry entries marked expr=True (one place per op); only the
# aliases are the language's own. An entry's kernel is its NumPy/SciPy reference.
_ALIASES = {"ln": "log", "asin": "arcsin", "acos": "arccos", "atan": "arctan"}
_ALIASES.update({"atan2": "arctan2", "pow": "power"})
_FUNCTION_TABLE: dict[str, Primitive] = {p.name: p for p in REGISTRY.values() if p.expr}
_FUNCTION_TABLE.update({a: _FUNCTION_TABLE[t] for a, t in _ALIASES.items()})

#: Function names accepted in expressions, with their number of arguments.
FUNCTIONS: Mapping[str, int] = {k: p.nargs for k, p in sorted(_FUNCTION_TABLE.items())}
#: Named constants.
CONSTANTS: Mapping[str, float] = {"pi": math.pi, "e": math.e}

_KEYWORDS = frozenset(
    [
        "and",
        "as",
        "assert",
        "async",
        "await",
        "break",
        "class",
        "continue",
        "def",
        "del",
        "elif",
        "else",
        "except",
        "finally",
        "for",
        "from",
        "global",
        "if",
        "import",
        "in",
        "is",
        "lambda",
        "nonlocal",
        "not",
        "or",
        "pass",
        "raise",
        "return",
        "try",
        "while",
        "with",
        "yield",
        "True",
        "False",
        "None",
    ]
)

_TOKEN = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<number>(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op>\*\*|[-+*/(),])
    """,
    re.VERBOSE,
)

# Characters that are not in the language, with the reason given to the user.
_REFUSED = {
    "[": "subscripts and lists ('[') are not allowed",
    "]": "subscripts and lists (']') are not allowed",
    "{": "sets and dicts ('{') are not allowed",
    "}": "sets and dicts ('}') are not allowed",
    "'": "strings are not allowed",
    '"': "strings are not allowed",
    "=": "keyword arguments and assignments ('=') are not allowed",
    "^": "'^' is not a power here: write x**2",
    "%": "'%' is not allowed",
    "@": "'@' is not allowed",
    "<": "comparisons are not allowed",
    ">": "comparisons are not allowed",
    "!": "'!' is not allowed",
    ":": "':' (slices, lambdas, annotations) is not allowed",
    ";": "';' (several statements) is not allowed",
    "&": "bitwise operators are not allowed",
    "|": "bitwise operators are not allowed",
    "~": "bitwise operators are not allowed",
    "#": "comments are not allowed",
    "\\": "backslashes are not allowed",
    "`": "backquotes are not allowed",
}


@dataclass(frozen=True)
class _Tok:
    kind: str  # number, name, op, bad (a refused character: text is the message), end
    text: str
    pos: int


def _tokenize(text: str) -> list[_Tok]:
    """Tokens up to the end; a refused character becomes a "bad" token carrying its message.

    The parser reports the first problem in reading order (``lambda x: x`` is refused for
    ``lambda``, not for its ``:``).
    """
    toks = []
    pos = 0
    n = len(text)
    while pos < n:
        m = _TOKEN.match(text, pos)
        if m is None:
            ch = text[pos]
            if ch == ".":
                word = re.match(r"\.[A-Za-z0-9_]*", text[pos:])
                shown = word.group(0) if word else "."
                msg = f"attribute access ('{shown}') is not allowed"
            elif ch in _REFUSED:
                msg = _REFUSED[ch]
            elif ch.isalpha():
                msg = f"unexpected character {ch!r} (names are ASCII letters, digits and '_')"
            else:
                msg = f"unexpected character {ch!r}"
            toks.append(_Tok("bad", msg, pos))
            pos += 1
            continue
        kind = m.lastgroup or ""
        if kind != "space":
            toks.append(_Tok(kind, m.group(0), pos))
        pos = m.end()
    toks.append(_Tok("end", "", n))
    return toks


def _error(msg: str, text: str, pos: int) -> ExpressionError:
    shown = text if text.isprintable() else repr(text)[1:-1]
    shown = shown if len(shown) <= 80 else shown[:77] + "..."
    return ExpressionError(f"{msg}, at position {pos}: {shown}")


# ----- syntax tree ---------------------------------------------------------------------------
# The nodes: frozen dataclasses, one row each (name, fields).
_Num = make_dataclass("_Num", [("value", float)], frozen=True)
_Var = make_dataclass("_Var", [("name", str)], frozen=True)
_Neg = make_dataclass("_Neg", [("arg", Any)], frozen=True)
_Bin = make_dataclass("_Bin", [("op", str), ("left", Any), ("right", Any)], frozen=True)
_Call = make_dataclass("_Call", [("name", str), ("args", tuple[Any, ...])], frozen=True)


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.toks = _tokenize(text)
        self.i = 0
        self.depth = 0

    @property
    def tok(self) -> _Tok:
        return self.toks[self.i]

    def fail(self, msg: str, tok: _Tok | None = None) -> ExpressionError:
        return _error(msg, self.text, (tok or self.tok).pos)

    def at_op(self, *ops: str) -> bool:
        return self.tok.kind == "op" and self.tok.text in ops

    def take(self, op: str) -> bool:
        if self.at_op(op):
            self.i += 1
            return True
        return False

    def enter(self) -> None:
        # NOTE: every recursion of the grammar (parentheses, arguments, signs, exponents) goes
        # through here, so no text can drive the parser into Python's recursion limit.
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.fail(f"expression nested too deeply (more than {MAX_DEPTH} levels)")

    def parse(self) -> Any:
        if self.tok.kind == "end":
            raise self.fail("empty expression")
        node = self.expr()
        if self.tok.kind != "end":
            raise self.unexpected()
        return node

    def unexpected(self) -> ExpressionError:
        t = self.tok
        if t.kind == "bad":
            return self.fail(t.text)
        if t.kind == "end":
            return self.fail("unexpected end of expression")
        if t.kind == "name" and t.text in _KEYWORDS:
            return self.fail(f"Python keywords are not allowed ({t.text!r})")
        if t.kind in ("name", "number") or t.text == "(":
            return self.fail(f"unexpected {t.text!r} (a missing operator, e.g. '*'?)")
        if t.text == ",":
            return self.fail("unexpected ',' (tuples are not allowed)")
        return self.fail(f"unexpected {t.text!r}")

    def expr(self) -> Any:
        self.enter()
        node = self.term()
        while self.at_op("+", "-"):
            op = self.tok.text
            self.i += 1
            node = _Bin(op, node, self.term())
        self.depth -= 1
        return node

    def term(self) -> Any:
        node = self.unary()
        while self.at_op("*", "/"):
            op = self.tok.text
            self.i += 1
            node = _Bin(op, node, self.unary())
        return node

    def unary(self) -> Any:
        if self.at_op("-", "+"):
            negate = self.tok.text == "-"
            self.i += 1
            self.enter()
            arg = self.unary()
            self.depth -= 1
            return _Neg(arg) if negate else arg
        return self.power()

    def power(self) -> Any:
        base = self.atom()
        if not self.at_op("**"):
            return base
        tok = self.tok
        self.i += 1
        self.enter()
        exponent = self.unary()
        self.depth -= 1
        c = _constant_value(exponent)
        if c is not None and not abs(c) <= MAX_EXPONENT:
            raise self.fail(
                f"exponent {c:g} is too large (constant exponents are limited to "
                f"|p| <= {MAX_EXPONENT:g})",
                tok,
            )
        return _Bin("**", base, exponent)

    def atom(self) -> Any:
        t = self.tok
        if t.kind == "number":
            self.i += 1
            if self.tok.kind == "name" and self.tok.pos == t.pos + len(t.text):
                raise self.fail(f"unexpected {self.tok.text!r} after a number (write 2*x, not 2x)")
            value = float(t.text)
            if not math.isfinite(value):
                raise self.fail(f"number {t.text} is too large", t)
            return _Num(value)
        if t.kind == "name":
            self.i += 1
            name = t.text
            if name.startswith("_"):
                raise self.fail(f"names starting with '_' are not allowed ({name!r})", t)
            if name in _KEYWORDS:
                raise self.fail(f"Python keywords are not allowed ({name!r})", t)
            if self.take("("):
                return self.call(name, t)
            if name in _FUNCTION_TABLE:
                raise self.fail(f"{name!r} is a function: call it, e.g. {name}(x)", t)
            if name in CONSTANTS:
                return _Num(CONSTANTS[name])
            return _Var(name)
        if self.take("("):
            node = self.expr()
            if not self.take(")"):
                if self.tok.kind == "end":
                    raise self.fail("missing ')'")
                raise self.unexpected()
            return node
        raise self.unexpected()

    def call(self, name: str, t: _Tok) -> Any:
        if name not in _FUNCTION_TABLE:
            known = ", ".join(sorted(_FUNCTION_TABLE))
            raise self.fail(f"unknown function {name!r} (known: {known})", t)
        nargs = _FUNCTION_TABLE[name].nargs
        plural = "s" * (nargs > 1)
        if self.at_op(")"):
            raise self.fail(f"{name}() takes {nargs} argument{plural}, got none", t)
        args = [self.expr()]
        while self.take(","):
            args.append(self.expr())
        if not self.take(")"):
            if self.tok.kind == "end":
                raise self.fail(f"missing ')' to close {name}(")
            raise self.unexpected()
        if len(args) != nargs:
            raise self.fail(f"{name}() takes {nargs} argument{plural}, got {len(args)}", t)
        return _Call(name, tuple(args))


def _postfix(tree: Any) -> list[Any]:
    """The tree as a postfix program (operands before their operation), built without recursion.

    Left-associative chains (``x+x+...+x``) make trees as deep as they are long; evaluating a
    flat program keeps that far from Python's recursion limit.
    """
    program: list[Any] = []
    stack: list[tuple[Any, bool]] = [(tree, False)]
    while stack:
        node, done = stack.pop()
        if done or isinstance(node, _Num | _Var):
            program.append(node)
            continue
        stack.append((node, True))
        if isinstance(node, _Neg):
            stack.append((node.arg, False))
        elif isinstance(node, _Bin):
            stack.extend(((node.right, False), (node.left, False)))
        else:
            stack.extend((a, False) for a in reversed(node.args))
    return program


def _run(
    program: list[Any], env: Mapping[str, Any], fns: Mapping[str, Callable[..., Any]] | None
) -> Any:
    """Evaluate a postfix program; with ``fns=None`` constant folding (None if not constant)."""
    stack: list[Any] = []
    for node in program:
        if isinstance(node, _Num):
            stack.append(node.value)
        elif isinstance(node, _Var):
            if fns is None:
                return None
            stack.append(env[node.name])
        elif isinstance(node, _Neg):
            v = stack.pop()
            stack.append(float(-np.float64(v)) if isinstance(v, float) else -v)
        elif isinstance(node, _Bin):
            b = stack.pop()
            a = stack.pop()
            if isinstance(a, float) and isinstance(b, float):
                # NOTE: Python float arithmetic raises on overflow and division by zero;
                # NumPy's float64 gives IEEE inf/nan, as the array path does.
                stack.append(float(_arith(node.op, np.float64(a), np.float64(b))))
            else:
                stack.append(_arith(node.op, a, b))
        else:
            if fns is None:
                return None
            k = len(node.args)
            args = stack[-k:]
            del stack[-k:]
            stack.append(fns[node.name](*args))
    return stack[0]


def _constant_value(node: Any) -> float | None:
    """The value of a subtree made of numbers and operators (float64: overflow gives inf)."""
    with np.errstate(all="ignore"):
        v = _run(_postfix(node), {}, None)
    return None if v is None else float(v)


def _arith(op: str, a: Any, b: Any) -> Any:
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    if op == "/":
        return a / b
    return a**b


def _functions(backend: str) -> Mapping[str, Callable[..., Any]]:
    if backend == "numpy":
        return {k: p.kernel for k, p in _FUNCTION_TABLE.items()}
    if backend != "ad":
        raise ValueError(f"backend must be 'ad' or 'numpy', got {backend!r}")
    return _FUNCTION_TABLE


class Expression:
    """A parsed expression: call it with values for its variables.

    Made by :func:`parse`. ``expr(x=...)`` evaluates with autodiffx functions (so Tensors in,
    Tensors out, differentiable in both modes); ``expr.evaluate(values, backend="numpy")`` with
    NumPy's. Numbers are Python floats (weak scalars: a float32 input stays float32).
    Evaluation runs under ``np.errstate(all="ignore")``: a value outside a function's domain
    gives nan or inf, never a warning.

    Examples
    --------
    >>> f = parse("ln(x1) + x1*x2 - sin(x2)")
    >>> f.variables
    ('x1', 'x2')
    >>> round(float(f(x1=2.0, x2=5.0)), 3)
    11.652
    """

    def __init__(self, text: str, tree: Any) -> None:
        self.text = text
        self._program = _postfix(tree)
        seen: dict[str, None] = {}
        for n in self._program:
            if isinstance(n, _Var):
                seen.setdefault(n.name)
        #: Variable names, in order of first appearance.
        self.variables: tuple[str, ...] = tuple(seen)

    def __repr__(self) -> str:
        return f"Expression({self.text!r})"

    def __str__(self) -> str:
        return self.text

    def __call__(self, *args: Any, **values: Any) -> Any:
        """Evaluate with autodiffx functions; positional values follow :attr:`variables`."""
        if len(args) > len(self.variables):
            raise TypeError(
                f"{self.text!r} takes {len(self.variables)} values "
                f"({', '.join(self.variables)}), got {len(args)} positional"
            )
        return self.evaluate({**dict(zip(self.variables, args)), **values})

    def evaluate(self, values: Mapping[str, Any], backend: str = "ad") -> Any:
        """Evaluate with ``values`` (a mapping from every variable to a number, array or Tensor).

        Parameters
        ----------
        values : mapping
            One value per variable; extra names raise (they are most likely a typo).
        backend : {"ad", "numpy"}
            autodiffx functions (differentiable) or NumPy/SciPy ones (a plain reference).

        Examples
        --------
        >>> parse("x**2 + 1").evaluate({"x": 3.0}, backend="numpy")
        10.0
        """
        missing = [v for v in self.variables if v not in values]
        if missing:
            raise ExpressionError(f"no value given for {', '.join(missing)} in {self.text!r}")
        extra = [k for k in values if k not in self.variables]
        if extra:
            raise ExpressionError(
                f"{', '.join(extra)} {'is' if len(extra) == 1 else 'are'} not in {self.text!r} "
                f"(its variables: {', '.join(self.variables) or 'none'})"
            )
        fns = _functions(backend)
        with np.errstate(all="ignore"):
            return _run(self._program, values, fns)

    def function(self, backend: str = "ad") -> Callable[..., Any]:
        """A function of the variables, positional in the order of :attr:`variables`.

        Examples
        --------
        >>> g = parse("x * y").function()
        >>> float(g(3.0, 4.0))
        12.0
        """
        names = self.variables

        def f(*args: Any) -> Any:
            if len(args) != len(names):
                raise TypeError(f"{self.text!r} takes {len(names)} arguments ({', '.join(names)})")
            return self.evaluate(dict(zip(names, args)), backend)

        f.__name__ = "expression"
        f.__doc__ = self.text
        return f


def parse(text: str) -> Expression:
    """Parse ``text`` into an :class:`Expression`, or raise :class:`ExpressionError`.

    Examples
    --------
    >>> parse("sqrt(x**2 + y**2)").variables
    ('x', 'y')
    >>> parse("__import__('os')")
    Traceback (most recent call last):
    ...
    autodiffx.expr.ExpressionError: names starting with '_' are not allowed ('__import__'), ...
    """
    if not isinstance(text, str):
        raise ExpressionError(f"an expression is a string, got {type(text).__name__}")
    if len(text) > MAX_LENGTH:
        raise ExpressionError(f"expression too long ({len(text)} > {MAX_LENGTH} characters)")
    stripped = text.strip()
    return Expression(stripped, _Parser(stripped).parse())
