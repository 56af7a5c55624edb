"""Speed of scoring and of dataset building, as ratios against baselines in the same process.

1. Scoring: ``compute_metrics`` against (a) the seed's per-sample loop with the seed recipe
   (Earley parse + SPEC geometry + Pillow), and (b) the same per-sample loop with img2prog's
   fast renderer — (b) isolates what the batched counting itself adds or saves. All three must
   give the same five reference numbers; the script checks that before timing anything.
2. Storing images: 1-bit PNG (what ``programs_to_dataset`` writes) against an RGB PNG of the
   same rendering (what storing PIL RGB images in ``datasets`` would write), per image.

   Also with the targets in a ``datasets.Dataset`` (the CLI's case), where the seed-style loop
   decodes rows as RGB images and ``compute_metrics`` decodes 1-bit cells to one plane.

Run:  python benchmarks/metrics_io.py [--n 300] [--seed 0]
"""

from __future__ import annotations

import argparse
import io
import random
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))

from seed_recipe import seed_render

from img2prog.data.io import encode_png, programs_to_dataset
from img2prog.eval.metrics import compute_metrics
from img2prog.lang.csg2d import render


def random_shape(rng: random.Random, budget: list[int]) -> str:
    """A random csg2d shape with about ``budget[0]`` primitives (angles multiples of 45)."""
    if budget[0] > 1 and rng.random() < 0.5:
        k = rng.randint(2, 3)
        op = rng.choice("+-")
        return f"({op} " + " ".join(random_shape(rng, budget) for _ in range(k)) + ")"
    budget[0] -= 1
    if rng.random() < 0.5:
        return f"(Circle {rng.randint(1, 6)} {rng.randint(2, 13)} {rng.randint(2, 13)})"
    return (
        f"(Quad {rng.randint(2, 13)} {rng.randint(2, 13)} {rng.randint(1, 10)} {rng.randint(1, 10)} "
        f"{45 * rng.randint(0, 7)})"
    )


def program(rng: random.Random) -> str:
    parts = [random_shape(rng, [rng.randint(2, 4)]) for _ in range(rng.randint(3, 4))]
    return "(+ " + " ".join(parts) + ")"


def seed_loop(programs, targets, render_fn):
    """The seed notebook's Metrics loop (per sample, counts aggregated), written from SPEC §2."""
    accs, parsed, tp, fp, fn = [], [], 0, 0, 0
    for prog, target in zip(programs, targets):
        tb = target == 0
        try:
            gen = render_fn(prog)
        except Exception:  # the seed catches its own rendering exception  # noqa: BLE001
            accs.append(0.0)
            parsed.append(0.0)
            fp += int(np.sum(~tb))
            fn += int(np.sum(tb))
            continue
        accs.append(float(np.mean(gen == target)))
        parsed.append(1.0)
        gb = gen == 0
        tp += int(np.sum(gb & tb))
        fp += int(np.sum(gb & ~tb))
        fn += int(np.sum(~gb & tb))
    p, r = (tp / (tp + fp), tp / (tp + fn)) if tp + fp > 0 else (1.0, 0.0)
    f = 2 * p * r / (p + r) if p + r > 0 else 0.0
    return (sum(accs) / len(accs), sum(parsed) / len(parsed), p, r, f)


def timed(fn, repeat: int = 3):
    best, out = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    target_programs = [program(rng) for _ in range(args.n)]
    targets = np.stack([render(p) for p in target_programs])
    preds = []
    for i, p in enumerate(target_programs):
        if i % 10 == 0:
            preds.append(p[:-2])  # unparsable
        elif i % 3 == 0:
            preds.append(p)  # exact
        else:
            preds.append(program(rng))
    n_prims = np.mean([p.count("(Circle") + p.count("(Quad") for p in target_programs])
    print(f"{args.n} samples at 256 px, {n_prims:.1f} primitives per program on average; best of 3 runs")

    t_seed, ref_seed = timed(lambda: seed_loop(preds, targets, seed_render), repeat=1)
    t_loop, ref_loop = timed(lambda: seed_loop(preds, targets, render))
    t_ours, report = timed(lambda: compute_metrics(preds, targets, workers=1))
    ours = (report.pixel_accuracy, report.parse_rate, report.precision, report.recall, report.f1_score)
    assert np.allclose(ours, ref_seed, rtol=1e-12, atol=0) and np.allclose(ours, ref_loop, rtol=1e-12, atol=0)
    print(f"reference numbers agree: {tuple(round(x, 6) for x in ours)}")
    for name, t in [
        ("seed loop + seed recipe", t_seed),
        ("seed loop + fast render", t_loop),
        ("compute_metrics (1 process)", t_ours),
    ]:
        print(f"  {name:30s} {t:7.3f} s  {1000 * t / args.n:6.2f} ms/sample  ×{t_seed / t:5.1f} vs seed")
    print(f"  compute_metrics vs same-renderer loop: ×{t_loop / t_ours:.2f}")

    # The CLI's case: targets in a saved-dataset form (PNG cells), decoded while scoring.
    ds = programs_to_dataset(target_programs, workers=1)
    t_dsloop, ref_ds = timed(lambda: seed_loop(preds, [np.array(row["image"]) for row in ds], render))
    t_dsours, rep_ds = timed(lambda: compute_metrics(preds, ds, workers=1))
    assert np.allclose(
        (rep_ds.pixel_accuracy, rep_ds.parse_rate, rep_ds.precision, rep_ds.recall, rep_ds.f1_score),
        ref_ds,
        rtol=1e-12,
        atol=0,
    )
    print("targets in a datasets.Dataset (decoded while scoring):")
    print(f"  seed loop over rows + fast render {t_dsloop:7.3f} s  {1000 * t_dsloop / args.n:6.2f} ms/sample")
    print(
        f"  compute_metrics (1 process)       {t_dsours:7.3f} s  {1000 * t_dsours / args.n:6.2f} ms/sample"
        f"  ×{t_dsloop / t_dsours:.2f}"
    )

    # PNG storage of renderings.
    arrays = [render(p) for p in target_programs[:100]]

    def rgb_png():
        out = []
        for a in arrays:
            buf = io.BytesIO()
            Image.fromarray(a).save(buf, format="PNG")
            out.append(buf.getvalue())
        return out

    t_rgb, rgb = timed(rgb_png)
    t_bit, bit = timed(lambda: [encode_png(a) for a in arrays])
    for a, b in zip(arrays, bit):
        assert np.array_equal(np.asarray(Image.open(io.BytesIO(b)).convert("RGB")), a)
    print(
        f"PNG per image: RGB {1000 * t_rgb / len(arrays):.2f} ms, {np.mean([len(b) for b in rgb]):.0f} B; "
        f"1-bit {1000 * t_bit / len(arrays):.2f} ms, {np.mean([len(b) for b in bit]):.0f} B "
        f"(×{t_rgb / t_bit:.1f} faster, ×{np.mean([len(b) for b in rgb]) / np.mean([len(b) for b in bit]):.1f} smaller)"
    )
    t_ds, _ = timed(lambda: programs_to_dataset(target_programs, workers=1), repeat=1)
    print(f"programs_to_dataset (1 process): {1000 * t_ds / args.n:.2f} ms/program")


if __name__ == "__main__":
    main()
