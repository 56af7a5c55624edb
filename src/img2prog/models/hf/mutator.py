"""A Hugging Face model as the model mutator of evolutionary data generation.

:class:`HFProgramModel` implements :class:`img2prog.data.mutators.ProgramModel`: shown a few
parent programs (and, for a VLM, their images), it asks the model for ``n`` variations and
returns the program texts it wrote. It works with

- chat VLMs (Gemma 3, Qwen2.5-VL, SmolVLM...): parents' images go first, then the text;
- chat text-only LMs: the same prompt without images;
- base (non-chat) LMs without a chat template, e.g. the pretrained Gemma 3 270M: the prompt
  is continued as plain text, primed with ``"1. ("`` so the model writes the numbered list.

Each reply is read line by line: a line's program is what the extraction rule finds in it; a
line that holds a parenthesised attempt that is *not* a program is returned as written, so
the evolution loop's validity filter rejects it and counts it (the invalid-proposal rate is
one of the things the seed analysis looks at). Prose lines are ignored.

Registered as the ``hf`` backend of ``img2prog data evolve --mutator model``:
``--model hf --model-option model=NAME [--model-option quantize=4bit ...]``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from img2prog.models.hf.backend import GenerationSettings, HFModel, as_pil
from img2prog.models.hf.extract import SCRIPT_LANGUAGES, extract, extract_all
from img2prog.models.hf.prompting import mutation_prompt, user_message

_NUMBERING = re.compile(r"^\s*(?:\d+\s*[.):]|[-*•])\s*")


def programs_in_list(reply: str, language: str = "csg2d") -> list[str]:
    """Program texts of a numbered-list reply, one per line, in order (see module docstring).
    Script languages (CadQuery) answer with one code block per program instead: every valid
    script of the reply, in order."""
    if language in SCRIPT_LANGUAGES:
        return list(extract_all(reply, language))
    out: list[str] = []
    for line in reply.splitlines():
        body = _NUMBERING.sub("", line).strip().strip("`").strip()
        if "(" not in body:
            continue
        found = extract(body, language, repair=False)
        if found.program:
            out.append(found.program)
        elif found.program is None:
            start = body.find("(")
            out.append(body[start:])  # an invalid attempt: the evolution filter judges it
    return out


@dataclass
class HFProgramModel:
    """Proposes program variations with a loaded :class:`HFModel`.

    ``settings`` default to the seed protocol's sampling (temperature 1.0, top-p 0.95, top-k
    64) with room for a list of programs (512 new tokens). ``max_calls`` bounds how many
    generations one request may take when replies hold fewer programs than asked for.
    """

    model: HFModel
    settings: GenerationSettings = field(default_factory=lambda: GenerationSettings(max_new_tokens=512))
    max_calls: int = 4
    use_images: bool = True
    calls: int = 0  # generations made so far (for reports)

    def propose_variations(
        self,
        parents: Sequence[str],
        images: Sequence[np.ndarray] | None,
        n: int,
        *,
        seed: int | None = None,
    ) -> list[str]:
        if n <= 0:
            return []
        show = images is not None and self.use_images and self.model.is_vision
        text = mutation_prompt(self.model.language, list(parents), n, with_images=show)
        out: list[str] = []
        for attempt in range(self.max_calls):
            call_seed = None if seed is None else seed + attempt
            reply = self._generate(text, [as_pil(im) for im in images] if show else None, call_seed)
            self.calls += 1
            for program in programs_in_list(reply, self.model.language):
                if program not in out:
                    out.append(program)
            if len(out) >= n:
                break
        return out[:n]

    def _generate(self, text: str, pil_images: list | None, seed: int | None) -> str:
        tok = self.model.tokenizer
        has_template = bool(getattr(self.model.processor, "chat_template", None) or getattr(tok, "chat_template", None))
        if has_template:
            message = user_message(text)
            if pil_images:
                message["content"] = [{"type": "image", "image": im} for im in pil_images] + message["content"]
            return self.model.generate_chats([[message]], 1, settings=self.settings, seed=seed)[0][0]
        return self._complete(text + "\n\n1. (", seed)

    def _complete(self, prompt: str, seed: int | None) -> str:
        """Plain-text continuation for base models without a chat template."""
        import torch

        from img2prog.models.hf.backend import _generate_kwargs

        tok = self.model.tokenizer
        enc = tok([prompt], return_tensors="pt").to(self.model.device)
        if seed is not None:
            torch.manual_seed(seed)
        with torch.inference_mode():
            ids = self.model.model.generate(**enc, **_generate_kwargs(self.settings, 1), pad_token_id=tok.pad_token_id)
        return "1. (" + tok.decode(ids[0, enc["input_ids"].shape[1]:], skip_special_tokens=True)


def _truthy(value: Any) -> bool:
    return str(value).strip().lower() in ("1", "true", "yes", "on")


def hf_program_model(model: str | None = None, **options: Any) -> HFProgramModel:
    """Factory for the ``hf`` model backend: options arrive as strings from the command line
    (``model=NAME``, ``quantize=none|4bit``, ``images=true|false``, ``max_new_tokens=512``,
    ``temperature=1.0``, ``top_p=0.95``, ``top_k=64``, ``adapter=DIR``)."""
    from img2prog.models.hf.backend import LoadConfig, load

    if not model:
        raise ValueError("the hf model backend needs --model-option model=NAME (hub name or folder)")
    cfg = LoadConfig(model=model, adapter=options.pop("adapter", None), quantize=options.pop("quantize", "none"))
    settings = GenerationSettings(max_new_tokens=512)
    for key, cast in (("max_new_tokens", int), ("temperature", float), ("top_p", float), ("top_k", int)):
        if key in options:
            settings = replace(settings, **{key: cast(options.pop(key))})
    use_images = _truthy(options.pop("images", "true"))
    if options:
        raise ValueError(f"unknown hf model option(s): {', '.join(sorted(options))}")
    return HFProgramModel(load(cfg), settings=settings, use_images=use_images)


def register() -> None:
    """Make ``--mutator model --model hf`` available to ``img2prog data evolve``."""
    from img2prog.data.mutators import register_program_model

    register_program_model("hf", hf_program_model)


register()
