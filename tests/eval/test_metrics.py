"""Metrics against hand-counted cases and against a plain transcription of SPEC §2."""

from __future__ import annotations

import random

import numpy as np
import pytest
from PIL import Image

from img2prog.eval.metrics import (
    REPORT_KEYS,
    Metrics,
    compute_metrics,
    image_plane,
    metrics_from_masks,
    precision_recall_f1,
    score_batch,
    target_array,
)
from img2prog.lang import ProgramError
from img2prog.lang.csg2d import render

W, B = 255, 0


def rgb(gray_rows) -> np.ndarray:
    """A small (H, W, 3) uint8 image from rows of grey values."""
    g = np.array(gray_rows, dtype=np.uint8)
    return np.repeat(g[:, :, None], 3, axis=2)


def white(n: int, side: int = 4) -> np.ndarray:
    return np.full((n, side, side, 3), W, np.uint8)


# --------------------------------------------------------------------------------------
# The reference formulas
# --------------------------------------------------------------------------------------


def test_precision_recall_f1_rules():
    assert precision_recall_f1(0, 0, 0) == (1.0, 0.0, 0.0)  # nothing anywhere
    assert precision_recall_f1(0, 0, 7) == (1.0, 0.0, 0.0)  # nothing predicted black
    assert precision_recall_f1(0, 5, 0) == (0.0, 0.0, 0.0)  # black predicted, none in targets
    p, r, f = precision_recall_f1(3, 1, 2)
    assert (p, r) == (0.75, 0.6)
    assert f == pytest.approx(2 * 0.75 * 0.6 / 1.35)


def test_empty_baseline_pixel_accuracy_is_white_fraction():
    t1 = white(1)[0]
    t1[:2, :2] = B  # 4 black pixels = 12 black values, 36 white values
    t2 = white(1)[0]  # all white
    report = compute_metrics(["", ""], np.stack([t1, t2]))
    assert report.pixel_accuracy == pytest.approx((12 / 16 + 1.0) / 2)
    assert report.parse_rate == 1.0
    assert (report.tp, report.fp, report.fn) == (0, 0, 12)
    assert (report.precision, report.recall, report.f1_score) == (1.0, 0.0, 0.0)
    # IoU: t1 predicts nothing of 12 black values → 0; t2 both empty → 1 (documented).
    assert report.iou == pytest.approx(0.5)
    assert report.perfect == pytest.approx(0.5)
    assert report.n == 2


def test_hand_counted_masks():
    target = rgb([[B, B], [W, W]])
    pred = np.array([[True, False], [True, False]])  # True = black
    report = metrics_from_masks(pred[None], target[None])
    # per channel: TP at (0,0), FP at (1,0), FN at (0,1); 3 channels each.
    assert (report.tp, report.fp, report.fn) == (3, 3, 3)
    assert report.pixel_accuracy == 0.5  # (0,0) and (1,1) agree
    assert report.precision == 0.5 and report.recall == 0.5 and report.f1_score == 0.5
    assert report.iou == pytest.approx(1 / 3)
    assert report.perfect == 0.0


def test_counts_run_over_the_three_channels():
    target = rgb([[W, W], [W, W]])
    target[0, 0] = (0, 255, 0)  # black in R and B only
    pred = np.full((1, 2, 2), W, np.uint8)
    pred[0, 0, 0] = B  # a greyscale prediction: black in all three channels there
    report = metrics_from_masks(pred, target[None])
    assert (report.tp, report.fp, report.fn) == (2, 1, 0)
    # equal values: pixel (0,0) agrees in R and B (2 of 3), the other 3 pixels in all 3.
    assert report.pixel_accuracy == pytest.approx((2 + 9) / 12)


def test_unparsable_sample_contribution():
    target = white(1)[0]
    target[:2, :2] = B  # 12 black values, 36 non-black
    for bad in ["(Circle", None, "(Circle 99 8 8)", "(Quad 1 2 3 4 5) junk"]:
        report = compute_metrics([bad], target[None])
        assert report.parse_rate == 0.0
        assert report.pixel_accuracy == 0.0
        assert (report.tp, report.fp, report.fn) == (0, 36, 12)
        assert (report.precision, report.recall, report.f1_score) == (0.0, 0.0, 0.0)
        assert report.iou == 0.0 and report.perfect == 0.0
        assert report.rows[0]["parsed"] is False and report.rows[0]["error"]


