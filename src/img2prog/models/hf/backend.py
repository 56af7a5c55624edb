"""Loading Hugging Face vision-language models and generating replies with them.

:func:`load` takes a hub name, a local checkpoint folder, or a LoRA adapter folder written by
``img2prog train sft`` (its base model and prompt style are read from the folder), and
returns an :class:`HFModel`: the model, its processor and the settings it was loaded with.

Precision and quantization (``LoadConfig.quantize`` / ``dtype``):

- ``quantize="4bit"`` loads the weights as 4-bit NF4 with double quantization and bf16
  compute through bitsandbytes — the QLoRA recipe (Dettmers et al., 2023, "QLoRA: Efficient
  Finetuning of Quantized LLMs", §3). It needs CUDA and the ``bitsandbytes`` package; asking
  for it without them is an error, never a silent fall-back to full precision.
- otherwise bf16 on a CUDA device that supports it, fp32 on CPU. fp16 is refused for Gemma 3:
  its activations exceed the fp16 range and the loss turns to NaN (Gemma 3 was trained in
  bf16); on GPUs without bf16 use fp32.

Attention: Gemma 3 is trained with ``attn_implementation="eager"`` (the choice transformers
recommends for training Gemma 2/3 and the one TRL's Gemma 3 examples use); other families and
all inference use PyTorch SDPA. Override with ``LoadConfig.attn_implementation``.

The optional ``unsloth`` fast path (``LoadConfig.unsloth=True``) is used only when the
package is importable; it needs a GPU and is never installed by default.

Generation (:meth:`HFModel.generate`) batches images, pads on the **left** (decoder-only
generation appends to the right end of every row, so padding must not sit there), samples
with the seed protocol's defaults (temperature 1.0, top-p 0.95, top-k 64, at most 256 new
tokens) and returns ``n`` replies per image via ``num_return_sequences``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from img2prog.models.hf.processors import load_processor
from img2prog.models.hf.prompting import PromptStyle, build_prompt, image_messages, training_messages

Quantize = Literal["none", "4bit"]
DType = Literal["auto", "bfloat16", "float16", "float32"]

#: the file ``img2prog train sft`` writes next to an adapter (base model, prompt style, ...)
SFT_META = "img2prog_sft.json"
_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}


class BackendError(RuntimeError):
    """A model cannot be loaded or used as asked (missing package, no CUDA, bad folder...)."""


@dataclass
class LoadConfig:
    """How to load a model. ``model`` is a hub name, a checkpoint folder or an adapter folder."""

    model: str
    adapter: str | None = None  # LoRA adapter folder to apply on top of ``model``
    quantize: Quantize = "none"
    dtype: DType = "auto"
    attn_implementation: str | None = None  # None: per family, see module docstring
    device: str | None = None  # None: "cuda" when available, else "cpu"
    unsloth: bool = False
    for_training: bool = False
    trust_remote_code: bool = False


@dataclass
class GenerationSettings:
    """Sampling settings. Defaults are the seed protocol's (SPEC §4)."""

    max_new_tokens: int = 256
    temperature: float = 1.0
    top_p: float = 0.95
    top_k: int = 64
    do_sample: bool = True
    num_beams: int = 1
    #: most sequences generated in one call (images per call = max(1, batch_size // n))
    batch_size: int = 16


