"""HFProposer: a VLM behind the search Proposer contract."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("transformers", reason="the Hugging Face backend needs the 'hf' extra: pip install 'img2prog[hf]'")

from img2prog.lang import get_language
from img2prog.models.hf import backend as B
from img2prog.models.hf.proposer import NO_PROGRAM, HFProposer
from img2prog.search.base import Candidate, Proposer

CSG = get_language("csg2d")


class CannedModel:
    """Stands in for HFModel: replies from a script, records the settings it was asked with."""

    language = "csg2d"

    def __init__(self, replies):
        self.replies = replies
        self.calls = []

    def generate(self, images, n, *, prompt=None, settings=None, seed=None):
        self.calls.append((len(images), n, settings, seed))
        return [self.replies[i % len(self.replies)][:n] for i in range(len(images))]

    def score(self, images, programs, prompt=None):
        return [-float(len(p)) for p in programs]


def imgs(k=2):
    return np.stack([CSG.render("(Circle 3 8 8)", 32)] * k)


def test_replies_become_extracted_candidates():
    model = CannedModel([[
        "```\n(Circle 3 8 8)\n```",
        "I cannot tell.",
        "(+ (circle 3 8 8) (Quad 5 5 4 6 45))",
    ]])
    out = HFProposer(model).propose(imgs(2), 3, seed=0)
    assert len(out) == 2 and all(len(c) == 3 for c in out)
    assert [c.program for c in out[0]] == ["(Circle 3 8 8)", NO_PROGRAM, "(+ (Circle 3 8 8) (Quad 5 5 4 6 45))"]
    assert all(c.logprob is None for c in out[0])
    assert not CSG.is_valid(NO_PROGRAM)  # a reply without a program scores as unparsable


def test_sampling_defaults_follow_the_seed_protocol_and_methods_map_to_settings():
    model = CannedModel([["(Circle 3 8 8)"] * 4])
    p = HFProposer(model)
    p.propose(imgs(1), 4)
    _, n, s, _ = model.calls[-1]
    assert (n, s.do_sample, s.temperature, s.top_p, s.top_k) == (4, True, 1.0, 0.95, 64)
    out = p.propose(imgs(1), 4, method="greedy")
    _, n, s, _ = model.calls[-1]
    assert n == 1 and not s.do_sample and len(out[0]) == 1
    out = p.propose(imgs(1), 4, method="beam")
    _, n, s, _ = model.calls[-1]
    assert s.num_beams == 4 and not s.do_sample
    assert len(out[0]) == 1  # four identical beams collapse to one distinct candidate
    with pytest.raises(ValueError, match="unknown proposal method"):
        p.propose(imgs(1), 1, method="nucleus")  # type: ignore[arg-type]


def test_scores_are_attached_to_valid_candidates_only():
    model = CannedModel([["(Circle 3 8 8)", "no idea"]])
    out = HFProposer(model, score=True).propose(imgs(1), 2)
    assert out[0][0].logprob == -len("(Circle 3 8 8)")
    assert out[0][1] == Candidate(NO_PROGRAM, None)


def test_bad_images_are_refused():
    with pytest.raises(ValueError, match=r"\(B, S, S, 3\) uint8"):
        HFProposer(CannedModel([["x"]])).propose(np.zeros((2, 8, 8), np.uint8))


def test_tiny_vlm_is_a_proposer(tiny_dir):
    model = B.load(str(tiny_dir("qwen2_5_vl")))
    proposer = HFProposer(model, B.GenerationSettings(max_new_tokens=6), score=True)
    assert isinstance(proposer, Proposer)
    out = proposer.propose(imgs(2), 2, seed=3)
    assert [len(c) for c in out] == [2, 2]
    assert all(isinstance(c, Candidate) for row in out for c in row)
    assert len(proposer.last_replies) == 2 and len(proposer.last_extractions[0]) == 2
    # a random model's gibberish holds no program, unless extraction found one that parses
    for row, exts in zip(out, proposer.last_extractions):
        for cand, ext in zip(row, exts):
            assert cand.program == (ext.program if ext.ok else NO_PROGRAM)
            assert (cand.logprob is None) == (not ext.ok)
    assert proposer.propose(imgs(2), 2, seed=3) == out
