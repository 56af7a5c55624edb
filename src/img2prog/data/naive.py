"""A naive random generator with none of the guarantees: the baseline for data-quality studies.

What a first attempt looks like: pick 1-5 primitives, combine them with random operations
in a random tree, draw every parameter uniformly from its legal range (angles from the
multiples of 45). Only renderability is checked. Its analysis shows the problems the
handcrafted generator exists to avoid: operands with no effect, empty shapes, near-empty and
near-full canvases, redundant nesting.
"""

from __future__ import annotations

import random

from img2prog.data.handcrafted import derive_seed
from img2prog.data.sampler import randint
from img2prog.lang.csg2d.ast import Circle, Difference, Quad, Shape, Union
from img2prog.lang.csg2d.rendering import render_gray
from img2prog.lang.errors import ProgramError


def _shape(rng: random.Random, n: int) -> Shape:
    if n == 1:
        if rng.random() < 0.5:
            return Circle(randint(rng, 0, 8), randint(rng, 0, 15), randint(rng, 0, 15))
        return Quad(randint(rng, 0, 15), randint(rng, 0, 15), randint(rng, 0, 15), randint(rng, 0, 15), 45 * randint(rng, 0, 7))
    k = randint(rng, 2, n)
    cuts = sorted(rng.sample(range(1, n), k - 1))
    sizes = [b - a for a, b in zip([0] + cuts, cuts + [n])]
    op = Union if rng.random() < 0.5 else Difference
    return op(tuple(_shape(rng, m) for m in sizes))


def naive_programs(n: int, seed: int = 0, max_primitives: int = 5) -> list[str]:
    """``n`` renderable programs from the naive generator (duplicates and all)."""
    rng = random.Random(derive_seed("img2prog.naive", seed))
    out: list[str] = []
    while len(out) < n:
        program = _shape(rng, randint(rng, 1, max_primitives))
        try:
            render_gray(program, 16)  # the only check: the geometry engine can draw it
        except ProgramError:
            continue
        out.append(str(program))
    return out
