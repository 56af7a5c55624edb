"""The seed-style rendering recipe, written from SPEC §1, used only as a speed baseline.

It parses with lark in Earley mode (as the seed notebook does) and then builds geometry and
draws it exactly as the SPEC recipe says. ``benchmarks/render.py`` times img2prog's renderer
against it in the same process, on the same programs, and checks the pixels agree.
"""

from __future__ import annotations

from lark import Lark, Transformer

from img2prog.lang.csg2d.ast import EMPTY, Circle, Difference, Quad, Union
from img2prog.lang.csg2d.rendering import rasterize_reference, reference_geometry

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
    def start(self, items):
        return items[0] if items else EMPTY

    def circle(self, items):
        return Circle(*(int(t) for t in items))

    def quad(self, items):
        return Quad(*(int(t) for t in items))

    def op(self, items):
        operator, *operands = items
        return (Union if operator == "+" else Difference)(tuple(operands))


_PARSER = Lark(GRAMMAR, start="start", parser="earley")


def seed_render(text: str, size: int = 256):
    """Earley parse + SPEC geometry + SPEC rasterisation: the baseline recipe."""
    ast = _ToAst().transform(_PARSER.parse(text))
    return rasterize_reference(reference_geometry(ast), size)
