"""The seed-style rendering recipe, written from SPEC §1, used only as a speed baseline.

It parses with lark in Earley mode (as the seed notebook does) and then builds geometry and
draws it exactly as the SPEC recipe says. ``benchmarks/render.py`` times img2prog's renderer
against it in the same process, on the same programs, and checks the pixels agree.
"""

from __future__ import annotations

from img2prog.lang.csg2d.lark_reference import parse_earley
from img2prog.lang.csg2d.rendering import rasterize_reference, reference_geometry


def seed_render(text: str, size: int = 256):
    """Earley parse + SPEC geometry + SPEC rasterisation: the baseline recipe."""
    ast = parse_earley(text)
    return rasterize_reference(reference_geometry(ast), size)
