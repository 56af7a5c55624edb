"""Tiny, randomly initialised vision-language models of real architectures, built offline.

No model hub is reachable from CI or from these machines, yet every code path of the
Hugging Face backend (prompting, generation, LoRA, SFT, saving and loading) must run on the
real model classes. :func:`build_tiny` writes a complete checkpoint folder — ``config.json``,
weights, tokenizer, image processor and chat template — that ``from_pretrained`` loads
exactly like a downloaded one:

- ``gemma3`` — ``Gemma3ForConditionalGeneration`` (SigLIP vision tower, pooled projector,
  Gemma 3 text model with sliding and full attention layers);
- ``qwen2_5_vl`` — ``Qwen2_5_VLForConditionalGeneration`` (windowed ViT, patch merger,
  M-RoPE text model);
- ``idefics3`` — ``Idefics3ForConditionalGeneration``, the architecture of SmolVLM
  (SigLIP-style encoder, pixel-shuffle connector, Llama text model).

The tokenizer is a byte-level BPE trained with ``tokenizers`` on the prompts and programs of
this project, so it can encode any text. The chat template is either written here by hand
in each family's format, with ``{% generation %}`` blocks around assistant replies (what
assistant-only loss masking needs), or, with ``chat_template="reference"``, the family's
original hub template as shipped inside TRL (which has no generation blocks: that exercises
TRL's swap to its training template, as happens with real checkpoints).

Everything is tiny (about 50k parameters, 4 image tokens per image) so a forward pass takes
milliseconds on a CPU. The weights are random: outputs are gibberish, which is the point —
the tests check plumbing, not skill.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

FAMILIES: tuple[str, ...] = ("gemma3", "qwen2_5_vl", "idefics3")
Family = Literal["gemma3", "qwen2_5_vl", "idefics3"]


@dataclass(frozen=True)
class TinySpec:
    """Sizes of a tiny model. The defaults keep a forward pass in the millisecond range."""

    vocab_size: int = 640  # byte-level BPE: 256 bytes + special tokens + merges
    hidden_size: int = 32
    intermediate_size: int = 64
    num_layers: int = 2
    num_heads: int = 2
    num_kv_heads: int = 1
    head_dim: int = 16
    vision_hidden_size: int = 32
    vision_layers: int = 1
    image_size: int = 32  # pixels the image processor resizes to
    patch_size: int = 8  # vision patches: (32 / 8)^2 = 16, pooled/merged to 4 image tokens
    max_positions: int = 2048
    #: std of the random weights. Larger than the usual 0.02 so that logits span a useful
    #: range: with 0.02 a 32-wide model's logits are nearly uniform and fine-tuning only the
    #: LoRA adapters cannot make its predictions confident.
    init_std: float = 0.2
    seed: int = 0


#: A "small" random model (4.4M parameters, 4.0M of them the language model): big enough that
#: GPU runs measure something other than kernel-launch overhead and that bitsandbytes
#: quantizes real matrices, still seconds per SFT epoch on 500 examples.
SMALL_SPEC = TinySpec(
    hidden_size=256, intermediate_size=1024, num_layers=4, num_heads=4, num_kv_heads=1, head_dim=64,
    vision_hidden_size=128, vision_layers=2, image_size=64, patch_size=8, init_std=0.05,
)
SPECS: dict[str, TinySpec] = {"tiny": TinySpec(), "small": SMALL_SPEC}


# ----------------------------------------------------------------------------------------
# Chat templates, hand-written in each family's turn format.
# ----------------------------------------------------------------------------------------

def _content(image: str) -> str:
    """Jinja that renders ``message['content']`` (a string or a list of typed parts)."""
    return (
        "{%- if message['content'] is string -%}{{ message['content'] | trim }}"
        "{%- else -%}{%- for part in message['content'] -%}"
        "{%- if part['type'] == 'image' -%}{{ '" + image + "' }}"
        "{%- elif part['type'] == 'text' -%}{{ part['text'] | trim }}"
        "{%- endif -%}{%- endfor -%}{%- endif -%}"
    )


def _template(bos: str, user_open: str, user_close: str, asst_open: str, asst_close: str, image: str,
              preamble: str = "", reply_lead: str = "") -> str:
    """A template whose assistant turns are wrapped in ``{% generation %}``: the supervised
    tokens are the reply and the end-of-turn marker (so the model learns to stop), never the
    turn header, which is part of the prompt. ``reply_lead`` is text the model itself writes
    before its reply (Idefics3 answers "Assistant:" with a space first)."""
    c = _content(image)
    return (
        bos + preamble
        + "{%- for message in messages -%}"
        "{%- if message['role'] == 'assistant' -%}"
        "{{ '" + asst_open + "' }}{% generation %}{{ '" + reply_lead + "' }}" + c
        + "{{ '" + asst_close + "' }}{% endgeneration %}"
        "{%- else -%}"
        + user_open + c + "{{ '" + user_close + "' }}"
        "{%- endif -%}{%- endfor -%}"
        "{%- if add_generation_prompt -%}{{ '" + asst_open + "' }}{%- endif -%}"
    )


_HAND_TEMPLATES = {
    # Gemma: system text is folded into the user turn (Gemma has no system role).
    "gemma3": _template(
        "{{ bos_token }}",
        "{{ '<start_of_turn>user\\n' }}",
        "<end_of_turn>\\n",
        "<start_of_turn>model\\n",
        "<end_of_turn>\\n",
        "<start_of_image>",
    ),
    "qwen2_5_vl": _template(
        "",
        "{{ '<|im_start|>' + message['role'] + '\\n' }}",
        "<|im_end|>\\n",
        "<|im_start|>assistant\\n",
        "<|im_end|>\\n",
        "<|vision_start|><|image_pad|><|vision_end|>",
        preamble="{%- if messages[0]['role'] != 'system' -%}"
        "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{%- endif -%}",
    ),
    "idefics3": _template(
        "{{ bos_token }}",
        "{{ message['role'] | capitalize }}{{ ':' }}",
        "<end_of_utterance>\\n",
        "Assistant:",
        "<end_of_utterance>\\n",
        "<image>",
        reply_lead=" ",
    ),
}

# The original hub templates that TRL ships (file names in trl/chat_templates/).
_REFERENCE_TEMPLATE_FILES = {"gemma3": "gemma3.jinja", "qwen2_5_vl": "qwen2_5_vl.jinja", "idefics3": "idefics3.jinja"}


def hand_template(family: Family) -> str:
    return _HAND_TEMPLATES[family]


def reference_template(family: Family) -> str:
    """The family's original (hub) chat template, as shipped inside the ``trl`` package."""
    import trl

    path = Path(trl.__file__).parent / "chat_templates" / _REFERENCE_TEMPLATE_FILES[family]
    if not path.is_file():
        raise FileNotFoundError(f"trl {trl.__version__} does not ship {path.name}; use chat_template='hand'")
    return path.read_text(encoding="utf-8")


