"""The approximate raster algebra: the slot formula must agree exactly with composing masks,
and a lone primitive must be exact."""

import random

import numpy as np

from img2prog.lang.csg2d import rendering
from img2prog.lang.csg2d.ast import Difference, Quad, Union
from img2prog.search.edits import APPEND, WRAP_DIFF, WRAP_UNION, add_edit, iter_nodes, local_edits
from img2prog.search.raster import Approx, PrimitiveMasks, crop_of
from img2prog.search.raster import StepContext as _StepContext
from img2prog.search.synthetic import random_primitive, random_program
from img2prog.search.verify import Target

SIZE = 64


def test_primitive_masks_are_exact_and_cropped():
    rng = random.Random(0)
    pm = PrimitiveMasks(SIZE)
    for _ in range(50):
        p = random_primitive(rng)
        c = pm.get(p)
        assert np.array_equal(c.full(SIZE), rendering.mask(p, SIZE))
        assert c.empty or (c.mask.any(axis=1)[[0, -1]].all() and c.mask.any(axis=0)[[0, -1]].all())
    assert crop_of(np.zeros((SIZE, SIZE), bool)).empty


def test_slot_scores_equal_scores_of_the_edited_programs():
    """(x & P) | (~x & Q) is an identity of the mask algebra: every edit's slot score must equal
    the approximate score of the edited program computed from scratch."""
    rng = random.Random(1)
    for _ in range(25):
        target = Target.from_program(random_program(rng, rng.randint(2, 6)), SIZE)
        approx = Approx(target, PrimitiveMasks(SIZE))
        program = random_program(rng, rng.randint(1, 7))
        ctx = _StepContext(approx, program)
        edits = local_edits(program, ("param", "remove", "swap"))
        prim = random_primitive(rng)
        for path, node in iter_nodes(program):
            if isinstance(node, (Union, Difference)):
                edits.append(add_edit(program, path, APPEND, prim))
            edits.append(add_edit(program, path, WRAP_UNION, prim))
            edits.append(add_edit(program, path, WRAP_DIFF, prim))
        for e in rng.sample(edits, min(30, len(edits))):
            assert abs(ctx.score(e) - approx.score(e.apply(program))) < 1e-12, (str(program), e)


def test_shifted_mask_matches_translated_subtree_away_from_borders():
    target = Target.from_program("(Circle 3 8 8)", SIZE)
    approx = Approx(target, PrimitiveMasks(SIZE))
    node = Union((Quad(6, 7, 3, 2, 0), Quad(9, 8, 2, 4, 0)))
    moved = Union((Quad(7, 6, 3, 2, 0), Quad(10, 7, 2, 4, 0)))
    shifted = approx.shifted(node, 1, -1).full(SIZE)
    assert np.array_equal(shifted, approx.mask(moved))


def test_move_edits_keep_every_operand_and_score_like_the_program():
    from img2prog.lang.csg2d.ast import num_nodes, primitives
    from img2prog.search.edits import move_edits

    rng = random.Random(4)
    for _ in range(10):
        program = random_program(rng, rng.randint(3, 7))
        target = Target.from_program(random_program(rng, 4), SIZE)
        approx = Approx(target, PrimitiveMasks(SIZE))
        ctx = _StepContext(approx, program)
        moves = move_edits(program)
        for e in moves:
            moved = e.apply(program)
            assert sorted(map(str, primitives(moved))) == sorted(map(str, primitives(program)))
            assert num_nodes(moved) - num_nodes(program) == e.growth
            assert abs(ctx.score(e) - approx.score(moved)) < 1e-12


def test_batched_scores_equal_one_by_one_scores():
    rng = random.Random(8)
    for _ in range(10):
        target = Target.from_program(random_program(rng, rng.randint(2, 6)), SIZE)
        approx = Approx(target, PrimitiveMasks(SIZE))
        program = random_program(rng, rng.randint(1, 7))
        ctx = _StepContext(approx, program)
        edits = local_edits(program, ("param", "pairs", "remove", "swap", "translate"))
        edits.append(add_edit(program, (), WRAP_UNION, random_primitive(rng)))
        assert np.allclose(ctx.score_all(edits), [ctx.score(e) for e in edits], rtol=0, atol=1e-12)
