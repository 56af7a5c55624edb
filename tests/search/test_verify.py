"""The exact verifier: memoised rendering must be pixel-identical to the renderer, and the
scores must mean what the docs say."""

import random

import numpy as np
import pytest

from img2prog.lang.csg2d import rendering
from img2prog.lang.csg2d.ast import EMPTY, Circle
from img2prog.search.synthetic import perturb, random_program
from img2prog.search.verify import ExactRenderer, Target, Verifier, black_mask, iou


def test_memoised_renderer_is_pixel_identical_across_shared_subtrees():
    rng = random.Random(0)
    er = ExactRenderer(64)  # one memo for all programs: edits share subtrees and fold prefixes
    for _ in range(60):
        p = random_program(rng, rng.randint(1, 10))
        for q in (p, perturb(p, 1, rng), perturb(p, 3, rng, ("param", "remove", "swap"))):
            assert np.array_equal(er.gray(q), rendering.render_gray(q, 64)), str(q)


def test_memoised_renderer_matches_the_spec_recipe():
    rng = random.Random(1)
    er = ExactRenderer(128)
    for _ in range(8):
        p = random_program(rng, rng.randint(2, 8))
        assert np.array_equal(er.gray(p), rendering.render_reference(p, 128)[:, :, 0])


def test_iou_and_target_conventions():
    a = np.zeros((4, 4), bool)
    assert iou(a, a) == 1.0  # both blank: exactly right
    b = a.copy()
    b[0, :2] = True
    c = a.copy()
    c[0, 1:3] = True
    assert iou(b, c) == pytest.approx(1 / 3)
    rgb = rendering.render("(Circle 3 8 8)", 32)
    assert np.array_equal(Target.from_image(rgb).mask, rgb[:, :, 0] == 0)
    with pytest.raises(ValueError, match="square"):
        black_mask(np.zeros((4, 5), np.uint8))


def test_verifier_scores_caches_and_reports_failures():
    v = Verifier(Target.from_program("(Circle 3 8 8)", 64))
    good = v.evaluate("( Circle 3 8 8 )", logprob=-1.5)
    assert good.ok and good.perfect and good.iou == 1.0 and good.text == "(Circle 3 8 8)" and good.logprob == -1.5
    assert v.evaluations == 1
    again = v.evaluate("(Circle 3 8 8)")
    assert v.evaluations == 1 and again.perfect  # cached by canonical text
    bad = v.evaluate("(Circle 99 8 8)")
    assert not bad.ok and bad.iou == -1.0 and "out of range" in bad.error
    blank = v.evaluate_ast(EMPTY)
    assert blank.ok and blank.iou == 0.0 and blank.size == 0
    off = v.evaluate_ast(Circle(3, 9, 8))
    assert 0 < off.iou < 1 and not off.perfect
