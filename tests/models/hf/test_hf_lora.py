"""LoRA target selection (vision tower excluded) and adapter save / load / merge round trips."""

from __future__ import annotations

import re

import numpy as np
import pytest

pytest.importorskip("peft", reason="the Hugging Face backend needs the 'hf' extra: pip install 'img2prog[hf]'")

import torch

from img2prog.lang import get_language
from img2prog.models.hf import backend as B
from img2prog.models.hf import lora as L
from img2prog.models.hf.tiny import FAMILIES

VISION_PARTS = ("vision_tower", "visual", "vision_model", "multi_modal_projector", "connector")


@pytest.mark.parametrize("family", FAMILIES)
def test_targets_are_the_language_model_linears_only(family, tiny_dir):
    model = B.load(str(tiny_dir(family))).model
    regex = L.target_modules(model)
    names = [n for n, _ in model.named_modules()]
    matched = [n for n in names if re.fullmatch(regex, n)]
    prefix = L.language_model_prefix(model)
    # 2 layers × 7 projections, all inside the language model
    assert len(matched) == 14
    assert all(n.startswith(prefix + ".") for n in matched)
    assert not any(part in n for n in matched for part in VISION_PARTS)
    # the trap this avoids: the usual leaf-name list also hits the vision encoder
    assert any(any(part in n for part in VISION_PARTS) for n in L.naive_matches(model))


@pytest.mark.parametrize("family", FAMILIES)
def test_add_lora_adapts_only_the_language_model_and_trains_only_adapters(family, tiny_dir):
    model = B.load(str(tiny_dir(family))).model
    peft_model = L.add_lora(model, L.LoraSettings(r=4, alpha=8))
    adapted = L.adapted_modules(peft_model)
    assert len(adapted) == 14
    assert not any(part in n for n in adapted for part in VISION_PARTS)
    trainable = [n for n, p in peft_model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)


def _logits(model, inputs):
    with torch.no_grad():
        return model(**inputs).logits


def test_adapter_save_load_merge_round_trip(tiny_dir, tmp_path):
    """Saved adapters reload to the same outputs, and merging keeps them while removing LoRA."""
    folder = str(tiny_dir("gemma3"))
    hfm = B.load(folder)
    peft_model = L.add_lora(hfm.model, L.LoraSettings(r=4, alpha=8, dropout=0.0))
    torch.manual_seed(0)
    for name, p in peft_model.named_parameters():
        if "lora_B" in name:  # B starts at zero (identity adapter): make the adapter matter
            p.data.normal_(0, 0.5)
    img = get_language("csg2d").render("(Circle 3 8 8)", 48)
    from img2prog.models.hf.prompting import image_messages

    inputs = B.apply_chat_template(hfm.processor, [image_messages("Write it.", B.as_pil(img))],
                                   add_generation_prompt=True)
    peft_model.eval()
    adapted = _logits(peft_model, inputs)
    base_only = _logits(B.load(folder).model, inputs)
    assert not torch.allclose(adapted, base_only, atol=1e-4)

    L.save_adapter(peft_model, tmp_path / "adapter")
    assert (tmp_path / "adapter" / "adapter_config.json").is_file()
    # the adapter folder holds adapter weights only, far fewer than the model's
    n_saved = sum(np.prod(t.shape) for t in _safetensors(tmp_path / "adapter" / "adapter_model.safetensors"))
    assert n_saved == sum(p.numel() for n, p in peft_model.named_parameters() if "lora_" in n)

    reloaded = L.load_adapter(B.load(folder).model, tmp_path / "adapter")
    reloaded.eval()
    assert torch.allclose(_logits(reloaded, inputs), adapted, atol=1e-5)

    merged = L.merge_adapter(reloaded)
    assert not L.adapted_modules(merged)
    assert torch.allclose(_logits(merged, inputs), adapted, atol=1e-4)


def test_load_adapter_folder_as_the_model(tiny_dir, tmp_path):
    folder = str(tiny_dir("idefics3"))
    peft_model = L.add_lora(B.load(folder).model, L.LoraSettings(r=2, alpha=2))
    L.save_adapter(peft_model, tmp_path / "ad")
    (tmp_path / "ad" / B.SFT_META).write_text(f'{{"base_model": "{folder}", "prompt_style": "short"}}')
    hfm = B.load(str(tmp_path / "ad"))
    assert hfm.prompt_style == "short"
    assert len(L.adapted_modules(hfm.model)) == 14


def test_merge_refuses_4bit():
    class Fake:
        is_loaded_in_4bit = True

    with pytest.raises(ValueError, match="4-bit"):
        L.merge_adapter(Fake())


def _safetensors(path):
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        return [f.get_tensor(k) for k in f.keys()]  # noqa: SIM118 - safe_open is not iterable
