"""Numeric refinement of CadQuery programs against a picture (mesh kernel)."""

from dataclasses import replace

import numpy as np
import pytest

from img2prog.lang.cadquery import tokens as T
from img2prog.lang.cadquery.parser import parse
from img2prog.lang.cadquery.ast import Boolean, Extrusion, Finish, Program
from img2prog.models.cad_refine import Refined, last_that_builds, moves, refine, refine_many, structural_moves

BOX = """import cadquery as cq
solid = cq.Workplane("XY").moveTo(-0.5, -0.25).lineTo(0.5, -0.25).lineTo(0.5, 0.25).lineTo(-0.5, 0.25).close().extrude(0.25)
"""


def _numbers(ids):
    return [(j, i) for j, i in enumerate(ids) if T.number_id(T.GRID_MIN) <= i <= T.number_id(T.GRID_MAX)]


def test_moves_step_single_numbers_and_tie_equal_values_within_a_sketch():
    ids = T.encode(parse(BOX))
    ms = moves(ids, steps=(1,))
    changed = [{j for j, (a, b) in enumerate(zip(ids, m)) if a != b} for m in ms]
    assert all(len(m) == len(ids) for m in ms)
    nums = _numbers(ids)
    # every number moves alone, one grid step either way
    for j, _ in nums:
        assert sum(c == {j} for c in changed) == 2
    # the right side x = 0.5 (two corners) moves as one: the box stays a box
    right = {j for j, i in nums if i == T.number_id(64)}
    assert len(right) == 2 and sum(c == right for c in changed) == 2
    tied_box = next(m for m, c in zip(ms, changed) if c == right and m[min(right)] > ids[min(right)])
    program = parse(T.decode(tied_box))
    assert [s.end for s in program.base.profiles[0].segments][:2] == [(0.5 + 1 / 128, -0.25), (0.5 + 1 / 128, 0.25)]
    # the plane origin's zeros are not tied to the sketch's numbers (nor to each other)
    origin = {j for j, _ in nums[:3]}
    assert not any(len(c) > 1 and c & origin for c in changed)
    # no move leaves the grid
    edge = list(ids)
    edge[nums[-1][0]] = T.number_id(T.GRID_MAX)
    assert all(max(m) <= T.number_id(T.GRID_MAX) for m in moves(edge, steps=(1, 4)))


def test_refine_without_a_valid_start_returns_it_unchanged():
    target = np.full((32, 32), 255, np.uint8)
    r = refine(target, "not a program", executor=None)
    assert r.program == "not a program" and r.score == -np.inf and r.drawn == 0


def test_refine_recovers_a_box_whose_sides_are_off_by_a_few_steps():
    pytest.importorskip("manifold3d")
    from img2prog.lang.cadquery.meshkernel import MeshExecutor
    from img2prog.models.cad_search import render_programs

    ex = MeshExecutor()
    size = 64
    target = render_programs([BOX], ex, size)[BOX]
    # right side 4 steps too far out, extruded 4 steps too short
    start = BOX.replace("0.5, -0.25).lineTo(0.5, 0.25)", "0.53125, -0.25).lineTo(0.53125, 0.25)")
    start = start.replace("extrude(0.25)", "extrude(0.21875)")
    r = refine(target, start, ex, rounds=10, steps=(1, 4))
    assert r.start_score < 0.95
    assert r.score == 1.0 and r.rounds == 2 and r.drawn > 2
    # pictures are drawn after normalising position and scale, so the box may come back shifted
    # (moving the left side instead of the right one draws the same picture); its size may not
    base = parse(r.program).base
    xs = [base.profiles[0].start[0]] + [seg.end[0] for seg in base.profiles[0].segments]
    ys = [base.profiles[0].start[1]] + [seg.end[1] for seg in base.profiles[0].segments]
    assert (max(xs) - min(xs), max(ys) - min(ys), base.distance) == (1.0, 0.5, 0.25)
    # a greedy search: it may stop on a plateau short of an exact fit, never below its start
    worse = start.replace("0.25).lineTo(-0.5", "0.2421875).lineTo(-0.5")
    r = refine(target, worse, ex, rounds=10, steps=(1, 4))
    assert r.start_score < r.score <= 1.0
    # the same through the multi-process entry point (one worker), and nothing moves off an exact fit
    (again,) = refine_many(target[None], [BOX], size=size, rounds=3)
    assert again.score == 1.0 and again.rounds == 0 and parse(again.program) == parse(BOX)
    with pytest.raises(ValueError, match="2 programs"):
        refine_many(target[None], [BOX, BOX])