@dataclass
class HFModel:
    """A loaded model with its processor and what it was loaded with."""

    model: Any
    processor: Any
    family: str  # config.model_type, e.g. "gemma3", "qwen2_5_vl", "idefics3"
    device: torch.device
    config: LoadConfig
    is_vision: bool = True
    prompt_style: PromptStyle = "zero-shot"
    language: str = "csg2d"
    meta: dict = field(default_factory=dict)  # the adapter's SFT metadata, if any

    @property
    def tokenizer(self):
        return getattr(self.processor, "tokenizer", self.processor)

    def prompt(self) -> str:
        return build_prompt(self.language, self.prompt_style)

    def generate(
        self,
        images: Sequence[Any] | np.ndarray | None,
        n: int = 1,
        *,
        prompt: str | None = None,
        prompts: Sequence[str] | None = None,
        settings: GenerationSettings | None = None,
        seed: int | None = None,
        progress: bool = False,
    ) -> list[list[str]]:
        """``n`` replies for each image (or for each text prompt of a text-only model).

        ``images``: PIL images or an (N, S, S, 3) uint8 array; ``prompt`` defaults to the
        model's prompt style. For text-only use pass ``images=None`` and ``prompts``.
        Reproducible for a given seed, batch size and device.
        """
        settings = settings or GenerationSettings()
        if images is not None:
            pil = [as_pil(im) for im in images]
            text = prompt if prompt is not None else self.prompt()
            conversations = [image_messages(text, im) for im in pil]
        else:
            if prompts is None:
                raise ValueError("give images, or prompts for text-only generation")
            from img2prog.models.hf.prompting import user_message

            conversations = [[user_message(p)] for p in prompts]
        return self.generate_chats(conversations, n, settings=settings, seed=seed, progress=progress)

    def generate_chats(
        self,
        conversations: Sequence[list[dict]],
        n: int = 1,
        *,
        settings: GenerationSettings | None = None,
        seed: int | None = None,
        progress: bool = False,
    ) -> list[list[str]]:
        """``n`` replies for each conversation (chat messages ending with a user turn)."""
        settings = settings or GenerationSettings()
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        per_call = max(1, settings.batch_size // n)
        kwargs = _generate_kwargs(settings, n)
        n_out = kwargs["num_return_sequences"]
        out: list[list[str]] = []
        batches = range(0, len(conversations), per_call)
        if progress:
            from tqdm.auto import tqdm

            batches = tqdm(batches, desc="generate", unit="batch")
        was_training = self.model.training
        self.model.eval()
        try:
            for b, start in enumerate(batches):
                chunk = conversations[start : start + per_call]
                inputs = self.encode_prompts(chunk)
                if seed is not None:
                    torch.manual_seed(seed + b)
                with torch.inference_mode():
                    ids = self.model.generate(**inputs, **kwargs)
                new = ids[:, inputs["input_ids"].shape[1] :]
                texts = self.tokenizer.batch_decode(new, skip_special_tokens=True)
                out.extend(texts[i * n_out : (i + 1) * n_out] for i in range(len(chunk)))
        finally:
            self.model.train(was_training)
        return out

    def encode_prompts(self, conversations: Sequence[list[dict]]) -> dict:
        """Chat-template, tokenize and left-pad a batch of conversations for generation."""
        inputs = apply_chat_template(
            self.processor, list(conversations), add_generation_prompt=True, padding_side="left"
        )
        return {k: v.to(self.device) if hasattr(v, "to") else v for k, v in inputs.items()}

    def score(
        self, images: Sequence[Any] | np.ndarray, programs: Sequence[str], *, prompt: str | None = None,
        batch_size: int = 8,
    ) -> list[float | None]:
        """Teacher-forced log-likelihood of each program as the reply to its image.

        Sum over the reply's tokens of log p(token | image, prompt, previous tokens), the
        end-of-turn token included: the quantity fine-tuning maximises. Uses the assistant
        mask of the chat template's ``{% generation %}`` blocks (or TRL's training template
        for known models); returns Nones when neither exists.
        """
        template = training_chat_template(self.processor)
        if template is False:
            return [None] * len(programs)
        text = prompt if prompt is not None else self.prompt()
        out: list[float | None] = []
        self.model.eval()
        for start in range(0, len(programs), batch_size):
            convs = [
                training_messages(text, as_pil(im), p)
                for im, p in zip(images[start : start + batch_size], programs[start : start + batch_size])
            ]
            enc = apply_chat_template(
                self.processor, convs, padding_side="right", assistant_mask=True, chat_template=template or None
            )
            mask = enc.pop("assistant_masks").to(self.device).bool()
            enc = {k: v.to(self.device) if hasattr(v, "to") else v for k, v in enc.items()}
            with torch.inference_mode():
                logits = self.model(**enc).logits.float()
            logp = torch.log_softmax(logits[:, :-1], dim=-1)
            target = enc["input_ids"][:, 1:]
            tok_lp = logp.gather(-1, target.unsqueeze(-1)).squeeze(-1)
            m = mask[:, 1:] & enc["attention_mask"][:, 1:].bool()
            out.extend((tok_lp * m).sum(-1).tolist())
        return out


# ----------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------

def as_pil(image: Any):
    """A PIL RGB image from a PIL image or an (S, S, 3) / (S, S) uint8 array."""
    from PIL import Image

    if isinstance(image, Image.Image):
        return image.convert("RGB")
    arr = np.asarray(image)
    if arr.dtype != np.uint8:
        raise TypeError(f"image arrays must be uint8, got {arr.dtype}")
    if arr.ndim == 2:
        arr = np.stack([arr] * 3, axis=-1)
    if arr.ndim != 3 or arr.shape[-1] != 3:
        raise ValueError(f"expected an (S, S, 3) image, got shape {arr.shape}")
    return Image.fromarray(arr, "RGB")


def apply_chat_template(
    processor,
    conversations: list[list[dict]],
    *,
    add_generation_prompt: bool = False,
    padding_side: Literal["left", "right"] = "right",
    assistant_mask: bool = False,
    chat_template: str | None = None,
) -> dict:
    """Tokenize a batch of conversations (with their images) into padded tensors."""
    tok = getattr(processor, "tokenizer", processor)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    pad = {"padding": True, "padding_side": padding_side}
    common = {
        "add_generation_prompt": add_generation_prompt, "tokenize": True, "return_dict": True, "return_tensors": "pt",
        "return_assistant_tokens_mask": assistant_mask,
    }
    if chat_template is not None:
        common["chat_template"] = chat_template
    if tok is processor:  # a plain tokenizer (text-only model)
        texts = [[_text_only(m) for m in conv] for conv in conversations]
        return dict(tok.apply_chat_template(texts, **common, **pad))
    # Processors take tokenizer options in ``processor_kwargs`` (transformers >= 5.4).
    return dict(processor.apply_chat_template(conversations, **common, processor_kwargs=pad))


def _text_only(message: dict) -> dict:
    content = message["content"]
    if isinstance(content, list):
        if any(part.get("type") == "image" for part in content):
            raise BackendError("this model is text-only: it cannot take images")
        content = "".join(part.get("text", "") for part in content)
    return {"role": message["role"], "content": content}


def _generate_kwargs(settings: GenerationSettings, n: int) -> dict:
    if settings.num_beams > 1 or not settings.do_sample:
        beams = max(settings.num_beams, n if not settings.do_sample and n > 1 else 1)
        return {"max_new_tokens": settings.max_new_tokens, "do_sample": False, "num_beams": beams,
                    "num_return_sequences": min(n, beams)}
    return {
        "max_new_tokens": settings.max_new_tokens, "do_sample": True, "temperature": settings.temperature,
        "top_p": settings.top_p, "top_k": settings.top_k, "num_return_sequences": n,
    }


def has_generation_blocks(template: str | None) -> bool:
    return bool(template) and "{% generation %}" in template.replace("{%-", "{%").replace("-%}", "%}")


def training_chat_template(processor) -> str | None | Literal[False]:
    """The chat template that yields assistant masks: None when the processor's own template
    already has ``{% generation %}`` blocks, TRL's training variant for a known template
    without them, or False when there is none."""
    tok = getattr(processor, "tokenizer", processor)
    template = getattr(processor, "chat_template", None) or getattr(tok, "chat_template", None)
    if has_generation_blocks(template):
        return None
    try:
        from trl.chat_template_utils import get_training_chat_template
    except ImportError:
        return False
    try:
        patched = get_training_chat_template(processor)
    except Exception:  # noqa: BLE001 - unknown template layouts raise in TRL
        return False
    return patched if has_generation_blocks(patched) else False


def cuda_available() -> bool:
    return torch.cuda.is_available()


def resolve_device(cfg: LoadConfig) -> torch.device:
    if cfg.device:
        dev = torch.device(cfg.device)
        if dev.type == "cuda" and not cuda_available():
            raise BackendError(f"device {cfg.device!r} asked for, but CUDA is not available")
        return dev
    return torch.device("cuda" if cuda_available() else "cpu")


def resolve_dtype(cfg: LoadConfig, device: torch.device, family: str | None) -> torch.dtype:
    """bf16 on CUDA with bf16 support, fp32 otherwise; fp16 refused for Gemma 3."""
    if cfg.dtype != "auto":
        dtype = _DTYPES[cfg.dtype]
    elif device.type == "cuda" and torch.cuda.is_bf16_supported():
        dtype = torch.bfloat16
    else:
        dtype = torch.float32
    if dtype == torch.float16 and family == "gemma3":
        raise BackendError(
            "float16 is not safe for Gemma 3: its activations overflow fp16 and losses become NaN; "
            "use bfloat16 (Ampere or newer GPUs) or float32"
        )
    return dtype


def resolve_attention(cfg: LoadConfig, family: str | None) -> str:
    if cfg.attn_implementation:
        return cfg.attn_implementation
    return "eager" if (family == "gemma3" and cfg.for_training) else "sdpa"


def quantization_config(cfg: LoadConfig, compute_dtype: torch.dtype):
    """bitsandbytes NF4 settings for ``quantize="4bit"`` (None otherwise)."""
    if cfg.quantize == "none":
        return None
    if cfg.quantize != "4bit":
        raise BackendError(f"unknown quantization {cfg.quantize!r}; expected 'none' or '4bit'")
    if not cuda_available():
        raise BackendError("--quantize 4bit needs a CUDA GPU (bitsandbytes 4-bit kernels); none is available")
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise BackendError("--quantize 4bit needs bitsandbytes: pip install 'img2prog[gpu]'") from None
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",  # QLoRA §3: NormalFloat4 suits normally distributed weights
        bnb_4bit_use_double_quant=True,  # QLoRA §3: quantize the quantization constants too
        bnb_4bit_compute_dtype=compute_dtype if compute_dtype != torch.float32 else torch.bfloat16,
        bnb_4bit_quant_storage=compute_dtype if compute_dtype != torch.float32 else torch.bfloat16,
    )


