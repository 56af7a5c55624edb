"""The exact checks: removal variants equal re-rendered edited programs, pixel for pixel."""

from __future__ import annotations

import numpy as np
import pytest

from img2prog.data.checks import (
    Evaluated,
    OperandRef,
    black_share,
    degenerate_operands,
    draw,
    image_key,
    is_nondegenerate,
    redundant_nesting,
    remove_operand,
)
from img2prog.data.handcrafted import sample_candidates
from img2prog.data.naive import naive_programs
from img2prog.lang.csg2d import rendering
from img2prog.lang.csg2d.parser import parse


def _programs():
    # Naive programs are full of degenerate operands; sampler candidates are deep and busy.
    return [parse(p) for p in naive_programs(60, seed=3)] + sample_candidates("hard", 25, seed=4) + sample_candidates(
        "holes", 25, seed=5
    )


def test_draw_matches_renderer_pixel_for_pixel():
    for program in _programs():
        for size in (256, 64, 37):
            got = np.asarray(draw(rendering.geometry(program), size))
            assert np.array_equal(got, rendering.render_gray(program, size)), (str(program), size)


def test_evaluated_image_is_the_rendering():
    for program in _programs()[:40]:
        ev = Evaluated(program)
        assert np.array_equal(ev.image(256), rendering.render_gray(program))
        assert np.array_equal(ev.image(48), rendering.render_gray(program, 48))


def test_removal_variant_equals_rendering_the_edited_program():
    checked = 0
    for program in _programs():
        ev = Evaluated(program)
        for ref, chain in ev.operands():
            edited = remove_operand(program, ref)
            variant = ev.without(ref, chain)
            # Same geometry, coordinate for coordinate, as the renderer computes for the edit ...
            assert variant.equals_exact(rendering.geometry(edited), 0.0), (str(program), ref)
            # ... and the verdict agrees with re-rendering the edited program from scratch.
            same = np.array_equal(rendering.render_gray(edited), rendering.render_gray(program))
            assert ev.operand_matters(ref, chain) == (not same), (str(program), ref)
            checked += 1
    assert checked > 200


def test_known_geometries_are_reused_not_trusted_blindly():
    program = parse("(+ (Circle 3 5 5) (Circle 3 9 9))")
    stale = parse("(+ (Circle 1 1 1) (Circle 1 2 2))")
    # An entry whose node is a different object (e.g. a recycled id) must be ignored.
    known = {id(program): (stale, [rendering.geometry(stale)])}
    ev = Evaluated(program, known)
    assert np.array_equal(ev.image(), rendering.render_gray(program))


@pytest.mark.parametrize(
    "text, bad",
    [
        ("(+ (Circle 4 8 8) (Circle 2 8 8))", [OperandRef((), 1, "+")]),  # hidden inside the first
        ("(+ (Circle 2 8 8) (Circle 4 8 8))", [OperandRef((), 0, "+")]),  # hidden inside the second
        ("(- (Circle 3 8 8) (Circle 1 1 1))", [OperandRef((), 1, "-")]),  # cuts nothing
        ("(+ (Circle 3 8 8) (Circle 3 8 8))", [OperandRef((), 0, "+"), OperandRef((), 1, "+")]),
        ("(- (Circle 5 8 8) (Circle 2 8 8))", []),  # a ring: both matter
        ("(+ (Quad 8 10 2 8 0) (Quad 8 3 2 2 0))", []),
        ("(+ (Circle 0 8 8) (Quad 8 8 4 4 0))", [OperandRef((), 0, "+")]),  # radius 0 draws nothing
        ("(Circle 3 8 8)", []),
    ],
)
def test_degenerate_operands_examples(text, bad):
    assert degenerate_operands(text) == bad
    assert is_nondegenerate(text) == (not bad)


def test_nested_degenerate_operand_is_found_through_ancestors():
    # The inner hole is covered again by the outer union's second operand.
    text = "(+ (- (Circle 5 8 8) (Circle 1 8 8)) (Circle 2 8 8))"
    refs = degenerate_operands(text)
    assert OperandRef((0,), 1, "-") in refs


def test_remove_operand_collapses_single_remaining_operand():
    p = parse("(- (+ (Circle 3 4 4) (Circle 3 10 10)) (Circle 1 4 4))")
    assert str(remove_operand(p, OperandRef((0,), 0, "+"))) == "(- (Circle 3 10 10) (Circle 1 4 4))"
    assert str(remove_operand(p, OperandRef((), 1, "-"))) == "(+ (Circle 3 4 4) (Circle 3 10 10))"


def test_image_key_distinguishes_images_and_sizes():
    a = rendering.render_gray("(Circle 3 8 8)")
    b = rendering.render_gray("(Circle 3 8 9)")
    assert image_key(a) == image_key(rendering.render("(Circle 3 8 8)"))  # grey and RGB agree
    assert image_key(a) != image_key(b)
    blank64, blank32 = np.full((64, 64), 255, np.uint8), np.full((32, 32), 255, np.uint8)
    assert image_key(blank64) != image_key(blank32)


def test_black_share():
    img = np.full((4, 4), 255, np.uint8)
    img[0, :2] = 0
    assert black_share(img) == 2 / 16


def test_redundant_nesting():
    assert redundant_nesting(parse("(+ (Circle 1 1 1) (+ (Circle 1 5 5) (Circle 1 9 9)))")) == 1
    assert redundant_nesting(parse("(- (- (Circle 5 8 8) (Circle 1 8 8)) (Circle 1 5 5))")) == 1
    assert redundant_nesting(parse("(- (Circle 5 8 8) (+ (Circle 1 8 8) (Circle 1 5 5)))")) == 1
    assert redundant_nesting(parse("(+ (- (Circle 5 8 8) (Circle 1 8 8)) (Circle 1 5 5))")) == 0
