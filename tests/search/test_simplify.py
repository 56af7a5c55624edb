"""simplify() keeps the picture, never lengthens a program, and removes what is dead."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from img2prog.lang.csg2d import rendering
from img2prog.lang.csg2d.parser import parse
from img2prog.lang.errors import ProgramError
from img2prog.search.simplify import simplify


@pytest.mark.parametrize("program, expected", [
    ("(- (Circle 6 8 8) (Circle 3 8 8) (Circle 3 8 8))", "(- (Circle 6 8 8) (Circle 3 8 8))"),  # duplicate cut
    ("(+ (Circle 5 8 8) (- (Circle 2 6 10) (Quad 4 12 2 2 0)))", "(Circle 5 8 8)"),  # hidden inside
    ("(- (Quad 8 8 4 4 0) (Circle 1 1 1))", "(Quad 8 8 4 4 0)"),  # cuts nothing
    ("(+ (Circle 2 3 3) (Circle 2 12 12))", "(+ (Circle 2 3 3) (Circle 2 12 12))"),  # nothing to drop
    ("(Circle 3 3 3)", "(Circle 3 3 3)"),
    ("", ""),
])
def test_known_cases(program, expected):
    assert simplify(program) == expected


def test_qualitative_programs_are_already_minimal():
    from img2prog.data.testsets import testset_programs

    for p in testset_programs("csg2d-qualitative"):
        assert simplify(p) == str(parse(p))


def test_bad_program_is_a_program_error():
    with pytest.raises(ProgramError):
        simplify("(Circle 3 3")


shapes = st.one_of(
    st.builds(lambda r, x, y: f"(Circle {r} {x} {y})", st.integers(1, 6), st.integers(0, 16), st.integers(0, 16)),
    st.builds(lambda x, y, w, h, a: f"(Quad {x} {y} {w} {h} {a})", st.integers(0, 16), st.integers(0, 16),
              st.integers(1, 8), st.integers(1, 8), st.sampled_from([0, 45, 90, 30])),
)
trees = st.recursive(shapes, lambda kids: st.builds(lambda op, ks: f"({op} {' '.join(ks)})", st.sampled_from("+-"),
                                                    st.lists(kids, min_size=2, max_size=3)), max_leaves=6)


@settings(max_examples=40, deadline=None)
@given(trees)
def test_same_picture_never_longer(program):
    try:
        before = rendering.mask(program, 64)
    except ProgramError:  # a degenerate GEOS case: nothing to simplify
        return
    out = simplify(program, size=64)
    assert np.array_equal(rendering.mask(out, 64), before)
    assert len(out) <= len(str(parse(program)))