def test_unparsable_counts_add_to_parsed_ones():
    prog = "(Circle 4 8 8)"
    good = render(prog, 32)
    black = int(np.count_nonzero(good == 0))
    report = compute_metrics([prog, "(Circle 4 8"], np.stack([good, good]))
    assert report.tp == black
    assert report.fp == good.size - black  # only from the unparsable sample
    assert report.fn == black
    assert report.pixel_accuracy == 0.5 and report.parse_rate == 0.5 and report.perfect == 0.5
    assert report.iou == 0.5


def test_nothing_predicted_black_gives_precision_one_recall_zero():
    target = render("(Quad 8 8 6 6 0)", 16)
    report = compute_metrics([""], target[None])
    assert report.tp == 0 and report.fp == 0 and report.fn > 0
    assert (report.precision, report.recall, report.f1_score) == (1.0, 0.0, 0.0)


def test_black_predicted_on_white_targets_has_zero_recall_not_nan():
    report = compute_metrics(["(Circle 4 8 8)"], white(1, 16))
    assert report.tp == 0 and report.fp > 0 and report.fn == 0
    assert (report.precision, report.recall, report.f1_score) == (0.0, 0.0, 0.0)
    assert report.iou == 0.0


def test_empty_input():
    report = compute_metrics([], white(0))
    assert report.n == 0
    assert report.to_dict() == {
        "pixel_accuracy": 0.0,
        "parse_rate": 0.0,
        "precision": 1.0,
        "recall": 0.0,
        "f1_score": 0.0,
        "iou": 0.0,
        "perfect": 0.0,
        "n": 0,
    }


def test_perfect_and_iou_of_exact_renderings():
    progs = ["(Circle 3 8 8)", "(+ (Quad 8 10 2 8 0) (Quad 8 3 2 2 0))", ""]
    targets = np.stack([render(p, 64) for p in progs])
    report = compute_metrics(progs, targets)
    assert report.pixel_accuracy == 1.0 and report.perfect == 1.0 and report.iou == 1.0
    assert report.precision == 1.0 and report.recall == 1.0 and report.f1_score == 1.0
    assert report.tp == int(np.count_nonzero(targets == 0)) and report.fp == report.fn == 0
    # One pixel off: no longer perfect, accuracy drops by exactly 3 values.
    targets[0, 0, 0] = 0
    report = compute_metrics(progs, targets)
    assert report.perfect == pytest.approx(2 / 3)
    assert report.rows[0]["pixel_accuracy"] == 1 - 3 / (64 * 64 * 3)
    assert report.rows[0]["fn"] == 3


# --------------------------------------------------------------------------------------
# Agreement with a plain transcription of SPEC §2 (the seed's loop, written from the spec)
# --------------------------------------------------------------------------------------


def spec_metrics(programs, targets, size):
    accs, parsed = [], []
    tp = fp = fn = 0
    for prog, target in zip(programs, targets):
        tb = target == 0
        try:
            gen = render(prog, size)
        except ProgramError:  # includes RenderError: "fails to render" = unparsable
            accs.append(0.0), parsed.append(0.0)
            fp += int(np.sum(~tb))
            fn += int(np.sum(tb))
            continue
        accs.append(float(np.mean(gen == target))), parsed.append(1.0)
        gb = gen == 0
        tp += int(np.sum(gb & tb))
        fp += int(np.sum(gb & ~tb))
        fn += int(np.sum(~gb & tb))
    if tp + fp > 0:
        p, r = tp / (tp + fp), tp / (tp + fn)
    else:
        p, r = float(tp == 0 and fp == 0), 0.0
    f = 2 * p * r / (p + r) if p + r > 0 else 0.0
    return sum(accs) / len(accs), sum(parsed) / len(parsed), p, r, f


def random_program(rng: random.Random, depth: int = 0) -> str:
    roll = rng.random()
    if depth < 2 and roll < 0.4:
        op = rng.choice("+-")
        return f"({op} " + " ".join(random_program(rng, depth + 1) for _ in range(rng.randint(2, 3))) + ")"
    if roll < 0.7:
        return f"(Circle {rng.randint(0, 8)} {rng.randint(0, 15)} {rng.randint(0, 15)})"
    return f"(Quad {rng.randint(0, 15)} {rng.randint(0, 15)} {rng.randint(1, 12)} {rng.randint(1, 12)} {rng.choice(range(0, 360, 45))})"


