"""The unlabeled domain-shift pool never contains a test picture or a test character."""

import numpy as np
import pytest

from img2prog.data import domain_shift as DS


def test_pool_is_deterministic_distinct_and_disjoint_from_the_test_set():
    a = DS.domain_shift_pool(40, seed=3, size=64)
    b = DS.domain_shift_pool(40, seed=3, size=64)
    assert a.shape == (40, 64, 64, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b)
    assert not np.array_equal(a, DS.domain_shift_pool(40, seed=4, size=64))
    keys = {im[..., 0].tobytes() for im in a}
    assert len(keys) == 40  # no picture twice
    test = {im.tobytes() for im, _, _ in DS.domain_shift_items(64)}
    assert not keys & test
    assert set(np.unique(a)) <= {0, 255} and all((im == 0).any() for im in a)


def test_pool_glyphs_avoid_test_characters():
    assert not set(DS.POOL_GLYPHS) & set(DS.GLYPHS)
    glyphs = DS.domain_shift_pool(10, seed=5, size=64, glyph_share=1.0)
    assert len(glyphs) == 10


def test_pool_refuses_the_test_seed_and_bad_arguments():
    with pytest.raises(ValueError, match="test set's own seed"):
        DS.domain_shift_pool(5, seed=DS.SEED)
    with pytest.raises(ValueError, match="glyph_share"):
        DS.domain_shift_pool(5, seed=1, glyph_share=1.5)
    with pytest.raises(ValueError, match="n must be"):
        DS.domain_shift_pool(-1, seed=1)
