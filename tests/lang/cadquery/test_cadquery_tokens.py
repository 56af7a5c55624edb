"""CadQuery tokens: grid, encode/decode round trips, quantisation and the decoding constraint."""

from __future__ import annotations

import random

import numpy as np
import pytest
from cadquery_strategies import programs
from hypothesis import given, settings

from img2prog.lang.cadquery import parse, to_script
from img2prog.lang.cadquery import tokens as T
from img2prog.lang.cadquery.ast import Circle, Extrusion, Loop, Plane, Program
from img2prog.lang.errors import ProgramError

BOX = """import cadquery as cq
solid = cq.Workplane("XY").moveTo(0, 0).lineTo(1, 0).lineTo(1, 1).lineTo(0, 1).close().extrude(0.5)
"""


def test_vocabulary_layout():
    assert T.TOKENS[:3] == ("<pad>", "<bos>", "<eos>")
    assert T.TOKENIZER.vocab_size == T.VOCAB_SIZE == 3 + 12 + 10 + 24 + 513
    assert len(set(T.FRAMES)) == 24
    assert T.TOKENS[T.number_id(0)] == "0" and T.TOKENS[T.number_id(-256)] == "-256"
    assert T.TOKENS[T.LOOP] == "loop" and T.TOKENS[T.FRAME0] == "Plane(+Y,+X)"


def test_box_tokens():
    ids = T.encode(parse(BOX))
    names = [T.TOKENS[i] for i in ids]
    assert names == ["Plane(+X,+Z)", "0", "0", "0", "loop", "0", "0", "lineTo", "128", "0", "lineTo", "128",
                     "128", "lineTo", "0", "128", "lineTo", "0", "0", "close", "extrude", "64"]
    assert parse(T.decode(ids)) == parse(BOX)


@settings(max_examples=200, deadline=None)
@given(programs)
def test_decode_encode_round_trip(p):
    ids = T.encode(p)
    text = T.decode([T.BOS, *ids, T.EOS, T.PAD])
    assert text == to_script(p)
    assert parse(text) == p


@settings(max_examples=100, deadline=None)
@given(programs)
def test_constraint_accepts_every_encoded_program_and_eos_only_after_whole_programs(p):
    c = T.CadQueryConstraint()
    ids = T.encode(p)
    state = c.start(len(ids) + 1)
    for k, i in enumerate(ids):
        # <eos> is allowed exactly where the prefix is a whole program
        assert (T.EOS in c.allowed(state)) == ("!! tokens" not in T.decode(ids[:k]))
        state = c.advance(state, i)
    assert T.EOS in c.allowed(state)
    state = c.advance(state, T.EOS)
    assert c.is_complete(state)
    # with one token less of budget the same program cannot be produced
    with pytest.raises(ValueError):
        state = c.start(len(ids))
        for i in ids + [T.EOS]:
            state = c.advance(state, i)


def test_random_walks_through_the_constraint_always_give_programs():
    c = T.CadQueryConstraint(max_bodies=3)
    rng = random.Random(0)
    for trial in range(200):
        budget = rng.randint(T.min_tokens(), 120)
        state = c.start(budget)
        ids = []
        while not c.is_complete(state):
            allowed = c.allowed(state)
            assert allowed, f"dead end after {ids}"
            # prefer structure over numbers so walks do not only draw numbers
            structural = [a for a in allowed if a < T.NUM0]
            tok = rng.choice(structural if structural and rng.random() < 0.5 else allowed)
            mask = c.allowed_mask(state)
            assert mask[tok] and mask.sum() == len(allowed)
            state = c.advance(state, tok)
            ids.append(tok)
        assert len(ids) <= budget and ids[-1] == T.EOS
        p = parse(T.decode(ids))  # a valid program, whatever the walk
        assert T.encode(p) == ids[:-1] or to_script(p) == T.decode(ids)


def test_constraint_restricts_radii_and_distances():
    c = T.CadQueryConstraint()
    s = c.start(100)
    for tok in (T.FRAME0, T.number_id(0), T.number_id(0), T.number_id(0), T.CIRCLE, T.number_id(0), T.number_id(0)):
        s = c.advance(s, tok)
    radius_ids = c.allowed(s)
    assert T.number_id(0) not in radius_ids and T.number_id(-1) not in radius_ids and T.number_id(1) in radius_ids
    s = c.advance(c.advance(s, T.number_id(3)), T.EXTRUDE)
    assert T.number_id(0) not in c.allowed(s) and T.number_id(-5) in c.allowed(s)


