"""The tensorised CadQuery constraint agrees with the reference automaton, step by step."""

import random

import numpy as np
import pytest
import torch

from img2prog.lang.cadquery import tokens as t
from img2prog.lang.cadquery.parser import parse
from img2prog.lang.cadquery import testsets
from img2prog.models.cad_constraint import CadQueryTensorConstraint
from img2prog.models.constraints import batched_constraint
from img2prog.lang import get_language


def _walk_and_compare(budget: int, seed: int, batch: int = 24, max_bodies: int = t.MAX_BODIES):
    ref = t.CadQueryConstraint(max_bodies=max_bodies)
    ten = CadQueryTensorConstraint(max_bodies=max_bodies)
    rng = random.Random(seed)
    states = [ref.start(budget) for _ in range(batch)]
    done = [False] * batch
    st = ten.start(batch, budget, "cpu")
    for _ in range(budget + 2):
        m = ten.mask(st)
        toks = []
        for i in range(batch):
            want = np.zeros(t.VOCAB_SIZE, bool)
            if done[i]:
                want[t.EOS] = True
            else:
                want = ref.allowed_mask(states[i])
            assert np.array_equal(m[i].numpy(), want), f"row {i}: masks differ at state {states[i]}"
            allowed = np.flatnonzero(want)
            # Prefer structure tokens sometimes so walks reach deep phases and the limits.
            structural = [a for a in allowed if a < t.NUM0]
            tok = rng.choice(structural if structural and rng.random() < 0.5 else list(allowed))
            if tok == t.EOS and rng.random() < 0.7 and len(allowed) > 1:
                tok = rng.choice([a for a in allowed if a != t.EOS])
            toks.append(int(tok))
            if not done[i]:
                states[i] = ref.advance(states[i], tok)
                done[i] = tok == t.EOS
        st = ten.advance(st, torch.tensor(toks))
        assert ten.done(st).tolist() == done
        if all(done):
            break
    assert all(done), "the budget must force every walk to end"


@pytest.mark.parametrize("budget,seed", [(30, 0), (90, 1), (180, 2)])
def test_random_walks_match_reference(budget, seed):
    _walk_and_compare(budget, seed)


def test_max_bodies_is_respected():
    _walk_and_compare(120, 3, batch=12, max_bodies=2)


def test_test_set_sequences_are_accepted():
    ten = CadQueryTensorConstraint()
    seqs = [t.encode(parse(p)) + [t.EOS] for p in testsets.testset_programs("cadquery-test")[:40]]
    L = max(map(len, seqs))
    st = ten.start(len(seqs), L, "cpu")
    ref = t.CadQueryConstraint()
    refs = [ref.start(L) for _ in seqs]
    for pos in range(L):
        m = ten.mask(st)
        tok = torch.tensor([s[pos] if pos < len(s) else t.EOS for s in seqs])
        assert m[torch.arange(len(seqs)), tok].all(), f"a test-set token was masked at position {pos}"
        # and the whole mask is the reference's along real programs
        for i, s in enumerate(seqs):
            if pos < len(s):
                assert np.array_equal(m[i].numpy(), ref.allowed_mask(refs[i]))
                refs[i] = ref.advance(refs[i], s[pos])
        st = ten.advance(st, tok)
    assert ten.done(st).all()


def test_batched_constraint_picks_the_tensor_automaton_for_large_batches():
    lang = get_language("cadquery")
    assert isinstance(batched_constraint(lang, 64, "cpu"), CadQueryTensorConstraint)
    assert not isinstance(batched_constraint(lang, 2, "cpu"), CadQueryTensorConstraint)


def test_reorder_gathers_rows():
    ten = CadQueryTensorConstraint()
    st = ten.start(3, 50, "cpu")
    st = ten.advance(st, torch.tensor([t.FRAME0, t.FRAME0 + 1, t.FRAME0]))
    st = ten.advance(st, torch.tensor([t.number_id(0)] * 3))
    r = ten.reorder(st, torch.tensor([2, 2, 0]))
    assert r.k.tolist() == [1, 1, 1] and r.bodies.tolist() == [1, 1, 1]
    assert torch.equal(ten.mask(r)[0], ten.mask(st)[2])
