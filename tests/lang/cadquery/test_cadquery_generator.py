"""The procedural generator's guarantees, and the frozen test sets."""

from __future__ import annotations

import random

import pytest

from img2prog.lang.cadquery import parse, to_script
from img2prog.lang.cadquery import testsets as TS
from img2prog.lang.cadquery import tokens as T
from img2prog.lang.cadquery.ast import Boolean, Circle, Extrusion, Program
from img2prog.lang.cadquery.generator import LIMIT, GeneratorConfig, PartGenerator, _shape2d, first_body

CONFIG = GeneratorConfig(max_bodies=3, p_holes=0.6, p_finish=0.3)


@pytest.fixture(scope="module")
def parts(executor):
    gen = PartGenerator(executor, CONFIG, seed=11)
    return gen.generate(5)


def test_sketches_are_valid_polygons_and_holes_lie_inside():
    rng = random.Random(0)
    seen_holes = 0
    for _ in range(300):
        body = first_body(rng, CONFIG)
        if body is None:
            continue
        outer, *holes = body.profiles
        shape = _shape2d(outer)
        assert shape.is_valid and shape.area > 0
        for h in holes:
            seen_holes += 1
            assert shape.contains(_shape2d(h).buffer(1e-9))
        assert T.on_grid(Program(body))
    assert seen_holes > 20


@pytest.mark.slow
def test_generated_parts_meet_the_guarantees(parts, executor):
    texts = [p.text for p in parts]
    assert len(set(texts)) == len(parts) and len({p.fingerprint for p in parts}) == len(parts)
    for part in parts:
        assert to_script(parse(part.text)) == part.text and parse(part.text) == part.program
        assert T.on_grid(part.program)
        # rebuild every prefix: each operation must change the volume in its direction
        prefixes = [Program(part.program.base, part.program.steps[:k]) for k in range(len(part.program.steps) + 1)]
        results = executor.run_many(prefixes, mesh=False)
        assert all(r.ok and r.solid.solids == 1 for r in results), [r.error for r in results]
        final = results[-1].solid
        assert all(abs(c) <= LIMIT + 1e-6 for c in final.bbox)
        for step, before, after in zip(part.program.steps, results, results[1:]):
            change = (after.solid.volume - before.solid.volume) / before.solid.volume
            if isinstance(step, Boolean) and step.op == "union":
                assert change >= CONFIG.min_change
            elif isinstance(step, Boolean):
                assert change <= -CONFIG.min_change
            else:
                assert abs(change) > 1e-6
        # every hole of the first sketch removes material
        base = part.program.base
        for i in range(1, len(base.profiles)):
            without = Extrusion(base.plane, base.profiles[:i] + base.profiles[i + 1 :], base.distance, base.both)
            r = executor.run(Program(without), mesh=False)
            assert r.ok and r.solid.volume > results[0].solid.volume * 1.0001


@pytest.mark.slow
def test_generation_is_reproducible_and_respects_the_bar(parts, executor):
    again = PartGenerator(executor, CONFIG, seed=11).generate(2)
    assert [p.text for p in again] == [p.text for p in parts[:2]]
    barred = PartGenerator(executor, CONFIG, seed=11, bar={parts[0].text, parts[1].fingerprint}).generate(2)
    assert [p.text for p in barred] == [p.text for p in parts[2:4]]


def test_frozen_test_sets():
    assert TS.testset_names() == ["cadquery-test", "cadquery-qualitative"]
    test = TS.testset_programs("cadquery-test")
    qual = TS.testset_programs("cadquery-qualitative")
    assert len(test) == TS.RECIPES["cadquery-test"].n == 200 and len(qual) == 6
    assert qual == TS.qualitative_programs()  # the hand-written sources still give the frozen texts
    for text in test + qual:
        p = parse(text)
        assert to_script(p) == text and T.on_grid(p)
    assert len(set(test)) == 200 and not set(test) & set(qual)
    test_fp = set(TS._frozen("cadquery-test")[1])
    qual_fp = set(TS._frozen("cadquery-qualitative")[1])
    assert len(test_fp) == 200 and not test_fp & qual_fp
    bar = TS.standard_bar()
    assert set(test) <= bar and qual_fp <= bar
    # the test set is varied: all three booleans, arcs and circles, one to four extrusions
    programs = [parse(t) for t in test]
    ops = {s.op for p in programs for s in p.steps}
    assert {"union", "cut", "intersect"} <= ops
    assert {len(list(p.bodies())) for p in programs} == {1, 2, 3, 4}
    assert any(isinstance(pr, Circle) for p in programs for b in p.bodies() for pr in b.profiles)
    with pytest.raises(KeyError):
        TS.testset_programs("cadquery-train")


@pytest.mark.slow
def test_recipe_reproduces_the_start_of_the_frozen_test_set(executor):
    recipe = TS.RECIPES["cadquery-test"]
    programs, fingerprints = TS._frozen("cadquery-qualitative")
    bar = set(programs) | set(fingerprints)
    parts = PartGenerator(executor, recipe.config, seed=recipe.seed, bar=bar).generate(4)
    assert [p.text for p in parts] == TS.testset_programs("cadquery-test")[:4]
    assert [p.fingerprint for p in parts] == list(TS._frozen("cadquery-test")[1][:4])