def test_constraint_budget_and_limits():
    c = T.CadQueryConstraint(finishes=False)
    with pytest.raises(ValueError):
        c.start(T.min_tokens() - 1)
    s = c.start(T.min_tokens())  # exactly the shortest program: frame, origin, circle, extrude
    seq = []
    while not c.is_complete(s):
        a = c.allowed(s)
        seq.append(a[-1])
        s = c.advance(s, a[-1])
    assert len(seq) == T.min_tokens()
    assert T.TOKENS[seq[4]] == "circle"
    after_body = c.start(100)
    for tok in T.encode(parse(BOX)):
        after_body = c.advance(after_body, tok)
    assert T.FILLET not in c.allowed(after_body) and T.UNION in c.allowed(after_body)


def test_decode_of_a_broken_sequence_names_the_problem():
    ids = T.encode(parse(BOX))
    text = T.decode(ids[:9] + [T.CLOSE])
    with pytest.raises(ProgramError, match="unexpected token 'close' at position 9"):
        parse(text)
    with pytest.raises(ProgramError, match="sequence ends where"):
        parse(T.decode(ids[:5]))
    # a complete first body survives as a prefix before the error line
    text = T.decode(ids + [T.UNION, T.CIRCLE])
    assert text.startswith(to_script(parse(BOX))) and "!! tokens:" in text
    with pytest.raises(ValueError):
        T.decode([T.VOCAB_SIZE])


def test_encode_refuses_off_grid_and_rotated_programs():
    off = parse(BOX.replace("extrude(0.5)", "extrude(0.3)"))
    with pytest.raises(ProgramError, match="not on the tokenizer grid"):
        T.encode(off)
    q = T.quantize(off)
    assert q.base.distance == 0.296875 and T.on_grid(q)
    rotated = Program(Extrusion(Plane((0.0, 0.0, 0.0), (1.0, 1.0, 0.0), (0.0, 0.0, 1.0)),
                                (Circle((0.0, 0.0), 1.0),), 1.0))
    with pytest.raises(ProgramError, match="not along"):
        T.encode(rotated)
    with pytest.raises(ProgramError, match="not along"):
        T.quantize(rotated)
    with pytest.raises(ProgramError, match="not on the tokenizer grid"):
        T.encode(parse(BOX.replace("extrude(0.5)", "extrude(3)")))


def test_quantize_snaps_gencad_noise_and_rejects_vanishing_sizes():
    text = ("import cadquery as cq\nwp = cq.Workplane(cq.Plane(cq.Vector(0.1, 0.0, 0.0), "
            "cq.Vector(1.0, 6.123233995736766e-17, 0.0), cq.Vector(6.123233995736766e-17, -1.0, 0.0)))\n"
            "solid = wp.moveTo(0.3421052631578947, 0.0).circle(0.27828947368421053).extrude(0.75)\n")
    q = T.quantize(parse(text))
    assert q.base.plane == Plane((0.1015625, 0.0, 0.0), (1.0, 0.0, 0.0), (0.0, -1.0, 0.0))
    c = q.base.profiles[0]
    assert isinstance(c, Circle) and c.center == (0.34375, 0.0) and c.radius == 0.28125
    assert T.quantize(q) == q  # idempotent
    tiny = parse(text.replace("circle(0.27828947368421053)", "circle(0.001)"))
    with pytest.raises(ProgramError, match="becomes 0.0"):
        T.quantize(tiny)


def test_language_interface_tokens():
    import img2prog.lang.cadquery.language  # noqa: F401  (registers the language)
    from img2prog.lang import get_language

    lang = get_language("cadquery")
    assert lang.tokenizer is T.TOKENIZER
    ids = lang.encode(BOX)
    assert lang.decode(ids) == lang.canonical(BOX)
    assert isinstance(lang.constraint(), T.CadQueryConstraint)
    assert lang.size(BOX) == 1 + 1 + 4 and isinstance(lang.parse(BOX).base.profiles[0], Loop)
    assert lang.validate("import os") is not None and lang.is_valid(BOX)
    assert np.array_equal(T.CadQueryConstraint().allowed_mask(T.CadQueryConstraint().start(50))[T.FRAME0:T.NUM0],
                          np.ones(24, dtype=bool))
