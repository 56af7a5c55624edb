"""`img2prog train sft`: (Q)LoRA fine-tuning of a Hugging Face vision-language model.

Registered by the ``train`` command group: ``app.command("sft")(sft)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def _fail(message: str, code: int = 2):
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def sft(
    model: Annotated[str, typer.Option("--model", help="Hub name or local folder of an image-text-to-text model.")],
    data: Annotated[Path, typer.Option("--data", help="Dataset folder (program + image) or JSONL with a 'program' field.")],
    out: Annotated[Path, typer.Option("--out", help="Output folder: checkpoints/, adapter/, log.jsonl.")] = Path("out/sft"),
    epochs: Annotated[float, typer.Option("--epochs", min=0.0, help="Passes over the data (the seed protocol: 1).")] = 1.0,
    max_steps: Annotated[int, typer.Option("--max-steps", help="Stop after this many optimizer steps (overrides --epochs).")] = -1,
    lora_r: Annotated[int, typer.Option("--lora-r", min=1, help="LoRA rank.")] = 16,
    lora_alpha: Annotated[int, typer.Option("--lora-alpha", min=1, help="LoRA scaling α (update scale α/r).")] = 16,
    lora_dropout: Annotated[float, typer.Option("--lora-dropout", min=0.0, max=1.0)] = 0.1,
    train_module: Annotated[list[str] | None, typer.Option("--train-module", help="Module trained fully besides the adapters (repeatable; default: the model folder's fresh_modules, e.g. a new vision tower).")] = None,
    lr: Annotated[float, typer.Option("--lr", min=0.0, help="Peak learning rate.")] = 2e-4,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Examples per device step.")] = 4,
    grad_accum: Annotated[int, typer.Option("--grad-accum", min=1, help="Steps accumulated per update.")] = 4,
    quantize: Annotated[str, typer.Option("--quantize", help="auto (4bit with CUDA + bitsandbytes), 4bit or none.")] = "auto",
    dtype: Annotated[str, typer.Option("--dtype", help="auto, bfloat16, float32 (float16: not for Gemma 3).")] = "auto",
    attn: Annotated[str | None, typer.Option("--attn", help="Attention implementation (default: eager for Gemma 3, else sdpa).")] = None,
    prompt: Annotated[str, typer.Option("--prompt", help="Prompt style the model is trained with: short or zero-shot.")] = "short",
    bar: Annotated[list[Path] | None, typer.Option("--bar", help="More programs never to train on (JSONL or dataset folder).")] = None,
    no_standard_bar: Annotated[bool, typer.Option("--no-standard-bar", help="Do not drop the standard test sets' programs.")] = False,
    save_steps: Annotated[int, typer.Option("--save-steps", min=1)] = 50,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    no_resume: Annotated[bool, typer.Option("--no-resume", help="Start over even if OUT holds checkpoints.")] = False,
    unsloth: Annotated[bool, typer.Option("--unsloth", help="Use unsloth's fast path (needs the package and a GPU).")] = False,
) -> None:
    """Fine-tune a VLM to answer an image with its program (LoRA on the language model, loss on
    the reply only). Resumes from the last checkpoint in OUT; a finished run is not redone.

    Example: img2prog train sft --model google/gemma-3-4b-it --data out/evolved --out out/sft-evolved
    """
    try:
        from img2prog.models.hf.backend import BackendError
        from img2prog.models.hf.lora import LoraSettings
        from img2prog.train.sft import SFTError, SFTSettings, train_sft
    except ImportError as e:
        _fail(f"train sft needs the Hugging Face extra (pip install 'img2prog[hf]'): {e}")
    if quantize not in ("auto", "4bit", "none"):
        _fail(f"--quantize must be auto, 4bit or none, not {quantize!r}")
    if dtype not in ("auto", "bfloat16", "float16", "float32"):
        _fail(f"--dtype must be auto, bfloat16, float16 or float32, not {dtype!r}")
    if prompt not in ("short", "zero-shot"):
        _fail(f"--prompt must be short or zero-shot, not {prompt!r}")
    if not data.exists():
        _fail(f"{data}: no such file or folder")
    settings = SFTSettings(
        model=model, data=str(data), out=str(out), epochs=epochs, max_steps=max_steps,
        lora=LoraSettings(r=lora_r, alpha=lora_alpha, dropout=lora_dropout,
                          train_modules=tuple(train_module) if train_module else None), learning_rate=lr,
        batch_size=batch_size, grad_accum=grad_accum, quantize=quantize, dtype=dtype,  # type: ignore[arg-type]
        attn_implementation=attn, prompt_style=prompt,  # type: ignore[arg-type]
        bar=[str(b) for b in bar or []], bar_standard_tests=not no_standard_bar, save_steps=save_steps,
        seed=seed, resume=not no_resume, unsloth=unsloth,
    )
    try:
        result = train_sft(settings)
    except (SFTError, BackendError) as e:
        _fail(str(e))
    if result.skipped:
        typer.echo(f"already trained: {result.adapter} (use --no-resume to train again)")
        return
    loss = "n/a" if result.train_loss is None else f"{result.train_loss:.4f}"
    typer.echo(f"trained {result.n_train} examples, {result.steps} steps, mean loss {loss}, "
               f"{result.seconds:.0f} s → adapter {result.adapter}")
