"""csg2d tokens: encode/decode round trips and the decoding constraint (a pushdown automaton
with a length budget)."""

from __future__ import annotations

import random

import numpy as np
import pytest
from csg2d_gen import ANGLES_45, programs
from hypothesis import given, settings
from hypothesis import strategies as st

from img2prog.lang import get_language
from img2prog.lang.csg2d import parse
from img2prog.lang.csg2d.ast import EMPTY, Quad, depth, walk
from img2prog.lang.csg2d.tokens import (
    BOS,
    CIRCLE,
    EOS,
    MINUS,
    NUM0,
    PAD,
    PLUS,
    QUAD,
    RPAR,
    TOKENIZER,
    TOKENS,
    VOCAB_SIZE,
    Csg2dConstraint,
    decode,
    encode,
)


def test_vocabulary_layout():
    assert VOCAB_SIZE == 8 + 360
    assert [TOKENS[i] for i in (PAD, BOS, EOS, CIRCLE, QUAD, PLUS, MINUS, RPAR)] == [
        "<pad>", "<bos>", "<eos>", "(Circle", "(Quad", "(+", "(-", ")"]
    assert TOKENS[NUM0] == "0" and TOKENS[NUM0 + 359] == "359"
    assert (TOKENIZER.pad_id, TOKENIZER.bos_id, TOKENIZER.eos_id) == (PAD, BOS, EOS)
    assert TOKENIZER.token_to_id("(Quad") == QUAD


def test_encode_known_program():
    assert encode(parse("(+ (Circle 3 8 8) (Quad 5 5 4 6 45))")) == [
        PLUS, CIRCLE, NUM0 + 3, NUM0 + 8, NUM0 + 8, RPAR,
        QUAD, NUM0 + 5, NUM0 + 5, NUM0 + 4, NUM0 + 6, NUM0 + 45, RPAR, RPAR]
    assert encode(EMPTY) == []
    assert get_language().encode("( Circle 03 8 8 )") == [CIRCLE, NUM0 + 3, NUM0 + 8, NUM0 + 8, RPAR]


@given(programs(max_leaves=20))
@settings(max_examples=100, deadline=None)
def test_encode_decode_round_trip(program):
    ids = encode(program)
    text = decode(ids)
    assert text == str(program)
    assert parse(text) == program
    # Specials: bos and pad are skipped, decoding stops at the first eos.
    assert decode([BOS, *ids, EOS, CIRCLE, PAD]) == text
    assert decode([PAD, BOS, *ids]) == text


def test_decode_rejects_ids_outside_the_vocabulary():
    with pytest.raises(ValueError, match="outside the csg2d vocabulary"):
        decode([CIRCLE, VOCAB_SIZE])
    with pytest.raises(ValueError):
        decode([-1])


def test_decode_keeps_invalid_text_for_the_caller():
    # Model output that is not a program is returned as text, so parse can say what is wrong.
    assert decode([CIRCLE, NUM0 + 1, RPAR]) == "(Circle 1)"


# --------------------------------------------------------------------------------------
# The constraint.
# --------------------------------------------------------------------------------------

def _walk(constraint: Csg2dConstraint, budget: int, rng: random.Random) -> list[int]:
    """Follow random allowed tokens until <eos>; checks the invariants at every step."""
    state = constraint.start(budget)
    ids: list[int] = []
    while True:
        allowed = constraint.allowed(state)
        assert allowed, f"dead end after {decode(ids)!r} with budget {budget}"
        mask = constraint.allowed_mask(state)
        assert mask.dtype == bool and mask.shape == (VOCAB_SIZE,)
        assert np.flatnonzero(mask).tolist() == sorted(allowed)
        # <eos> is allowed exactly when the prefix is a whole program.
        complete = get_language().is_valid(decode(ids)) if ids else constraint.allow_empty
        assert (EOS in allowed) == complete, decode(ids)
        tok = rng.choice(allowed)
        ids.append(tok)
        state = constraint.advance(state, tok)
        if tok == EOS:
            assert constraint.is_complete(state)
            return ids