def test_matches_spec_transcription_on_random_programs():
    rng = random.Random(0)
    size = 48
    targets = np.stack([render(random_program(rng), size) for _ in range(40)])
    preds = []
    for i in range(40):
        kind = i % 5
        if kind == 0:
            preds.append(random_program(rng)[:-1])  # truncated: unparsable
        elif kind == 1:
            preds.append("")
        else:
            preds.append(random_program(rng))
    ours = compute_metrics(preds, targets, chunk_size=7)
    ref = spec_metrics(preds, targets, size)
    got = (ours.pixel_accuracy, ours.parse_rate, ours.precision, ours.recall, ours.f1_score)
    assert got == pytest.approx(ref, rel=1e-12, abs=1e-12)


# --------------------------------------------------------------------------------------
# Inputs, rows, chunking, compatibility
# --------------------------------------------------------------------------------------

PROGS = ["(Circle 3 8 8)", "(Circle 5", "(Quad 8 8 6 4 45)", None, ""]
TARGET_PROGS = ["(Circle 3 8 8)", "(Circle 5 8 8)", "(Quad 8 8 6 4 0)", "(Circle 2 4 4)", "(Circle 1 1 1)"]


@pytest.fixture(scope="module")
def targets32() -> np.ndarray:
    return np.stack([render(p, 32) for p in TARGET_PROGS])


def test_target_kinds_agree(targets32):
    expected = compute_metrics(PROGS, targets32).to_dict()
    as_list = [t for t in targets32]
    as_pil = [Image.fromarray(t) for t in targets32]
    as_grey_pil = [Image.fromarray(t[:, :, 0]) for t in targets32]  # mode L → RGB
    as_rows = [{"image": im, "program": p} for im, p in zip(as_pil, TARGET_PROGS)]
    for targets in (as_list, as_pil, as_grey_pil, as_rows, targets32[..., 0]):
        assert compute_metrics(PROGS, targets).to_dict() == expected


def test_dataset_targets(targets32):
    from img2prog.data.io import programs_to_dataset

    ds = programs_to_dataset(TARGET_PROGS, size=32)
    assert compute_metrics(PROGS, ds).to_dict() == compute_metrics(PROGS, targets32).to_dict()


def test_dataset_targets_in_any_mode(targets32):
    """Dataset cells are decoded without the RGB conversion; colour and grey must still count right."""
    from datasets import Dataset, Features
    from datasets import Image as ImageFeature

    colour = targets32.copy()
    colour[0, :8, :8] = (0, 255, 0)  # black in R and B only
    images = [Image.fromarray(colour[0]), Image.fromarray(targets32[1, :, :, 0])] + [
        Image.fromarray(t).convert("1") for t in targets32[2:]
    ]
    assert [im.mode for im in images] == ["RGB", "L", "1", "1", "1"]
    for feature in (ImageFeature(), ImageFeature(mode="RGB")):
        ds = Dataset.from_dict({"image": images}, features=Features({"image": feature}))
        expected = compute_metrics(PROGS, np.concatenate([colour[:1], targets32[1:]]))
        assert compute_metrics(PROGS, ds).to_dict(rows=True) == expected.to_dict(rows=True)


def test_chunking_does_not_change_results(targets32):
    whole = compute_metrics(PROGS, targets32)
    for chunk in (1, 2, 3):
        assert compute_metrics(PROGS, targets32, chunk_size=chunk).to_dict(rows=True) == whole.to_dict(
            rows=True
        )


def test_rows(targets32):
    report = compute_metrics(PROGS, targets32)
    assert [r["index"] for r in report.rows] == list(range(5))
    assert [r["parsed"] for r in report.rows] == [True, False, True, False, True]
    r0, r1, r3, r4 = report.rows[0], report.rows[1], report.rows[3], report.rows[4]
    assert r0["program"] == "(Circle 3 8 8)" and r0["perfect"] and r0["error"] is None
    assert r0["length"] == 14 and r0["size"] == 1
    assert "offset" in r1["error"] and r1["size"] is None and r1["length"] == len("(Circle 5")
    assert r3["program"] is None and r3["error"] == "no program" and r3["length"] is None
    assert r4["program"] == "" and r4["size"] is not None
    assert sum(r["tp"] for r in report.rows) == report.tp
    assert report.seconds > 0


def test_to_dict_keys(targets32):
    report = compute_metrics(PROGS, targets32)
    assert tuple(report.to_dict()) == REPORT_KEYS
    assert report.to_dict(rows=True)["rows"] == report.rows
    assert "iou=" in str(report)


