"""csg2d: circles and rotated rectangles combined by union and difference on a 16×16 canvas.

The language of SPEC §1. Import the pieces you need:

- :mod:`.ast` — immutable, self-validating nodes (``Circle``, ``Quad``, ``Union``, ``Difference``, ``EMPTY``);
- :func:`parse` — text → AST, :class:`~img2prog.lang.errors.ProgramError` with an offset otherwise;
- :func:`render` / :func:`render_batch` — pixel-identical to the SPEC recipe (:func:`render_reference`);
- :mod:`.tokens` — the model vocabulary and the decoding constraint.
"""

from img2prog.lang.csg2d.ast import EMPTY, Circle, Difference, Empty, Program, Quad, Shape, Union
from img2prog.lang.csg2d.parser import is_valid, parse
from img2prog.lang.csg2d.rendering import (
    mask,
    render,
    render_batch,
    render_gray,
    render_image,
    render_reference,
)

__all__ = [
    "EMPTY",
    "Circle",
    "Difference",
    "Empty",
    "Program",
    "Quad",
    "Shape",
    "Union",
    "is_valid",
    "mask",
    "parse",
    "render",
    "render_batch",
    "render_gray",
    "render_image",
    "render_reference",
]
