"""Hand-written, iterative parser for csg2d (SPEC §1).

Why hand-written: the reference parses with lark's Earley algorithm, which dominates the
cost of rendering a program. The parser here is linear in the input, never recurses (so deep
nesting cannot raise ``RecursionError``), and reports the first problem with its offset.

Two passes share one set of lexical rules:

- a *fast path* (:func:`_parse_fast`) reads a whole primitive, range checks included, with
  one regular-expression match and reuses interned primitive nodes. It only ever accepts; on
  anything unusual it gives up (returns ``None``) without deciding why;
- the *careful path* (:func:`_parse_careful`) tokenises one token at a time and produces the
  precise error message and offset. It runs only when the fast path gives up, so invalid text
  costs one extra pass and valid text never pays for error reporting.

Both accept exactly the same language (tests check them against each other and against a
lark Earley parser of the reference grammar).

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


_DIGITS = "0123456789"


def _show(text: str, limit: int = 20) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "...")


def _number(digits: str, field: str, hi: int, offset: int) -> int:
    # Strip leading zeros before int(): a megabyte of digits must not reach int(), which
    # refuses strings over 4300 digits and would be slow before that.
    significant = digits.lstrip("0")
    if len(significant) > 3 or int(significant or "0") > hi:
        raise ProgramError(f"{field} {_show(digits)} is out of range 0..{hi}", offset)
    return int(significant or "0")


# --------------------------------------------------------------------------------------
# Fast path.
# --------------------------------------------------------------------------------------

_WS = r"[ \t\n\r\f]*+"  # possessive: a long run of blanks is consumed once, never re-scanned
_SEP = r"[ \t\n\r\f]++"  # between two numbers (without it they would be one number)
# Numbers with their range check built in; the group captures the value without leading zeros,
# and the look-ahead stops "16" from matching as "1" followed by "6".
_COORD = r"0*(1[0-5]|[0-9])(?![0-9])"
_ANGLE = r"0*(3[0-5][0-9]|[12][0-9][0-9]|[1-9]?[0-9])(?![0-9])"
_FAST = re.compile(
    _WS
    + r"(?:\("
    + _WS
    + r"(?:Circle"
    + _WS
    + _SEP.join([_COORD] * 3)
    + r"|Quad"
    + _WS
    + _SEP.join([_COORD] * 4 + [_ANGLE])
    + r")"
    + _WS
    + r"\)"  # groups 1-3: a whole circle; 4-8: a whole quad
    + r"|\("
    + _WS
    + r"([+-])"  # group 9: an operation opens
    + r"|(\))"  # group 10: an operation closes
    + r"|(.|\Z))",  # group 11: anything else (or the end): stop here
    re.DOTALL,
)
_CIRCLE_END, _QUAD_END, _OPEN, _CLOSE = 3, 8, 9, 10

# Interned primitives, keyed by their digit strings: repeated primitives (very common, there
# are only 4096 circles) skip int() and validation. Bounded so hostile input cannot grow it.
_INTERN_MAX = 1 << 16
_circles: dict[tuple[str, ...], Circle] = {}
_quads: dict[tuple[str, ...], Quad] = {}


def _circle(key: tuple[str, ...]) -> Circle:
    node = _circles.get(key)
    if node is None:
        if len(_circles) >= _INTERN_MAX:
            _circles.clear()
        node = _circles[key] = Circle(*map(int, key))
    return node


def _quad(key: tuple[str, ...]) -> Quad:
    node = _quads.get(key)
    if node is None:
        if len(_quads) >= _INTERN_MAX:
            _quads.clear()
        node = _quads[key] = Quad(*map(int, key))
    return node


def _parse_fast(text: str) -> Program | None:
    """The AST of ``text`` if it is a program, else ``None`` (the careful path says why)."""
    stack: list[tuple[str, list]] = []  # open operations: (operator, operands so far)
    result: Program | None = None
    for m in _FAST.finditer(text):
        # Every match starts where the previous one ended (group 11 catches everything the
        # other alternatives do not), so the scan is contiguous and linear.
        i = m.lastindex
        if i == _CIRCLE_END:
            node = _circle(m.group(1, 2, 3))
        elif i == _QUAD_END:
            node = _quad(m.group(4, 5, 6, 7, 8))
        elif i == _OPEN:
            if len(stack) >= MAX_DEPTH or result is not None:
                return None
            stack.append((m.group(9), []))
            continue
        elif i == _CLOSE:
            if not stack:
                return None
            op, items = stack.pop()
            if len(items) < 2:
                return None
            node = Union(tuple(items)) if op == "+" else Difference(tuple(items))
        else:  # end of text (the group matched the empty string) or an unexpected character
            if m.group(11) or stack:
                return None
            return EMPTY if result is None else result
        if stack:
            stack[-1][1].append(node)
        elif result is None:
            result = node
        else:
            return None  # a second top-level shape
    return None  # not reached: the last match is always the end of text


def parse(text: str) -> Program:
    """Parse csg2d source text into an immutable AST.

    Raises :class:`ProgramError` naming the problem and its character offset.
    Whitespace-only text is the empty program.
    """
    if not isinstance(text, str):
        raise ProgramError(f"program must be a str, got {type(text).__name__}")
    program = _parse_fast(text)
    return program if program is not None else _parse_careful(text)


# --------------------------------------------------------------------------------------
# Careful path: token by token, with precise errors.
# --------------------------------------------------------------------------------------

def _parse_careful(text: str) -> Program:
    """Parse ``text`` token by token; raises :class:`ProgramError` at the first problem."""
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
            if tok == "." and start > 0 and text[start - 1] in _DIGITS:
                raise ProgramError("numbers must be integers; found a decimal point", start)
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
                        if tok == "-" and text[pos : pos + 1] in _DIGITS and pos < len(text):
                            raise ProgramError(f"{head} {name} must not be negative (0..{hi})", start)
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