# ----------------------------------------------------------------------------------------
# Tokenizer
# ----------------------------------------------------------------------------------------

_SPECIALS = {
    "gemma3": ["<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>",
               "<start_of_image>", "<end_of_image>", "<image_soft_token>"],
    "qwen2_5_vl": ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                   "<|image_pad|>", "<|video_pad|>"],
    "idefics3": ["<|begin_of_text|>", "<|end_of_text|>", "<end_of_utterance>", "<fake_token_around_image>",
                 "<image>", "<global-img>"] + [f"<row_{i}_col_{j}>" for i in range(1, 7) for j in range(1, 7)],
}


def _corpus() -> list[str]:
    """Text the tokenizer's merges are learned from: our prompts, turn words, and programs."""
    from img2prog.models.hf.prompting import build_prompt, mutation_prompt

    texts = [build_prompt("csg2d", "zero-shot"), build_prompt("csg2d", "short"),
             mutation_prompt("csg2d", ["(Circle 3 8 8)", "(Quad 5 5 4 6 45)"], 4),
             "user model assistant system User: Assistant: You are a helpful assistant."]
    nums = [str(i) for i in range(16)] + [str(a) for a in range(0, 360, 45)]
    for r, x, y in itertools.islice(itertools.product(nums[:16], repeat=3), 0, 4096, 7):
        texts.append(f"(Circle {r} {x} {y}) (+ (Quad {x} {y} {r} {x} 45) (Circle {y} {r} {x}))")
    texts.append(" ".join(f"(Quad 8 8 4 4 {a})" for a in nums[16:]))
    texts.append("(- (+ ) ) ```\n``` Here is the program:")
    return texts