HOLE = """import cadquery as cq
solid = cq.Workplane("XY").moveTo(-0.5, -0.25).lineTo(0.5, -0.25).lineTo(0.5, 0.25).lineTo(-0.5, 0.25).close().extrude(0.25)
solid = solid.cut(cq.Workplane("XY").moveTo(0.25, 0.0).circle(0.125).extrude(0.25))
"""
SLOT = """import cadquery as cq
solid = cq.Workplane("XY").moveTo(-0.5, -0.25).lineTo(0.5, -0.25).lineTo(0.5, 0.25).lineTo(-0.5, 0.25).close().extrude(0.25)
solid = solid.cut(cq.Workplane("XY").moveTo(-0.375, -0.0625).lineTo(-0.125, -0.0625).lineTo(-0.125, 0.0625).lineTo(-0.375, 0.0625).close().extrude(0.25))
"""


def test_structural_moves_drop_add_and_swap_whole_extrusions():
    hole, slot = parse(HOLE), parse(SLOT)
    out = structural_moves(hole, [slot, hole])
    assert len(out) == len(set(out))
    # drop the hole; add the slot after it; swap the hole for the slot (same base: no base swap)
    assert Program(hole.base) in out
    assert Program(hole.base, (hole.steps[0], slot.steps[0])) in out
    assert Program(hole.base, (slot.steps[0],)) == slot and slot in out
    # the hole's operation changed; the base and the hole reversed or made two-sided
    cut = hole.steps[0]
    assert {Program(hole.base, (Boolean(op, cut.body),)) for op in ("union", "intersect")} <= set(out)
    assert Program(replace(hole.base, distance=-0.25), hole.steps) in out
    assert Program(replace(hole.base, both=True), hole.steps) in out
    assert Program(hole.base, (Boolean("cut", replace(cut.body, distance=-0.25)),)) in out
    assert Program(hole.base, (Boolean("cut", replace(cut.body, both=True)),)) in out
    assert len(out) == 3 + 2 + 2 + 2
    # a donor with another base offers it; a finish stays last when a step is added
    tall = Program(Extrusion(hole.base.plane, hole.base.profiles, 0.5))
    finished = Program(hole.base, (hole.steps[0], Finish("fillet", 0.0625)))
    got = structural_moves(finished, [tall, slot])
    assert Program(tall.base, finished.steps) in got
    added = Program(hole.base, (hole.steps[0], slot.steps[0], finished.steps[1]))
    assert added in got
    assert all(isinstance(p.steps[-1], Finish) for p in got if len(p.steps) > 1)
    # nothing to take from itself: only the box's own turns
    box = parse(BOX)
    assert set(structural_moves(box, [box])) == {Program(replace(box.base, distance=-0.25)),
                                                 Program(replace(box.base, both=True))}


def test_refine_takes_a_missing_feature_from_a_donor():
    pytest.importorskip("manifold3d")
    from img2prog.lang.cadquery.meshkernel import MeshExecutor
    from img2prog.models.cad_search import render_programs

    ex = MeshExecutor()
    both = Program(parse(HOLE).base, (parse(HOLE).steps[0], parse(SLOT).steps[0]))
    target = render_programs([str(both)], ex, 64)[str(both)]
    # numbers alone cannot cut the slot that the hole-only start lacks
    alone = refine(target, HOLE, ex, rounds=4)
    assert alone.score < 1.0
    helped = refine(target, HOLE, ex, rounds=4, donors=[SLOT, "not a program"])
    assert helped.score == 1.0 and isinstance(parse(helped.program).steps[-1], Boolean)
    assert len(parse(helped.program).steps) == 2


def test_last_that_builds_steps_back_along_the_refinement_path(verdicts):
    results = [Refined("c", 0.9, 0.5, 2, 10, ("a", "b", "c")),  # c refused, b builds
               Refined("f", 0.9, 0.5, 2, 10, ("d", "e", "f")),  # nothing after the start builds
               Refined("h", 0.9, 0.5, 1, 10, ("g", "h")),  # h builds
               Refined("i", 0.5, 0.5, 0, 1, ("i",))]  # not refined: nothing to check
    v = verdicts({"b", "h"})
    assert last_that_builds(results, v) == ["b", "d", "h", "i"]
    assert v.asked == [["c", "f", "h"], ["b", "e"]]