def read_sft_meta(folder: str | Path) -> dict:
    path = Path(folder) / SFT_META
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def _is_adapter_folder(path: str) -> bool:
    return (Path(path) / "adapter_config.json").is_file()


def _config_model_type(name: str, trust_remote_code: bool) -> str | None:
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(name, trust_remote_code=trust_remote_code).model_type
    except (OSError, ValueError) as e:
        raise BackendError(f"cannot read the model config of {name!r}: {e}") from None


def load(cfg: LoadConfig | str, **overrides) -> HFModel:
    """Load a model (and optionally a LoRA adapter) as :class:`LoadConfig` says."""
    if isinstance(cfg, str):
        cfg = LoadConfig(model=cfg, **overrides)
    elif overrides:
        cfg = LoadConfig(**{**asdict(cfg), **overrides})
    base, adapter = cfg.model, cfg.adapter
    meta: dict = {}
    if adapter is None and Path(base).is_dir() and _is_adapter_folder(base):
        adapter = base  # an adapter folder given as the model: find its base model
    if adapter is not None:
        if not _is_adapter_folder(adapter):
            raise BackendError(f"{adapter}: not a LoRA adapter folder (no adapter_config.json)")
        meta = read_sft_meta(adapter)
        if base == adapter:
            cfg_json = json.loads((Path(adapter) / "adapter_config.json").read_text(encoding="utf-8"))
            base = meta.get("base_model") or cfg_json.get("base_model_name_or_path")
            if not base:
                raise BackendError(f"{adapter}: adapter does not say which base model it belongs to")
    if Path(str(base)).exists() and not (Path(base) / "config.json").is_file():
        raise BackendError(f"{base}: not a model folder (no config.json)")

    family = _config_model_type(base, cfg.trust_remote_code)
    device = resolve_device(cfg)
    dtype = resolve_dtype(cfg, device, family)
    if cfg.unsloth:
        model, processor = _load_unsloth(base, cfg)
        is_vision = True
    else:
        quant = quantization_config(cfg, dtype)
        if quant is not None and Path(base).is_dir():
            # untrained modules (a new vision tower...) are trained fully: keep them unquantized
            from img2prog.models.hf.pretrained import read_model_meta

            fresh = read_model_meta(base).get("fresh_modules")
            if fresh:
                quant.llm_int8_skip_modules = list(fresh)
        model, processor, is_vision = _load_transformers(base, cfg, dtype, quant, device, family)
    if adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter, is_trainable=cfg.for_training)
    tok = getattr(processor, "tokenizer", processor)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    hfm = HFModel(
        model=model, processor=processor, family=family or "unknown", device=device, config=cfg,
        is_vision=is_vision, meta=meta,
    )
    if meta.get("prompt_style"):
        hfm.prompt_style = meta["prompt_style"]
    if meta.get("language"):
        hfm.language = meta["language"]
    return hfm