def build_tokenizer(family: Family, spec: TinySpec = TinySpec()):
    """A byte-level BPE tokenizer with the family's special tokens, as a transformers tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = _SPECIALS[family]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=spec.vocab_size, special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    tok.train_from_iterator(_corpus(), trainer)
    if family == "gemma3":
        return PreTrainedTokenizerFast(
            tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>", unk_token="<unk>",
            extra_special_tokens={"boi_token": "<start_of_image>", "eoi_token": "<end_of_image>",
                                  "image_token": "<image_soft_token>"},
        )
    if family == "qwen2_5_vl":
        return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<|begin_of_text|>", eos_token="<end_of_utterance>",
        pad_token="<|end_of_text|>",
    )


# ----------------------------------------------------------------------------------------
# Models and processors
# ----------------------------------------------------------------------------------------

def _tokens_per_side(spec: TinySpec) -> int:
    return spec.image_size // spec.patch_size // 2  # pooled / merged 2×2


def _gemma3(spec: TinySpec, tok, template: str):
    from transformers import Gemma3Config, Gemma3ForConditionalGeneration, Gemma3Processor
    from transformers.models.gemma3.image_processing_pil_gemma3 import Gemma3ImageProcessorPil

    n_img = _tokens_per_side(spec) ** 2
    text = {
        "vocab_size": len(tok), "hidden_size": spec.hidden_size, "intermediate_size": spec.intermediate_size,
        "num_hidden_layers": spec.num_layers, "num_attention_heads": spec.num_heads,
        "num_key_value_heads": spec.num_kv_heads, "head_dim": spec.head_dim, "max_position_embeddings": spec.max_positions,
        "sliding_window": 64, "layer_types": ["sliding_attention", "full_attention"] * (spec.num_layers // 2)
        + ["sliding_attention"] * (spec.num_layers % 2),
        "pad_token_id": tok.pad_token_id, "bos_token_id": tok.bos_token_id, "eos_token_id": tok.eos_token_id,
        "initializer_range": spec.init_std,
    }
    vision = {
        "model_type": "siglip_vision_model", "hidden_size": spec.vision_hidden_size,
        "intermediate_size": 2 * spec.vision_hidden_size, "num_hidden_layers": spec.vision_layers,
        "num_attention_heads": 2, "image_size": spec.image_size, "patch_size": spec.patch_size,
    }
    config = Gemma3Config(
        text_config=text, vision_config=vision, mm_tokens_per_image=n_img,
        boi_token_index=tok.convert_tokens_to_ids("<start_of_image>"),
        eoi_token_index=tok.convert_tokens_to_ids("<end_of_image>"),
        image_token_index=tok.convert_tokens_to_ids("<image_soft_token>"),
    )
    model = Gemma3ForConditionalGeneration(config)
    images = Gemma3ImageProcessorPil(size={"height": spec.image_size, "width": spec.image_size})
    processor = Gemma3Processor(image_processor=images, tokenizer=tok, chat_template=template, image_seq_length=n_img)
    stop = [tok.eos_token_id, tok.convert_tokens_to_ids("<end_of_turn>")]
    return model, processor, stop


def _qwen2_5_vl(spec: TinySpec, tok, template: str):
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    from img2prog.models.hf.processors import ImageOnlyQwen2_5_VLProcessor

    ids = {t: tok.convert_tokens_to_ids(t) for t in _SPECIALS["qwen2_5_vl"]}
    half = spec.head_dim // 2  # M-RoPE splits the rotary half-dimension over (time, height, width)
    text = {
        "vocab_size": len(tok), "hidden_size": spec.hidden_size, "intermediate_size": spec.intermediate_size,
        "num_hidden_layers": spec.num_layers, "num_attention_heads": spec.num_heads,
        "num_key_value_heads": spec.num_kv_heads, "max_position_embeddings": spec.max_positions,
        "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0,
                         "mrope_section": [half - 2 * (half // 3), half // 3, half // 3]},
        "pad_token_id": ids["<|endoftext|>"], "eos_token_id": ids["<|im_end|>"], "bos_token_id": None,
        "initializer_range": spec.init_std,
    }
    patch = spec.patch_size // 2  # Qwen merges 2×2 patches into one token: keep 4 tokens per image
    vision = {
        "depth": 2, "hidden_size": spec.vision_hidden_size, "intermediate_size": 2 * spec.vision_hidden_size,
        "num_heads": 2, "patch_size": patch, "spatial_merge_size": 2, "temporal_patch_size": 2, "window_size": 4 * patch,
        "out_hidden_size": spec.hidden_size, "fullatt_block_indexes": [1],
    }
    config = Qwen2_5_VLConfig(
        text_config=text, vision_config=vision, image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"], vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
    )
    model = Qwen2_5_VLForConditionalGeneration(config)
    side = spec.image_size // 2
    pixels = side * side  # fixed resize to side×side: (side/patch)^2 patches → /4 tokens
    images = Qwen2VLImageProcessorPil(
        size={"shortest_edge": pixels, "longest_edge": pixels}, patch_size=patch, merge_size=2, temporal_patch_size=2
    )
    processor = ImageOnlyQwen2_5_VLProcessor(image_processor=images, tokenizer=tok, chat_template=template)
    stop = [ids["<|im_end|>"], ids["<|endoftext|>"]]
    return model, processor, stop


def _idefics3(spec: TinySpec, tok, template: str):
    from transformers import Idefics3Config, Idefics3ForConditionalGeneration, Idefics3Processor
    from transformers.models.idefics3.image_processing_pil_idefics3 import Idefics3ImageProcessorPil

    n_img = _tokens_per_side(spec) ** 2
    text = {
        "model_type": "llama", "vocab_size": len(tok), "hidden_size": spec.hidden_size,
        "intermediate_size": spec.intermediate_size, "num_hidden_layers": spec.num_layers,
        "num_attention_heads": spec.num_heads, "num_key_value_heads": spec.num_kv_heads,
        "max_position_embeddings": spec.max_positions, "pad_token_id": tok.pad_token_id,
        "bos_token_id": tok.bos_token_id, "eos_token_id": tok.eos_token_id,
        "initializer_range": spec.init_std,
    }
    vision = {
        "hidden_size": spec.vision_hidden_size, "intermediate_size": 2 * spec.vision_hidden_size,
        "num_hidden_layers": spec.vision_layers, "num_attention_heads": 2, "image_size": spec.image_size,
        "patch_size": spec.patch_size,
    }
    config = Idefics3Config(text_config=text, vision_config=vision, scale_factor=2,
                            image_token_id=tok.convert_tokens_to_ids("<image>"))
    model = Idefics3ForConditionalGeneration(config)
    images = Idefics3ImageProcessorPil(
        size={"longest_edge": spec.image_size}, max_image_size={"longest_edge": spec.image_size},
        do_image_splitting=False,
    )
    processor = Idefics3Processor(image_processor=images, tokenizer=tok, chat_template=template, image_seq_len=n_img)
    stop = [tok.eos_token_id, tok.convert_tokens_to_ids("<|end_of_text|>")]
    return model, processor, stop


_BUILDERS = {"gemma3": _gemma3, "qwen2_5_vl": _qwen2_5_vl, "idefics3": _idefics3}


def build_tiny(
    family: Family,
    out_dir: str | Path,
    *,
    chat_template: Literal["hand", "reference"] = "hand",
    spec: TinySpec = TinySpec(),
) -> Path:
    """Write a tiny random checkpoint of ``family`` to ``out_dir`` and return the folder.

    Deterministic for a given ``spec.seed``. Load it back with
    :func:`img2prog.models.hf.backend.load` (or ``from_pretrained``).
    """
    if family not in _BUILDERS:
        raise ValueError(f"unknown tiny model family {family!r}; expected one of {', '.join(FAMILIES)}")
    import torch
    from transformers import GenerationConfig

    template = hand_template(family) if chat_template == "hand" else reference_template(family)
    tok = build_tokenizer(family, spec)
    torch.manual_seed(spec.seed)
    model, processor, stop = _BUILDERS[family](spec, tok, template)
    model.generation_config = GenerationConfig(
        eos_token_id=stop, pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
    )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out


def build_tiny_text(out_dir: str | Path, *, spec: TinySpec = TinySpec()) -> Path:
    """A tiny random *text-only* Gemma 3 (``Gemma3ForCausalLM``, model type ``gemma3_text``)
    without a chat template — the shape of the pretrained Gemma 3 270M base model, which the
    model mutator drives by plain-text continuation."""
    import torch
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig, GenerationConfig

    tok = build_tokenizer("gemma3", spec)
    torch.manual_seed(spec.seed)
    config = Gemma3TextConfig(
        vocab_size=len(tok), hidden_size=spec.hidden_size, intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.num_layers, num_attention_heads=spec.num_heads, num_key_value_heads=spec.num_kv_heads,
        head_dim=spec.head_dim, max_position_embeddings=spec.max_positions, sliding_window=64,
        layer_types=["sliding_attention", "full_attention"], pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, initializer_range=spec.init_std,
    )
    model = Gemma3ForCausalLM(config)
    model.generation_config = GenerationConfig(eos_token_id=[tok.eos_token_id], pad_token_id=tok.pad_token_id,
                                               bos_token_id=tok.bos_token_id)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out
