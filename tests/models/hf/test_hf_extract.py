"""The extraction rule on a corpus of realistic messy replies (no transformers needed).

Each case is a reply of the kind instruction-tuned VLMs give to the zero-shot prompt, with
the program the rule must pick (canonical text) or None. The corpus covers code fences with
and without language tags, prose around the program, explanations quoting parts of it,
several attempts, truncation at the token limit, wrong case, commas, decimals, extra
whitespace and chat-template debris.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from img2prog.lang import get_language
from img2prog.models.hf.extract import extract, extract_all, normalize, salvage

CSG = get_language("csg2d")


@dataclass(frozen=True)
class Case:
    name: str
    reply: str
    expected: str | None
    repaired: bool = False
    in_code_block: bool | None = None
    fixes: tuple[str, ...] = ()


SMILEY = "(+ (- (Circle 5 7 5) (Circle 5 7 6)) (Quad 7 6 2 2 45) (Circle 2 4 10) (Circle 2 10 10))"

CASES = [
    Case("bare", "(Circle 3 8 8)", "(Circle 3 8 8)", in_code_block=False),
    Case("bare with newline", "(+ (Circle 3 8 8) (Quad 5 5 4 6 45))\n", "(+ (Circle 3 8 8) (Quad 5 5 4 6 45))"),
    Case("plain fence", "```\n(Quad 8 3 14 2 0)\n```", "(Quad 8 3 14 2 0)", in_code_block=True),
    Case("lisp fence", "```lisp\n(- (Quad 8 8 10 10 0) (Circle 3 8 8))\n```", "(- (Quad 8 8 10 10 0) (Circle 3 8 8))"),
    Case("scheme fence with prose",
         "Here is the program that draws the image:\n\n```scheme\n(+ (Circle 2 4 12) (Circle 2 12 12))\n```\n\n"
         "It consists of two small circles near the top of the canvas.",
         "(+ (Circle 2 4 12) (Circle 2 12 12))", in_code_block=True),
    Case("fence then explanation quoting parts in backticks",
         f"```\n{SMILEY}\n```\n\n**Explanation:**\n* `(- (Circle 5 7 5) (Circle 5 7 6))` makes the smile.\n"
         "* `(Quad 7 6 2 2 45)` is the nose.\n* `(Circle 2 4 10)` and `(Circle 2 10 10)` are the eyes.",
         SMILEY, in_code_block=True),
    Case("no fence, explanation quoting parts",
         f"{SMILEY}\n\nExplanation: (Circle 2 4 10) is the left eye and (Circle 2 10 10) the right eye; "
         "(Quad 7 6 2 2 45) is a diamond-shaped nose.", SMILEY, in_code_block=False),
    Case("explanation before the answer quoting parts",
         "I see two eyes, (Circle 2 4 10) and (Circle 2 10 10), and a mouth. Putting it together:\n"
         "(+ (Circle 2 4 10) (Circle 2 10 10) (Quad 7 4 6 2 0))",
         "(+ (Circle 2 4 10) (Circle 2 10 10) (Quad 7 4 6 2 0))"),
    Case("two attempts, last is the revision",
         "My first guess is (Circle 4 8 8).\nActually, the shape has a hole, so a better match is "
         "(- (Circle 4 8 8) (Circle 2 8 8)).",
         "(- (Circle 4 8 8) (Circle 2 8 8))"),
    Case("two fenced attempts, last wins",
         "```\n(Quad 8 8 6 6 0)\n```\nWait, it is rotated:\n```\n(Quad 8 8 6 6 45)\n```",
         "(Quad 8 8 6 6 45)", in_code_block=True),
    Case("fenced answer beats later prose mention",
         "```\n(Quad 8 8 6 6 45)\n```\nAn alternative reading would be (Circle 4 8 8), but the corners are sharp.",
         "(Quad 8 8 6 6 45)", in_code_block=True),
    Case("invalid last attempt, valid earlier one",
         "(+ (Circle 3 8 8) (Quad 5 5 4 6 45))\nOr maybe (Circle 3 8 8 8)?",
         "(+ (Circle 3 8 8) (Quad 5 5 4 6 45))"),
    Case("lower-case keywords", "```\n(+ (circle 3 8 8) (quad 5 5 4 6 45))\n```",
         "(+ (Circle 3 8 8) (Quad 5 5 4 6 45))", fixes=("case",)),
    Case("upper-case keywords", "(- (QUAD 8 8 12 12 0) (CIRCLE 4 8 8))", "(- (Quad 8 8 12 12 0) (Circle 4 8 8))",
         fixes=("case",)),
    Case("extra whitespace and newlines",
         "```\n(+\n   (Circle   3  8 8 )\n\t(Quad 5 5\n 4 6 45)\n)\n```",
         "(+ (Circle 3 8 8) (Quad 5 5 4 6 45))"),
    Case("space after parenthesis", "( Circle 3 8 8 )", "(Circle 3 8 8)"),
    Case("commas between numbers", "The program is (Circle 3, 8, 8).", "(Circle 3 8 8)", fixes=("commas",)),
    Case("integral decimals", "(Quad 8.0 4.0 6 2 45.0)", "(Quad 8 4 6 2 45)", fixes=("decimals",)),
    Case("non-integral decimals are not repaired", "(Circle 2.5 8 8)", None),
    Case("typographic minus", "(− (Circle 5 8 8) (Circle 3 8 8))", "(- (Circle 5 8 8) (Circle 3 8 8))",
         fixes=("minus",)),
    Case("chat template debris", "<start_of_turn>model\n```\n(Circle 3 8 8)\n```<end_of_turn>", "(Circle 3 8 8)"),
    Case("program inside prose parentheses",
         "The image shows a ring (which is (- (Circle 6 8 8) (Circle 4 8 8)) in csg2d).",
         "(- (Circle 6 8 8) (Circle 4 8 8))"),
    Case("python string in a python fence",
         "```python\nprogram = \"(+ (Quad 4 4 2 4 0) (Quad 12 4 2 4 45))\"\n```",
         "(+ (Quad 4 4 2 4 0) (Quad 12 4 2 4 45))", in_code_block=True),
    Case("numbered list, last item",
         "Possible programs:\n1. (Circle 4 8 8)\n2. (Quad 8 8 8 8 45)\nThe second one matches best.",
         "(Quad 8 8 8 8 45)"),
    Case("truncated inside a primitive",
         "```\n(+ (Circle 3 8 8) (Quad 5 5 4 6 45) (Circle 2 1",
         "(+ (Circle 3 8 8) (Quad 5 5 4 6 45))", repaired=True, in_code_block=True),
    Case("truncated leaving one operand",
         "(- (Circle 5 8 8) (Qua", "(Circle 5 8 8)", repaired=True),
    Case("truncated nested",
         "(+ (- (Circle 5 7 5) (Circle 5 7 6)) (+ (Circle 2 4 10) (Circle 2 10",
         "(+ (- (Circle 5 7 5) (Circle 5 7 6)) (Circle 2 4 10))", repaired=True),
    Case("truncated before any complete shape", "Sure! Here is the program:\n```\n(+ (Circle 3 8", None),
    Case("forgotten closing parenthesis then prose",
         "(+ (Circle 3 8 8) (Quad 5 5 4 6 45)\nThis draws a circle and a rotated rectangle.",
         "(+ (Circle 3 8 8) (Quad 5 5 4 6 45))", repaired=True),
    Case("refusal", "I'm sorry, but I can't determine the exact program from this image.", None),
    Case("empty reply", "", None),
    Case("whitespace reply", "   \n\t", None),
    Case("empty code block is the empty program",
         "The canvas is completely white, so nothing needs to be drawn:\n```\n```", ""),
    Case("unknown shape", "```\n(Rect 8 8 4 4 0)\n```", None),
    Case("out of range number", "(Circle 20 8 8)", None),
    Case("wrong arity", "(Circle 3 8)", None),
    Case("operation with one operand", "(+ (Circle 3 8 8))", None),
    Case("duplicate program in fence and prose",
         "```\n(Quad 8 10 2 8 0)\n```\nSo the answer is (Quad 8 10 2 8 0).", "(Quad 8 10 2 8 0)",
         in_code_block=True),
    Case("markdown bold around program", "**Program:** (+ (Quad 8 10 2 8 0) (Quad 8 3 2 2 0))",
         "(+ (Quad 8 10 2 8 0) (Quad 8 3 2 2 0))"),
    Case("leading zeros", "(Circle 03 08 8)", "(Circle 3 8 8)"),
    Case("angle not a multiple of 45 still valid", "(Quad 8 8 4 2 30)", "(Quad 8 8 4 2 30)"),
]


def test_corpus_is_large_enough():
    assert len(CASES) >= 30
    assert len({c.name for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_extraction_corpus(case: Case):
    got = extract(case.reply)
    assert got.program == case.expected, f"{case.name}: reply {case.reply!r}"
    assert got.repaired == case.repaired
    if case.in_code_block is not None:
        assert got.in_code_block == case.in_code_block
    assert set(case.fixes) <= set(got.fixes)
    if got.program is not None:
        # whatever is returned is a program, in canonical spelling
        assert CSG.canonical(got.program) == got.program


def test_repair_can_be_switched_off():
    reply = "(+ (Circle 3 8 8) (Quad 5 5 4 6 45) (Circle 2 1"
    assert extract(reply).program == "(+ (Circle 3 8 8) (Quad 5 5 4 6 45))"
    assert extract(reply, repair=False).program is None


def test_complete_candidate_beats_repair():
    # a complete answer, then a second one cut off: the complete one is the answer
    reply = "(Circle 3 8 8)\nOr perhaps (+ (Circle 3 8 8) (Quad 5 5"
    got = extract(reply)
    assert got.program == "(Circle 3 8 8)" and not got.repaired


def test_candidate_count_counts_distinct_valid_spans():
    got = extract(f"```\n{SMILEY}\n```\n`(Circle 2 4 10)` is an eye.")
    # the whole program and the quoted eye (nested sub-expressions are not candidates)
    assert got.candidates == 2


def test_salvage_edge_cases():
    assert salvage("(Circle 3 8") is None
    assert salvage("(+ (Circle 3 8 8) (Circle 2 4 4) (Qu") == "(+ (Circle 3 8 8) (Circle 2 4 4))"
    assert salvage("(- (+ (Circle 3 8 8) (Circle 2 4 4)) (Circle 1") == "(+ (Circle 3 8 8) (Circle 2 4 4))"
    assert salvage("(Circle 3 8 8) trailing") == "(Circle 3 8 8)"


def test_normalize_reports_fixes():
    text, fixes = normalize("(circle 3, 8, 8.0)")
    assert text == "(Circle 3 8 8)"
    assert fixes == ("case", "commas", "decimals")
    assert normalize("(Circle 3 8 8)") == ("(Circle 3 8 8)", ())


def test_extract_all_lists_programs_in_order():
    reply = (
        "1. (Circle 3 8 8)\n2. (+ (Circle 3 8 8) (Quad 5 5 4 6 45))\n3. (Quad 5 5 4 6 45)\n"
        "4. (Circle 3 8 8)\n5. (Circle 99 1 1)\n6. (- (Quad 8 8 8 8 0) (Circle 2 8"
    )
    assert extract_all(reply) == [
        "(Circle 3 8 8)",
        "(+ (Circle 3 8 8) (Quad 5 5 4 6 45))",
        "(Quad 5 5 4 6 45)",
    ]


def test_extract_rejects_non_text():
    with pytest.raises(TypeError):
        extract(None)  # type: ignore[arg-type]


def test_unknown_language_is_a_clear_error():
    with pytest.raises(KeyError, match="unknown language"):
        extract("(Circle 3 8 8)", "svg")
