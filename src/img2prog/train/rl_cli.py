"""Command functions ``img2prog train self`` and ``img2prog train rl`` (registered in train/cli.py).

Heavy imports stay inside the functions so ``img2prog --help`` stays fast.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import typer


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


def load_target_images(spec: str, limit: int | None = None) -> np.ndarray:
    """Targets as (N, S, S, 3) uint8: ``domain-shift``, a named test set, a dataset folder or a
    folder of images (labels, if any, are ignored)."""
    if spec == "domain-shift":
        from img2prog.data.domain_shift import load_domain_shift

        ds = load_domain_shift()
    else:
        from img2prog.data.io import load_targets

        ds = load_targets(spec)
    if limit is not None:
        ds = ds.select(range(min(limit, len(ds))))
    images = [np.asarray(im.convert("RGB")) if hasattr(im, "convert") else np.asarray(im) for im in ds["image"]]
    if not images:
        raise ValueError(f"{spec}: no images")
    return np.stack(images)


_IMAGES_HELP = "Targets: domain-shift, a test-set name (csg2d-hard, ...), a dataset folder or an image folder."


def self_train(
    model: str = typer.Option("native-csg2d", "--model", help="Starting native model (folder or shipped name)."),
    images: str | None = typer.Option(None, "--images", help=_IMAGES_HELP + " (or use --pool)"),
    pool: str | None = typer.Option(None, "--pool", help="A fresh unlabeled pool each round instead of --images, "
                                    "e.g. hard:4096,shift:2048 (generator profiles' pictures without their "
                                    "programs; shift = glyphs/silhouettes disjoint from the domain-shift set)."),
    eval_on: str | None = typer.Option(None, "--eval", help="Comma-separated target sets scored greedily before "
                                       "and after every round, never trained on (e.g. csg2d-test,csg2d-hard,domain-shift)."),
    rounds: int = typer.Option(3, "--rounds", min=1, help="Search → verify → fine-tune rounds."),
    out: Path = typer.Option(Path("runs/self"), "--out", help="Run folder: rounds.jsonl, round-K/ and model/."),  # noqa: B008
    strategy: str = typer.Option("best-of-n", "--search", help="Search strategy: best-of-n, majority, refine, auto, ..."),
    samples: int = typer.Option(64, "--samples", min=1, help="Search samples per image."),
    time_limit: float | None = typer.Option(None, "--time-limit", help="Search seconds per image."),
    threshold: float = typer.Option(0.95, "--threshold", help="Keep best-found results with IoU ≥ this (perfect ones always)."),
    pair_with: str = typer.Option("target", "--pair-with", help="Train kept programs on the target image or their own render."),
    steps: int = typer.Option(200, "--steps", min=1, help="Fine-tuning steps per round."),
    batch_size: int = typer.Option(64, "--batch-size", min=1),
    lr: float = typer.Option(1e-4, "--lr"),
    synthetic_ratio: float = typer.Option(0.5, "--synthetic-ratio", help="Share of each batch from the handcrafted generator."),
    synthetic_pool: int = typer.Option(2048, "--synthetic-pool", min=0, help="Labeled handcrafted samples made per round."),
    limit: int | None = typer.Option(None, "--limit", help="Use only the first N targets."),
    workers: int | None = typer.Option(None, "--workers", help="Render/generation processes (default: all cores)."),
    seed: int = typer.Option(0, "--seed"),
    device: str | None = typer.Option(None, "--device", help="cpu or cuda (default: cuda when available)."),
) -> None:
    """Self-train on unlabeled targets: search, keep verified results, fine-tune, repeat.

    Test-set programs and pictures are never trained on. Examples:

        img2prog train self --images my_silhouettes/ --rounds 3 --samples 64 --out runs/self

        img2prog train self --pool hard:4096,shift:2048 --eval csg2d-test,csg2d-hard,domain-shift --out runs/self
    """
    from img2prog.models.proposer import default_device
    from img2prog.train.self_train import SelfTrainConfig, parse_pool, unlabeled_pool
    from img2prog.train.self_train import self_train as run

    if (images is None) == (pool is None):
        _fail("give exactly one of --images and --pool")
    try:
        cfg = SelfTrainConfig(model=model, rounds=rounds, strategy=strategy, samples=samples, time_limit=time_limit,
                              threshold=threshold, pair_with=pair_with, steps=steps, batch_size=batch_size, lr=lr,
                              synthetic_ratio=synthetic_ratio, synthetic_pool=synthetic_pool, seed=seed)
        if pool is not None:
            spec = parse_pool(pool)
            from img2prog.data.testsets import standard_bar

            bar = standard_bar()
            targets = lambda k: unlabeled_pool(spec, k, seed=seed, bar=bar, workers=workers)  # noqa: E731
        else:
            targets = load_target_images(images, limit)
        evals = {name: load_target_images(name) for name in filter(None, (eval_on or "").split(","))}
        reports = run(cfg, targets, out, device=device or default_device(), eval_sets=evals, workers=workers)
    except (ValueError, FileNotFoundError, KeyError) as e:
        _fail(str(e.args[0]) if e.args else str(e))
    typer.echo(json.dumps(reports[-1], indent=1))


def rl(
    model: str = typer.Option("native-csg2d", "--model", help="Starting native model; also the KL reference."),
    images: str = typer.Option(..., "--images", help=_IMAGES_HELP),
    out: Path = typer.Option(Path("runs/rl"), "--out", help="Run folder: checkpoint/, log.csv and model/."),  # noqa: B008
    steps: int = typer.Option(200, "--steps", min=1, help="GRPO updates."),
    images_per_step: int = typer.Option(32, "--images-per-step", min=1, help="Target images per update."),
    group_size: int = typer.Option(8, "--group-size", min=2, help="Samples per image (G) for group-relative advantages."),
    kl: float = typer.Option(0.0, "--kl", min=0.0, help="β of the KL penalty to the starting model (0: off)."),
    lr: float = typer.Option(1e-5, "--lr"),
    temperature: float = typer.Option(1.0, "--temperature", help="Sampling temperature (1.0 stays on-policy)."),
    iou_scale: float = typer.Option(10.0, "--iou-scale", help="Reward = scale · IoU (cadrille: 10)."),
    invalid: float = typer.Option(-10.0, "--invalid-reward", help="Reward of a program that does not render."),
    length: float = typer.Option(0.0, "--length-penalty", help="Reward −= this · tokens."),
    no_std: bool = typer.Option(False, "--no-std-normalize", help="Advantages r − mean, not divided by the std."),
    keep_all: bool = typer.Option(False, "--keep-all-groups", help="Do not skip groups with zero reward variance."),
    ckpt_every: int = typer.Option(50, "--ckpt-every", min=0),
    time_budget: float | None = typer.Option(None, "--time-budget", help="Stop after this many seconds of updates."),
    reward_workers: int = typer.Option(1, "--reward-workers", min=0, help="Render processes for the rewards (0/1: in process)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its checkpoint, exactly."),
    limit: int | None = typer.Option(None, "--limit", help="Use only the first N targets."),
    seed: int = typer.Option(0, "--seed"),
    device: str | None = typer.Option(None, "--device", help="cpu or cuda (default: cuda when available)."),
) -> None:
    """GRPO reinforcement learning of the native model with a rendering reward (10·IoU).

    Example:

        img2prog train rl --images csg2d-hard --group-size 8 --kl 0.02 --steps 300 --out runs/rl
    """
    from img2prog.models.proposer import default_device
    from img2prog.train.rewards import RewardConfig
    from img2prog.train.rl import RLConfig, train_rl

    try:
        cfg = RLConfig(model=model, steps=steps, images_per_step=images_per_step, group_size=group_size, lr=lr,
                       kl=kl, temperature=temperature, normalize_std=not no_std, hard_filter=not keep_all,
                       reward=RewardConfig(iou_scale=iou_scale, invalid=invalid, length=length),
                       seed=seed, ckpt_every=ckpt_every, time_budget=time_budget, reward_workers=reward_workers)
        targets = load_target_images(images, limit)
        summary = train_rl(cfg, targets, out, resume=resume, device=device or default_device())
    except (ValueError, FileNotFoundError, KeyError) as e:
        _fail(str(e.args[0]) if e.args else str(e))
    last = summary["history"][-1] if summary["history"] else {}
    typer.echo(json.dumps({"steps": summary["steps"], "out": summary["out"], "last": last}, indent=1))