def test_program_objects_are_accepted(targets32):
    from img2prog.lang.csg2d import parse

    objects = [parse(p) if p is not None and p != "(Circle 5" else p for p in PROGS]
    assert compute_metrics(objects, targets32).to_dict() == compute_metrics(PROGS, targets32).to_dict()


def test_input_errors(targets32):
    with pytest.raises(ValueError, match="4 programs but 5 targets"):
        compute_metrics(PROGS[:4], targets32)
    with pytest.raises(ValueError, match="size=64"):
        compute_metrics(PROGS, targets32, size=64)
    mixed = [targets32[0], render("(Circle 3 8 8)", 16)]
    with pytest.raises(ValueError, match="target 1 is 16×16 but earlier targets are 32×32"):
        compute_metrics(["", ""], mixed)
    with pytest.raises(ValueError, match="square"):
        compute_metrics([""], [np.full((4, 6, 3), 255, np.uint8)])
    with pytest.raises(TypeError, match="uint8"):
        compute_metrics([""], [np.ones((4, 4, 3), np.float32)])
    with pytest.raises(ValueError, match="'image'"):
        compute_metrics([""], [{"program": ""}])


def test_metrics_from_masks_matches_rendering(targets32):
    from img2prog.lang.csg2d import render_batch

    gray, errors = render_batch(PROGS[:3] + ["", ""], 32)
    errors[3] = "no program"  # stand in for the None prediction
    via_masks = metrics_from_masks(gray == 0, targets32, errors=errors)
    via_gray = metrics_from_masks(gray, targets32, errors=errors)
    rendered = compute_metrics(PROGS, targets32)
    assert via_masks.to_dict() == via_gray.to_dict() == rendered.to_dict()
    # A list with None entries marks those unparsable.
    as_list = [g if e is None else None for g, e in zip(gray, errors)]
    assert metrics_from_masks(as_list, targets32).to_dict() == rendered.to_dict()


def test_image_plane():
    grey = rgb([[B, W], [7, W]])
    plane = image_plane(grey)
    assert plane.shape == (2, 2) and plane.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(plane, [[B, W], [7, W]])
    colour = grey.copy()
    colour[1, 1, 2] = 3
    assert image_plane(colour) is colour
    np.testing.assert_array_equal(image_plane(np.array([[True, False]])), [[B, W]])
    with pytest.raises(TypeError):
        image_plane(np.zeros((2, 2), np.float32))


def test_target_array():
    grey = np.array([[B, W], [7, W]], np.uint8)
    for x in (grey, Image.fromarray(grey), {"image": Image.fromarray(grey).convert("RGB")}, rgb(grey)):
        np.testing.assert_array_equal(target_array(x), rgb(grey))
    with pytest.raises(ValueError, match="target 3"):
        target_array(np.zeros((2, 2, 4), np.uint8), 3)


def test_score_batch_parsed_flags_override_pixels():
    target = rgb([[B, W], [W, W]])[None]
    pred = target[..., 0].copy()  # a perfect prediction ...
    (s,) = score_batch(pred, target, parsed=[False])  # ... of a sample that did not render
    assert (s.pixel_accuracy, s.tp, s.fp, s.fn, s.perfect) == (0.0, 0, 9, 3, False)


def test_rendering_in_processes(tmp_path):
    # 600 programs at a tiny size: big enough for the renderer to use worker processes.
    progs = ["(Circle 3 8 8)", "(Circle 3 8"] * 300
    targets = np.stack([render("(Circle 3 8 8)", 8)] * 600)
    report = compute_metrics(progs, targets, workers=2)
    assert report.parse_rate == 0.5 and report.perfect == 0.5
    assert all("offset" in r["error"] for r in report.rows[1::2])


def test_metrics_compat_class(targets32):
    rows = [{"program": p, "image": Image.fromarray(t)} for p, t in zip(TARGET_PROGS, targets32)]
    m = Metrics(PROGS, rows)
    report = compute_metrics(PROGS, targets32)
    for k in ("pixel_accuracy", "parse_rate", "precision", "recall", "f1_score"):
        assert getattr(m, k) == getattr(report, k)
    assert m.report.iou == report.iou
    assert str(m).startswith("Metrics(pixel_accuracy=")
    with pytest.raises(ValueError):
        Metrics(PROGS[:2], rows)
