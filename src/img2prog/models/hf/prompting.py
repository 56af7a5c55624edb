"""Prompts for vision-language models: what we ask, and the chat messages that carry it.

Nothing here imports ``transformers``: prompts are plain text and chat messages are the
list-of-dicts format every Hugging Face processor's ``apply_chat_template`` accepts
(``{"role": ..., "content": [{"type": "image", "image": PIL.Image}, {"type": "text", ...}]}``).

Two prompt styles per language:

- ``"zero-shot"`` — describes the language (syntax, parameter ranges, coordinate system),
  shows a few examples with what they draw, and fixes the output format. This is what a
  model that has never seen the language needs.
- ``"short"`` — one instruction line. Fine-tuned models learn the language from data, so
  the long description only costs sequence length (and memory) in every training example.
  Whatever style a model was fine-tuned with must be used at inference; the SFT recipe
  records it next to the adapter and :func:`img2prog.models.hf.backend.load` reads it back.

The example programs in the zero-shot prompt are deliberately *not* any of the SPEC's
qualitative test programs nor the seed population of the evolution protocol. For ``cadquery``
they are hand-written parts that are neither in the frozen test sets nor geometrically equal
to one of their parts (:func:`img2prog.lang.cadquery.testsets.standard_bar`), written in the
canonical layout the language prints, so a fine-tuned model and a prompted one answer alike.

Languages whose programs span several lines (``cadquery``) set
:attr:`LanguagePrompts.code_block`: their examples and the parents of a mutation request are
shown as fenced code blocks instead of inline.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

PromptStyle = Literal["zero-shot", "short"]
PROMPT_STYLES: tuple[str, ...] = ("zero-shot", "short")


#: the mutation request of one-line languages: a numbered list, one program per line
_LIST_REQUEST = (
    "Write {n} new programs, each a variation of one or more of them: move, resize or rotate "
    "shapes, add or remove a shape, replace a circle by a rectangle or the other way round, "
    "combine two programs, or cut holes. Every new program must differ from the ones above and "
    "from each other, and every shape in it must change the picture.\n"
    "Write one program per line, numbered 1 to {n}, with nothing else on the line."
)


@dataclass(frozen=True)
class LanguagePrompts:
    """The prompt material for one graphics language."""

    name: str
    description: str  # syntax and semantics, in the model's words
    examples: tuple[tuple[str, str], ...]  # (program, what it draws)
    output_format: str  # how to answer
    short_instruction: str  # the one-line prompt of fine-tuned models
    mutation_intro: str  # for the model mutator (evolutionary data generation)
    #: what the model mutator is asked to write (``{n}``: how many programs)
    mutation_request: str = _LIST_REQUEST
    #: first line of the zero-shot prompt (None: "Write the <name> program that draws the image.")
    task: str | None = None
    #: fence tag for programs shown as code blocks (multi-line languages); None shows them inline
    code_block: str | None = None


_CSG2D = LanguagePrompts(
    name="csg2d",
    description=(
        "The image shows a black shape on a white square canvas. The canvas is 16 units wide and "
        "16 units tall; (0, 0) is the bottom-left corner, x grows to the right and y grows upwards.\n"
        "Shapes are written as parenthesised expressions:\n"
        "- (Circle r x y): a filled disc of radius r whose centre is (x, y).\n"
        "- (Quad x y w h a): a filled rectangle, w wide and h tall, centred at (x, y) and turned "
        "a degrees counter-clockwise about its centre; a is one of 0, 45, 90, 135, 180, 225, 270, 315.\n"
        "- (+ A B ...): everything covered by any of the shapes A, B, ... (two or more shapes).\n"
        "- (- A B ...): shape A with B and every further shape cut away from it (two or more shapes).\n"
        "r, x, y, w and h are whole numbers from 0 to 15. Parts of a shape outside the canvas are "
        "not drawn. Operations can be nested."
    ),
    examples=(
        ("(Circle 4 8 8)", "a disc in the middle of the canvas"),
        ("(Quad 8 3 14 2 0)", "a flat bar along the bottom edge"),
        ("(- (Quad 8 8 10 10 0) (Circle 3 8 8))", "a square with a round hole in its centre"),
        ("(+ (Quad 8 5 2 8 0) (Quad 8 11 8 2 0))", "a T: a vertical post with a crossbar on top"),
        ("(+ (Circle 2 4 12) (- (Circle 4 11 5) (Quad 11 3 8 4 0)))", "a small disc top left and a half disc bottom right"),
    ),
    output_format=(
        "Answer with the program only: one expression that draws the whole image, inside a code block, "
        "like this:\n```\n(+ (Circle 2 5 5) (Quad 10 10 4 4 45))\n```"
    ),
    short_instruction="Write the csg2d program that draws this image.",
    mutation_intro=(
        "You are helping to build a varied training set of csg2d programs. csg2d draws black "
        "shapes on a white 16x16 canvas."
    ),
)

_XY0 = "cq.Workplane(cq.Plane(cq.Vector(0.0, 0.0, 0.0), cq.Vector(1.0, 0.0, 0.0), cq.Vector(0.0, 0.0, 1.0)))"

_CADQUERY = LanguagePrompts(
    name="cadquery",
    task="Write the CadQuery script (cadquery program) that builds the part in the image.",
    description=(
        "The image shows one solid part as four grey, shaded views on a white background, in a "
        "2x2 grid. The two upper views look down on the part from opposite corners (front-right "
        "and back-left), the two lower views look up at it from the two other corners; +Z is up "
        "in every view and dark lines mark edges and outlines. The part is centred and scaled so "
        "that its longest side always has the same length in the picture: only its shape and "
        "proportions can be seen, not its size or position.\n"
        "A part is a short Python script using this subset of CadQuery, one statement per line:\n"
        "- `import cadquery as cq` comes first.\n"
        "- `wp = cq.Workplane(cq.Plane(cq.Vector(ox, oy, oz), cq.Vector(ux, uy, uz), cq.Vector(nx, ny, nz)))` "
        "is a sketch plane through the point (ox, oy, oz) with in-plane x direction u and normal n; "
        "u and n point along the axes (like 1.0, 0.0, 0.0 or 0.0, 0.0, -1.0) and are perpendicular. "
        "A sketch point (a, b) lies at origin + a*u + b*(n x u).\n"
        "- `loop = wp.moveTo(a, b).lineTo(a, b).threePointArc((a, b), (a, b)).close()` draws a "
        "closed outline on wp from straight segments (lineTo: to a point) and circular arcs "
        "(threePointArc: through a middle point to an end point), in any number and order; close() "
        "ends it at its start. `hole = wp.moveTo(a, b).circle(r)` is a circle of radius r centred "
        "at (a, b).\n"
        "- `body = wp.add(loop).add(hole).extrude(d)` turns the outlines drawn on wp into a solid "
        "d thick along the normal (a negative d goes the other way); `extrude(d, both=True)` "
        "goes d to both sides. Every outline drawn on wp must be added, an outline inside another "
        "one is a hole, and each workplane is extruded once.\n"
        "- The first body becomes the part: `solid = body`. Later bodies change it: "
        "`solid = solid.union(body)` adds material, `solid = solid.cut(body)` removes it and "
        "`solid = solid.intersect(body)` keeps only the material the two have in common.\n"
        "- Edges can be rounded or bevelled: `solid = solid.edges(\"|Z\").fillet(r)` or "
        "`.chamfer(d)`; the selector is \"|X\", \"|Y\" or \"|Z\" (edges parallel to that axis), "
        "or \">X\", \"<X\", \">Y\", \"<Y\", \">Z\", \"<Z\" (the edges furthest along that direction).\n"
        "- The finished part is the variable `solid`.\n"
        "Every number is a multiple of 1/128 = 0.0078125 between -2 and 2 (for example 0.5, "
        "-0.375, 0.0625); parts are about one unit across. Nothing else is allowed: no other "
        "methods (box, hole, faces, workplane, ...), no loops, functions or if statements, no "
        "show_object or exports."
    ),
    examples=(
        (
            "import cadquery as cq\n"
            f"wp_sketch0 = {_XY0}\n"
            "loop0 = wp_sketch0.moveTo(0.0, 0.0).circle(0.5)\n"
            "loop1 = wp_sketch0.moveTo(0.0, 0.0).circle(0.1875)\n"
            "solid0 = wp_sketch0.add(loop0).add(loop1).extrude(0.25)\n"
            "solid = solid0",
            "a washer: a flat disc with a round hole through its centre",
        ),
        (
            "import cadquery as cq\n"
            "wp_sketch0 = cq.Workplane(cq.Plane(cq.Vector(0.0, 0.0, 0.0), cq.Vector(0.0, 1.0, 0.0), "
            "cq.Vector(1.0, 0.0, 0.0)))\n"
            "loop0 = wp_sketch0.moveTo(-0.375, 0.0).lineTo(0.375, 0.0).lineTo(0.375, 0.5)"
            ".threePointArc((0.0, 0.875), (-0.375, 0.5)).lineTo(-0.375, 0.0).close()\n"
            "loop1 = wp_sketch0.moveTo(0.0, 0.5).circle(0.125)\n"
            "solid0 = wp_sketch0.add(loop0).add(loop1).extrude(0.0625, both=True)\n"
            "solid = solid0",
            "an upright tab with a rounded top and a hole, 0.125 thick, centred on the plane x = 0",
        ),
        (
            "import cadquery as cq\n"
            f"wp_sketch0 = {_XY0}\n"
            "loop0 = wp_sketch0.moveTo(-0.5, -0.25).lineTo(0.5, -0.25).lineTo(0.5, 0.25)"
            ".lineTo(-0.5, 0.25).lineTo(-0.5, -0.25).close()\n"
            "solid0 = wp_sketch0.add(loop0).extrude(0.5)\n"
            "solid = solid0\n"
            "wp_sketch1 = cq.Workplane(cq.Plane(cq.Vector(0.0, 0.0, 0.5), cq.Vector(1.0, 0.0, 0.0), "
            "cq.Vector(0.0, 0.0, 1.0)))\n"
            "loop1 = wp_sketch1.moveTo(0.0, -0.25).lineTo(0.5, -0.25).lineTo(0.5, 0.25)"
            ".lineTo(0.0, 0.25).lineTo(0.0, -0.25).close()\n"
            "solid1 = wp_sketch1.add(loop1).extrude(-0.25)\n"
            "solid = solid.cut(solid1)",
            "a block with a step: the top half of its +X end is cut away",
        ),
        (
            "import cadquery as cq\n"
            f"wp_sketch0 = {_XY0}\n"
            "loop0 = wp_sketch0.moveTo(-0.625, -0.375).lineTo(0.625, -0.375).lineTo(0.625, 0.375)"
            ".lineTo(-0.625, 0.375).lineTo(-0.625, -0.375).close()\n"
            "solid0 = wp_sketch0.add(loop0).extrude(0.1875)\n"
            "solid = solid0\n"
            "solid = solid.edges(\"|Z\").chamfer(0.0625)\n"
            "wp_sketch1 = cq.Workplane(cq.Plane(cq.Vector(0.25, 0.0, 0.1875), cq.Vector(1.0, 0.0, 0.0), "
            "cq.Vector(0.0, 0.0, 1.0)))\n"
            "loop1 = wp_sketch1.moveTo(0.0, 0.0).circle(0.15625)\n"
            "solid1 = wp_sketch1.add(loop1).extrude(0.4375)\n"
            "solid = solid.union(solid1)",
            "a plate with bevelled corners and a round post standing on it, off centre towards +X",
        ),
        (
            "import cadquery as cq\n"
            f"wp_sketch0 = {_XY0}\n"
            "loop0 = wp_sketch0.moveTo(-0.5, -0.5).lineTo(0.5, -0.5).lineTo(0.5, 0.5)"
            ".lineTo(-0.5, 0.5).lineTo(-0.5, -0.5).close()\n"
            "solid0 = wp_sketch0.add(loop0).extrude(0.375)\n"
            "solid = solid0\n"
            f"wp_sketch1 = {_XY0}\n"
            "loop1 = wp_sketch1.moveTo(0.0, 0.0).circle(0.625)\n"
            "solid1 = wp_sketch1.add(loop1).extrude(0.375)\n"
            "solid = solid.intersect(solid1)\n"
            "solid = solid.edges(\">Z\").fillet(0.0625)",
            "a square block with its corners trimmed round by a cylinder and its top edges rounded",
        ),
    ),
    output_format=(
        "Answer with the complete script only, in one Python code block, like this:\n"
        "```python\n"
        "import cadquery as cq\n"
        f"wp_sketch0 = {_XY0}\n"
        "loop0 = wp_sketch0.moveTo(0.0, 0.0).circle(0.25)\n"
        "solid0 = wp_sketch0.add(loop0).extrude(0.75)\n"
        "solid = solid0\n"
        "```"
    ),
    short_instruction="Write the cadquery program that builds the part in this image.",
    mutation_intro=(
        "You are helping to build a varied training set of cadquery programs. A cadquery program "
        "is a short CadQuery Python script that builds one solid part from extruded sketches."
    ),
    mutation_request=(
        "Write {n} new programs, each a variation of one or more of them: move, resize or turn a "
        "sketch, change an outline, add or remove a hole, boss or pocket, switch between union, "
        "cut and intersect, add or change a fillet or chamfer, or combine two programs. Every new "
        "program must differ from the ones above and from each other, and every extrusion in it "
        "must change the part.\n"
        "Write each new program as a complete script in its own ```python code block, the blocks "
        "numbered 1 to {n}."
    ),
    code_block="python",
)

_REGISTRY: dict[str, LanguagePrompts] = {_CSG2D.name: _CSG2D, _CADQUERY.name: _CADQUERY}


def language_prompts(language: str) -> LanguagePrompts:
    """The prompt material of ``language`` (KeyError naming the known ones otherwise)."""
    try:
        return _REGISTRY[language]
    except KeyError:
        raise KeyError(
            f"no prompts for language {language!r}; available: {', '.join(sorted(_REGISTRY))}"
        ) from None


def build_prompt(language: str = "csg2d", style: PromptStyle = "zero-shot") -> str:
    """The text that goes with the target image in the user turn."""
    lp = language_prompts(language)
    if style == "short":
        return lp.short_instruction
    if style != "zero-shot":
        raise ValueError(f"unknown prompt style {style!r}; expected one of {', '.join(PROMPT_STYLES)}")
    if lp.code_block is None:
        examples = "\n".join(f"{prog}  draws {what}." for prog, what in lp.examples)
    else:
        examples = "\n\n".join(f"{what[0].upper()}{what[1:]}:\n{_fenced(prog, lp.code_block)}" for prog, what in lp.examples)
    task = lp.task or f"Write the {lp.name} program that draws the image."
    return (
        f"{task}\n\n"
        f"{lp.description}\n\n"
        f"Examples:\n{examples}\n\n"
        f"{lp.output_format}"
    )


def user_message(prompt: str, image: Any | None = None) -> dict:
    """A user turn with the image first, then the prompt (the order Gemma 3, Qwen2.5-VL and
    Idefics3 were instruction-tuned with). ``image`` may be None for text-only models."""
    content: list[dict] = []
    if image is not None:
        content.append({"type": "image", "image": image})
    content.append({"type": "text", "text": prompt})
    return {"role": "user", "content": content}


def assistant_message(text: str) -> dict:
    return {"role": "assistant", "content": [{"type": "text", "text": text}]}


def image_messages(prompt: str, image: Any) -> list[dict]:
    """The conversation asking for the program of one image (generation prompt not included)."""
    return [user_message(prompt, image)]


def training_messages(prompt: str, image: Any, program: str) -> list[dict]:
    """One supervised example: the image and prompt, answered with exactly the program text.

    The answer is the bare program (no code fence, no prose): the shortest target, and the
    extraction rule in :mod:`.extract` accepts it as it is.
    """
    return [user_message(prompt, image), assistant_message(program)]


def mutation_prompt(
    language: str, parents: Sequence[str], n: int, *, with_images: bool = False
) -> str:
    """Ask for ``n`` new programs that vary the ``parents`` (evolutionary data generation).

    The wording pushes for variety (different positions, sizes, counts and combinations)
    because the seed documents found that model-driven evolution collapses onto near-copies.
    With ``with_images`` the caller puts one image per parent, in order, before this text.
    """
    lp = language_prompts(language)
    if lp.code_block is None:
        listed = "\n".join(f"{i + 1}. {p}" for i, p in enumerate(parents))
    else:
        listed = "\n".join(f"{i + 1}.\n{_fenced(p, lp.code_block)}" for i, p in enumerate(parents))
    seen = "Their images are shown above, in the same order.\n" if with_images else ""
    return (
        f"{lp.mutation_intro}\n\n{lp.description}\n\n"
        f"Here are {len(parents)} existing program(s):\n{listed}\n{seen}\n"
        + lp.mutation_request.format(n=n)
    )


def _fenced(program: str, tag: str) -> str:
    return f"```{tag}\n{program.strip()}\n```"
