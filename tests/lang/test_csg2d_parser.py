"""The csg2d parser: what it accepts, what it rejects (with which message and offset), and
that hostile input fails fast with ProgramError instead of crashing or hanging."""

from __future__ import annotations

import time

import pytest

from img2prog.lang import ProgramError, get_language
from img2prog.lang.csg2d import parse
from img2prog.lang.csg2d.ast import EMPTY, MAX_DEPTH, Circle, Difference, Quad, Union
from img2prog.lang.csg2d.parser import _parse_careful, _parse_fast, is_valid

SPEC_QUALITATIVE = [
    "(+ (Quad 8 10 2 8 0) (Quad 8 3 2 2 0))",
    "(+ (Quad 4 4 2 4 0) (Quad 12 4 2 4 45) (Quad 4 12 2 4 90) (Quad 12 12 2 4 135))",
    "(+ (- (Circle 5 7 5) (Circle 5 7 6)) (Quad 7 6 2 2 45) (Circle 2 4 10) (Circle 2 10 10))",
    (
        "(- (+ (- (Circle 5 8 8) (Circle 4 8 8)) (- (Circle 4 8 12) (Circle 3 8 13)) "
        "(- (Circle 4 5 6) (Circle 3 4 5)) (- (Circle 4 11 6) (Circle 3 12 5))) (Circle 2 8 8))"
    ),
]

# (text, canonical form of what it must parse to)
ACCEPTED = [
    ("", ""),
    ("   ", ""),
    (" \t\n\r\f ", ""),
    ("(Circle 3 8 8)", "(Circle 3 8 8)"),
    ("(Circle3 8 8)", "(Circle 3 8 8)"),  # the keyword needs no space before a number
    ("( Circle 3 8 8 )", "(Circle 3 8 8)"),
    ("\t(Circle\n3\r8\f8)\n", "(Circle 3 8 8)"),
    ("(Circle 03 008 0)", "(Circle 3 8 0)"),
    ("(Circle 000000000000000000015 0 0)", "(Circle 15 0 0)"),
    ("(Circle 0 0 0)", "(Circle 0 0 0)"),
    ("(Circle 15 15 15)", "(Circle 15 15 15)"),
    ("(Quad 5 5 4 6 45)", "(Quad 5 5 4 6 45)"),
    ("(Quad 1 2 3 4 359)", "(Quad 1 2 3 4 359)"),
    ("(Quad 1 2 3 4 0359)", "(Quad 1 2 3 4 359)"),
    ("(Quad 1 2 3 4 7)", "(Quad 1 2 3 4 7)"),  # any angle 0..359, not only multiples of 45
    ("(Quad0 0 0 0 0)", "(Quad 0 0 0 0 0)"),
    ("(+(Circle 1 2 3)(Quad 1 2 3 4 5))", "(+ (Circle 1 2 3) (Quad 1 2 3 4 5))"),
    ("( + ( Circle 1 2 3 ) ( Quad 1 2 3 4 5 ) )", "(+ (Circle 1 2 3) (Quad 1 2 3 4 5))"),
    ("(- (Circle 5 5 5) (Circle 2 8 8) (Circle 1 1 1))", "(- (Circle 5 5 5) (Circle 2 8 8) (Circle 1 1 1))"),
    ("(-(+(Circle 1 1 1)(Circle 2 2 2))(Circle 3 3 3))", "(- (+ (Circle 1 1 1) (Circle 2 2 2)) (Circle 3 3 3))"),
    *[(p, p) for p in SPEC_QUALITATIVE],
]

