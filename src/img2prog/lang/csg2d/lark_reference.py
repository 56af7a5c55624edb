"""The SPEC §1 grammar as a lark Earley parser: the seed's way of parsing, kept as a yardstick.

img2prog parses with its own linear-time parser (:mod:`.parser`). This module exists so tests can
check that both accept exactly the same strings (differential testing), and so the render
benchmark can time the seed-style recipe. It needs ``lark`` (the ``dev`` extra) and is never
imported by the library itself.
"""

from __future__ import annotations

from lark import Lark, Transformer
from lark.exceptions import LarkError

from img2prog.lang.csg2d.ast import EMPTY, Circle, Difference, Program, Quad, Union

GRAMMAR = r"""
    start: shape?
    ?shape: op | circle | quad
    op: "(" OPERATOR shape shape+ ")"
    circle: "(" "Circle" INT INT INT ")"
    quad: "(" "Quad" INT INT INT INT INT ")"
    OPERATOR: "+" | "-"
    %import common.INT
    %import common.WS
    %ignore WS
"""


class _ToAst(Transformer):
    # Node constructors check the ranges (0..15, angle 0..359), as the seed's transformer does.
    def start(self, items):
        return items[0] if items else EMPTY

    def circle(self, items):
        return Circle(*(int(t) for t in items))

    def quad(self, items):
        return Quad(*(int(t) for t in items))

    def op(self, items):
        operator, *operands = items
        return (Union if operator == "+" else Difference)(tuple(operands))


PARSER = Lark(GRAMMAR, start="start", parser="earley")


def parse_earley(text: str) -> Program:
    """Parse with lark's Earley parser; raises lark's exceptions (or ProgramError on ranges)."""
    return _ToAst().transform(PARSER.parse(text))


def lark_parse(text: str) -> Program | None:
    """The reference parse of ``text``, or None when the reference rejects it."""
    try:
        return parse_earley(text)
    except LarkError:  # syntax errors, and range errors raised inside the transformer
        return None
