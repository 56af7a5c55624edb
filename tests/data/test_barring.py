"""BarSet: barred under any spelling, and any program drawing a barred image is barred."""

from __future__ import annotations

import numpy as np

from img2prog.data.barring import BarSet
from img2prog.lang.csg2d.rendering import render, render_gray

BARRED = "(- (Circle 5 8 8) (Circle 3 8 8))"


def test_any_spelling_is_barred():
    bar = BarSet([BARRED])
    for spelling in (
        BARRED,
        "(-(Circle 5 8 8)(Circle 3 8 8))",
        "  (-\n\t(Circle 05 8 8) (Circle 3 008 8))  ",
    ):
        assert bar.bars_program(spelling), spelling
        assert spelling in bar
    assert not bar.bars_program("(- (Circle 5 8 8) (Circle 2 8 8))")


def test_same_image_different_program_is_barred():
    # The duplicated operand adds nothing: a different program, the very same image.
    twin = "(- (Circle 5 8 8) (Circle 3 8 8) (Circle 3 8 8))"
    assert np.array_equal(render_gray(twin), render_gray(BARRED))
    bar = BarSet([BARRED])
    assert not bar.bars_program(twin)
    assert bar.bars(twin)
    assert bar.bars_image(render(twin))  # RGB works too
    assert bar.bars_image(render_gray(twin, 64))  # at any size, computed on demand
    assert not bar.bars("(Circle 3 8 8)")


def test_image_keys_follow_additions_and_copies():
    bar = BarSet(["(Circle 3 8 8)"])
    bar.image_keys(256)  # computed before the addition
    bar.add(["(Circle 4 2 2)"])
    assert bar.bars_image(render_gray("(Circle 4 2 2)"))
    other = BarSet(["(Quad 8 8 4 4 0)"])
    both = bar.union(other)
    assert both.bars("(Quad 8 8 4 4 0)") and both.bars("(Circle 3 8 8)")
    assert not bar.bars("(Quad 8 8 4 4 0)")  # union does not modify its operands
    assert len(both) == 3 and both.programs[0] == "(Circle 3 8 8)"


def test_unparsable_barred_text_is_skipped_and_counted():
    bar = BarSet(["(Circle 3 8", "(Circle 3 8 8)", "(Circle 3 8 8)"])
    assert bar.skipped == 1 and len(bar) == 1
    assert not bar.bars_program("not a program")