# (text, words the message must contain, offset)
REJECTED = [
    # unknown keyword
    ("(Sphere 1 2 3)", ["unknown shape", "Sphere"], 1),
    ("(circle 1 2 3)", ["unknown shape", "circle"], 1),
    ("(Circlex 1 2 3)", ["unknown shape", "Circlex"], 1),
    ("(* (Circle 1 2 3) (Circle 1 2 3))", ["expected Circle, Quad", "'*'"], 1),
    # wrong arity
    ("(Circle 1 2)", ["Circle expects y"], 11),
    ("(Circle 1 2 3 4)", ["Circle takes exactly 3 numbers"], 14),
    ("(Quad 1 2 3 4)", ["Quad expects angle"], 13),
    ("(Quad 1 2 3 4 5 6)", ["Quad takes exactly 5 numbers"], 16),
    ("(Circle 12 3)", ["Circle expects y"], 12),  # "12" is one number, not two
    ("(+ (Circle 1 2 3))", ["'+' needs at least 2 operands", "got 1"], 17),
    ("(- (Circle 1 2 3))", ["'-' needs at least 2 operands", "got 1"], 17),
    ("(+)", ["'+' needs at least 2 operands", "got 0"], 2),
    ("(+ 1 2)", ["expected '(' or ')' in '+' operation", "'1'"], 3),
    # out of range
    ("(Circle 16 2 3)", ["Circle radius", "'16'", "out of range 0..15"], 8),
    ("(Circle 1 2 16)", ["Circle y", "out of range 0..15"], 12),
    ("(Quad 1 2 3 99 0)", ["Quad height", "out of range"], 12),
    ("(Quad 1 2 3 4 360)", ["Quad angle", "'360'", "out of range 0..359"], 14),
    ("(Circle 1 99999999999999999999 3)", ["Circle x", "out of range"], 10),
    ("(Circle 1 0016 3)", ["Circle x", "'0016'", "out of range"], 10),
    # negative / non-integer
    ("(Circle -1 2 3)", ["Circle radius must not be negative"], 8),
    ("(Quad 1 2 3 4 -45)", ["Quad angle must not be negative"], 14),
    ("(Circle 1 2.5 3)", ["must be integers", "decimal point"], 11),
    ("(Circle 1 2 3.0)", ["must be integers"], 13),
    ("(Quad 1 2 3 4 1e2)", ["Quad takes exactly 5 numbers", "'e'"], 15),
    ("(Circle 1 2 +3)", ["Circle expects y", "'+'"], 12),
    ("(Circle 1 2 \u0663)", ["unexpected character"], 12),  # ARABIC-INDIC DIGIT THREE is no number
    # trailing garbage
    ("(Circle 1 2 3) x", ["unexpected 'x' after the end of the program"], 15),
    ("(Circle 1 2 3)(Circle 1 2 3)", ["after the end of the program"], 14),
    ("(Circle 1 2 3))", ["unexpected ')' after the end"], 14),
    ("(Circle 1 2 3)\x00", ["unexpected character", "\\x00"], 14),
    ("(Circle 1 2 3)\u00a0", ["unexpected character"], 14),  # NO-BREAK SPACE is not whitespace here
    ("Circle 1 2 3", ["expected '(' to start a shape", "'Circle'"], 0),
    ("x", ["expected '(' to start a shape"], 0),
    ("\x00", ["unexpected character"], 0),
    ("(Circle\v1 2 3)", ["unexpected character", "\\x0b"], 7),  # vertical tab is not in the grammar's WS
    # unbalanced parentheses
    (")", ["expected '(' to start a shape", "')'"], 0),
    ("(", ["unexpected end of text after '('"], 1),
    ("((Circle 1 2 3)", ["expected Circle, Quad, '+' or '-' after '('", "'('"], 1),
    ("(Circle 1 2 3", ["expected ')'", "end of text"], 13),
    ("(+ (Circle 1 2 3) (Circle 1 2 3)", ["end of text", "unbalanced parentheses"], 32),
    ("(+ (Circle 1 2 3) (Circle 1 2 3)))", ["unexpected ')' after the end"], 33),
]


@pytest.mark.parametrize("text,canonical", ACCEPTED)
def test_accepted(text, canonical):
    program = parse(text)
    assert str(program) == canonical
    assert is_valid(text)
    # The fast path takes every valid program; the careful path agrees with it.
    assert _parse_fast(text) == program
    assert _parse_careful(text) == program


def test_accepted_structure():
    assert parse("") is EMPTY
    assert parse("(Circle3 8 8)") == Circle(3, 8, 8)
    assert parse("(Quad 1 2 3 4 5)") == Quad(1, 2, 3, 4, 5)
    p = parse("(- (+ (Circle 1 1 1) (Circle 2 2 2)) (Circle 3 3 3))")
    assert p == Difference((Union((Circle(1, 1, 1), Circle(2, 2, 2))), Circle(3, 3, 3)))


@pytest.mark.parametrize("text,words,offset", REJECTED)
def test_rejected(text, words, offset):
    with pytest.raises(ProgramError) as info:
        parse(text)
    err = info.value
    for w in words:
        assert w in str(err), f"{w!r} not in {str(err)!r}"
    assert err.offset == offset, str(err)
    assert f"(at offset {offset})" in str(err)
    assert not is_valid(text)
    assert _parse_fast(text) is None  # the fast path never accepts what the careful one rejects


