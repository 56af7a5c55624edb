"""The Hugging Face model mutator: list parsing, prompts with images, evolution integration."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("transformers", reason="the Hugging Face backend needs the 'hf' extra: pip install 'img2prog[hf]'")

from img2prog.lang import get_language
from img2prog.models.hf import backend as B
from img2prog.models.hf.mutator import HFProgramModel, hf_program_model, programs_in_list

CSG = get_language("csg2d")


def test_programs_in_list_reads_one_program_per_line():
    reply = (
        "Here are three variations:\n"
        "1. (Circle 4 8 8)\n"
        "2) `(+ (circle 3 8 8) (Quad 5 5 4 6 90))`\n"
        "- (Quad 5 5 4 6 45 90)\n"
        "This one is nice.\n"
        "3. (- (Circle 5 5 5) (Circle 2 8 8)) -- a crescent\n"
        "4. (Circle 4 8 8)\n"
    )
    assert programs_in_list(reply) == [
        "(Circle 4 8 8)",
        "(+ (Circle 3 8 8) (Quad 5 5 4 6 90))",
        "(Quad 5 5 4 6 45 90)",  # invalid attempts are kept for the evolution filter to reject
        "(- (Circle 5 5 5) (Circle 2 8 8))",
        "(Circle 4 8 8)",
    ]


class ScriptedVLM:
    """Stands in for HFModel: records the conversations, answers from a script."""

    language = "csg2d"
    is_vision = True
    processor = type("P", (), {"chat_template": "x"})()
    tokenizer = processor

    def __init__(self, replies):
        self.replies = list(replies)
        self.conversations = []

    def generate_chats(self, conversations, n, *, settings=None, seed=None):
        self.conversations.append(conversations)
        return [[self.replies.pop(0)] for _ in conversations]


def test_variations_show_parents_and_their_images_and_retry_until_n():
    model = ScriptedVLM(["1. (Circle 4 8 8)\n2. (Circle 4 8 8)", "1. (Quad 8 8 4 4 45)\n2. (Circle 2 2 2)"])
    proposer = HFProgramModel(model)  # type: ignore[arg-type]
    parents = ["(Circle 3 8 8)", "(Quad 5 5 4 6 45)"]
    images = [CSG.render(p, 32)[:, :, 0] for p in parents]
    got = proposer.propose_variations(parents, images, 3, seed=7)
    assert got == ["(Circle 4 8 8)", "(Quad 8 8 4 4 45)", "(Circle 2 2 2)"]
    assert proposer.calls == 2
    (conv,) = model.conversations[0]
    content = conv[0]["content"]
    assert [part["type"] for part in content] == ["image", "image", "text"]
    assert "1. (Circle 3 8 8)" in content[2]["text"] and "2. (Quad 5 5 4 6 45)" in content[2]["text"]
    assert "Write 3 new programs" in content[2]["text"]


def test_without_images_the_prompt_is_text_only():
    model = ScriptedVLM(["1. (Circle 4 8 8)"])
    got = HFProgramModel(model, use_images=False).propose_variations(["(Circle 3 8 8)"], [np.zeros((8, 8), np.uint8)], 1)
    assert got == ["(Circle 4 8 8)"]
    assert [p["type"] for p in model.conversations[0][0][0]["content"]] == ["text"]


def test_evolution_with_the_model_mutator(tmp_path):
    """The seed protocol's evolution loop driven by a (scripted) model through our mutator."""
    from img2prog.data.evolve import EvolveConfig, evolve
    from img2prog.data.mutators import ModelMutator

    rng = np.random.default_rng(0)

    class RandomLister(ScriptedVLM):
        def generate_chats(self, conversations, n, *, settings=None, seed=None):
            lines = [f"{i + 1}. (+ (Circle {rng.integers(2, 6)} {rng.integers(3, 13)} {rng.integers(3, 13)}) "
                     f"(Quad {rng.integers(3, 13)} {rng.integers(3, 13)} {rng.integers(2, 8)} {rng.integers(2, 8)} "
                     f"{45 * rng.integers(0, 8)}))" for i in range(6)]
            return [["\n".join(lines)] for _ in conversations]

    model = HFProgramModel(RandomLister([]))  # type: ignore[arg-type]
    config = EvolveConfig(n=6, seed=0, mutator="model", filter="valid", bar_standard=False, children=4)
    samples = evolve(config, out=tmp_path / "evo", mutator=ModelMutator(model))
    assert len(samples) == 6
    assert all(s.mutation == "model" for s in samples)
    assert all(CSG.is_valid(s.program) for s in samples)


def test_registered_backend_loads_a_text_only_base_model(tmp_path):
    """The `hf` backend of `img2prog data evolve --mutator model`, on a tiny text-only Gemma 3
    without a chat template (the shape of the pretrained 270M): plain-text continuation."""
    from img2prog.data.mutators import available_program_models, get_program_model
    from img2prog.models.hf.tiny import build_tiny_text

    assert "hf" in available_program_models()
    folder = build_tiny_text(tmp_path / "text")
    model = get_program_model("hf", model=str(folder), max_new_tokens="12", images="false")
    assert isinstance(model, HFProgramModel) and not model.model.is_vision
    out = model.propose_variations(["(Circle 3 8 8)"], None, 2, seed=0)
    assert isinstance(out, list) and len(out) <= 2 and all(o.startswith("(") for o in out)
    assert model.propose_variations(["(Circle 3 8 8)"], None, 2, seed=0) == out  # reproducible
    with pytest.raises(ValueError, match="unknown hf model option"):
        hf_program_model(model=str(folder), colour="red")
    with pytest.raises(ValueError, match="model=NAME"):
        hf_program_model()


def test_text_only_models_have_no_processor_images(tmp_path):
    from img2prog.models.hf.tiny import build_tiny_text

    m = B.load(str(build_tiny_text(tmp_path / "t")))
    assert m.tokenizer is m.processor
