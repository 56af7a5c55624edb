"""Property tests of the csg2d parser: round trips, respellings, and a differential test
against a lark Earley parser of the reference grammar (what the seed uses)."""

from __future__ import annotations

import pickle

from csg2d_gen import ANGLES_45, lark_parse, programs, shapes, spellings
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from img2prog.lang import ProgramError
from img2prog.lang.csg2d import parse
from img2prog.lang.csg2d.ast import EMPTY, Circle, Difference, Union, depth, num_nodes, primitives, walk
from img2prog.lang.csg2d.parser import _parse_careful, _parse_fast

FUZZ = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@given(programs(max_leaves=20))
@settings(max_examples=200, deadline=None)
def test_round_trip(program):
    text = str(program)
    assert parse(text) == program
    assert str(parse(text)) == text  # canonical text is a fixed point


@given(st.data())
@settings(max_examples=150, deadline=None)
def test_respellings_parse_to_the_same_ast(data):
    program = data.draw(programs(max_leaves=12))
    text = data.draw(spellings(program))
    assert parse(text) == program
    assert _parse_careful(text) == program


@given(programs(max_leaves=20))
@settings(max_examples=60, deadline=None)
def test_ast_hash_eq_pickle(program):
    # A structurally equal tree built separately hashes and compares equal (memo keys rely on it).
    twin = parse(str(program))
    assert twin == program and hash(twin) == hash(program)
    clone = pickle.loads(pickle.dumps(program))
    assert clone == program and hash(clone) == hash(program)
    assert num_nodes(program) == sum(1 for n in walk(program) if n is not EMPTY)
    assert len(primitives(program)) <= num_nodes(program)


def test_deep_round_trip_below_the_cap():
    p = Circle(1, 2, 3)
    for i in range(127):
        p = (Union if i % 2 else Difference)((p, Circle(i % 16, 1, 1)))
    assert depth(p) == 127
    assert parse(str(p)) == p


# --------------------------------------------------------------------------------------
# Differential test against the reference grammar (lark, Earley).
# --------------------------------------------------------------------------------------

# The token alphabet of the language plus near-misses: numbers in and out of range, with
# leading zeros, other case, other operators, decimals, vertical tab, non-ASCII.
TOKENS = st.sampled_from(
    ["(", ")", "+", "-", "Circle", "Quad", "circle", "Quads", "*",
     "0", "1", "7", "8", "15", "16", "45", "99", "315", "359", "360", "015", "0000", "00016",
     ".", "e", "x", "\v", "\u00a0", "\u0663"]
)
SEPARATORS = st.sampled_from(["", "", " ", "  ", "\t", "\n", "\r\n", "\f"])


@st.composite
def token_soup(draw) -> str:
    """Strings made of language tokens with random separators: mostly not programs."""
    n = draw(st.integers(0, 30))
    parts = [draw(SEPARATORS)]
    for _ in range(n):
        parts += [draw(TOKENS), draw(SEPARATORS)]
    return "".join(parts)


@st.composite
def mutated_programs(draw) -> str:
    """A legal spelling of a random program, then 0–3 token-level edits: near-programs."""
    program = draw(programs(max_leaves=6))
    text = draw(spellings(program))
    for _ in range(draw(st.integers(0, 3))):
        if not text:
            break
        i = draw(st.integers(0, len(text) - 1))
        j = draw(st.integers(i, min(len(text), i + 8)))
        edit = draw(st.sampled_from(["delete", "insert", "replace", "duplicate"]))
        if edit == "delete":
            text = text[:i] + text[j:]
        elif edit == "insert":
            text = text[:i] + draw(TOKENS) + text[i:]
        elif edit == "replace":
            text = text[:i] + draw(TOKENS) + text[j:]
        else:
            text = text[:j] + text[i:j] + text[j:]
    return text


def _ours(text: str):
    try:
        return parse(text)
    except ProgramError:
        return None


def _check_same(text: str) -> None:
    ours, ref = _ours(text), lark_parse(text)
    assert (ours is None) == (ref is None), f"{text!r}: ours={ours!r} lark={ref!r}"
    assert ours == ref, text
    # The fast path only ever says "accept" for programs, and agrees with the careful one.
    fast = _parse_fast(text)
    assert fast is None or fast == ours, text


@given(token_soup())
@FUZZ
@example("(Circle3 8 8)")
@example("(Circle 12 3)")
@example("(Quad0 0 0 0 0)")
@example("(+(Circle 1 1 1)(Circle 1 1 1))")
@example("(Circle 1 2 3)\v")
@example("\u00a0")
def test_differential_token_soup(text):
    _check_same(text)


@given(mutated_programs())
@FUZZ
def test_differential_near_programs(text):
    _check_same(text)


@given(st.data())
@settings(max_examples=60, deadline=None)
def test_differential_valid_programs(data):
    program = data.draw(shapes(max_leaves=10, angles=ANGLES_45))
    text = data.draw(spellings(program))
    assert lark_parse(text) == program
    assert parse(text) == program
