"""Rewards against hand-computed values.

At 16 px one csg2d unit is one pixel; ``(Quad 4 4 4 4 0)`` covers the 5×5 block of rows
10..14 and columns 2..6 (checked below, so the hand counts stand on a verified fact).
"""

import numpy as np
import pytest

from img2prog.lang.csg2d import rendering
from img2prog.train import rewards as R

QUAD = "(Quad 4 4 4 4 0)"  # 7 tokens: (Quad 4 4 4 4 0 )


@pytest.fixture
def block() -> np.ndarray:
    m = np.zeros((16, 16), dtype=bool)
    m[10:15, 2:7] = True
    assert np.array_equal(rendering.render_gray(QUAD, 16) == 0, m)  # the fact the counts use
    return m


def as_gray(mask: np.ndarray) -> np.ndarray:
    return np.where(mask, 0, 255).astype(np.uint8)


def test_iou_reward_hand_values(block):
    left = np.zeros_like(block)
    left[10:15, 2:5] = True  # 15 of the quad's 25 pixels
    targets = np.stack([as_gray(block), as_gray(left), as_gray(block), as_gray(block)])
    got = R.iou_reward([QUAD, QUAD, "", "(Circle 3"], targets)
    # exact, 15/25, empty vs 25 black, unparsable
    assert got == pytest.approx([10.0, 6.0, 0.0, -10.0])


def test_iou_reward_options_and_input_forms(block):
    rgb = np.repeat(as_gray(block)[..., None], 3, axis=-1)
    empty = np.zeros_like(block)
    assert R.iou_reward([QUAD], rgb[None], scale=1.0) == pytest.approx([1.0])  # RGB targets
    assert R.iou_reward([QUAD], [block]) == pytest.approx([10.0])  # a list of bool masks
    assert R.iou_reward([""], empty[None]) == pytest.approx([10.0])  # both empty: exact
    assert R.iou_reward(["(Quad 99"], [block], invalid=-1.0) == [-1.0]
    # Grey (anti-aliased) target pixels darker than 128 count as black.
    grey = np.where(block, 100, 200).astype(np.uint8)
    assert R.iou_reward([QUAD], grey[None]) == pytest.approx([10.0])
    # Chat-style completions (TRL conversational format).
    assert R.iou_reward([[{"role": "assistant", "content": QUAD}]], [block]) == pytest.approx([10.0])


def test_pixel_accuracy_and_length(block):
    left = np.zeros_like(block)
    left[10:15, 2:5] = True
    acc = R.pixel_accuracy_reward([QUAD, "", "(Circle"], np.stack([left, left, left]))
    assert acc == pytest.approx([(256 - 10) / 256, (256 - 15) / 256, 0.0])
    assert R.length_penalty([QUAD, "", "(+ (Circle 1 2 3) (Circle 1 2 3))", "junk"], coef=0.5) == pytest.approx(
        [-3.5, 0.0, -0.5 * 12, 0.0])  # (+ · 5 · 5 · )


def test_combined_reward_is_the_weighted_sum(block):
    left = np.zeros_like(block)
    left[10:15, 2:5] = True
    cfg = R.RewardConfig(iou=1.0, iou_scale=10.0, pixel_accuracy=2.0, length=0.1)
    got = cfg([QUAD, "(Circle"], [left, left])
    assert got == pytest.approx([6.0 + 2 * (246 / 256) - 0.7, -10.0])


def test_mismatched_batches_fail_clearly(block):
    with pytest.raises(ValueError, match="2 completions for 1 targets"):
        R.iou_reward([QUAD, QUAD], [block])
    with pytest.raises(ValueError, match="different shapes"):
        R.iou_reward([QUAD, QUAD], [block, np.zeros((32, 32), bool)])


def test_trl_adapter(block):
    fn = R.trl_reward(R.iou_reward, "image", scale=1.0)
    assert fn(prompts=["p"], completions=[QUAD], image=[as_gray(block)]) == pytest.approx([1.0])
    with pytest.raises(KeyError, match="image"):
        fn(prompts=["p"], completions=[QUAD])