def test_error_names_operation_start_for_missing_operands():
    with pytest.raises(ProgramError, match=r"'-' needs .* opened at offset 3\)") as info:
        parse("(+ (- (Circle 1 2 3)) (Circle 1 2 3))")
    assert info.value.offset == 20  # the ')' that closes the operation too early


def test_non_str_input():
    for bad in (None, b"(Circle 1 2 3)", 3, ["(Circle 1 2 3)"]):
        with pytest.raises(ProgramError, match="must be a str"):
            parse(bad)


def test_language_interface_errors():
    csg = get_language("csg2d")
    assert csg.validate("(Circle 1 2 3)") is None
    err = csg.validate("(Circle 1 2 3) junk")
    assert isinstance(err, ProgramError) and err.offset == 15
    assert csg.canonical("( Circle 03 8  8 )") == "(Circle 3 8 8)"
    with pytest.raises(ProgramError):
        csg.canonical("(Circle 1 2)")


# --------------------------------------------------------------------------------------
# Nesting depth: accepted up to MAX_DEPTH, a clean error beyond.
# --------------------------------------------------------------------------------------

def _nested(depth: int) -> str:
    return "(+ " * depth + "(Circle 1 1 1)" + " (Circle 2 2 2))" * depth


def test_depth_limit():
    p = parse(_nested(MAX_DEPTH))
    assert isinstance(p, Union)
    with pytest.raises(ProgramError, match=f"nested deeper than {MAX_DEPTH}") as info:
        parse(_nested(MAX_DEPTH + 1))
    assert info.value.offset == 3 * MAX_DEPTH + 1  # the operator of the 129th '('


# --------------------------------------------------------------------------------------
# Pathological input: ProgramError (or a result), quickly; never RecursionError, MemoryError
# or a hang. Each case gets a generous wall-clock bound that a quadratic scan would blow.
# --------------------------------------------------------------------------------------

MB = 1 << 20
PATHOLOGICAL = [
    ("deep parens", "(" * 100_000, 1),
    ("deep closing parens", ")" * 100_000, 0),
    ("deep unions", "(+ " * 100_000, 3 * MAX_DEPTH + 1),
    ("deep unions no space", "(+" * 100_000, 2 * MAX_DEPTH + 1),
    ("deep balanced", "(+ " * 100_000 + "(Circle 1 1 1)" + " (Circle 1 1 1))" * 100_000, 3 * MAX_DEPTH + 1),
    ("megabyte of digits", "(Circle " + "1" * MB + " 2 3)", 8),
    ("megabyte of zeros then 16", "(Circle " + "0" * MB + "16 2 3)", 8),
    ("megabyte of letters", "(" + "C" * MB + " 1 2 3)", 1),
    ("megabyte of whitespace then garbage", " " * MB + "x", MB),
    ("whitespace in a circle then garbage", "(Circle" + " \t" * (MB // 2) + "x", 7 + MB),
    ("megabyte of NULs", "\x00" * MB, 0),
    ("non-ASCII", "(Circle 1 2 3)" + "é" * MB, 14),
    ("unterminated after a megabyte of zeros", "(Circle " + "0" * MB, 8 + MB),
]


@pytest.mark.parametrize("name,text,offset", PATHOLOGICAL, ids=[p[0] for p in PATHOLOGICAL])
def test_pathological_inputs_fail_fast(name, text, offset):
    t0 = time.perf_counter()
    with pytest.raises(ProgramError) as info:
        parse(text)
    assert time.perf_counter() - t0 < 2.0, f"{name}: too slow"
    assert info.value.offset == offset, str(info.value)[:200]
    assert len(str(info.value)) < 300  # messages quote at most a short excerpt


def test_pathological_valid_inputs_parse_fast():
    t0 = time.perf_counter()
    assert parse(" \n" * MB) is EMPTY
    assert parse("(Circle " + "0" * MB + "15 0 0)") == Circle(15, 0, 0)
    wide = parse("(+ " + "(Circle 1 2 3) " * 50_000 + ")")  # wide is fine; only depth is capped
    assert isinstance(wide, Union) and len(wide.operands) == 50_000
    assert time.perf_counter() - t0 < 5.0
