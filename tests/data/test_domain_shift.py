"""The domain-shift set: deterministic, black-on-white, the documented columns and mix."""

import random

import numpy as np
import pytest

from img2prog.data import domain_shift as D


def test_set_columns_and_convention():
    ds = D.load_domain_shift(size=64)
    assert ds.column_names == ["program", "image", "source", "kind"]
    assert len(ds) == len(D.GLYPHS) + len(D.SILHOUETTE_KINDS) * D.SILHOUETTES_PER_KIND
    assert set(ds["program"]) == {None}
    assert set(ds["source"]) == {"glyph", "silhouette"}
    for im in ds["image"]:
        a = np.asarray(im)
        assert a.shape == (64, 64, 3)
        assert set(np.unique(a)) <= {0, 255}  # pure black on white, no anti-aliasing
        black = (a[..., 0] == 0).mean()
        assert 0.01 < black < 0.6  # a shape, on a mostly white canvas
        # White background: the border is white (shapes are centred).
        assert (a[0] == 255).all() and (a[-1] == 255).all()


def test_deterministic():
    a = D.domain_shift_images(64)
    D._cached.cache_clear()
    b = np.stack([np.asarray(im) for im in D.load_domain_shift(64)["image"]])
    assert np.array_equal(a, b)
    r1, r2 = random.Random(5), random.Random(5)
    assert np.array_equal(D.draw_silhouette("star", r1, 64)[0], D.draw_silhouette("star", r2, 64)[0])


def test_items_differ_and_glyphs_are_readable():
    ims = D.domain_shift_images(64)
    keys = {im.tobytes() for im in ims}
    assert len(keys) == len(ims)  # no two items draw the same picture
    o, i = D.draw_glyph("O", 64) == 0, D.draw_glyph("I", 64) == 0
    assert o.sum() > i.sum()  # an O has more ink than an I
    ring = D.draw_silhouette("ring", random.Random(0), 64)[0] == 0
    assert not ring[32, 32]  # a ring has a hole in the middle


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown silhouette kind"):
        D.draw_silhouette("blob", random.Random(0))
    with pytest.raises(ValueError, match="too small"):
        D.load_domain_shift(8)
