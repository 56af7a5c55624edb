"""Supervised fine-tuning of a vision-language model with (Q)LoRA: image → program.

The recipe of the seed protocol (SPEC §4): the model sees a rendered image and a short
instruction and is trained to answer with exactly the program; the loss covers the
assistant's reply (and its end-of-turn token, so the model learns to stop) and nothing else —
image tokens and prompt are masked out. Training runs through TRL's ``SFTTrainer`` with
``assistant_only_loss=True``: the mask comes from ``{% generation %}`` blocks in the chat
template (TRL swaps in a training variant of the template for known models whose hub template
has none). Before training, :func:`check_batch` decodes the supervised tokens of a real
batch and refuses to start unless they are exactly the reply.

Defaults and where they come from
---------------------------------
- 4-bit NF4 base + LoRA on every linear layer of the language model, r = α = 16, dropout
  0.1 — see :mod:`img2prog.models.hf.lora` and :mod:`img2prog.models.hf.backend`.
- learning rate 2e-4, constant schedule after a 3 % warm-up, gradient clipping at 0.3,
  batch 4 × 4 accumulation = 16, no weight decay: the QLoRA reference scripts for 7B/13B
  models (Dettmers et al., 2023; github.com/artidoro/qlora, scripts/finetune_guanaco_7b.sh);
  batch 16 is also what the seed assignment expects on a 24 GB L4.
- paged AdamW (32-bit states) with 4-bit models (QLoRA §3: paging absorbs memory spikes from
  gradient checkpointing), plain AdamW otherwise.
- exactly one epoch (the seed protocol), gradient checkpointing on CUDA.

Known traps handled here
------------------------
- LoRA target names that also match the vision tower: targets are selected inside the
  language model only (:func:`img2prog.models.hf.lora.target_modules`).
- Gemma 3 and NaN losses: trained with eager attention, never in fp16
  (:func:`img2prog.models.hf.backend.resolve_dtype`); a NaN or infinite loss stops training
  with an error naming the usual causes instead of writing a broken adapter.
- Padding side: the collator pads on the right for training (labels line up with inputs),
  generation pads on the left; :func:`check_batch` also checks that the generation prompt is a
  token prefix of every training sequence, so train and inference agree on the boundary.

Outputs (``out``): ``checkpoints/checkpoint-N`` (resumable), ``adapter/`` (the final LoRA
adapter and ``img2prog_sft.json``: base model, prompt style, data and settings), ``log.jsonl``
(one line per logging step) and ``data.json`` (what was trained on, after barring).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

from img2prog.models.hf.lora import LoraSettings
from img2prog.models.hf.prompting import PromptStyle, build_prompt, training_messages


class SFTError(RuntimeError):
    """Fine-tuning cannot start or went wrong (message says what and where)."""


@dataclass
class SFTSettings:
    """Everything an SFT run depends on (recorded in ``adapter/img2prog_sft.json``)."""

    model: str
    data: str  # dataset folder (program + image) or JSONL with a "program" field
    out: str
    language: str = "csg2d"
    prompt_style: PromptStyle = "short"
    epochs: float = 1.0
    max_steps: int = -1  # > 0 overrides epochs (smoke tests)
    lora: LoraSettings = field(default_factory=LoraSettings)
    learning_rate: float = 2e-4
    batch_size: int = 4
    grad_accum: int = 4
    warmup_ratio: float = 0.03
    lr_scheduler: str = "constant_with_warmup"
    max_grad_norm: float = 0.3
    weight_decay: float = 0.0
    quantize: Literal["auto", "4bit", "none"] = "auto"  # auto: 4-bit when CUDA + bitsandbytes
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = "auto"
    attn_implementation: str | None = None
    gradient_checkpointing: bool | None = None  # None: on with CUDA
    image_size: int = 256  # images are rendered at this size (the processor resizes them)
    save_steps: int = 50
    save_total_limit: int = 2
    logging_steps: int = 5
    seed: int = 0
    bar_standard_tests: bool = True  # drop programs of the standard test sets (by text and image)
    bar: list[str] = field(default_factory=list)  # more JSONL files / dataset folders to bar
    resume: bool = True
    unsloth: bool = False
    progress: bool = True


@dataclass
class SFTResult:
    adapter: Path
    steps: int
    train_loss: float | None
    seconds: float
    n_train: int
    skipped: bool = False  # the run had already completed: nothing was trained


# ----------------------------------------------------------------------------------------
# data
# ----------------------------------------------------------------------------------------

@dataclass
class TrainingData:
    programs: list[str]
    n_read: int
    n_invalid: int
    n_barred: int
    n_duplicates: int


def read_training_programs(settings: SFTSettings) -> TrainingData:
    """Programs to train on: read, canonicalised, barred, de-duplicated (order kept)."""
    from img2prog.data.io import DataError, load_programs
    from img2prog.lang import get_language

    language = get_language(settings.language)
    try:
        raw = load_programs(settings.data)
    except DataError as e:
        raise SFTError(str(e)) from None
    bar = None
    if settings.bar_standard_tests or settings.bar:
        from img2prog.data.barring import BarSet

        bar = BarSet()
        if settings.bar_standard_tests:
            from img2prog.data.testsets import standard_bar

            bar = standard_bar()
        for spec in settings.bar:
            try:
                bar.add(load_programs(spec))
            except DataError as e:
                raise SFTError(f"--bar {spec}: {e}") from None
    programs: list[str] = []
    seen: set[str] = set()
    invalid = barred = dup = 0
    for text in raw:
        if language.validate(text) is not None:
            invalid += 1
            continue
        canonical = language.canonical(text)
        if bar is not None and bar.bars(canonical):
            barred += 1
            continue
        if canonical in seen:
            dup += 1
            continue
        seen.add(canonical)
        programs.append(canonical)
    if not programs:
        raise SFTError(f"{settings.data}: no trainable programs (read {len(raw)}, invalid {invalid}, barred {barred})")
    return TrainingData(programs, len(raw), invalid, barred, dup)


def build_dataset(programs: Sequence[str], settings: SFTSettings):
    """A ``datasets.Dataset`` in TRL's conversational vision format: ``messages`` (the image
    slot, the prompt, the program as the assistant's reply) and ``images``."""
    from datasets import Dataset

    from img2prog.lang import get_language
    from img2prog.models.hf.backend import as_pil

    language = get_language(settings.language)
    rendered, errors = language.render_batch(programs, settings.image_size)
    bad = [p for p, e in zip(programs, errors) if e is not None]
    if bad:
        raise SFTError(f"{len(bad)} program(s) do not render, e.g. {bad[0]!r}")
    prompt = build_prompt(settings.language, settings.prompt_style)
    rows = []
    for program, image in zip(programs, rendered):
        messages = training_messages(prompt, None, program)
        messages[0]["content"].insert(0, {"type": "image"})  # TRL fills image slots from "images"
        rows.append({"messages": messages, "images": [as_pil(image)]})
    return Dataset.from_list(rows)


