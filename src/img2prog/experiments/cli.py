"""`img2prog experiment ...`: whole experiments in one command (registered as a sub-group)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help="Run whole experiments end to end (resumable).", no_args_is_help=True)


def _fail(message: str, code: int = 2):
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


@app.command("seed-a3")
def seed_a3(
    model: Annotated[str | None, typer.Option("--model", help="Base VLM: hub name or folder (e.g. google/gemma-3-4b-it).")] = None,
    tiny: Annotated[str | None, typer.Option("--tiny", help="Instead of --model: build a tiny random gemma3, qwen2_5_vl or idefics3 model (plumbing check).")] = None,
    tiny_size: Annotated[str, typer.Option("--tiny-size", help="Size of the --tiny model: tiny (~60k parameters) or small (~4M).")] = "tiny",
    n: Annotated[int, typer.Option("--n", min=1, help="Training samples per data variant.")] = 500,
    out: Annotated[Path, typer.Option("--out", help="Output folder (resumable).")] = Path("out/seed-a3"),
    variants: Annotated[list[str] | None, typer.Option("--variant", help="Data variants to run (repeatable; default: all).")] = None,
    test_limit: Annotated[int | None, typer.Option("--test-limit", min=1, help="Use only the first K test programs.")] = None,
    mutator: Annotated[str, typer.Option("--mutator", help="Evolution mutator: model (seed protocol) or symbolic.")] = "model",
    quantize: Annotated[str, typer.Option("--quantize", help="auto (4bit with CUDA + bitsandbytes), 4bit or none.")] = "auto",
    max_steps: Annotated[int, typer.Option("--max-steps", help="Cap SFT steps (smoke runs); default: one epoch.")] = -1,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="SFT examples per device step.")] = 4,
    grad_accum: Annotated[int, typer.Option("--grad-accum", min=1)] = 4,
    max_new_tokens: Annotated[int, typer.Option("--max-new-tokens", min=1)] = 256,
    generation_batch: Annotated[int, typer.Option("--generation-batch", min=1, help="Images per generate() call when evaluating.")] = 16,
    only: Annotated[list[str] | None, typer.Option("--only", help="Run only these stages (repeatable).")] = None,
    seed: Annotated[int, typer.Option("--seed")] = 0,
) -> None:
    """The seed experiment end to end: empty baseline → zero-shot → evolve N with the model →
    QLoRA 1 epoch → evaluate → handcrafted N → QLoRA → evaluate → fitness and hybrid variants →
    data analysis → OUT/report.md. Completed stages are skipped when run again.

    Example: img2prog experiment seed-a3 --model google/gemma-3-4b-it --out out/seed-a3
    """
    try:
        from img2prog.experiments.seed_a3 import VARIANTS, ExperimentError, SeedA3Config, run_seed_a3
        from img2prog.models.hf.backend import BackendError
        from img2prog.train.sft import SFTError
    except ImportError as e:
        _fail(f"experiments need the Hugging Face extra (pip install 'img2prog[hf]'): {e}")
    if (model is None) == (tiny is None):
        _fail("give either --model NAME or --tiny FAMILY")
    if tiny is not None:
        from img2prog.models.hf.tiny import FAMILIES, SPECS, build_tiny

        if tiny not in FAMILIES:
            _fail(f"--tiny must be one of {', '.join(FAMILIES)}, not {tiny!r}")
        if tiny_size not in SPECS:
            _fail(f"--tiny-size must be one of {', '.join(SPECS)}, not {tiny_size!r}")
        folder = out / "tiny-model"
        if not (folder / "config.json").is_file():
            build_tiny(tiny, folder, spec=SPECS[tiny_size])  # type: ignore[arg-type]
        model = str(folder)
    try:
        config = SeedA3Config(
            model=model, out=str(out), n=n, variants=tuple(variants or VARIANTS), test_limit=test_limit,
            mutator=mutator, quantize=quantize, max_steps=max_steps, batch_size=batch_size, grad_accum=grad_accum,
            max_new_tokens=max_new_tokens, generation_batch=generation_batch, seed=seed,
        )
        report = run_seed_a3(config, only=list(only) if only else None, log=lambda m: typer.echo(m, err=True))
    except (ExperimentError, BackendError, SFTError) as e:
        _fail(str(e))
    typer.echo(str(report))
