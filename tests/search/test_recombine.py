"""Recombination assembles the target from parts scattered over several programs."""

from img2prog.lang.csg2d.parser import parse
from img2prog.search.raster import Approx
from img2prog.search.recombine import recombine
from img2prog.search.verify import Target, Verifier

TRUTH = "(- (+ (Circle 3 4 4) (Quad 11 11 4 4 45) (Circle 2 12 4)) (Circle 1 4 4))"


def test_parts_from_different_programs_make_the_target():
    target = Target.from_program(TRUTH, 128)
    pieces = [
        "(+ (Circle 3 4 4) (Quad 3 12 2 2 0))",  # one right part, one wrong
        "(- (+ (Quad 11 11 4 4 45) (Circle 5 8 8)) (Circle 1 4 4))",  # another right part, and the cut
        "(Circle 2 12 4)",
    ]
    got = recombine([parse(p) for p in pieces], Approx(target))
    assert Verifier(target).evaluate_ast(got).perfect, str(got)
    assert "Quad 3 12" not in str(got) and "Circle 5 8 8" not in str(got)  # wrong parts left out


def test_nothing_to_choose_from():
    target = Target.from_program(TRUTH, 64)
    assert recombine([], Approx(target)) is None
    assert recombine([parse("(Circle 1 0 15)")], Approx(target)) is None  # no part helps