# ----------------------------------------------------------------------------------------
# checks
# ----------------------------------------------------------------------------------------

def supervised_texts(batch: dict, tokenizer) -> list[str]:
    """The text of the tokens that carry loss in each row of a collated batch."""
    out = []
    for ids, labels in zip(batch["input_ids"], batch["labels"]):
        out.append(tokenizer.decode(ids[labels != -100]))
    return out


def check_batch(collator, examples: list[dict], programs: Sequence[str], processor) -> list[str]:
    """Collate ``examples`` and verify the loss mask; return the supervised texts.

    Each row must supervise exactly its program followed by end-of-turn marker(s) — no image
    token, no prompt text — and the generation prompt must be a token prefix of the row.
    """
    from img2prog.models.hf.backend import apply_chat_template

    tok = getattr(processor, "tokenizer", processor)
    batch = collator([dict(e) for e in examples])
    texts = supervised_texts(batch, tok)
    for row, (program, labels) in enumerate(zip(programs, batch["labels"])):
        supervised = batch["input_ids"][row][labels != -100]
        if len(supervised) == 0:
            raise SFTError("no token carries loss: the chat template has no usable {% generation %} blocks")
        if tok.decode(supervised, skip_special_tokens=True).strip() != program:
            raise SFTError(f"loss mask covers {texts[row]!r}; expected exactly the reply {program!r} and end-of-turn")
        if tok.decode(supervised).strip() == program:
            raise SFTError(f"loss mask misses the end-of-turn token after {program!r}: the model would not learn to stop")
    # the generation prompt (what inference feeds) must prefix the training sequence
    first = examples[0]
    messages = [dict(m) for m in first["messages"][:1]]
    messages[0] = {"role": "user", "content": [
        {"type": "image", "image": first["images"][0]} if part.get("type") == "image" else part
        for part in messages[0]["content"]
    ]}
    gen = apply_chat_template(processor, [messages], add_generation_prompt=True)["input_ids"][0].tolist()
    row = batch["input_ids"][0][batch["attention_mask"][0].bool()].tolist()
    if row[: len(gen)] != gen:
        raise SFTError(
            "the generation prompt is not a token prefix of the training sequence: the model would be "
            "trained on a different prompt boundary than it sees at inference"
        )
    return texts