@pytest.mark.parametrize("allow_empty", [True, False])
@pytest.mark.parametrize("angles", [45, 1])
def test_random_walks_end_complete_within_budget(allow_empty, angles):
    rng = random.Random(1234 + angles + allow_empty)
    c = Csg2dConstraint(angles_multiple_of=angles, allow_empty=allow_empty, max_depth=6)
    for _ in range(150):
        budget = rng.randint(1 if allow_empty else 6, 120)
        ids = _walk(c, budget, rng)
        assert len(ids) <= budget
        program = parse(decode(ids))  # always a program
        if not allow_empty:
            assert program is not EMPTY
        assert depth(program) <= 6
        for node in walk(program):
            if isinstance(node, Quad):
                assert node.angle % angles == 0
        assert encode(program) + [EOS] == ids  # the walk spelled the canonical token sequence


def test_no_program_fits_a_budget_too_small():
    c = Csg2dConstraint(allow_empty=False)
    # The shortest shape is (Circle r x y) plus <eos>: 6 tokens.
    assert c.allowed(c.start(5)) == []
    assert set(c.allowed(c.start(6))) == {CIRCLE}
    assert set(c.allowed(c.start(8))) == {CIRCLE, QUAD}
    with pytest.raises(ValueError, match="not allowed"):
        c.advance(c.start(5), CIRCLE)
    with pytest.raises(ValueError):
        c.start(0)


def test_operation_needs_two_operands():
    c = Csg2dConstraint()
    s = c.advance(c.start(100), PLUS)
    assert RPAR not in c.allowed(s)  # no operand yet
    for t in (CIRCLE, NUM0 + 1, NUM0 + 2, NUM0 + 3, RPAR):
        s = c.advance(s, t)
    assert RPAR not in c.allowed(s)  # one operand so far
    for t in (CIRCLE, NUM0 + 1, NUM0 + 2, NUM0 + 3, RPAR):
        s = c.advance(s, t)
    assert RPAR in c.allowed(s) and EOS not in c.allowed(s)
    s = c.advance(s, RPAR)
    assert c.allowed(s) == [EOS]


def test_angles_and_depth_options():
    prefix = [QUAD, NUM0 + 1, NUM0 + 2, NUM0 + 3, NUM0 + 4]
    for step, expected in ((45, list(range(0, 360, 45))), (1, list(range(360)))):
        c = Csg2dConstraint(angles_multiple_of=step)
        s = c.start(20)
        for t in prefix:
            s = c.advance(s, t)
        assert c.allowed(s) == [NUM0 + a for a in expected]
    c = Csg2dConstraint(max_depth=2)
    s = c.start(200)
    s = c.advance(c.advance(s, PLUS), MINUS)
    assert PLUS not in c.allowed(s) and MINUS not in c.allowed(s) and CIRCLE in c.allowed(s)


@given(programs(max_leaves=16, angles=ANGLES_45), st.integers(0, 20))
@settings(max_examples=120, deadline=None)
def test_canonical_programs_are_accepted_step_by_step(program, slack):
    """Every valid program (angles multiple of 45, within depth and budget) is reachable."""
    c = Csg2dConstraint(max_depth=16)
    ids = encode(program) + [EOS]
    state = c.start(len(ids) + slack)  # slack 0 = the tightest budget that fits
    for t in ids:
        assert t in c.allowed(state), f"{decode(ids)!r}: {TOKENS[t]!r} refused"
        assert c.allowed_mask(state)[t]
        state = c.advance(state, t)
    assert c.is_complete(state)


@given(programs(max_leaves=16, angles=ANGLES_45).filter(lambda p: p is not EMPTY))
@settings(max_examples=60, deadline=None)
def test_budget_is_enforced(program):
    """One token short of the budget a program needs, its sequence is refused somewhere."""
    c = Csg2dConstraint(max_depth=16)
    ids = encode(program) + [EOS]
    state = c.start(len(ids) - 1)
    for t in ids:
        if t not in c.allowed(state):
            return
        state = c.advance(state, t)
    raise AssertionError(f"{decode(ids)!r} accepted with a budget of {len(ids) - 1}")
