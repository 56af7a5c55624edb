"""Program generators shared by the csg2d tests: hypothesis strategies and a seeded sampler.

Two kinds, for two jobs:

- hypothesis strategies (``shapes``, ``programs``, ``spellings``) for property tests, where
  shrinking to a small counterexample matters;
- :func:`random_program`, a plain ``random.Random`` sampler for the render-parity sweeps, where
  we want a thousand varied programs quickly and reproducibly (hypothesis would spend its
  budget on shrinking machinery we do not need there).

Also the reference grammar as a lark Earley parser (``lark_parse``), for differential tests.
"""

from __future__ import annotations

import random

from hypothesis import strategies as st

from img2prog.lang.csg2d.ast import EMPTY, Circle, Difference, Program, Quad, Shape, Union

# The reference grammar as lark Earley (what the seed does) lives in the package, so the
# differential tests and the render benchmark use the very same parser.
from img2prog.lang.csg2d.lark_reference import lark_parse  # noqa: F401  (re-exported for tests)

COORDS = st.integers(0, 15)
ANGLES_45 = st.sampled_from(range(0, 360, 45))
ANGLES_ANY = st.integers(0, 359)
WHITESPACE = " \t\n\r\f"

# --------------------------------------------------------------------------------------
# Hypothesis strategies.
# --------------------------------------------------------------------------------------

circles = st.builds(Circle, COORDS, COORDS, COORDS)


def quads(angles=ANGLES_ANY):
    return st.builds(Quad, COORDS, COORDS, COORDS, COORDS, angles)


def shapes(max_leaves: int = 12, angles=ANGLES_ANY) -> st.SearchStrategy[Shape]:
    """Random shape trees: primitives combined by unions and differences of 2+ operands."""
    leaves = st.one_of(circles, quads(angles))

    def extend(children):
        operands = st.lists(children, min_size=2, max_size=4).map(tuple)
        return st.one_of(operands.map(Union), operands.map(Difference))

    return st.recursive(leaves, extend, max_leaves=max_leaves)


def programs(max_leaves: int = 12, angles=ANGLES_ANY) -> st.SearchStrategy[Program]:
    return st.one_of(st.just(EMPTY), shapes(max_leaves, angles))


def _tokens(program: Program) -> list[tuple[str, str]]:
    """(kind, text) tokens of the canonical spelling; kind is 'open', 'word', 'num' or ')'."""
    out: list[tuple[str, str]] = []
    stack: list = [program]
    while stack:
        node = stack.pop()
        if node is None:
            out.append((")", ")"))
        elif isinstance(node, Circle):
            out += [("open", "("), ("word", "Circle"), *(("num", str(v)) for v in (node.r, node.x, node.y)), (")", ")")]
        elif isinstance(node, Quad):
            vals = (node.x, node.y, node.w, node.h, node.angle)
            out += [("open", "("), ("word", "Quad"), *(("num", str(v)) for v in vals), (")", ")")]
        elif isinstance(node, (Union, Difference)):
            out += [("open", "("), ("word", "+" if isinstance(node, Union) else "-")]
            stack.append(None)
            stack.extend(reversed(node.operands))
    return out


@st.composite
def spellings(draw, program: Program) -> str:
    """A random legal spelling of ``program``: random whitespace, leading zeros.

    Whitespace is optional between tokens except between two numbers (which would merge)
    and between a word and a following number is optional too (``Circle3`` is legal).
    """
    toks = _tokens(program)
    parts = [draw(st.text(WHITESPACE, max_size=3))]
    for i, (kind, text) in enumerate(toks):
        if kind == "num":
            text = "0" * draw(st.integers(0, 2)) + text
        parts.append(text)
        nxt = toks[i + 1][0] if i + 1 < len(toks) else None
        min_ws = 1 if kind == "num" and nxt == "num" else 0
        parts.append(draw(st.text(WHITESPACE, min_size=min_ws, max_size=3)))
    return "".join(parts)


# --------------------------------------------------------------------------------------
# Seeded sampler for parity sweeps.
# --------------------------------------------------------------------------------------

def random_primitive(rng: random.Random) -> Circle | Quad:
    """A primitive, biased towards the corners of parameter space (0, 15, odd angles)."""

    def coord() -> int:
        return rng.choice((0, 15)) if rng.random() < 0.1 else rng.randint(0, 15)

    if rng.random() < 0.5:
        return Circle(coord(), coord(), coord())
    u = rng.random()
    angle = rng.randrange(0, 360, 45) if u < 0.6 else rng.randint(0, 359)
    return Quad(coord(), coord(), coord(), coord(), angle)


def random_tree(rng: random.Random, leaves: int) -> Shape:
    """A random tree with exactly ``leaves`` primitives, nested, 2–4 operands per operation."""
    if leaves == 1:
        return random_primitive(rng)
    k = rng.randint(2, min(leaves, 4))
    cuts = sorted(rng.sample(range(1, leaves), k - 1))
    sizes = [b - a for a, b in zip([0, *cuts], [*cuts, leaves])]
    operands = tuple(random_tree(rng, s) for s in sizes)
    return (Union if rng.random() < 0.6 else Difference)(operands)


def random_program(rng: random.Random) -> Program:
    """The parity-sweep mix: 1/4 single primitives, 3/4 trees of 2–12 primitives."""
    if rng.random() < 0.25:
        return random_primitive(rng)
    return random_tree(rng, rng.randint(2, 12))


