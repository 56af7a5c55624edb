"""Render benchmark: img2prog's csg2d renderer against the seed-style recipe.

    python benchmarks/render.py [--n N] [--seed S] [--repeats R] [--batch-n M] [--workers W]
    python benchmarks/render.py --parity N [--seed S]     # exactness sweep, no timing

Both sides get the same random programs (as text) in the same process:

- seed recipe (``seed_recipe.seed_render``): lark Earley parse with a grammar shaped like the
  seed notebook's, then the SPEC geometry and Pillow drawing, written out plainly;
  text → (S, S, 3) uint8;
- ours (``img2prog.lang.csg2d.render``): text → (S, S, 3) uint8.

A second table gives, per row, the same recipe with the leaner lark grammar of
``lark_reference`` (``seed_recipe.simple_render``, the baseline of earlier runs) and our
greyscale path (``render_gray``: the (S, S) array that metrics and search use, equal to any
channel of the RGB image).

Every program's two images are compared pixel for pixel before anything is timed; a single
difference aborts the run. Each side is timed several times, ours and the seed interleaved
(so machine load hits both alike), and the median is reported, by wall clock and by the
process's CPU time (on a shared machine the latter is the steadier of the two). Our caches
(primitive geometry, the operation memo, interned parse nodes) are cleared before every
repeat, so a repeat never profits from the one before it; within a repeat they work as they
would in any run (random programs share circles, rarely anything else).

Rows: single circles, single quads, unions of 8 circles, and nested trees of 8–12
primitives (unions and differences, 2–4 operands each). Angles are the documented multiples
of 45. Programs on which the reference's geometry engine fails are drawn again (their count
is printed). Then the share of GEOS overlay calls in our time on the nested row,
``Language.render_batch`` in one process and with ``--workers`` processes (pool start-up
included) on ``--batch-n`` nested programs, and a search-like workload (mutants of a few
base programs) with and without the operation memo.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from seed_recipe import seed_render, simple_render

from img2prog.lang import RenderError, get_language
from img2prog.lang.csg2d import rendering
from img2prog.lang.csg2d.ast import Circle, Difference, Quad, Shape, Union

# --------------------------------------------------------------------------------------
# Programs.
# --------------------------------------------------------------------------------------


def circle(rng: random.Random) -> Circle:
    return Circle(rng.randint(0, 15), rng.randint(0, 15), rng.randint(0, 15))


def quad(rng: random.Random) -> Quad:
    return Quad(*(rng.randint(0, 15) for _ in range(4)), rng.randrange(0, 360, 45))


def tree(rng: random.Random, leaves: int) -> Shape:
    """A nested tree with exactly ``leaves`` primitives; 2–4 operands per operation."""
    if leaves == 1:
        return circle(rng) if rng.random() < 0.5 else quad(rng)
    k = rng.randint(2, min(leaves, 4))
    cuts = sorted(rng.sample(range(1, leaves), k - 1))
    sizes = [b - a for a, b in zip([0, *cuts], [*cuts, leaves])]
    return (Union if rng.random() < 0.6 else Difference)(tuple(tree(rng, s) for s in sizes))


CATEGORIES = {
    "single circle": circle,
    "single quad": quad,
    "union of 8 circles": lambda rng: Union(tuple(circle(rng) for _ in range(8))),
    "nested, 8–12 primitives": lambda rng: tree(rng, rng.randint(8, 12)),
}


def renderable(program) -> bool:
    try:
        rendering.render_reference(program, 16)
        return True
    except RenderError:
        return False


def draw_programs(make, rng: random.Random, n: int) -> tuple[list[str], int]:
    """``n`` renderable programs as text, and how many GEOS failures were redrawn."""
    out, failures = [], 0
    while len(out) < n:
        p = make(rng)
        if renderable(p):
            out.append(str(p))
        else:
            failures += 1
    return out, failures


def mutants(rng: random.Random, bases: int, per_base: int) -> list[str]:
    """Search-like workload: each base program, then variants that replace one primitive."""
    out = []
    for _ in range(bases):
        base = tree(rng, rng.randint(8, 12))
        for j in range(per_base + 1):
            p = base if j == 0 else _replace_leaf(rng, base)
            if renderable(p):
                out.append(str(p))
    return out


def _replace_leaf(rng: random.Random, node):
    if isinstance(node, (Circle, Quad)):
        return circle(rng) if rng.random() < 0.5 else quad(rng)
    i = rng.randrange(len(node.operands))
    ops = node.operands[:i] + (_replace_leaf(rng, node.operands[i]),) + node.operands[i + 1 :]
    return type(node)(ops)


# --------------------------------------------------------------------------------------
# Timing.
# --------------------------------------------------------------------------------------


def rates(fn, items) -> tuple[float, float]:
    """Items per second of ``fn`` over ``items`` by wall clock and by this process's CPU time.

    Our caches are cleared first. On a quiet machine the two agree for one process; on a
    shared one, wall clock also counts time spent waiting for a core, CPU time does not.
    """
    rendering.clear_caches()
    w0, c0 = time.perf_counter(), time.process_time()
    fn(items)
    return len(items) / (time.perf_counter() - w0), len(items) / (time.process_time() - c0)


def medians(samples: list[tuple[float, float]]) -> tuple[float, float]:
    return statistics.median(s[0] for s in samples), statistics.median(s[1] for s in samples)


def each(render):
    def run(texts):
        for t in texts:
            render(t)

    return run


def _parity_chunk(args: tuple[int, int, int]) -> tuple[int, int, list[str]]:
    """Render ``n`` random programs every fast way and with the reference; count mismatches."""
    seed, n, size = args
    rng = random.Random(seed)
    failures, mismatches = 0, []
    for _ in range(n):
        program = parity_program(rng)
        text = str(program)
        try:
            ref = rendering.render_reference(program, size)
        except RenderError:
            failures += 1
            for fn in (rendering.render, rendering.render_gray):
                try:
                    fn(text, size)
                    mismatches.append(f"no RenderError: {text}")
                except RenderError:
                    pass
            continue
        if not (
            np.array_equal(rendering.render(text, size), ref)
            and np.array_equal(rendering.render_gray(program, size), ref[..., 0])
        ):
            mismatches.append(text)
    return n, failures, mismatches


def parity_program(rng: random.Random):
    """The parity mix: any angle 0..359; 1/4 single primitives, else 2–12-primitive trees."""
    if rng.random() < 0.25:
        leaves = 1
    else:
        leaves = rng.randint(2, 12)
    p = tree(rng, leaves)
    if rng.random() < 0.5:  # re-draw quads with arbitrary angles (the tree uses multiples of 45)
        p = _any_angles(rng, p)
    return p


def _any_angles(rng: random.Random, node):
    if isinstance(node, Quad):
        return Quad(node.x, node.y, node.w, node.h, rng.randint(0, 359))
    if isinstance(node, Circle):
        return node
    return type(node)(tuple(_any_angles(rng, o) for o in node.operands))


def parity(n: int, seed: int, size: int, workers: int) -> None:
    """``--parity N``: N random programs, every one compared with the reference, pixel for pixel."""
    from concurrent.futures import ProcessPoolExecutor

    chunk = 500
    jobs = [(seed * 1_000_003 + i, min(chunk, n - i * chunk), size) for i in range(-(-n // chunk))]
    t0 = time.perf_counter()
    with ProcessPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(_parity_chunk, jobs))
    total = sum(r[0] for r in results)
    failures = sum(r[1] for r in results)
    mismatches = [m for r in results for m in r[2]]
    print(f"parity: {total} random programs at {size} px, seed {seed}: {len(mismatches)} mismatches "
          f"({failures} programs fail in the reference's GEOS call and raise RenderError on our paths too); "
          f"{time.perf_counter() - t0:.0f} s")
    for m in mismatches[:20]:
        print("  MISMATCH", m)
    if mismatches:
        sys.exit(1)


def geos_share(texts: list[str], size: int) -> tuple[float, float]:
    """CPU seconds spent inside GEOS union/difference, and in total, rendering ``texts`` once."""
    spent = [0.0]

    def timed(op):
        def call(a, b):
            t0 = time.process_time()
            try:
                return op(a, b)
            finally:
                spent[0] += time.process_time() - t0

        return call

    union, difference = rendering._union, rendering._difference
    rendering._union, rendering._difference = timed(union), timed(difference)
    try:
        rendering.clear_caches()
        t0 = time.process_time()
        for t in texts:
            rendering.render(t, size)
        total = time.process_time() - t0
    finally:
        rendering._union, rendering._difference = union, difference
    return spent[0], total


def _load() -> str:
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


def check_identical(texts: list[str], size: int) -> None:
    for t in texts:
        ours, ref = rendering.render(t, size), seed_render(t, size)
        if ours.shape != ref.shape or not np.array_equal(ours, ref):
            sys.exit(f"PIXEL MISMATCH on {t!r}: {int((ours != ref).sum())} values differ")
        if not (np.array_equal(rendering.render_gray(t, size), ref[..., 0])
                and np.array_equal(simple_render(t, size), ref)):
            sys.exit(f"PIXEL MISMATCH on {t!r} (render_gray or the lean-grammar recipe)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=200, help="programs per row (default 200)")
    ap.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    ap.add_argument("--repeats", type=int, default=5, help="timed repeats per side (default 5)")
    ap.add_argument("--size", type=int, default=256, help="image size (default 256)")
    ap.add_argument("--batch-n", type=int, default=1000, help="programs for the batch rows (default 1000)")
    ap.add_argument("--workers", type=int, default=2, help="processes for the batch row (default 2)")
    ap.add_argument("--parity", type=int, default=0, metavar="N",
                    help="instead of timing, check N random programs against the reference")
    args = ap.parse_args()
    size, reps = args.size, args.repeats
    if args.parity:
        parity(args.parity, args.seed, size, args.workers)
        return
    rng = random.Random(args.seed)

    print(f"# csg2d render benchmark: n={args.n} per row, seed={args.seed}, {reps} repeats, {size} px")
    print(f"# python {platform.python_version()}, {os.cpu_count()} CPUs, load average {_load()}")
    print()
    print("One process; renders/s by wall clock (by CPU time in brackets), median of the repeats.")
    print()
    print("| programs | seed recipe (renders/s) | ours (renders/s) | ratio, wall (CPU) | pixel-identical |")
    print("|---|---:|---:|---:|---|")
    seed_rates: dict[str, float] = {}
    extra_rows = []
    for name, make in CATEGORIES.items():
        texts, failures = draw_programs(make, rng, args.n)
        check_identical(texts, size)
        ours, seed, simple, gray = [], [], [], []
        for _ in range(reps):
            ours.append(rates(each(lambda t: rendering.render(t, size)), texts))
            seed.append(rates(each(lambda t: seed_render(t, size)), texts))
            gray.append(rates(each(lambda t: rendering.render_gray(t, size)), texts))
            simple.append(rates(each(lambda t: simple_render(t, size)), texts))
        (ow, oc), (sw, sc), (gw, gc), (lw, lc) = medians(ours), medians(seed), medians(gray), medians(simple)
        seed_rates[name] = sw
        extra_rows.append(f"| {name} | {lw:,.0f} ({lc:,.0f}) | {ow / lw:.1f}× ({oc / lc:.1f}×) "
                          f"| {gw:,.0f} ({gc:,.0f}) | {gw / sw:.1f}× ({gc / sc:.1f}×) |")
        note = f" ({failures} GEOS failures redrawn)" if failures else ""
        print(f"| {name} | {sw:,.0f} ({sc:,.0f}) | {ow:,.0f} ({oc:,.0f}) | {ow / sw:.1f}× ({oc / sc:.1f}×) "
              f"| yes, {len(texts)}/{len(texts)}{note} |", flush=True)
    print()
    print("Same rows: the recipe with the leaner lark grammar (earlier runs' baseline), our RGB path's "
          "ratio to it, and our greyscale path (`render_gray`) against the seed recipe:")
    print()
    print("| programs | lean-grammar recipe (renders/s) | ours RGB vs it | ours grey (renders/s) | grey vs seed recipe |")
    print("|---|---:|---:|---:|---:|")
    for row in extra_rows:
        print(row)

    # Where our time goes on the last (nested) row: GEOS overlays vs everything else.
    overlay, total = geos_share(texts, size)
    print()
    print(f"Nested row, ours: {total * 1e3 / len(texts):.3f} ms CPU per render, of which GEOS union/difference "
          f"calls {overlay * 1e3 / len(texts):.3f} ms ({overlay / total:.0%}); the seed recipe makes the same calls.")

    # Batches: Language.render_batch (RGB, what metrics use) on nested programs.
    csg = get_language("csg2d")
    batch, _ = draw_programs(CATEGORIES["nested, 8–12 primitives"], rng, args.batch_n)
    expected = np.stack([seed_render(t, size) for t in batch])
    s = seed_rates["nested, 8–12 primitives"]
    print()
    print(f"Batch of {len(batch)} nested 8–12-primitive programs, `Language.render_batch` "
          "(RGB; process-pool start-up included), wall clock, against the seed recipe's "
          "single-process wall-clock rate above:")
    print()
    print("| renderer | renders/s | ratio to seed recipe | pixel-identical |")
    print("|---|---:|---:|---|")
    for workers in (1, args.workers):
        walls = []
        for _ in range(reps):
            rendering.clear_caches()
            t0 = time.perf_counter()
            out, errors = csg.render_batch(batch, size, workers=workers)
            walls.append(len(batch) / (time.perf_counter() - t0))
            if any(errors) or not np.array_equal(out, expected):
                sys.exit(f"PIXEL MISMATCH in render_batch(workers={workers})")
        r = statistics.median(walls)
        print(f"| render_batch, workers={workers} | {r:,.0f} | {r / s:.1f}× | yes, {len(batch)}/{len(batch)} |", flush=True)
    # The greyscale batch (rendering.render_batch): the same pixels as one channel — what the
    # metrics, search and rewards consume — checked against the seed recipe's red channel.
    for workers in (1, args.workers):
        walls = []
        for _ in range(reps):
            rendering.clear_caches()
            t0 = time.perf_counter()
            gray, errors = rendering.render_batch(batch, size, workers=workers)
            walls.append(len(batch) / (time.perf_counter() - t0))
            if any(errors) or not np.array_equal(gray, expected[..., 0]) or not (expected == expected[..., :1]).all():
                sys.exit(f"PIXEL MISMATCH in rendering.render_batch(workers={workers})")
        r = statistics.median(walls)
        print(f"| rendering.render_batch (grey), workers={workers} | {r:,.0f} | {r / s:.1f}× | yes, {len(batch)}/{len(batch)} |",
              flush=True)

    # Search-like workload: the memo's use case.
    work = mutants(rng, bases=max(1, args.n // 20), per_base=20)
    check_identical(work, size)
    with_memo, without, seed = [], [], []
    for _ in range(reps):
        with_memo.append(rates(each(lambda t: rendering.render(t, size)), work))
        rendering.set_memo_size(0)
        without.append(rates(each(lambda t: rendering.render(t, size)), work))
        rendering.set_memo_size(4096)
        seed.append(rates(each(lambda t: seed_render(t, size)), work))
    (mw, mc), (ww, wc), (sw, sc) = medians(with_memo), medians(without), medians(seed)
    print()
    print(f"Search-like workload: {len(work)} programs, each of {max(1, args.n // 20)} nested base programs "
          "followed by 20 variants that replace one primitive; one process:")
    print()
    print("| renderer | renders/s, wall (CPU) | ratio to seed recipe, wall (CPU) |")
    print("|---|---:|---:|")
    print(f"| seed recipe | {sw:,.0f} ({sc:,.0f}) | 1.0× |")
    print(f"| ours, memo off | {ww:,.0f} ({wc:,.0f}) | {ww / sw:.1f}× ({wc / sc:.1f}×) |")
    print(f"| ours, memo on (default) | {mw:,.0f} ({mc:,.0f}) | {mw / sw:.1f}× ({mc / sc:.1f}×) |")
    print()
    print(f"# load average at the end: {_load()}")


if __name__ == "__main__":
    main()
