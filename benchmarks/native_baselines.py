"""The native model against two trivial baselines on the standard test sets.

    python benchmarks/native_baselines.py --pool 20000 --workers 2 --out benchmarks/native_baselines.json

- **empty**: the empty program for every image (SPEC §2's reference baseline);
- **nearest neighbour**: retrieve the program of the most similar image in a pool of training
  samples — drawn from the training recipe of the shipped model (its generator mixture and
  seed, the standard test sets barred) — by IoU of the black masks at 64 px, and predict it;
- **native (greedy)**: the shipped model, greedy decoding on the CPU.

All three are scored with the reference metrics at 256 px on the same targets.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from img2prog.data.handcrafted import generate
from img2prog.data.testsets import load_testset, standard_bar, testset_programs
from img2prog.eval.metrics import compute_metrics
from img2prog.lang.csg2d import render_gray
from img2prog.models.native import DEFAULT_MODEL, NativeModel

SETS = ("csg2d-test", "csg2d-hard", "csg2d-qualitative")


def nearest_programs(pool_masks: torch.Tensor, pool_programs: list[str], query_masks: torch.Tensor) -> list[str]:
    """For each query, the pool program whose mask has the highest IoU (ties: first)."""
    inter = query_masks @ pool_masks.T
    union = query_masks.sum(1, keepdim=True) + pool_masks.sum(1)[None] - inter
    iou = torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(inter))
    return [pool_programs[i] for i in iou.argmax(1).tolist()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=DEFAULT_MODEL)
    ap.add_argument("--pool", type=int, default=20000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    model = NativeModel.from_pretrained(args.model)
    with open(f"{model_path(args.model)}/config.json") as f:
        model_data = json.load(f).get("training", {}).get("data", {})
    mixture, seed = model_data.get("mixture", "mixed"), model_data.get("seed", 0)
    t0 = time.perf_counter()
    pool = generate(args.pool, seed=seed, profile=mixture, bar=standard_bar(), workers=args.workers, image_size=64)
    pool_programs = [s.program for s in pool.samples]
    pool_masks = torch.from_numpy(np.stack([s.image == 0 for s in pool.samples]).reshape(len(pool_programs), -1)).float()
    gen_s = time.perf_counter() - t0
    results: dict = {"pool": len(pool_programs), "pool_recipe": {"mixture": mixture, "seed": seed}, "pool_seconds": round(gen_s, 1),
                     "sets": {}}
    for name in SETS:
        ds = load_testset(name)
        images = np.stack([np.asarray(im.convert("RGB")) for im in ds["image"]])
        progs = testset_programs(name)
        q = torch.from_numpy(np.stack([render_gray(p, 64) == 0 for p in progs]).reshape(len(progs), -1)).float()
        nn_progs = nearest_programs(pool_masks, pool_programs, q)
        t = time.perf_counter()
        native = [row[0][0] for row in model.generate(images)]
        native_s = time.perf_counter() - t
        res = {
            "empty": compute_metrics([""] * len(images), images).to_dict(),
            "nearest_neighbour": compute_metrics(nn_progs, images).to_dict(),
            "native_greedy": {**compute_metrics(native, images).to_dict(), "seconds": round(native_s, 1)},
        }
        results["sets"][name] = res
        for k, v in res.items():
            print(f"{name:18s} {k:18s} pix {v['pixel_accuracy']:.4f} parse {v['parse_rate']:.3f} "
                  f"P {v['precision']:.4f} R {v['recall']:.4f} F1 {v['f1_score']:.4f} IoU {v['iou']:.4f} "
                  f"perfect {v['perfect']:.3f}")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(results, f, indent=1)


def model_path(name: str) -> str:
    from img2prog.models.native import resolve_model_path

    return str(resolve_model_path(name))


if __name__ == "__main__":
    main()
