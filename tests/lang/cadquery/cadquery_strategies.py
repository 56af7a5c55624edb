"""Hypothesis strategies for CadQuery programs on the token grid (shape-agnostic: these
programs are valid as programs, not necessarily as geometry)."""

from __future__ import annotations

from hypothesis import strategies as st

from img2prog.lang.cadquery.ast import (
    EDGE_SELECTORS,
    Arc,
    Boolean,
    Circle,
    Extrusion,
    Finish,
    Line,
    Loop,
    Plane,
    Program,
)
from img2prog.lang.cadquery.tokens import _AXES, FRAMES, GRID_DENOM, GRID_MAX, GRID_MIN

grid = st.integers(GRID_MIN, GRID_MAX).map(lambda k: k / GRID_DENOM)
positive = st.integers(1, GRID_MAX).map(lambda k: k / GRID_DENOM)
nonzero = grid.filter(lambda x: x != 0)
xy = st.tuples(grid, grid)


@st.composite
def planes(draw):
    x, n = draw(st.sampled_from(FRAMES))
    return Plane((draw(grid), draw(grid), draw(grid)), _AXES[x], _AXES[n])


segments = st.one_of(st.builds(Line, xy), st.builds(Arc, xy, xy))
loops = st.builds(Loop, xy, st.lists(segments, min_size=1, max_size=5).map(tuple))
circles = st.builds(Circle, xy, positive)
profiles = st.lists(st.one_of(loops, circles), min_size=1, max_size=3).map(tuple)
extrusions = st.builds(Extrusion, planes(), profiles, nonzero, st.booleans())
steps = st.one_of(
    st.builds(Boolean, st.sampled_from(("union", "cut", "intersect")), extrusions),
    st.builds(Finish, st.sampled_from(("fillet", "chamfer")), positive, st.sampled_from(EDGE_SELECTORS)),
)
programs = st.builds(Program, extrusions, st.lists(steps, max_size=4).map(tuple))
