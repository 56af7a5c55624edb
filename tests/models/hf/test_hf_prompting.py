"""Prompt building (no transformers needed)."""

from __future__ import annotations

import re

import pytest

from img2prog.lang import get_language
from img2prog.models.hf.extract import extract
from img2prog.models.hf.prompting import (
    build_prompt,
    image_messages,
    language_prompts,
    mutation_prompt,
    training_messages,
)

CSG = get_language("csg2d")
QUALITATIVE = [
    "(+ (Quad 8 10 2 8 0) (Quad 8 3 2 2 0))",
    "(+ (Quad 4 4 2 4 0) (Quad 12 4 2 4 45) (Quad 4 12 2 4 90) (Quad 12 12 2 4 135))",
    "(+ (- (Circle 5 7 5) (Circle 5 7 6)) (Quad 7 6 2 2 45) (Circle 2 4 10) (Circle 2 10 10))",
]
SEED_POPULATION = [
    "(Circle 3 8 8)",
    "(Quad 5 5 4 6 45)",
    "(- (Circle 5 5 5) (Circle 2 8 8))",
    "(+ (Quad 3 3 2 8 0) (Quad 5 5 4 6 45))",
    "(+ (- (Circle 3 8 8) (Circle 2 8 8)) (Quad 5 5 4 6 45))",
]


def test_zero_shot_prompt_describes_the_language_and_output_format():
    p = build_prompt("csg2d", "zero-shot")
    for needle in ("(Circle r x y)", "(Quad x y w h a)", "(+ A B ...)", "(- A B ...)", "0 to 15", "bottom-left",
                   "counter-clockwise", "```"):
        assert needle in p
    assert "45" in p and "315" in p


def test_prompt_examples_are_valid_and_not_test_or_seed_programs():
    lp = language_prompts("csg2d")
    for program, _ in lp.examples:
        assert CSG.canonical(program) == program
        assert program not in QUALITATIVE and program not in SEED_POPULATION
    # the format example in the prompt is itself something the extraction rule reads back
    example_block = re.search(r"```\n(.*?)\n```", lp.output_format, re.DOTALL).group(1)
    assert extract(f"```\n{example_block}\n```").program == example_block


def test_short_prompt_and_unknown_inputs():
    assert build_prompt("csg2d", "short") == "Write the csg2d program that draws this image."
    with pytest.raises(ValueError, match="unknown prompt style"):
        build_prompt("csg2d", "few-shot")  # type: ignore[arg-type]
    with pytest.raises(KeyError, match="no prompts for language 'svg'"):
        build_prompt("svg")


def test_messages_put_the_image_before_the_text():
    img = object()
    (user,) = image_messages("Draw.", img)
    assert user["role"] == "user"
    assert user["content"] == [{"type": "image", "image": img}, {"type": "text", "text": "Draw."}]
    conv = training_messages("Draw.", img, "(Circle 3 8 8)")
    assert conv[1] == {"role": "assistant", "content": [{"type": "text", "text": "(Circle 3 8 8)"}]}


def test_mutation_prompt_lists_parents_and_asks_for_n():
    p = mutation_prompt("csg2d", SEED_POPULATION[:2], 5, with_images=True)
    assert "1. (Circle 3 8 8)" in p and "2. (Quad 5 5 4 6 45)" in p
    assert "Write 5 new programs" in p and "numbered 1 to 5" in p
    assert "images are shown above" in p
    assert "images" not in mutation_prompt("csg2d", SEED_POPULATION[:1], 2)
