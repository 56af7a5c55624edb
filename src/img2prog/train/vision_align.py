"""Vision alignment: teach a new vision tower to see before any program is taught.

A VLM built around a pretrained language model with a *new* vision tower
(:func:`img2prog.models.hf.pretrained.build_gemma3_vlm`) starts blind: its image tokens are
noise to the language model. Fine-tuning it on 500 programs (the seed protocol) then measures
mostly how fast a tower learns from scratch, not what the language model brings. LLaVA-style
recipes therefore align the tower and projector first, on a task that needs sight but not the
target skill. Ours: **transcribe the picture as a grid of characters** — each of the
``cells``×``cells`` cells (16 = the csg2d canvas grid) becomes ``#`` when most of its pixels
are ink, else ``.``; one row per line. The language model is frozen (its weights are the
pretrained ones afterwards), so no program and no program syntax is taught: an aligned
model still has to learn csg2d from the seed experiment's data.

The pictures come from the handcrafted generator with a seed of their own; the programs are
thrown away (only their drawings are used).

    from img2prog.train.vision_align import AlignSettings, align_vision
    align_vision(AlignSettings(model="vlm/", out="vlm-aligned/", n=20000, max_seconds=240))

The output folder is a complete model (weights, processor, ``img2prog_model.json`` with the
alignment's record) that ``img2prog experiment seed-a3 --model`` and
``img2prog.models.hf.backend.load`` take like any other; it declares no fresh modules, so
later SFT trains LoRA on the language model only.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

ALIGN_PROMPT = "Transcribe this picture as a grid: one line per row, '#' for ink and '.' for paper."
FROZEN_NOTE = "language model frozen (pretrained weights unchanged)"


class AlignError(RuntimeError):
    """Vision alignment cannot run (wrong model, nothing to train)."""


def grid_caption(image: np.ndarray, cells: int = 16) -> str:
    """The picture as ``cells`` lines of ``cells`` characters: ``#`` where a cell is mostly
    ink (dark), ``.`` elsewhere. ``image``: (H, W) or (H, W, C) uint8 with H, W divisible by
    ``cells``."""
    img = np.asarray(image)
    if img.ndim == 3:
        img = img[..., :3].mean(-1)
    h, w = img.shape
    if h % cells or w % cells:
        raise ValueError(f"a {h}x{w} image does not split into {cells}x{cells} cells")
    ink = (img < 128).reshape(cells, h // cells, cells, w // cells).mean(axis=(1, 3)) > 0.5
    return "\n".join("".join("#" if v else "." for v in row) for row in ink)


@dataclass
class AlignSettings:
    model: str  # a VLM folder (e.g. from build_gemma3_vlm)
    out: str
    n: int = 20000  # training pictures
    val: int = 64  # held-out pictures for the report
    cells: int = 16
    profile: str = "default"  # handcrafted generator profile the pictures come from
    seed: int = 1234  # a seed of their own: not the seeds of the experiment's data
    epochs: float = 1.0
    max_seconds: float | None = None  # time budget (stops early, then saves)
    batch_size: int = 32
    lr: float = 1e-3  # new modules from scratch: a high rate, as for LLaVA's projector stage
    warmup: int = 50
    image_size: int = 256
    device: str | None = None  # default: cuda when present
    dtype: str = "auto"  # bfloat16 on cuda, float32 otherwise
    log_every: int = 25
    progress: bool = True


def _pictures(settings: AlignSettings, count: int, seed: int) -> np.ndarray:
    from img2prog.data.handcrafted import sample_candidates
    from img2prog.lang import get_language

    language = get_language("csg2d")
    programs = [str(p) for p in sample_candidates(settings.profile, count, seed=seed)]
    images, errors = language.render_batch(programs, settings.image_size)
    keep = [i for i, e in enumerate(errors) if e is None]
    return images[keep]


def _batch(processor, images: np.ndarray, captions: list[str] | None):
    """Tokenized chats; ``labels`` supervise the reply (and its end of turn) only."""
    import torch

    from img2prog.models.hf.backend import apply_chat_template, as_pil
    from img2prog.models.hf.prompting import assistant_message, user_message

    convs = []
    for k, image in enumerate(images):
        conv = [user_message(ALIGN_PROMPT, as_pil(image))]
        if captions is not None:
            conv.append(assistant_message(captions[k]))
        convs.append(conv)
    if captions is None:
        return apply_chat_template(processor, convs, add_generation_prompt=True, padding_side="left")
    enc = apply_chat_template(processor, convs, padding_side="right", assistant_mask=True)
    mask = enc.pop("assistant_masks")
    mask = torch.as_tensor(mask)
    enc["labels"] = enc["input_ids"].masked_fill(~mask.bool(), -100)
    return enc


def _trainable(model) -> list:
    names = ("vision_tower", "multi_modal_projector")
    params = []
    for name, p in model.named_parameters():
        p.requires_grad_(any(f".{n}." in f".{name}" for n in names))
        if p.requires_grad:
            params.append(p)
    if not params:
        raise AlignError("the model has no vision_tower / multi_modal_projector to align")
    return params


def evaluate(
    model, processor, images: np.ndarray, cells: int, batch_size: int = 16, max_new_tokens: int | None = None
) -> dict:
    """Greedy transcriptions of ``images``: share of cells right, of lines right, of whole grids right."""
    import torch

    tok = getattr(processor, "tokenizer", processor)
    max_new = max_new_tokens or (cells + 1) * cells + 8
    cell_ok = cell_n = rows_ok = rows_n = exact = 0
    examples = []
    model.eval()
    for lo in range(0, len(images), batch_size):
        chunk = images[lo : lo + batch_size]
        enc = {k: v.to(model.device) for k, v in _batch(processor, chunk, None).items()}
        if "pixel_values" in enc:
            enc["pixel_values"] = enc["pixel_values"].to(model.dtype)
        with torch.no_grad():
            out = model.generate(**enc, max_new_tokens=max_new, do_sample=False)
        replies = tok.batch_decode(out[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)
        for image, reply in zip(chunk, replies):
            want = grid_caption(image, cells).split("\n")
            got = [line.strip() for line in reply.strip().split("\n")][:cells]
            got += [""] * (cells - len(got))
            for w, g in zip(want, got):
                rows_ok += w == g
                rows_n += 1
                cell_ok += sum(a == b for a, b in zip(w, g.ljust(cells)[:cells]))
                cell_n += cells
            exact += got == want
            if len(examples) < 3:
                examples.append({"target": "\n".join(want), "reply": reply.strip()[: 2 * cells * cells]})
    n = max(len(images), 1)
    return {
        "images": len(images),
        "cell_accuracy": cell_ok / max(cell_n, 1),
        "row_accuracy": rows_ok / max(rows_n, 1),
        "grid_exact": exact / n,
        "examples": examples,
    }


def align_vision(settings: AlignSettings) -> dict:
    """Train the vision tower and projector of ``settings.model`` on grid transcription
    (language model frozen) and save the whole model to ``settings.out``. Returns the record
    also written into the output's ``img2prog_model.json``."""
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from img2prog.models.hf.pretrained import MODEL_META, read_model_meta

    device = torch.device(settings.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    dtype = {
        "auto": torch.bfloat16 if device.type == "cuda" else torch.float32,
        "bfloat16": torch.bfloat16,
        "float32": torch.float32,
    }[settings.dtype]
    processor = AutoProcessor.from_pretrained(settings.model)
    model = AutoModelForImageTextToText.from_pretrained(settings.model, dtype=dtype).to(device)
    params = _trainable(model)
    # the trainable modules keep fp32 master weights (bf16 Adam updates of a fresh tower stall)
    for p in params:
        p.data = p.data.float()

    t0 = time.time()
    train = _pictures(settings, settings.n, settings.seed)
    val = _pictures(settings, settings.val, settings.seed + 1)
    captions = [grid_caption(im, settings.cells) for im in train]
    data_s = time.time() - t0
    steps = max(1, math.ceil(settings.epochs * len(train) / settings.batch_size))
    opt = torch.optim.AdamW(params, lr=settings.lr, weight_decay=0.0)

    def lr_at(step: int) -> float:  # linear warm-up, cosine to 10 %
        if step < settings.warmup:
            return settings.lr * (step + 1) / settings.warmup
        q = (step - settings.warmup) / max(1, steps - settings.warmup)
        return settings.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(q, 1.0))))

    before = evaluate(model, processor, val[:16], settings.cells)
    model.train()
    rng = np.random.default_rng(settings.seed)
    order = np.concatenate([rng.permutation(len(train)) for _ in range(math.ceil(settings.epochs) + 1)])
    log, t_train, step, stop = [], time.time(), 0, "done"
    bar = None
    if settings.progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=steps, desc="align", unit="step")
    while step < steps:
        if settings.max_seconds is not None and time.time() - t_train > settings.max_seconds:
            stop = "time budget"
            break
        idx = order[step * settings.batch_size : (step + 1) * settings.batch_size]
        enc = {k: v.to(device) for k, v in _batch(processor, train[idx], [captions[i] for i in idx]).items()}
        enc["pixel_values"] = enc["pixel_values"].to(dtype)
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
            loss = model(**enc).loss
        if not torch.isfinite(loss):
            raise AlignError(f"non-finite loss at step {step}")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        step += 1
        if bar is not None:
            bar.update(1)
        if step % settings.log_every == 0 or step == steps:
            log.append(
                {
                    "step": step,
                    "loss": round(loss.item(), 4),
                    "lr": lr_at(step - 1),
                    "seconds": round(time.time() - t_train, 1),
                }
            )
            if bar is not None:
                bar.set_postfix(loss=log[-1]["loss"])
    if bar is not None:
        bar.close()
    train_s = time.time() - t_train
    for p in params:
        p.data = p.data.to(dtype)
    after = evaluate(model, processor, val, settings.cells)

    out = Path(settings.out)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    meta = {k: v for k, v in read_model_meta(settings.model).items() if k != "fresh_modules"}
    record = {
        "settings": asdict(settings),
        "task": ALIGN_PROMPT,
        "note": FROZEN_NOTE,
        "steps": step,
        "planned_steps": steps,
        "stop_reason": stop,
        "pictures": len(train),
        "data_seconds": round(data_s, 1),
        "train_seconds": round(train_s, 1),
        "log": log,
        "before": before,
        "after": after,
    }
    meta["vision_alignment"] = record
    meta["aligned_from"] = str(settings.model)
    (out / MODEL_META).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return record
