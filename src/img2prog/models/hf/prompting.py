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
qualitative test programs nor the seed population of the evolution protocol.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

PromptStyle = Literal["zero-shot", "short"]
PROMPT_STYLES: tuple[str, ...] = ("zero-shot", "short")


@dataclass(frozen=True)
class LanguagePrompts:
    """The prompt material for one graphics language."""

    name: str
    description: str  # syntax and semantics, in the model's words
    examples: tuple[tuple[str, str], ...]  # (program, what it draws)
    output_format: str  # how to answer
    short_instruction: str  # the one-line prompt of fine-tuned models
    mutation_intro: str  # for the model mutator (evolutionary data generation)


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

_REGISTRY: dict[str, LanguagePrompts] = {_CSG2D.name: _CSG2D}


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
    examples = "\n".join(f"{prog}  draws {what}." for prog, what in lp.examples)
    return (
        f"Write the {lp.name} program that draws the image.\n\n"
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
    listed = "\n".join(f"{i + 1}. {p}" for i, p in enumerate(parents))
    seen = "Their images are shown above, in the same order.\n" if with_images else ""
    return (
        f"{lp.mutation_intro}\n\n{lp.description}\n\n"
        f"Here are {len(parents)} existing program(s):\n{listed}\n{seen}\n"
        f"Write {n} new programs, each a variation of one or more of them: move, resize or rotate "
        "shapes, add or remove a shape, replace a circle by a rectangle or the other way round, "
        "combine two programs, or cut holes. Every new program must differ from the ones above and "
        "from each other, and every shape in it must change the picture.\n"
        f"Write one program per line, numbered 1 to {n}, with nothing else on the line."
    )