def _load_transformers(base: str, cfg: LoadConfig, dtype, quant, device: torch.device, family: str | None):
    from transformers import AutoModelForCausalLM, AutoModelForImageTextToText, AutoTokenizer

    kwargs: dict[str, Any] = {
        "dtype": dtype, "attn_implementation": resolve_attention(cfg, family), "trust_remote_code": cfg.trust_remote_code
    }
    if quant is not None:
        kwargs["quantization_config"] = quant
        kwargs["device_map"] = {"": device.index or 0}
    try:
        model = AutoModelForImageTextToText.from_pretrained(base, **kwargs)
        processor = load_processor(base, trust_remote_code=cfg.trust_remote_code)
        is_vision = True
    except ValueError as e:
        if "Unrecognized configuration class" not in str(e):
            raise
        # A text-only language model (e.g. for the model mutator): tokenizer instead of processor.
        model = AutoModelForCausalLM.from_pretrained(base, **kwargs)
        processor = AutoTokenizer.from_pretrained(base, trust_remote_code=cfg.trust_remote_code)
        is_vision = False
    if quant is None:
        model.to(device)
    return model, processor, is_vision


def _load_unsloth(base: str, cfg: LoadConfig):
    try:
        from unsloth import FastVisionModel  # type: ignore[import-not-found]
    except ImportError:
        raise BackendError("--unsloth needs the unsloth package (CUDA only): pip install unsloth") from None
    model, processor = FastVisionModel.from_pretrained(
        base, load_in_4bit=cfg.quantize == "4bit", use_gradient_checkpointing="unsloth" if cfg.for_training else False
    )
    return model, processor
