"""Refinement: recovers one-edit-away programs, never returns anything worse than its start,
and honours its budgets."""

import random
import time

import pytest

from img2prog.lang.csg2d.ast import Circle, Difference, Quad, Union
from img2prog.lang.csg2d.parser import parse
from img2prog.search.refine import RefineConfig, refine
from img2prog.search.synthetic import perturb, random_program
from img2prog.search.verify import Target, Verifier

TRUTH = Union((Difference((Circle(5, 7, 7), Circle(3, 7, 8))), Quad(11, 4, 4, 2, 45), Circle(2, 12, 12)))

ONE_EDIT_AWAY = {
    "radius": Union((Difference((Circle(6, 7, 7), Circle(3, 7, 8))), Quad(11, 4, 4, 2, 45), Circle(2, 12, 12))),
    "position": Union((Difference((Circle(5, 7, 7), Circle(3, 7, 8))), Quad(11, 5, 4, 2, 45), Circle(2, 12, 12))),
    "angle": Union((Difference((Circle(5, 7, 7), Circle(3, 7, 8))), Quad(11, 4, 4, 2, 0), Circle(2, 12, 12))),
    "extra operand": Union(
        (Difference((Circle(5, 7, 7), Circle(3, 7, 8))), Quad(11, 4, 4, 2, 45), Circle(2, 12, 12), Circle(1, 2, 13))
    ),
    "missing primitive": Union((Difference((Circle(5, 7, 7), Circle(3, 7, 8))), Quad(11, 4, 4, 2, 45))),
    "missing hole": Union((Circle(5, 7, 7), Quad(11, 4, 4, 2, 45), Circle(2, 12, 12))),
    "swapped operation": Union((Union((Circle(5, 7, 7), Circle(3, 7, 8))), Quad(11, 4, 4, 2, 45), Circle(2, 12, 12))),
    "moved subtree": Union((Difference((Circle(5, 8, 7), Circle(3, 8, 8))), Quad(11, 4, 4, 2, 45), Circle(2, 12, 12))),
}


@pytest.mark.parametrize("name", sorted(ONE_EDIT_AWAY))
def test_recovers_the_target_from_one_edit_away(name):
    v = Verifier(Target.from_program(TRUTH))
    start = v.evaluate_ast(ONE_EDIT_AWAY[name])
    assert not start.perfect
    out = refine(v, start)
    assert out.best.perfect, f"{name}: stuck at {out.best.text} (IoU {out.best.iou:.4f})"
    assert out.steps >= 1


def test_recovers_random_targets_from_one_param_edit():
    rng = random.Random(5)
    for _ in range(12):
        truth = random_program(rng, rng.randint(2, 8))
        v = Verifier(Target.from_program(truth, 128))
        start = v.evaluate_ast(perturb(truth, 1, rng))
        assert refine(v, start).best.perfect, str(truth)


def test_never_returns_anything_worse_than_its_start():
    rng = random.Random(7)
    for _ in range(15):
        v = Verifier(Target.from_program(random_program(rng, rng.randint(1, 8)), 64))
        start = v.evaluate_ast(random_program(rng, rng.randint(1, 8)))  # unrelated start
        out = refine(v, start, config=RefineConfig(max_steps=6))
        assert (out.best.iou, -out.best.size) >= (start.iou, -start.size)
        # ...and what it returns is scored exactly
        assert out.best.iou == pytest.approx(Verifier(v.target).evaluate(out.best.text).iou)


def test_unrenderable_start_falls_back_to_the_blank_canvas():
    v = Verifier(Target.from_program("(Circle 3 8 8)", 64))
    out = refine(v, v.evaluate("(Circle 3 8"))
    assert out.best.ok and out.best.perfect


def test_evaluation_budget_is_exact():
    rng = random.Random(3)
    truth = random_program(rng, 10)
    for budget in (0, 1, 5, 17):
        v = Verifier(Target.from_program(truth))
        start = v.evaluate_ast(perturb(truth, 8, rng))
        before = v.evaluations
        out = refine(v, start, max_evaluations=budget)
        assert out.evaluations == v.evaluations - before <= budget


def test_time_limit_is_honoured():
    rng = random.Random(4)
    truth = random_program(rng, 12)
    v = Verifier(Target.from_program(truth))
    start = v.evaluate_ast(random_program(rng, 12))
    t0 = time.perf_counter()
    refine(v, start, deadline=t0 + 0.05)
    assert time.perf_counter() - t0 < 0.05 + 0.25  # one step (an addition round) of slack


def test_is_deterministic():
    rng = random.Random(9)
    truth = random_program(rng, 6)
    start_program = perturb(truth, 4, rng, ("param", "remove"))
    outcomes = set()
    for _ in range(2):
        v = Verifier(Target.from_program(truth, 64))
        out = refine(v, v.evaluate_ast(start_program), config=RefineConfig(max_steps=8))
        outcomes.add((out.best.text, out.steps, out.evaluations))
    assert len(outcomes) == 1


def test_parse_round_trip_of_results():
    v = Verifier(Target.from_program(TRUTH))
    out = refine(v, v.evaluate_ast(ONE_EDIT_AWAY["angle"]))
    assert str(parse(out.best.text)) == out.best.text
