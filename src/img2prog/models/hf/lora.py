"""LoRA adapters on the *language model* of a vision-language model, with PEFT.

Which modules get adapters
--------------------------
The usual recipe names leaf modules — ``target_modules=["q_proj", "k_proj", "v_proj",
"o_proj", "gate_proj", "up_proj", "down_proj"]`` — and PEFT matches every module whose name
*ends* with one of them. In a VLM that silently includes the vision tower: SigLIP (Gemma 3,
Idefics3) has ``q_proj``/``k_proj``/``v_proj`` in every encoder layer, Qwen2.5-VL's ViT has
``gate_proj``/``up_proj``/``down_proj``. Adapting the vision encoder changes what the model
sees, multiplies the adapter size, and is not what QLoRA-on-the-LM recipes intend.

:func:`target_modules` therefore finds the language model module itself
(``model.get_decoder()``), lists the linear layers *inside it*, and returns a regular
expression anchored on that module's full path. PEFT full-matches a string
``target_modules`` against module names, so nothing outside the language model can match.
Following QLoRA (Dettmers et al., 2023, §4: adapters on all linear layers are needed to match
full fine-tuning), every linear projection of the attention and MLP blocks is adapted; the
embeddings and ``lm_head`` are not.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

#: leaf names adapted by default: attention and MLP projections of Gemma/Llama/Qwen blocks
DEFAULT_LEAVES: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass
class LoraSettings:
    """LoRA hyperparameters. Defaults: r = α = 16 (update scale α/r = 1), a common choice for
    small datasets — QLoRA (§4) finds the rank matters little once all linear layers are
    adapted (its scripts use r = 64, α = 16); dropout 0.1, the value of the QLoRA reference
    scripts for 7B/13B models (github.com/artidoro/qlora, scripts/finetune_guanaco_7b.sh)."""

    r: int = 16
    alpha: int = 16
    dropout: float = 0.1
    leaves: tuple[str, ...] = DEFAULT_LEAVES
    #: modules trained fully, not through adapters (PEFT ``modules_to_save``), e.g. a new,
    #: randomly initialised vision tower and projector; saved with the adapter. None: the
    #: ``fresh_modules`` the model folder declares (see :mod:`img2prog.models.hf.pretrained`).
    train_modules: tuple[str, ...] | None = None


def language_model_prefix(model: Any) -> str:
    """Full module path of the language model (decoder stack) inside ``model``."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    decoder = base.get_decoder() if hasattr(base, "get_decoder") else None
    if decoder is None:
        raise ValueError(f"{type(base).__name__} does not expose its language model (get_decoder)")
    for name, module in base.named_modules():
        if module is decoder:
            return name
    raise ValueError(f"language model of {type(base).__name__} not found among its modules")


def linear_modules(model: Any, prefix: str, leaves: Sequence[str]) -> list[str]:
    """Names of ``torch.nn.Linear`` modules (4-bit ``Linear4bit`` included: it subclasses it)
    under ``prefix`` whose last name part is one of ``leaves``."""
    out = []
    for name, module in model.named_modules():
        if name.startswith(prefix + ".") and isinstance(module, torch.nn.Linear) and name.rsplit(".", 1)[-1] in leaves:
            out.append(name)
    return out


def target_modules(model: Any, leaves: Sequence[str] = DEFAULT_LEAVES) -> str:
    """A regex (PEFT full-matches it) selecting the ``leaves`` linears of the language model."""
    prefix = language_model_prefix(model)
    found = linear_modules(model, prefix, leaves)
    if not found:
        raise ValueError(f"no linear modules named {', '.join(leaves)} under {prefix!r}")
    present = sorted({n.rsplit(".", 1)[-1] for n in found})
    return rf"{re.escape(prefix)}\..*\.({'|'.join(map(re.escape, present))})"


def naive_matches(model: Any, leaves: Sequence[str] = DEFAULT_LEAVES) -> list[str]:
    """What a plain leaf-name list would match (PEFT's suffix rule) — for diagnostics/tests."""
    return [
        name for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear) and name.rsplit(".", 1)[-1] in leaves
    ]


def add_lora(model: Any, settings: LoraSettings | None = None, *, quantized: bool = False,
             gradient_checkpointing: bool = False):
    """Wrap ``model`` with fresh LoRA adapters on its language model; returns the PEFT model.

    For 4-bit models, PEFT's ``prepare_model_for_kbit_training`` first casts norms to fp32 and
    enables input gradients (needed with gradient checkpointing on frozen embeddings).
    """
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    settings = settings or LoraSettings()
    if quantized:
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=gradient_checkpointing)
    config = LoraConfig(
        r=settings.r, lora_alpha=settings.alpha, lora_dropout=settings.dropout, bias="none",
        target_modules=target_modules(model, settings.leaves), task_type="CAUSAL_LM",
        modules_to_save=list(settings.train_modules) if settings.train_modules else None,
    )
    return get_peft_model(model, config)


def adapted_modules(model: Any) -> list[str]:
    """Names of modules that carry LoRA weights (after :func:`add_lora` or loading)."""
    return [name for name, module in model.named_modules() if hasattr(module, "lora_A") and len(module.lora_A) > 0]


def save_adapter(model: Any, folder: str | Path) -> Path:
    """Write only the adapter weights and config (a few MB for a 4B model)."""
    folder = Path(folder)
    model.save_pretrained(folder)
    return folder


def load_adapter(model: Any, folder: str | Path, *, trainable: bool = False):
    from peft import PeftModel

    return PeftModel.from_pretrained(model, str(folder), is_trainable=trainable)


def merge_adapter(model: Any):
    """Fold the adapter into the base weights and drop the PEFT wrapper.

    Merge into a full-precision (bf16/fp32) base: merging into 4-bit weights would re-quantize
    the sum and lose most of what the adapter learned. ``img2prog``'s merge recipe therefore
    reloads the base model unquantized before merging.
    """
    if getattr(model, "is_loaded_in_4bit", False) or getattr(getattr(model, "base_model", None), "is_loaded_in_4bit", False):
        raise ValueError("refusing to merge into a 4-bit model: reload the base model unquantized, then merge")
    return model.merge_and_unload()
