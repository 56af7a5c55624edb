"""The seed-style rendering recipe, written from SPEC §1, used only as a speed baseline.

It parses with lark in Earley mode, as the seed notebook does, with a grammar shaped like the
seed's: a rule per number (``number``, ``angle``) whose callbacks check the ranges, and the
operator as a rule with one alternative per symbol. Then it builds the geometry and draws it
exactly as the SPEC recipe says. ``benchmarks/render.py`` times img2prog's renderer against it
in the same process, on the same programs, and checks the pixels agree.

``simple_render`` is the same recipe with the leaner grammar of
:mod:`img2prog.lang.csg2d.lark_reference` (numbers as bare terminals, one operator terminal),
which Earley parses about a quarter faster; the benchmark reports against both.
"""

from __future__ import annotations

from lark import Lark, Transformer

from img2prog.lang.csg2d.ast import EMPTY, Circle, Difference, Program, Quad, Union
from img2prog.lang.csg2d.lark_reference import parse_earley
from img2prog.lang.csg2d.rendering import rasterize_reference, reference_geometry

# SPEC §1's grammar with the seed grammar's rule structure (what the Earley parser's cost
# depends on): every number goes through its own rule, the operator through a rule with an
# alternative per symbol, and shapes through an inlined choice.
SEED_GRAMMAR = r"""
    start: shape?
    ?shape: operation | circle | quad
    operation: "(" operator shape shape+ ")"
    operator: plus | minus
    plus: "+"
    minus: "-"
    circle: "(" "Circle" number number number ")"
    quad: "(" "Quad" number number number number angle ")"
    number: INT
    angle: INT
    %import common.INT
    %import common.WS
    %ignore WS
"""


class _SeedTransformer(Transformer):
    """Tree to AST; range checks happen in the number rules, as in the seed."""

    def start(self, items):
        return items[0] if items else EMPTY

    def number(self, items):
        value = int(items[0])
        if not 0 <= value <= 15:
            raise ValueError(f"number out of range: {value}")
        return value

    def angle(self, items):
        value = int(items[0])
        if not 0 <= value < 360:
            raise ValueError(f"angle out of range: {value}")
        return value

    def plus(self, _):
        return Union

    def minus(self, _):
        return Difference

    def operator(self, items):
        return items[0]

    def operation(self, items):
        kind, *operands = items
        return kind(tuple(operands))

    def circle(self, items):
        return Circle(*items)

    def quad(self, items):
        return Quad(*items)


SEED_PARSER = Lark(SEED_GRAMMAR, start="start", parser="earley")


def parse_seed_style(text: str) -> Program:
    """Earley parse with the seed-shaped grammar."""
    return _SeedTransformer().transform(SEED_PARSER.parse(text))


def seed_render(text: str, size: int = 256):
    """Earley parse (seed-shaped grammar) + SPEC geometry + SPEC rasterisation: the baseline."""
    return rasterize_reference(reference_geometry(parse_seed_style(text)), size)


def simple_render(text: str, size: int = 256):
    """The same recipe with the leaner reference grammar (``lark_reference``)."""
    return rasterize_reference(reference_geometry(parse_earley(text)), size)