# ----------------------------------------------------------------------------------------
# training
# ----------------------------------------------------------------------------------------

def _resolve_quantize(settings: SFTSettings) -> str:
    if settings.quantize != "auto":
        return settings.quantize
    from img2prog.models.hf.backend import cuda_available

    if not cuda_available():
        return "none"
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        return "none"
    return "4bit"


def _latest_checkpoint(folder: Path) -> Path | None:
    ckpts = [p for p in folder.glob("checkpoint-*") if p.is_dir() and p.name.split("-")[-1].isdigit()]
    return max(ckpts, key=lambda p: int(p.name.split("-")[-1])) if ckpts else None


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {}
    for pkg in ("torch", "transformers", "peft", "trl", "accelerate", "bitsandbytes"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


def _callbacks(log_path: Path):
    from transformers import TrainerCallback

    class JsonlLog(TrainerCallback):
        """Appends every log record (loss, lr, grad norm, ...) to ``log.jsonl``."""

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs:
                with log_path.open("a", encoding="utf-8") as f:
                    f.write(json.dumps({"step": state.global_step, "time": time.time(), **logs}) + "\n")

    class NanGuard(TrainerCallback):
        """Stops training at the first non-finite loss (an adapter trained through NaNs is junk)."""

        bad_step: int | None = None

        def on_log(self, args, state, control, logs=None, **kwargs):
            loss = (logs or {}).get("loss")
            if loss is not None and not math.isfinite(float(loss)):
                self.bad_step = state.global_step
                control.should_training_stop = True

    return JsonlLog(), NanGuard()


def train_sft(settings: SFTSettings) -> SFTResult:
    """Run (or resume, or skip if complete) one SFT run; returns where the adapter is."""
    import torch

    from img2prog.models.hf.backend import SFT_META, load, read_sft_meta
    from img2prog.models.hf.lora import add_lora

    out = Path(settings.out)
    adapter_dir = out / "adapter"
    meta = read_sft_meta(adapter_dir)
    if settings.resume and meta.get("completed"):
        return SFTResult(adapter_dir, meta.get("steps", 0), meta.get("train_loss"), 0.0, meta.get("n_train", 0), True)
    out.mkdir(parents=True, exist_ok=True)

    started = time.time()
    data = read_training_programs(settings)
    summary = {k: v for k, v in asdict(data).items() if k != "programs"} | {"n_train": len(data.programs)}
    (out / "data.json").write_text(json.dumps(summary, indent=2) + "\n")
    dataset = build_dataset(data.programs, settings)

    quantize = _resolve_quantize(settings)
    hfm = load(settings.model, quantize=quantize, dtype=settings.dtype, attn_implementation=settings.attn_implementation,
               for_training=True, unsloth=settings.unsloth)
    if not hfm.is_vision:
        raise SFTError(f"{settings.model}: not an image-text-to-text model; SFT here trains on images")
    on_cuda = hfm.device.type == "cuda"
    ckpt = settings.gradient_checkpointing if settings.gradient_checkpointing is not None else on_cuda
    if settings.unsloth:
        from unsloth import FastVisionModel  # type: ignore[import-not-found]

        model = FastVisionModel.get_peft_model(
            hfm.model, finetune_vision_layers=False, finetune_language_layers=True,
            finetune_attention_modules=True, finetune_mlp_modules=True, r=settings.lora.r,
            lora_alpha=settings.lora.alpha, lora_dropout=settings.lora.dropout, bias="none",
            random_state=settings.seed,
        )
        FastVisionModel.for_training(model)
    else:
        lora = settings.lora
        if lora.train_modules is None:  # modules the model folder declares untrained (e.g. a new vision tower)
            from dataclasses import replace

            from img2prog.models.hf.pretrained import read_model_meta

            lora = replace(lora, train_modules=tuple(read_model_meta(settings.model).get("fresh_modules", ())))
        model = add_lora(hfm.model, lora, quantized=quantize == "4bit", gradient_checkpointing=ckpt)

    from trl import SFTConfig, SFTTrainer

    def _checkpointing_args(config_cls, on: bool) -> dict:
        # transformers renamed gradient_checkpointing → activation_checkpointing (5.2x); the
        # GPU image here ships 5.17, so take whichever spelling this version accepts.
        import inspect

        name = ("activation_checkpointing" if "activation_checkpointing" in inspect.signature(config_cls.__init__).parameters
                else "gradient_checkpointing")
        return {name: on, f"{name}_kwargs": {"use_reentrant": False} if on else None}

    dtype = next(p for p in model.parameters()).dtype if quantize == "none" else torch.bfloat16
    args = SFTConfig(
        output_dir=str(out / "checkpoints"),
        num_train_epochs=settings.epochs,
        max_steps=settings.max_steps,
        per_device_train_batch_size=settings.batch_size,
        gradient_accumulation_steps=settings.grad_accum,
        learning_rate=settings.learning_rate,
        lr_scheduler_type=settings.lr_scheduler,
        warmup_steps=settings.warmup_ratio,  # a float < 1 is a ratio of the total steps
        max_grad_norm=settings.max_grad_norm,
        weight_decay=settings.weight_decay,
        optim="paged_adamw_32bit" if quantize == "4bit" else "adamw_torch",
        bf16=dtype == torch.bfloat16,
        fp16=False,
        **_checkpointing_args(SFTConfig, ckpt),
        assistant_only_loss=True,
        max_length=None,  # never truncate: image tokens sit at the start of every sequence
        logging_steps=settings.logging_steps,
        logging_first_step=True,
        logging_nan_inf_filter=False,  # the default hides NaN/inf losses from the logs (and our guard)
        save_strategy="steps",
        save_steps=settings.save_steps,
        save_total_limit=settings.save_total_limit,
        report_to="none",
        seed=settings.seed,
        data_seed=settings.seed,
        use_cpu=not on_cuda,
        dataloader_num_workers=0,
        disable_tqdm=not settings.progress,
    )
    log, guard = _callbacks(out / "log.jsonl")
    trainer = SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=hfm.processor,
                         callbacks=[log, guard])
    n_check = min(len(dataset), max(2, settings.batch_size))
    supervised = check_batch(trainer.data_collator, [dataset[i] for i in range(n_check)],
                             data.programs[:n_check], hfm.processor)
    with (out / "log.jsonl").open("a", encoding="utf-8") as f:
        f.write(json.dumps({"event": "mask-check", "supervised_example": supervised[0]}) + "\n")

    resume_from = _latest_checkpoint(out / "checkpoints") if settings.resume else None
    result = trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    if guard.bad_step is not None:
        raise SFTError(
            f"loss became NaN/inf at step {guard.bad_step}; no adapter written. Usual causes: fp16 with "
            "Gemma 3 (use bf16 or fp32), a learning rate too high, or sdpa attention with padding on Gemma "
            "(use --attn eager)"
        )
    model.save_pretrained(str(adapter_dir))
    meta = {
        "completed": True,
        "base_model": settings.model,
        "language": settings.language,
        "prompt_style": settings.prompt_style,
        "quantize": quantize,
        "family": hfm.family,
        "steps": int(result.global_step),
        "train_loss": float(result.training_loss) if result.training_loss is not None else None,
        "seconds": time.time() - started,
        "n_train": len(data.programs),
        "data": {k: v for k, v in asdict(data).items() if k != "programs"},
        "resumed_from": str(resume_from) if resume_from else None,
        "settings": asdict(settings),
        "versions": _versions(),
    }
    (adapter_dir / SFT_META).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return SFTResult(adapter_dir, meta["steps"], meta["train_loss"], meta["seconds"], len(data.programs))
