"""ProgramStream: deterministic, disjoint shards, exact resume, exact images at any size."""

from __future__ import annotations

import numpy as np
import pytest

from img2prog.data.barring import BarSet
from img2prog.data.checks import OperandRef, image_key, remove_operand
from img2prog.data.stream import ProgramStream, StreamConfig
from img2prog.data.testsets import standard_bar
from img2prog.lang.csg2d.ast import Difference, Union
from img2prog.lang.csg2d.parser import parse
from img2prog.lang.csg2d.rendering import render_gray

# bar_standard=False keeps most tests free of the test-set fixture; one test covers it.
CFG = StreamConfig(profile="default", seed=3, image_size=64, block_size=16, bar_standard=False)


def _programs(stream, n):
    return [s["program"] for s in stream.take(n)]


def test_deterministic_per_seed_and_shard():
    a = _programs(ProgramStream(CFG, 1, 3), 40)
    b = _programs(ProgramStream(CFG, 1, 3), 40)
    assert a == b
    assert a != _programs(ProgramStream(CFG, 0, 3), 40)
    other_seed = StreamConfig(**{**CFG.to_dict(), "seed": 4})
    assert a != _programs(ProgramStream(other_seed, 1, 3), 40)


def test_shards_never_emit_the_same_program():
    shards = [set(_programs(ProgramStream(CFG, s, 4), 60)) for s in range(4)]
    union = set().union(*shards)
    assert len(union) == sum(len(s) for s in shards) == 240


@pytest.mark.parametrize("start", [0, 5, 16, 21, 47])
def test_exact_resume_from_any_index(start):
    full = ProgramStream(CFG, 0, 2).take(60)
    resumed = ProgramStream(CFG, 0, 2, start=start).take(60 - start)
    assert [s["program"] for s in resumed] == [s["program"] for s in full[start:]]
    assert [s["index"] for s in resumed] == list(range(start, 60))
    assert all(np.array_equal(a["image"], b["image"]) for a, b in zip(resumed, full[start:]))


def test_images_are_exact_renderings_at_the_stream_size():
    for s in ProgramStream(CFG).take(20):
        assert s["image"].shape == (64, 64) and s["image"].dtype == np.uint8
        assert np.array_equal(s["image"], render_gray(s["program"], 64))
    rgb = ProgramStream(StreamConfig(**{**CFG.to_dict(), "rgb": True, "image_size": 32})).take(3)
    assert rgb[0]["image"].shape == (32, 32, 3)
    assert np.array_equal(rgb[0]["image"][..., 1], render_gray(rgb[0]["program"], 32))


def test_guarantees_hold_at_256_and_at_the_stream_size():
    def operands(p):
        stack = [((), p)]
        while stack:
            path, node = stack.pop()
            if isinstance(node, (Union, Difference)):
                for i, c in enumerate(node.operands):
                    yield OperandRef(path, i, "+" if isinstance(node, Union) else "-")
                    stack.append((path + (i,), c))

    samples = ProgramStream(StreamConfig(**{**CFG.to_dict(), "image_size": 32})).take(16)
    for s in samples:
        p = parse(s["program"])
        for ref in operands(p):
            edited = remove_operand(p, ref)
            for size in (256, 32):
                assert not np.array_equal(render_gray(edited, size), render_gray(p, size)), (s["program"], ref, size)
    keys = [image_key(s["image"]) for s in samples]
    assert len(set(keys)) == len(keys)  # no duplicate image within a block (16 = one block)


def test_mixture_weights_are_respected():
    cfg = StreamConfig(profile="simple=3,holes=1", seed=1, image_size=32, block_size=200, bar_standard=False)
    names = [s["profile"] for s in ProgramStream(cfg).take(200)]
    share = names.count("simple") / len(names)
    assert 0.65 < share < 0.85


def test_bars_given_programs_and_the_standard_sets_by_default():
    first = _programs(ProgramStream(CFG), 16)
    barred = ProgramStream(CFG, bar=BarSet(first[:8])).take(16)
    assert not {s["program"] for s in barred} & set(first[:8])
    cfg = StreamConfig(profile="default", seed=3, image_size=64, block_size=16)
    stream = ProgramStream(cfg)
    std = standard_bar()
    assert set(std.programs) <= set(stream.bar.programs)
    keys = std.image_keys(256)
    for s in stream.take(32):
        assert s["program"] not in std
        assert image_key(render_gray(s["program"])) not in keys


def test_config_is_validated():
    with pytest.raises(KeyError):
        StreamConfig(profile="nope")
    with pytest.raises(ValueError):
        StreamConfig(image_size=0)
    with pytest.raises(ValueError):
        ProgramStream(CFG, shard=2, num_shards=2)
