"""Inference speed of the native model: greedy ms/image at batch 1 (CPU) and images/s at a
large batch (GPU).

    python benchmarks/native_infer.py --device cpu --batch 1 --n 100 --threads 2
    python benchmarks/native_infer.py --device cuda --batch 1024 --n 4096

Images are the first ``n`` of ``--images`` (a test-set name, folder or JSONL; default
csg2d-test), repeated if the set is smaller. Reports the median and mean per-image wall
time (batch 1) or images/s (larger batches), the process CPU time per image (robust to other
processes on a shared machine), and the mean number of decoded tokens.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
import torch

from img2prog.models.native import DEFAULT_MODEL, NativeModel


def load_images(spec: str, n: int) -> np.ndarray:
    from img2prog.data.io import DataError, load_targets

    try:
        ds = load_targets(spec)
    except DataError as e:  # e.g. no named test sets in this install: generate seed-like images
        from img2prog.data.handcrafted import generate
        from img2prog.lang.csg2d import render

        print(f"note: {e}; using {min(n, 512)} generated 'default' images instead")
        progs = [s.program for s in generate(min(n, 512), seed=987654, profile="default").samples]
        imgs = np.stack([render(p) for p in progs])
        return np.concatenate([imgs] * -(-n // len(imgs)))[:n]
    imgs = np.stack([np.asarray(im.convert("RGB")) for im in ds.select(range(min(n, len(ds))))["image"]])
    reps = -(-n // len(imgs))
    return np.concatenate([imgs] * reps)[:n]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=DEFAULT_MODEL)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--images", default="csg2d-test")
    ap.add_argument("--amp", action="store_true", help="bf16 autocast (GPU)")
    ap.add_argument("--json", default=None, help="also write the result here")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    model = NativeModel.from_pretrained(args.model, device=args.device)
    images = load_images(args.images, args.n)
    dev = torch.device(args.device)

    def run(batch: np.ndarray):
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=args.amp):
            out = model.generate(batch)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        return out

    run(images[: args.batch])  # warm-up (allocations, kernels)
    walls, programs = [], []
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for i in range(0, len(images), args.batch):
        t = time.perf_counter()
        out = run(images[i : i + args.batch])
        walls.append(time.perf_counter() - t)
        programs += [r[0][0] for r in out]
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    from img2prog.lang import get_language

    lang = get_language("csg2d")
    tokens = statistics.mean(len(lang.encode(p)) + 1 for p in programs)
    res = {
        "device": torch.cuda.get_device_name() if dev.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)",
        "batch": args.batch, "n": len(images), "amp": args.amp, "mean_tokens": round(tokens, 1),
        "images_per_s": round(len(images) / wall, 1),
        "ms_per_image_mean": round(1000 * wall / len(images), 2),
        "ms_per_batch_median": round(1000 * statistics.median(walls), 2),
        "cpu_ms_per_image": round(1000 * cpu / len(images), 2),
        "num_parameters": model.num_parameters(),
    }
    print(json.dumps(res))
    if args.json:
        with open(args.json, "a") as f:
            f.write(json.dumps(res) + "\n")


if __name__ == "__main__":
    main()
