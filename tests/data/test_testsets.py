"""Standard test sets: frozen, fingerprinted, disjoint, reproducible from their recipes."""

from __future__ import annotations

import json

import numpy as np
import pytest

from img2prog.data import testsets as ts
from img2prog.data.checks import image_key
from img2prog.data.handcrafted import GENERATOR_VERSION
from img2prog.lang.csg2d.ast import primitives
from img2prog.lang.csg2d.parser import parse
from img2prog.lang.csg2d.rendering import render_gray

SPEC_QUALITATIVE = [
    "(+ (Quad 8 10 2 8 0) (Quad 8 3 2 2 0))",
    "(+ (Quad 4 4 2 4 0) (Quad 12 4 2 4 45) (Quad 4 12 2 4 90) (Quad 12 12 2 4 135))",
    "(+ (- (Circle 5 7 5) (Circle 5 7 6)) (Quad 7 6 2 2 45) (Circle 2 4 10) (Circle 2 10 10))",
    (
        "(- (+ (- (Circle 5 8 8) (Circle 4 8 8)) (- (Circle 4 8 12) (Circle 3 8 13)) (- (Circle 4 5 6) "
        "(Circle 3 4 5)) (- (Circle 4 11 6) (Circle 3 12 5))) (Circle 2 8 8))"
    ),
]


def test_names_sizes_and_versions():
    assert ts.testset_names() == ["csg2d-hard", "csg2d-qualitative", "csg2d-test"]
    assert len(ts.testset_programs("csg2d-test")) == 200
    assert len(ts.testset_programs("csg2d-hard")) == 100
    assert ts.testset_programs("csg2d-qualitative") == SPEC_QUALITATIVE
    assert ts.testset_programs("csg2d-test@1") == ts.testset_programs("csg2d-test@v1") == ts.testset_programs("csg2d-test")
    with pytest.raises(KeyError, match="available"):
        ts.get_recipe("csg2d-nope")
    with pytest.raises(KeyError, match="no version"):
        ts.get_recipe("csg2d-test@9")


def test_fingerprints_hold():
    for name in ts.testset_names():
        recipe = ts.get_recipe(name)
        assert recipe.fingerprint and ts.fingerprint(ts.testset_programs(name)) == recipe.fingerprint


def test_sets_are_disjoint_by_program_and_image():
    seen_programs, seen_images = set(), set()
    for name in ts.testset_names():
        progs = ts.testset_programs(name)
        keys = {image_key(render_gray(p)) for p in progs}
        assert len(set(progs)) == len(progs) and len(keys) == len(progs), name
        assert not set(progs) & seen_programs and not keys & seen_images, name
        seen_programs |= set(progs)
        seen_images |= keys


def test_seed_like_set_matches_the_seed_empty_baseline():
    cov = np.mean([np.mean(render_gray(p) == 0) for p in ts.testset_programs("csg2d-test")])
    assert abs((1 - cov) - 0.8214) < 0.002  # the seed test set's empty-program pixel accuracy


def test_hard_set_has_6_to_12_primitives():
    counts = [len(primitives(parse(p))) for p in ts.testset_programs("csg2d-hard")]
    assert min(counts) >= 6 and max(counts) <= 12


def test_load_testset_renders_exact_images():
    ds = ts.load_testset("csg2d-qualitative", size=64)
    assert ds.column_names == ["program", "image"] and len(ds) == 4
    img = np.asarray(ds[3]["image"])
    assert img.shape == (64, 64, 3)
    assert np.array_equal(img[..., 0], render_gray(ds[3]["program"], 64))


def test_standard_items_and_bar_cover_every_set():
    programs, images = ts.standard_test_items(size=32)
    assert len(programs) == 304 and images.shape == (304, 32, 32, 3)
    bar = ts.standard_bar()
    assert all(bar.bars_canonical(p) for p in programs)
    bar.add(["(Circle 1 1 1)"])  # a copy: the shared bar is not modified
    assert not ts.standard_bar().bars_program("(Circle 1 1 1)")


def test_write_testset_records_the_recipe(tmp_path):
    out = ts.write_testset("csg2d-qualitative", tmp_path / "q", size=32)
    recipe = json.loads((out / "recipe.json").read_text())
    assert recipe["key"] == "csg2d-qualitative@1" and recipe["image_size"] == 32
    assert 0 < recipe["mean_coverage"] < 1


@pytest.mark.skipif(GENERATOR_VERSION != "handcrafted-1", reason="generator changed since v1; the frozen sets stand")
def test_recipes_reproduce_the_frozen_programs():
    for name in ("csg2d-test", "csg2d-hard"):
        assert ts.build_testset(name, workers=2) == ts.testset_programs(name), name
