"""`img2prog train ...`: training recipes.

Each recipe is one command of this group: ``native`` (the native model, from scratch on
synthetic data) is here; fine-tuning recipes (``sft``, ``self``, ``rl``) register beside it.
"""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(help="Train models: the native image→program model and more.", no_args_is_help=True)


@app.callback()
def _group() -> None:
    """Train models: the native image→program model and more."""
    # A callback keeps `native` a named subcommand even while it is the only one.


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


@app.command("native")
def native(
    preset: str = typer.Option("base", "--preset", help="Model size: tiny, small, base, wide (cad-small, cad-tiny: CadQuery)."),
    lang: str | None = typer.Option(None, "--lang", help="Language (default: the preset's; csg2d). cadquery needs --dataset."),
    dataset: Path | None = typer.Option(None, "--dataset", help="Precomputed dataset .npz (python -m img2prog.data.cad_dataset) instead of the csg2d generator."),
    steps: int = typer.Option(10_000, "--steps", min=1, help="Optimizer steps (sets the LR schedule)."),
    batch_size: int = typer.Option(512, "--batch-size", min=1, help="Global batch size over all processes."),
    out: Path = typer.Option(Path("runs/native"), "--out", help="Run folder: checkpoint, logs, final model."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its checkpoint, exactly."),
    lr: float = typer.Option(1e-3, "--lr", help="Peak learning rate (AdamW)."),
    warmup: int = typer.Option(300, "--warmup", min=1, help="Linear warmup steps."),
    mixture: str = typer.Option("mixed", "--data", help="Generator profile or mixture (e.g. mixed, default, hard)."),
    reuse: int = typer.Option(4, "--reuse", min=1, help="Passes over each generated chunk (see train/data.py)."),
    chunk_blocks: int = typer.Option(128, "--chunk-blocks", min=1, help="Generator blocks (256 samples) per chunk."),
    data_shards: int | None = typer.Option(None, "--data-shards", help="Virtual data shards (default: processes)."),
    workers: int | None = typer.Option(None, "--workers", help="Generator processes (default: cores − 1)."),
    eval_sets: str | None = typer.Option(None, "--eval", help="Comma-separated evaluation sets ('' for none; default csg2d-test for csg2d, none otherwise)."),
    eval_every: int = typer.Option(1000, "--eval-every", min=0, help="Steps between evaluations (0: final only)."),
    eval_limit: int = typer.Option(1000, "--eval-limit", min=1, help="Images per set in periodic evaluations."),
    ckpt_every: int = typer.Option(1000, "--ckpt-every", min=0, help="Steps between checkpoints."),
    log_every: int = typer.Option(50, "--log-every", min=1),
    snapshot_every: int = typer.Option(0, "--snapshot-every", min=0, help="Keep an fp16 model every N steps."),
    seed: int = typer.Option(0, "--seed"),
    device: str | None = typer.Option(None, "--device", help="cpu or cuda (default: cuda when available)."),
    compile: bool = typer.Option(False, "--compile", help="torch.compile the model (GPU)."),
    time_limit: float | None = typer.Option(None, "--time-limit", help="Seconds; save and stop when exceeded."),
    time_budget: float | None = typer.Option(None, "--time-budget", help="Seconds of training: lowers --steps to fit (timed early, before warmup ends)."),
    stop_at: int | None = typer.Option(None, "--stop-at", help="Save and stop at this step (resume later)."),
    init_from: str | None = typer.Option(None, "--init-from", help="Start from these weights (fine-tune)."),
    model_json: str | None = typer.Option(None, "--model-config", help='JSON overrides, e.g. \'{"dec_layers": 3}\'.'),
) -> None:
    """Train the native image→program model from scratch on the handcrafted generator.

    One GPU:   img2prog train native --steps 20000 --out runs/native

    Several:   torchrun --nproc_per_node 4 -m img2prog.train native ... (same flags)

    Resume:    img2prog train native --out runs/native --resume
    """
    import json
    import os

    from img2prog.models.native import PRESETS
    from img2prog.train.data import DataConfig
    from img2prog.train.native import TrainConfig, train

    if preset not in PRESETS:
        _fail(f"unknown preset {preset!r}; choose one of: {', '.join(PRESETS)}")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    shards = data_shards or world
    try:
        overrides = json.loads(model_json) if model_json else {}
    except json.JSONDecodeError as e:
        _fail(f"--model-config is not valid JSON ({e.msg})")
    if lang is not None:
        overrides = {"language": lang, **overrides}
    language = overrides.get("language", PRESETS[preset].get("language", "csg2d"))
    data_kw: dict = {}
    if dataset is not None:
        from img2prog.models.cad_data import DatasetError, dataset_image_size

        try:
            data_kw = {"dataset": str(dataset), "image_size": dataset_image_size(dataset),
                       "max_len": overrides.get("max_len", PRESETS[preset].get("max_len", 192))}
        except (OSError, DatasetError, ValueError) as e:
            _fail(f"--dataset {dataset}: {e}")
    elif language != "csg2d":
        _fail(f"language {language!r} has no on-the-fly generator: pass --dataset (python -m img2prog.data.cad_dataset)")
    if eval_sets is None:
        eval_sets = "csg2d-test" if language == "csg2d" else ""
    cfg = TrainConfig(
        preset=preset, model=overrides, steps=steps, batch_size=batch_size, lr=lr, warmup=warmup, seed=seed,
        data=DataConfig(mixture=mixture, seed=seed, reuse=reuse, chunk_blocks=chunk_blocks, data_shards=shards,
                        **data_kw),
        workers=workers, eval_every=eval_every, eval_sets=tuple(s for s in eval_sets.split(",") if s),
        eval_limit=eval_limit, ckpt_every=ckpt_every, snapshot_every=snapshot_every, log_every=log_every, compile=compile,
        time_limit=time_limit, time_budget=time_budget, stop_at=stop_at, init_from=init_from,
    )
    try:
        summary = train(cfg, out, resume=resume, device=device)
    except (ValueError, FileNotFoundError, KeyError) as e:
        _fail(str(e.args[0]) if e.args else str(e))
    typer.echo(json.dumps({k: v for k, v in summary.items() if k not in ("losses", "curve")}, indent=1))


# QLoRA supervised fine-tuning of Hugging Face VLMs (heavy imports stay inside the command).
from img2prog.train.sft_cli import sft  # noqa: E402

app.command("sft")(sft)

# Rendering-reward fine-tuning of the native model: self-training on verified search results, GRPO.
from img2prog.train.rl_cli import rl, self_train  # noqa: E402

app.command("self")(self_train)
app.command("rl")(rl)
