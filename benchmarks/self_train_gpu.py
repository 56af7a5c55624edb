"""Self-training of the shipped native model on a GPU, measured against the issue's target.

    python benchmarks/self_train_gpu.py --out $OUT [--rounds 3 --pool hard:3072,shift:2048 ...]

1. scores the starting model on csg2d-test, csg2d-hard and the domain-shift set: greedy, and
   best-of-N (N = --bo-n, greedy + N samples, best IoU) on hard and domain-shift — the gap
   self-training should close;
2. runs ``self_train`` on a fresh unlabeled pool each round (generator pictures without their
   programs + glyphs/silhouettes disjoint from the domain-shift set), with the three sets as
   held-out greedy evaluations;
3. scores the result the same way and writes ``self_train.json`` (every figure), the
   round log and the final model (fp16 safetensors, as shipped) to --out.

Needs the carried wheels on the device (shapely, datasets, ...). Prints one line per stage.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from dataclasses import asdict
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from img2prog.eval.metrics import compute_metrics  # noqa: E402
from img2prog.models.native import NativeModel  # noqa: E402
from img2prog.train.rl_cli import load_target_images  # noqa: E402
from img2prog.train.self_train import (  # noqa: E402
    SelfTrainConfig,
    best_of_n_sampled,
    greedy_report,
    parse_pool,
    self_train,
    unlabeled_pool,
)

SETS = ("csg2d-test", "csg2d-hard", "domain-shift")


def score(model, sets, bo_n: int, workers: int, bo_sets=("csg2d-hard", "domain-shift")) -> dict:
    out = {}
    for name, ims in sets.items():
        t0 = time.perf_counter()
        row = {"greedy": greedy_report(model, ims)}
        if bo_n and name in bo_sets:
            res = best_of_n_sampled(model, ims, bo_n, seed=1234, workers=workers)
            rep = compute_metrics([r.program for r in res], ims, workers=1)
            row[f"best_of_{bo_n}"] = {"f1": rep.f1_score, "iou": rep.iou, "pixel_accuracy": rep.pixel_accuracy,
                                      "perfect": rep.perfect}
        row["seconds"] = round(time.perf_counter() - t0, 2)
        out[name] = row
        print(name, json.dumps(row), flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--model", default="native-csg2d")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--pool", default="hard:3072,shift:2048")
    ap.add_argument("--samples", type=int, default=32, help="best-of-N samples per pool image")
    ap.add_argument("--threshold", type=float, default=0.85)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--synthetic-ratio", type=float, default=0.5)
    ap.add_argument("--synthetic-pool", type=int, default=8192)
    ap.add_argument("--bo-n", type=int, default=64, help="N of the best-of-N reference (0: skip)")
    ap.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 2))
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--limit", type=int, default=None, help="evaluate on the first N of each set (smoke tests)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--time-budget", type=float, default=None, help="seconds for the self-training rounds")
    ap.add_argument("--stages", default="self", help="comma-separated: self, rl (each starts from --model)")
    ap.add_argument("--rl-images", type=int, default=32)
    ap.add_argument("--rl-group", type=int, default=16)
    ap.add_argument("--rl-lr", type=float, default=2e-5)
    ap.add_argument("--rl-kl", type=float, default=0.02)
    ap.add_argument("--rl-time-budget", type=float, default=180.0)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    torch.manual_seed(args.seed)

    sets = {name: load_target_images(name, args.limit) for name in SETS}
    model = NativeModel.from_pretrained(args.model).float().to(args.device).eval()
    print(f"device {args.device}, {torch.cuda.get_device_name() if args.device == 'cuda' else 'cpu'}, "
          f"workers {args.workers}, params {model.num_parameters():,}", flush=True)
    before = score(model, sets, args.bo_n, args.workers)

    from img2prog.data.testsets import standard_bar

    bar = standard_bar()
    summary = {"args": {k: str(v) for k, v in vars(args).items()}, "before": before, "stages": {}}
    for stage in args.stages.split(","):
        t0 = time.perf_counter()
        model = NativeModel.from_pretrained(args.model).float().to(args.device).eval()
        if stage == "self":
            cfg = SelfTrainConfig(model=args.model, rounds=args.rounds, strategy="best-of-n", samples=args.samples,
                                  threshold=args.threshold, steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                                  synthetic_ratio=args.synthetic_ratio, synthetic_pool=args.synthetic_pool,
                                  seed=args.seed, search_batch=32)
            spec = parse_pool(args.pool)
            log = self_train(cfg, lambda k: unlabeled_pool(spec, k, seed=args.seed, bar=bar, workers=args.workers),
                             args.out / "run-self", model=model, bar=bar, device=args.device, eval_sets=sets,
                             workers=args.workers, time_budget=args.time_budget)
            recipe = {"self_train": asdict(cfg) | {"pool": args.pool}}
        elif stage == "rl":
            from img2prog.train.rewards import RewardConfig
            from img2prog.train.rl import RLConfig, train_rl

            cfg = RLConfig(model=args.model, steps=100_000, images_per_step=args.rl_images, group_size=args.rl_group,
                           lr=args.rl_lr, kl=args.rl_kl, reward=RewardConfig(), seed=args.seed, ckpt_every=0,
                           reward_workers=1, time_budget=args.rl_time_budget, log_every=20)
            pool = unlabeled_pool(parse_pool(args.pool), 99, seed=args.seed, bar=bar, workers=args.workers)
            res = train_rl(cfg, pool, args.out / "run-rl", device=args.device, model=model)
            model = NativeModel.from_pretrained(args.out / "run-rl" / "model").float().to(args.device).eval()
            log = res["history"][:: max(1, len(res["history"]) // 50)]
            recipe = {"rl": asdict(cfg) | {"pool": args.pool}}
        else:
            raise SystemExit(f"unknown stage {stage!r}")
        seconds = time.perf_counter() - t0
        after = score(model, sets, args.bo_n, args.workers)
        gaps = {}
        for name in ("csg2d-hard", "domain-shift"):
            g0, g1 = before[name]["greedy"]["f1"], after[name]["greedy"]["f1"]
            bo = before[name].get(f"best_of_{args.bo_n}", {}).get("f1")
            if bo is not None:
                gaps[name] = {"greedy_before": g0, "best_of_n_before": bo, "greedy_after": g1,
                              "gap_closed": (g1 - g0) / (bo - g0) if bo > g0 else None}
        test_change = after["csg2d-test"]["greedy"]["f1"] - before["csg2d-test"]["greedy"]["f1"]
        summary["stages"][stage] = {"after": after, "gaps": gaps, "test_f1_change": test_change,
                                    "seconds": round(seconds, 1), "log": log}
        model.save_pretrained(args.out / f"model-{stage}", dtype=torch.float16, extra={"recipe": recipe})
        for run in args.out.glob("run-*"):
            shutil.rmtree(run)  # fp32 checkpoints: too big to bring back
        print(stage, "gaps", json.dumps(gaps), f"test ΔF1 {test_change:+.4f}", f"{seconds:.0f} s", flush=True)
        summary["total_seconds"] = round(time.perf_counter() - t_start, 1)
        (args.out / "self_train.json").write_text(json.dumps(summary, indent=1, default=str) + "\n")


if __name__ == "__main__":
    main()
