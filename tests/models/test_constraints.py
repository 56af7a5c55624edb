"""The batched grammar constraints agree with the reference automaton, and constrained
decoding cannot produce a program that does not parse."""

import random

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from img2prog.lang import get_language
from img2prog.lang.csg2d.tokens import EOS, Csg2dConstraint
from img2prog.models.constraints import Csg2dTensorConstraint, PythonBatchedConstraint, batched_constraint

LANG = get_language("csg2d")


@pytest.mark.parametrize("max_depth,allow_empty", [(16, True), (2, True), (1, False)])
def test_tensor_constraint_matches_reference_on_random_walks(max_depth, allow_empty):
    ref = Csg2dConstraint(max_depth=max_depth, allow_empty=allow_empty)
    tc = Csg2dTensorConstraint(max_depth=max_depth, allow_empty=allow_empty)
    rng = random.Random(max_depth)
    B = 32
    for _ in range(12):
        budget = rng.randint(1, 90)
        state = tc.start(B, budget)
        refs = [ref.start(budget) for _ in range(B)]
        done = [False] * B
        for _step in range(budget + 1):
            mask = tc.mask(state)
            toks = []
            for i in range(B):
                got = mask[i].nonzero().flatten().tolist()
                if done[i]:
                    assert got == [EOS]
                    toks.append(EOS)
                    continue
                want = sorted(ref.allowed(refs[i]))
                assert got == want, (refs[i], want, got)
                # Bias towards the extremes: openers (deep nesting) and <eos>/")" (closing).
                t = rng.choice(want) if rng.random() < 0.6 else (want[0] if rng.random() < 0.5 else want[-1])
                toks.append(t)
                refs[i] = ref.advance(refs[i], t)
                done[i] = t == EOS
            state = tc.advance(state, torch.tensor(toks))
        assert all(done), "the budget guarantees <eos> within max_tokens"


def _decode_random(cons, logits_seed: int, B: int, budget: int, temperature: float):
    g = torch.Generator().manual_seed(logits_seed)
    state = cons.start(B, budget, "cpu")
    out = [[] for _ in range(B)]
    for _ in range(budget):
        logits = torch.randn(B, LANG.tokenizer.vocab_size, generator=g) * temperature
        logits = logits.masked_fill(~cons.mask(state), float("-inf"))
        tok = logits.argmax(-1)
        for i, t in enumerate(tok.tolist()):
            if not bool(cons.done(state)[i]):
                out[i].append(t)
        state = cons.advance(state, tok)
    assert bool(cons.done(state).all())
    return out


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), budget=st.integers(1, 120), scale=st.sampled_from([0.1, 1.0, 10.0]))
def test_random_logits_always_decode_to_programs(seed, budget, scale):
    for cons in (Csg2dTensorConstraint(), PythonBatchedConstraint(LANG)):
        for ids in _decode_random(cons, seed, 6, budget, scale):
            assert len(ids) <= budget and ids[-1] == EOS
            LANG.parse(LANG.decode(ids))  # raises ProgramError if not a program


def test_batched_constraint_choice():
    assert isinstance(batched_constraint(LANG), Csg2dTensorConstraint)
    assert isinstance(batched_constraint(LANG, 64, "cpu"), Csg2dTensorConstraint)
    assert isinstance(batched_constraint(LANG, 1, "cpu"), PythonBatchedConstraint)


def test_reorder_gathers_rows():
    tc = Csg2dTensorConstraint()
    s = tc.start(2, 50)
    s = tc.advance(s, torch.tensor([3, 5]))  # row 0 opened a Circle, row 1 a union
    r = tc.reorder(s, torch.tensor([1, 1, 0]))
    m = tc.mask(r)
    assert torch.equal(m[0], m[1]) and not torch.equal(m[0], m[2])
    assert torch.equal(m[2], tc.mask(s)[0])
