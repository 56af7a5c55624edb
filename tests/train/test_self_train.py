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


class StubModel:
    """Stands in for NativeModel.generate with fixed greedy and sampled answers per image."""

    def __init__(self, greedy, samples):
        self.greedy, self.samples = greedy, samples
        self.device = torch.device("cpu")

    def generate(self, images, method="greedy", num_return_sequences=1, **kw):
        rows = self.greedy if method == "greedy" else self.samples
        return [[(t, -1.0) for t in rows[i]] for i in range(len(images))]


def test_best_of_n_sampled_matches_brute_force():
    targets = ["(Circle 6 8 8)", "(Quad 8 8 6 4 0)"]
    imgs = np.stack([rendering.render_gray(p, 64) for p in targets])
    greedy = [["(Circle 5 8 8)"], ["(Quad 8 8 6 4 0)"]]
    samples = [["(Circle 4 8 8)", "(+ (Circle 6 8 8) (Circle 6 8 8))", "(Circle 6 8 8)", "(Circle 7 8 8"],
               ["(Circle 2 2 2)", "(Quad 8 8 6 4 180)", "(Quad 8 8 6 4 0)", "(Circle 3 8 8)"]]
    got = ST.best_of_n_sampled(StubModel(greedy, samples), imgs, 4, workers=0)

    def iou(p, t):
        try:
            a, b = rendering.mask(p, 64), rendering.mask(t, 64)
        except Exception:
            return -1.0
        return (a & b).sum() / max((a | b).sum(), 1)

    for i, t in enumerate(targets):
        cands = greedy[i] + samples[i]
        best = max(iou(c, t) for c in cands)
        shortest = min((c for c in cands if iou(c, t) == best), key=len)
        assert got[i].program == shortest and got[i].perfect and got[i].iou == pytest.approx(1.0)
    # a 180° quad draws the same picture but a longer text than the 0° one: the tie goes to the shorter
    assert got[1].program == "(Quad 8 8 6 4 0)" and got[0].program == "(Circle 6 8 8)"


def test_best_of_n_sampled_never_worse_than_greedy():
    torch.manual_seed(0)
    model = NativeModel(preset("tiny", max_len=32)).eval()
    imgs = np.stack([rendering.render_gray(p, 64) for p in ("(Circle 6 8 8)", "(Quad 4 4 6 6 0)", "(Circle 3 3 3)")])
    from img2prog.train.rewards import iou_reward

    greedy = [r[0][0] for r in model.generate(imgs)]
    got = ST.best_of_n_sampled(model, imgs, 6, seed=1, workers=0, chunk=2)
    g_iou = np.array(iou_reward(greedy, imgs, scale=1.0, invalid=0.0))
    assert all(r.iou >= g - 1e-12 for r, g in zip(got, g_iou))
    assert all(r.samples == 6 and r.strategy == "best-of-n" for r in got)


def test_self_train_fresh_pool_per_round_and_eval_sets(tmp_path):
    torch.manual_seed(0)
    model = NativeModel(preset("tiny", max_len=32))
    pools = {1: [GOOD, "(Quad 4 4 2 2 0)"], 2: [GOOD, "(Circle 3 4 4)"]}
    seen = []

    def images_for(k):
        seen.append(k)
        return np.stack([rendering.render_gray(p, 64) for p in pools[k]])

    table = TableProposer({p: p for ps in pools.values() for p in ps})
    cfg = ST.SelfTrainConfig(rounds=2, samples=2, steps=2, batch_size=4, synthetic_ratio=0.0)
    evals = {"held-out": np.stack([rendering.render_gray(TEST, 64)])}
    reports = ST.self_train(cfg, images_for, tmp_path, model=model, proposer_factory=lambda m: table,
                            bar=BarSet([TEST]), eval_sets=evals, echo=lambda *_: None)
    assert seen == [1, 2]
    assert [r["kept"] for r in reports] == [2, 2]
    assert reports[1]["eval_before"] == reports[0]["eval"]  # the chain of held-out reports
    assert set(reports[0]["eval"]) == {"held-out"} and 0 <= reports[0]["eval"]["held-out"]["f1"] <= 1


def test_unlabeled_pool_sources_rounds_and_errors():
    a = ST.unlabeled_pool("simple:3,shift:2", round_=1, size=64)
    b = ST.unlabeled_pool("simple:3,shift:2", round_=2, size=64)
    assert a.shape == (5, 64, 64, 3) and a.dtype == np.uint8
    assert not np.array_equal(a, b)  # a fresh pool each round
    assert np.array_equal(a, ST.unlabeled_pool({"simple": 3, "shift": 2}, round_=1, size=64))
    assert ST.parse_pool(" hard:10 , shift:4") == {"hard": 10, "shift": 4}
    for bad, msg in (("hardest:3", "choose from"), ("hard", "NAME:COUNT"), ("hard:0", "positive"), ("", "empty")):
        with pytest.raises(ValueError, match=msg):
            ST.parse_pool(bad)
