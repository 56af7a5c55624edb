"""Hand-written, iterative parser for csg2d (SPEC §1).

Why hand-written: the reference parses with lark's Earley algorithm, which dominates the
cost of rendering a program. This scanner + explicit-stack parser is linear in the input,
never recurses (so deep nesting cannot raise ``RecursionError``), and reports the first
problem with its character offset.

Lexical rules (they match the reference grammar's terminals):
- whitespace is any run of space, tab, newline, carriage return or form feed;
- a number is a run of ASCII digits (``"08"`` is 8; signs and decimals are not numbers);
- keywords are ``Circle`` and ``Quad`` (case-sensitive), operators ``+`` and ``-``.
"""

from __future__ import annotations

import re

from img2prog.lang.csg2d.ast import (
    ANGLE_MAX,
    COORD_MAX,
    EMPTY,
    MAX_DEPTH,
    Circle,
    Difference,
    Program,
    Quad,
    Union,
)
from img2prog.lang.errors import ProgramError

_TOKEN = re.compile(
    r"[ \t\n\r\f]*(?:(?P<lp>\()|(?P<rp>\))|(?P<op>[+\-])|(?P<num>[0-9]+)|(?P<word>[A-Za-z_]+)|(?P<bad>.)|(?P<end>\Z))",
    re.DOTALL,
)

_FIELDS = {
    "Circle": (("radius", COORD_MAX), ("x", COORD_MAX), ("y", COORD_MAX)),
    "Quad": (("x", COORD_MAX), ("y", COORD_MAX), ("width", COORD_MAX), ("height", COORD_MAX), ("angle", ANGLE_MAX)),
}


def _show(text: str, limit: int = 20) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "...")


def _number(digits: str, field: str, hi: int, offset: int) -> int:
    # Strip leading zeros before int(): a megabyte of digits must not reach int(), which
    # refuses strings over 4300 digits and would be slow before that.
    significant = digits.lstrip("0")
    if len(significant) > 3 or int(significant or "0") > hi:
        raise ProgramError(f"{field} {_show(digits)} is out of range 0..{hi}", offset)
    return int(significant or "0")


def parse(text: str) -> Program:
    """Parse csg2d source text into an immutable AST.

    Raises :class:`ProgramError` naming the problem and its character offset.
    Whitespace-only text is the empty program.
    """
    if not isinstance(text, str):
        raise ProgramError(f"program must be a str, got {type(text).__name__}")
    # Each frame is [head, start_offset, items]; head is "Circle", "Quad", "+" or "-".
    stack: list[list] = []
    result: Program | None = None
    pos = 0
    match = _TOKEN.match
    while True:
        m = match(text, pos)
        kind = m.lastgroup
        start = m.start(kind)
        pos = m.end()
        tok = m.group(kind)

        if kind == "bad":
            raise ProgramError(f"unexpected character {tok!r}", start)

        if not stack:
            # Top level: the program is empty, or exactly one shape followed by the end.
            if kind == "end":
                return EMPTY if result is None else result
            if result is not None:
                raise ProgramError(f"unexpected {_show(tok)} after the end of the program", start)
            if kind != "lp":
                raise ProgramError(f"expected '(' to start a shape, found {_show(tok)}", start)
        else:
            frame = stack[-1]
            head, fstart, items = frame
            if head in _FIELDS:
                fields = _FIELDS[head]
                if len(items) < len(fields):
                    name, hi = fields[len(items)]
                    if kind != "num":
                        what = "end of text" if kind == "end" else _show(tok)
                        raise ProgramError(f"{head} expects {name} (an integer 0..{hi}), found {what}", start)
                    items.append(_number(tok, f"{head} {name}", hi, start))
                    continue
                if kind != "rp":
                    what = "end of text" if kind == "end" else _show(tok)
                    raise ProgramError(
                        f"{head} takes exactly {len(fields)} numbers; expected ')', found {what}", start
                    )
                stack.pop()
                node = Circle(*items) if head == "Circle" else Quad(*items)
                if stack:
                    stack[-1][2].append(node)
                else:
                    result = node
                continue
            # Inside an operation: another operand, or ')' once there are two or more.
            if kind == "rp":
                if len(items) < 2:
                    raise ProgramError(
                        f"'{head}' needs at least 2 operands, got {len(items)} (operation opened at offset {fstart})",
                        start,
                    )
                stack.pop()
                node = Union(tuple(items)) if head == "+" else Difference(tuple(items))
                if stack:
                    stack[-1][2].append(node)
                else:
                    result = node
                continue
            if kind != "lp":
                what = "end of text (unbalanced parentheses)" if kind == "end" else _show(tok)
                raise ProgramError(f"expected '(' or ')' in '{head}' operation, found {what}", start)

        # We are at '(' : read the head of the new node.
        lp_at = start
        m = match(text, pos)
        kind = m.lastgroup
        start = m.start(kind)
        pos = m.end()
        tok = m.group(kind)
        if kind == "word":
            if tok not in _FIELDS:
                raise ProgramError(f"unknown shape {_show(tok)}; expected Circle or Quad", start)
            stack.append([tok, lp_at, []])
        elif kind == "op":
            depth = sum(1 for f in stack if f[0] in "+-") + 1
            if depth > MAX_DEPTH:
                raise ProgramError(f"operations nested deeper than {MAX_DEPTH} levels", start)
            stack.append([tok, lp_at, []])
        elif kind == "end":
            raise ProgramError("unexpected end of text after '('", start)
        else:
            raise ProgramError(f"expected Circle, Quad, '+' or '-' after '(', found {_show(tok)}", start)


def is_valid(text: str) -> bool:
    try:
        parse(text)
    except ProgramError:
        return False
    return True
