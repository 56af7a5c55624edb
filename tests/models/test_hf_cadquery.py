"""The Hugging Face backend on the ``cadquery`` language.

Prompts and extraction need no transformers; the end-to-end tests run a tiny random Gemma 3
(built offline by :mod:`img2prog.models.hf.tiny`, no download) on CPU. Its replies are
gibberish: the point is that every reply becomes either a parsed canonical script or the
clear "no program" failure, never an exception.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from img2prog.lang import get_language
from img2prog.lang.cadquery.sandbox import cadquery_available
from img2prog.lang.cadquery import testsets
from img2prog.lang.cadquery.testsets import standard_bar
from img2prog.models.hf.extract import SCRIPT_LANGUAGES, Extraction, extract, extract_all, salvage_script
from img2prog.models.hf.prompting import (
    PROMPT_STYLES,
    build_prompt,
    image_messages,
    language_prompts,
    mutation_prompt,
    training_messages,
)

HF_MISSING = "the Hugging Face backend needs the 'hf' extra: pip install 'img2prog[hf]'"
CQ = get_language("cadquery")
LP = language_prompts("cadquery")
EXAMPLES = [program for program, _ in LP.examples]
WASHER, TAB, STEP = EXAMPLES[0], EXAMPLES[1], EXAMPLES[2]

#: the same part as STEP's first extrusion, written the way a person (or a zero-shot model) would
HANDWRITTEN = """import cadquery as cq
base = cq.Workplane("XY")
outline = base.moveTo(-0.5, -0.25).lineTo(0.5, -0.25).lineTo(0.5, 0.25).lineTo(-0.5, 0.25).close()
solid = base.add(outline).extrude(0.5)
"""


def canon(script: str) -> str:
    return CQ.canonical(script)


# --- prompts ----------------------------------------------------------------------------------

def test_cadquery_is_read_by_the_script_rule():
    assert "cadquery" in SCRIPT_LANGUAGES and "csg2d" not in SCRIPT_LANGUAGES


@pytest.mark.parametrize("style", PROMPT_STYLES)
def test_prompts_exist_for_both_styles(style):
    p = build_prompt("cadquery", style)
    assert p.strip() and "cadquery" in p.lower()
    if style == "short":
        assert p == LP.short_instruction and "\n" not in p


def test_zero_shot_prompt_describes_the_subset_the_picture_and_the_format():
    p = build_prompt("cadquery", "zero-shot")
    for needle in ("cq.Workplane(cq.Plane(cq.Vector(", "moveTo", "lineTo", "threePointArc", "close()",
                   "circle(r)", ".add(", "extrude(d)", "extrude(d, both=True)", "solid.union(", "solid.cut(",
                   "solid.intersect(", "edges(", "fillet", "chamfer", "|Z", ">Z", "`solid`", "1/128",
                   "-2 and 2", "2x2", "```python"):
        assert needle in p, needle
    for program, what in LP.examples:  # every example is shown as a code block with its description
        assert f"```python\n{program}\n```" in p
        assert what[1:] in p
    assert p.rstrip().endswith("```")  # the output format comes last
    # csg2d's prompt is untouched by the multi-line layout
    csg = build_prompt("csg2d", "zero-shot")
    assert csg.startswith("Write the csg2d program that draws the image.") and "```python" not in csg


def test_examples_are_canonical_on_the_grid_and_no_test_program():
    assert 3 <= len(EXAMPLES) <= 5 and len(set(EXAMPLES)) == len(EXAMPLES)
    bar = standard_bar()
    held_out = set(testsets.qualitative_programs()) | set(testsets.testset_programs("cadquery-test"))
    for program in EXAMPLES:
        assert canon(program) == program + "\n"  # the canonical layout a fine-tuned model writes
        assert CQ.encode(program)  # numbers on the 1/128 grid, axis-aligned planes: it has tokens
        assert canon(program) not in bar and canon(program) not in held_out
    # together they show every construct of the subset
    text = "\n".join(EXAMPLES)
    for construct in ("threePointArc", "circle", "both=True", ".union(", ".cut(", ".intersect(", ".fillet(",
                      ".chamfer(", "extrude(-"):
        assert construct in text, construct


def test_format_example_is_read_back_by_the_extraction_rule():
    block = re.search(r"```python\n(.*?)```", LP.output_format, re.DOTALL).group(1)
    got = extract(LP.output_format, "cadquery")
    assert got.ok and got.in_code_block and got.program == canon(block) == block
    assert canon(block) not in standard_bar()


@pytest.mark.slow
@pytest.mark.skipif(not cadquery_available(), reason="CadQuery is not installed (pip install 'img2prog[cad]')")
def test_examples_build_and_are_no_copy_of_a_test_part():
    """Not even translated or scaled: their geometric fingerprints are not barred either."""
    from img2prog.lang.cadquery.generator import fingerprint
    from img2prog.lang.cadquery.sandbox import Executor, Limits

    block = re.search(r"```python\n(.*?)```", LP.output_format, re.DOTALL).group(1)
    bar = standard_bar()
    with Executor(workers=1, limits=Limits(cpu_s=20, wall_s=60)) as ex:
        results = ex.run_many(EXAMPLES + [block], mesh=False)
    for program, r in zip(EXAMPLES + [block], results):
        assert r.ok, (r.error, program)
        assert fingerprint(r.solid) not in bar


# --- chat messages ----------------------------------------------------------------------------

def test_messages_carry_the_image_and_the_text():
    from PIL import Image

    img = Image.new("RGB", (64, 64), "white")
    for style in PROMPT_STYLES:
        prompt = build_prompt("cadquery", style)
        (user,) = image_messages(prompt, img)
        assert user["role"] == "user"
        assert user["content"] == [{"type": "image", "image": img}, {"type": "text", "text": prompt}]
    conv = training_messages(LP.short_instruction, img, canon(TAB))
    assert conv[0]["content"][0]["image"] is img
    assert conv[1] == {"role": "assistant", "content": [{"type": "text", "text": canon(TAB)}]}
    # the training target (a bare canonical script) is what the extraction rule reads back
    assert extract(canon(TAB), "cadquery").program == canon(TAB)


def test_mutation_prompt_shows_parents_as_code_blocks_and_asks_for_blocks():
    p = mutation_prompt("cadquery", [WASHER, TAB], 3, with_images=True)
    assert p.startswith(LP.mutation_intro)
    assert f"1.\n```python\n{WASHER}\n```" in p and f"2.\n```python\n{TAB}\n```" in p
    assert "Write 3 new programs" in p and "numbered 1 to 3" in p and "```python code block" in p
    assert "images are shown above" in p
    assert "images" not in mutation_prompt("cadquery", [WASHER], 2)


# --- extraction -------------------------------------------------------------------------------

CASES = [
    # (name, reply, expected program (source to canonicalise) or None, in code block, repaired, fixes)
    ("python fence", f"```python\n{STEP}\n```", STEP, True, False, ()),
    ("py fence with prose", f"Here is the script:\n\n```py\n{WASHER}\n```\n\nIt makes a washer.", WASHER,
     True, False, ()),
    ("fence without tag", f"```\n{TAB}\n```", TAB, True, False, ()),
    ("bare canonical script", canon(STEP), STEP, False, False, ()),
    ("bare without final newline", STEP, STEP, False, False, ()),
    ("bare with prose around", f"Sure! The part is a block.\n{HANDWRITTEN}\nThis extrudes a rectangle.",
     HANDWRITTEN, False, False, ()),
    ("hand-written spelling is canonicalised", f"```python\n{HANDWRITTEN}```", HANDWRITTEN, True, False, ()),
    ("last block wins", f"```python\n{WASHER}\n```\nActually, this matches better:\n```python\n{TAB}\n```", TAB,
     True, False, ()),
    ("code block beats bare code", f"```python\n{TAB}\n```\n\n{WASHER}", TAB, True, False, ()),
    ("show_object is dropped", f"```python\n{WASHER}\nshow_object(solid)\n```", WASHER, True, False,
     ("show_object",)),
    ("indented script", "The script:\n" + "".join(f"    {line}\n" for line in WASHER.splitlines()), WASHER,
     False, False, ("indent",)),
    ("truncated inside the code block", "```python\n" + STEP[: STEP.index("solid1 = ") + 25],
     STEP[: STEP.index("wp_sketch1")], True, True, ()),
    ("truncated bare script", STEP[: STEP.index("solid = solid.cut(") + 21], STEP[: STEP.index("wp_sketch1")],
     False, True, ()),
]

FAILURES = [
    ("prose only", "I cannot tell which part this is."),
    ("empty reply", ""),
    ("garbage", "�gle\x7fx 90 written\x0b\x0b (� wit one ... 12Q )) ```"),
    ("a csg2d program", "```\n(Circle 3 8 8)\n```"),
    ("an empty code block", "```python\n```"),  # cadquery has no empty program
    ("outside the subset", "```python\nimport cadquery as cq\nsolid = cq.Workplane('XY').box(1, 1, 1)\n```"),
    ("complete script that does not parse is not cut down",
     STEP.replace("solid.cut(solid1)", "solid.cut(solid9)")),
    ("closed block that does not parse is not cut down", f"```python\n{STEP}\nsolid = solid.hole(0.1)\n```"),
]


@pytest.mark.parametrize("name,reply,expected,fenced,repaired,fixes", CASES, ids=[c[0] for c in CASES])
def test_extraction_of_cadquery_replies(name, reply, expected, fenced, repaired, fixes):
    got = extract(reply, "cadquery")
    assert got.program == canon(expected)
    assert got.in_code_block is fenced
    assert got.repaired is repaired
    assert got.fixes == fixes
    assert CQ.is_valid(got.program)
    assert extract(reply, CQ) == got  # a Language object works like its name


@pytest.mark.parametrize("name,reply", FAILURES, ids=[c[0] for c in FAILURES])
def test_replies_without_a_program_fail_like_csg2d(name, reply):
    got = extract(reply, "cadquery")
    assert got == Extraction(None) and not got.ok
    assert extract("I cannot tell which part this is.", "csg2d") == got  # csg2d's failure, exactly


def test_repair_can_be_turned_off():
    cut = "```python\n" + STEP[: STEP.index("solid1 = ") + 25]
    assert extract(cut, "cadquery").repaired
    assert extract(cut, "cadquery", repair=False) == Extraction(None)
    assert salvage_script("no code here") is None


def test_extract_all_lists_every_distinct_script_in_order():
    reply = "\n".join(f"{i}.\n```python\n{p}\n```" for i, p in enumerate([WASHER, TAB, WASHER, "broken(", STEP], 1))
    assert extract_all(reply, "cadquery") == [canon(WASHER), canon(TAB), canon(STEP)]
    assert extract_all("nothing", "cadquery") == []


def test_csg2d_extraction_is_unchanged():
    assert extract("```\n(circle 3, 8, 8)\n```").program == "(Circle 3 8 8)"
    assert extract("(+ (Circle 3 8 8) (Quad 5 5", "csg2d").repaired
    assert extract("```\n```", "csg2d").program == ""


# --- the proposer and generation (transformers) -----------------------------------------------

class CannedModel:
    """Stands in for HFModel on cadquery: fixed replies."""

    language = "cadquery"

    def __init__(self, replies):
        self.replies = replies

    def generate(self, images, n, *, prompt=None, settings=None, seed=None):
        return [self.replies[:n] for _ in range(len(images))]


def test_proposer_turns_cadquery_replies_into_canonical_scripts():
    pytest.importorskip("transformers", reason=HF_MISSING)
    from img2prog.models.hf.proposer import NO_PROGRAM, HFProposer

    model = CannedModel([f"```python\n{HANDWRITTEN}```", "I am not sure.", canon(TAB)])
    (row,) = HFProposer(model).propose(np.full((1, 32, 32, 3), 255, np.uint8), 3, seed=0)
    assert [c.program for c in row] == [canon(HANDWRITTEN), NO_PROGRAM, canon(TAB)]
    assert not CQ.is_valid(NO_PROGRAM)  # a reply without a program scores as unparsable


@pytest.fixture(scope="module")
def tiny_gemma(tmp_path_factory):
    pytest.importorskip("transformers", reason=HF_MISSING)
    from img2prog.models.hf import backend as B
    from img2prog.models.hf.tiny import build_tiny

    model = B.load(str(build_tiny("gemma3", tmp_path_factory.mktemp("tiny-gemma3-cadquery"))))
    model.language = "cadquery"
    return model


def test_tiny_model_generates_for_cadquery_without_raising(tiny_gemma):
    from img2prog.models.hf import backend as B
    from img2prog.models.hf.proposer import NO_PROGRAM, HFProposer

    m = tiny_gemma
    images = np.full((2, 64, 64, 3), 255, np.uint8)
    images[:, 16:48, 16:48] = 128  # a grey square on white, in place of a rendered part
    settings = B.GenerationSettings(max_new_tokens=24)
    m.prompt_style = "short"
    assert m.prompt() == LP.short_instruction
    replies = m.generate(images, 2, settings=settings, seed=0)
    assert [len(r) for r in replies] == [2, 2] and all(isinstance(t, str) for r in replies for t in r)
    for reply in (t for r in replies for t in r):
        got = extract(reply, m.language)
        assert got.program is None or CQ.is_valid(got.program)
    proposer = HFProposer(m, settings=settings)
    rows = proposer.propose(images, 2, seed=0)
    assert len(rows) == 2
    for row in rows:
        for c in row:
            assert c.program == NO_PROGRAM or c.program == canon(c.program)
    # the long zero-shot prompt goes through the model too
    m.prompt_style = "zero-shot"
    (one,) = m.generate(images[:1], 1, settings=B.GenerationSettings(max_new_tokens=4, do_sample=False))
    assert len(one) == 1 and isinstance(one[0], str)


def test_tiny_model_scores_a_cadquery_script(tiny_gemma):
    m = tiny_gemma
    m.prompt_style = "short"
    images = np.full((2, 64, 64, 3), 255, np.uint8)
    scores = m.score(images, [canon(WASHER), canon(STEP)])
    assert len(scores) == 2 and all(s is not None and np.isfinite(s) and s < 0 for s in scores)


def test_mutator_reads_one_code_block_per_cadquery_program():
    from img2prog.models.hf.mutator import programs_in_list

    scripts = list(language_prompts("cadquery").examples)[:2]
    reply = "Here are two:\n" + "".join(f"```python\n{p}```\n" for p, _ in scripts) + "```python\nnot a program\n```\n"
    assert [x.strip() for x in programs_in_list(reply, "cadquery")] == [p.strip() for p, _ in scripts]
