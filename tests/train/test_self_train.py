"""Self-training keeps only verified results, bars test programs, and fine-tunes on them."""

import json

import numpy as np
import pytest
import torch

from img2prog.data.barring import BarSet
from img2prog.lang.csg2d import rendering
from img2prog.models.native import NativeModel, preset
from img2prog.search.base import Candidate, SearchResult
from img2prog.train import self_train as ST

GOOD = "(Circle 6 8 8)"
TEST = "(Quad 8 8 6 4 0)"  # plays a test-set program
NEAR = "(Circle 5 8 8)"  # close to GOOD's picture but not exact


def result(program, iou, perfect):
    return SearchResult(program=program, score=iou, perfect=perfect, strategy="stub", iou=iou)


def test_select_verified_keeps_perfect_and_threshold_and_bars_tests():
    imgs = np.stack([rendering.render_gray(p, 64) for p in (GOOD, TEST, GOOD, GOOD, "(Circle 2 3 3)")])
    bar = BarSet([TEST, "(Circle 2 3 3)"])
    results = [
        result(GOOD, 1.0, True),  # verified: kept
        result(TEST, 1.0, True),  # a test program (and a test target): barred
        result(NEAR, 0.97, False),  # best found above the threshold: kept
        result(NEAR, 0.5, False),  # below the threshold: dropped
        result("(+ (Circle 2 3 3) (Circle 2 3 3))", 1.0, True),  # test picture, other spelling: barred
    ]
    kept, counts = ST.select_verified(imgs, results, threshold=0.9, bar=bar)
    assert [v.index for v in kept] == [0, 2]
    assert [v.perfect for v in kept] == [True, False]
    assert counts == {"searched": 5, "perfect": 1, "above_threshold": 1, "below_threshold": 1,
                      "barred_program": 0, "barred_target": 2, "kept": 2}
    # A test program found for a non-test target is barred too.
    kept, counts = ST.select_verified(imgs[:1], [result(TEST, 1.0, True)], 0.9, bar)
    assert kept == [] and counts["barred_program"] == 1
    # pair_with="render" trains on the program's own picture.
    kept, _ = ST.select_verified(imgs[2:3], [result(NEAR, 0.97, False)], 0.9, None, pair_with="render")
    assert np.array_equal(kept[0].image, rendering.render_gray(NEAR, 64))


class TableProposer:
    """Answers each target with a fixed program (looked up by image)."""

    def __init__(self, table):
        self.table = {rendering.render_gray(k, 64).tobytes(): v for k, v in table.items()}

    def propose(self, images, n=1, *, method="sample", temperature=1.0, top_p=1.0, seed=None):
        out = []
        for im in np.asarray(images):
            g = im[..., 0] if im.ndim == 3 else im
            out.append([Candidate(self.table[np.ascontiguousarray(g).tobytes()], -1.0)] * (1 if method == "greedy" else n))
        return out


def test_self_train_round_fine_tunes_on_kept_samples_only(tmp_path):
    torch.manual_seed(0)
    model = NativeModel(preset("tiny", max_len=32))
    start = {k: v.clone() for k, v in model.state_dict().items()}
    targets = [GOOD, TEST, "(Quad 4 4 2 2 0)"]
    imgs = np.stack([rendering.render_gray(p, 64) for p in targets])
    proposer = TableProposer({GOOD: GOOD, TEST: TEST, "(Quad 4 4 2 2 0)": "(Circle 1 12 12)"})
    cfg = ST.SelfTrainConfig(rounds=1, strategy="best-of-n", samples=2, steps=3, batch_size=4, lr=1e-3,
                             synthetic_ratio=0.5, synthetic_pool=8, synthetic_profile="default")
    reports = ST.self_train(cfg, imgs, tmp_path, model=model, proposer_factory=lambda m: proposer,
                            bar=BarSet([TEST]), echo=lambda *_: None)
    (rep,) = reports
    assert rep["kept"] == 1 and rep["perfect"] == 1 and rep["below_threshold"] == 1
    assert rep["barred_program"] + rep["barred_target"] == 1
    assert rep["loss_first"] is not None and set(rep["greedy_after"]) == {"f1", "iou", "pixel_accuracy", "perfect"}
    assert any(not torch.equal(start[k], v) for k, v in model.state_dict().items())  # it trained
    assert json.loads((tmp_path / "rounds.jsonl").read_text().splitlines()[0])["kept"] == 1
    assert (tmp_path / "model" / "config.json").is_file() and (tmp_path / "round-1" / "config.json").is_file()


def test_finetune_learns_the_kept_pair():
    torch.manual_seed(0)
    model = NativeModel(preset("tiny", max_len=32))
    imgs = rendering.render_gray(GOOD, 64)[None]
    cfg = ST.SelfTrainConfig(steps=30, batch_size=4, lr=3e-3, synthetic_ratio=0.0)
    losses = ST.finetune(model, imgs, [GOOD], cfg, None, 1)
    assert losses[-1] < 0.5 * losses[0]


def test_config_validation():
    with pytest.raises(ValueError, match="pair_with"):
        ST.SelfTrainConfig(pair_with="both")
    with pytest.raises(ValueError, match="synthetic_ratio"):
        ST.SelfTrainConfig(synthetic_ratio=1.0)
