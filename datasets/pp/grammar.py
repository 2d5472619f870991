"""The pp-string grammar: `op|op(args)|...` with Python-literal arguments only.

A pp string is a `|`-separated list of op calls. Each op is either a bare name (`decode`) or a call
(`resize(224, antialias=True)`). Arguments are Python literals (numbers, strings, bytes, tuples, lists, dicts,
sets, `True`/`False`/`None`, negative numbers), each parsed with `ast.literal_eval` on its own AST
node. Nothing is ever evaluated as code: names, attribute access, calls, `*args`/`**kwargs`, comprehensions,
lambdas, f-strings are all rejected with a `ValueError` that names the op, its index in the string and the
character offset of the offending part.

`|` inside string literals and inside brackets does not split ops (`strfmt("a|b")` is one op). Whitespace and
newlines around ops are ignored. An empty pp string (or only whitespace) is an empty list of ops.

This module depends on the standard library only.
"""

from __future__ import annotations

import ast
import dataclasses
from typing import Any

from paligemma.errors import UserError

__all__ = ["OpSpec", "parse", "parse_specs", "PPSyntaxError"]


class PPSyntaxError(UserError, ValueError):
    """A pp string that does not follow the grammar (a ValueError)."""


@dataclasses.dataclass(frozen=True)
class OpSpec:
    """One parsed op: its name, literal args/kwargs and where it sits in the pp string."""

    name: str
    args: tuple
    kwargs: dict
    index: int  # 0-based position of the op in the pp string
    offset: int  # character offset of the op's first character in the pp string
    text: str  # the op's source text (stripped)

    def where(self) -> str:
        """Where the op is in the pp string, for error messages."""
        return f"op #{self.index} {self.name!r} (char {self.offset})"

    def as_tuple(self) -> tuple[str, tuple, dict]:
        """The op as `(name, args, kwargs)`."""
        return self.name, self.args, dict(self.kwargs)


_OPEN = {"(": ")", "[": "]", "{": "}"}
_CLOSE = {v: k for k, v in _OPEN.items()}


def _split(pp: str) -> list[tuple[int, int]]:
    """Returns (start, end) spans of the top-level `|`-separated segments of `pp`.

    Tracks string literals (single, double, triple quotes, backslash escapes) and bracket nesting so that a `|`
    inside either does not split.
    """
    spans = []
    stack: list[tuple[str, int]] = []
    start = 0
    i, n = 0, len(pp)
    while i < n:
        c = pp[i]
        if c in "'\"":
            quote = pp[i : i + 3] if pp[i : i + 3] in ("'''", '"""') else c
            j = i + len(quote)
            while True:
                if j >= n:
                    raise PPSyntaxError(
                        f"pp string: unterminated string literal starting at char {i}: {pp[i : i + 30]!r}"
                    )
                if pp[j] == "\\":
                    j += 2
                    continue
                if pp.startswith(quote, j):
                    j += len(quote)
                    break
                j += 1
            i = j
            continue
        if c in _OPEN:
            stack.append((c, i))
        elif c in _CLOSE:
            if not stack or stack[-1][0] != _CLOSE[c]:
                raise PPSyntaxError(f"pp string: unbalanced {c!r} at char {i}: ...{pp[max(0, i - 30) : i + 1]!r}")
            stack.pop()
        elif c == "|" and not stack:
            spans.append((start, i))
            start = i + 1
        i += 1
    if stack:
        c, pos = stack[-1]
        raise PPSyntaxError(f"pp string: {c!r} opened at char {pos} is never closed: {pp[pos : pos + 40]!r}...")
    spans.append((start, n))
    return spans


def _literal(node: ast.AST, what: str, where: str, seg_offset: int, seg_text: str) -> Any:
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError) as e:
        src = ast.get_source_segment(seg_text, node) or ast.dump(node)
        col = _abs_offset(seg_text, node, seg_offset)
        raise PPSyntaxError(
            f"pp {where}: {what} at char {col} is not a Python literal: {src!r} "
            f"(only literals such as 1, -2.5, 'text', (1, 2), [..], {{..}}, True, None are allowed; "
            f"code is never evaluated): {e}"
        ) from None


def _abs_offset(seg_text: str, node: ast.AST, seg_offset: int) -> int:
    lines = seg_text.splitlines(keepends=True)
    line = getattr(node, "lineno", 1)
    col = getattr(node, "col_offset", 0)
    return seg_offset + sum(len(text) for text in lines[: line - 1]) + col


def parse_specs(pp_string: str) -> list[OpSpec]:
    """Parses `pp_string` into `OpSpec` s (name, args, kwargs, index, offset, text)."""
    if not isinstance(pp_string, str):
        raise TypeError(f"pp string must be a str, got {type(pp_string).__name__}")
    if not pp_string.strip():
        return []
    specs = []
    for index, (start, end) in enumerate(_split(pp_string)):
        raw = pp_string[start:end]
        text = raw.strip()
        offset = start + (len(raw) - len(raw.lstrip()))
        if not text:
            raise PPSyntaxError(f"pp string: op #{index} at char {offset} is empty (stray '|'?) in {pp_string!r}")
        try:
            tree = ast.parse(text, mode="eval")
        except SyntaxError as e:
            col = offset + (e.offset or 1) - 1 if (e.lineno or 1) == 1 else offset
            raise PPSyntaxError(
                f"pp op #{index} at char {offset}: syntax error near char {col}: {text!r} ({e.msg})"
            ) from None
        body = tree.body
        if isinstance(body, ast.Name):
            name, call = body.id, None
        elif isinstance(body, ast.Call) and isinstance(body.func, ast.Name):
            name, call = body.func.id, body
        else:
            raise PPSyntaxError(
                f"pp op #{index} at char {offset}: expected `name` or `name(literal args)`, got {text!r}"
            )
        where = f"op #{index} {name!r} (char {offset})"
        args: list[Any] = []
        kwargs: dict[str, Any] = {}
        if call is not None:
            for i, a in enumerate(call.args):
                if isinstance(a, ast.Starred):
                    raise PPSyntaxError(f"pp {where}: *args are not allowed: {text!r}")
                args.append(_literal(a, f"argument {i}", where, offset, text))
            for kw in call.keywords:
                if kw.arg is None:
                    raise PPSyntaxError(f"pp {where}: **kwargs are not allowed: {text!r}")
                if kw.arg in kwargs:
                    raise PPSyntaxError(f"pp {where}: keyword argument {kw.arg!r} given twice: {text!r}")
                kwargs[kw.arg] = _literal(kw.value, f"keyword argument {kw.arg!r}", where, offset, text)
        specs.append(OpSpec(name, tuple(args), kwargs, index, offset, text))
    return specs


def parse(pp_string: str) -> list[tuple[str, tuple, dict]]:
    """Parses a pp string into `[(op_name, args, kwargs), ...]`.

    Only the grammar is checked here (not whether the ops exist). Raises `ValueError` (`PPSyntaxError`)
    naming the op index and character offset for syntax errors and non-literal arguments.
    """
    return [s.as_tuple() for s in parse_specs(pp_string)]
