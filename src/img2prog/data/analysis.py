"""Dataset quality analysis: what is in a dataset of programs, and what is wrong with it.

Per program (exact, at 256 px): does it render, which operands are degenerate (removing them
leaves the image unchanged), how deep, how many primitives, which parameters, how much of
the canvas is black, where the black is. Per dataset: duplicate rates (verbatim text,
canonical program, identical image, near-identical image), construct frequencies,
distributions, overlap with the standard test sets, and whether stored images match their
programs. :func:`analyze` returns a JSON-ready dict; :func:`write_report` adds ``report.md``
and PNG plots, comparing several datasets side by side when given more than one.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from img2prog.data.checks import Evaluated, image_key, redundant_nesting
from img2prog.lang.csg2d.ast import Circle, Difference, Quad, Union, depth, primitives, walk
from img2prog.lang.csg2d.parser import parse
from img2prog.lang.errors import ProgramError

SIZE = 256
HEAT = 64  # resolution of the position heatmap and of near-duplicate comparisons
LOW, HIGH = 0.05, 0.75  # coverage thresholds the seed notebook suggests looking at
NEAR_DUP_PIXELS = 0.01  # images differing in fewer than 1% of pixels (at 64 px) are near-duplicates
NEAR_DUP_MAX = 5000  # near-duplicates are counted among the first this many samples (O(n²))
PARAMS = {
    "circle.r": (Circle, "r"),
    "circle.x": (Circle, "x"),
    "circle.y": (Circle, "y"),
    "quad.x": (Quad, "x"),
    "quad.y": (Quad, "y"),
    "quad.w": (Quad, "w"),
    "quad.h": (Quad, "h"),
}


@dataclass
class _Row:
    """What one worker learns about one program."""

    ok: bool
    error: str | None = None
    canonical: str | None = None
    key: bytes | None = None
    coverage: float = 0.0
    operands: int = 0
    degenerate: int = 0
    degenerate_by_op: tuple[int, int] = (0, 0)  # (+, -)
    operands_by_op: tuple[int, int] = (0, 0)
    depth: int = 0
    n_primitives: int = 0
    counts: tuple[int, int, int, int] = (0, 0, 0, 0)  # circle, quad, union, difference
    params: dict | None = None
    angles: tuple[int, ...] = ()
    redundant: int = 0
    heat: np.ndarray | None = None  # (HEAT, HEAT) float32 share of black
    image_mismatch: bool = False


def _pool(img: np.ndarray, size: int) -> np.ndarray:
    black = (img == 0).astype(np.float32)
    k = img.shape[0] // size
    if k * size != img.shape[0]:
        from PIL import Image

        return np.asarray(Image.fromarray(black * 255).resize((size, size), Image.Resampling.BOX)) / 255.0
    return black.reshape(size, k, size, k).mean(axis=(1, 3))


def _analyze_one(args: tuple[str, np.ndarray | None]) -> _Row:
    text, stored = args
    try:
        program = parse(text)
    except ProgramError as e:
        return _Row(ok=False, error=f"not a program: {e}")
    try:
        ev = Evaluated(program)
        img = ev.image(SIZE)
    except ProgramError as e:
        return _Row(ok=False, error=f"does not render: {e}")
    bad = ev.degenerate_operands((SIZE,))
    all_ops = list(ev.operands())
    ops_by = (sum(1 for r, _ in all_ops if r.op == "+"), sum(1 for r, _ in all_ops if r.op == "-"))
    bad_by = (sum(1 for r in bad if r.op == "+"), sum(1 for r in bad if r.op == "-"))
    nodes = list(walk(program))
    prims = primitives(program)
    params: dict[str, list[int]] = {k: [] for k in PARAMS}
    for p in prims:
        for name, (cls, attr) in PARAMS.items():
            if isinstance(p, cls):
                params[name].append(getattr(p, attr))
    mismatch = False
    if stored is not None:
        from img2prog.lang.csg2d import rendering

        expect = img if stored.shape[0] == SIZE else rendering.render_gray(program, stored.shape[0])
        mismatch = not np.array_equal(stored, expect)
    return _Row(
        ok=True,
        canonical=str(program),
        key=image_key(img),
        coverage=float(np.count_nonzero(img == 0)) / img.size,
        operands=len(all_ops),
        degenerate=len(bad),
        degenerate_by_op=bad_by,
        operands_by_op=ops_by,
        depth=depth(program),
        n_primitives=len(prims),
        counts=(
            sum(isinstance(n, Circle) for n in nodes),
            sum(isinstance(n, Quad) for n in nodes),
            sum(isinstance(n, Union) for n in nodes),
            sum(isinstance(n, Difference) for n in nodes),
        ),
        params=params,
        angles=tuple(p.angle for p in prims if isinstance(p, Quad)),
        redundant=redundant_nesting(program),
        heat=_pool(img, HEAT).astype(np.float32),
        image_mismatch=mismatch,
    )


def _share(a: float, b: float) -> float:
    return float(a) / b if b else 0.0


def _near_duplicate_rate(heats: list[np.ndarray], keys: list[bytes]) -> float:
    """Share of samples whose image is within 1% of pixels (at 64 px) of an earlier sample's
    image without being identical to it (identical images count as duplicates instead)."""
    n = min(len(heats), NEAR_DUP_MAX)
    if n < 2:
        return 0.0
    x = (np.stack(heats[:n]).reshape(n, -1) >= 0.5).astype(np.float32)
    ones = x.sum(1)
    near = 0
    limit = NEAR_DUP_PIXELS * x.shape[1]
    for i in range(1, n):
        # Hamming distance to every earlier sample: |a| + |b| - 2 a·b
        d = ones[i] + ones[:i] - 2.0 * (x[:i] @ x[i])
        close = np.nonzero(d <= limit)[0]
        if any(keys[j] != keys[i] for j in close):
            near += 1
    return near / n


def analyze(
    programs: Sequence[str],
    images: Sequence[np.ndarray] | None = None,
    name: str = "dataset",
    workers: int | None = None,
    check_test_overlap: bool = True,
) -> dict:
    """Quality statistics of a dataset (a JSON-ready dict; see the module docstring).

    ``images`` (optional, greyscale or RGB arrays) are checked against their programs'
    renderings. ``workers`` processes share the work (None: several for 2,000+ programs).
    """
    n = len(programs)
    stored: list[np.ndarray | None] = [None] * n
    if images is not None:
        if len(images) != n:
            raise ValueError(f"{len(images)} images for {n} programs")
        stored = [np.asarray(im)[..., 0] if np.asarray(im).ndim == 3 else np.asarray(im) for im in images]
    if workers is None:
        workers = min(os.cpu_count() or 1, 8) if n >= 2000 else 1
    jobs = list(zip(programs, stored))
    if workers > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            rows = list(pool.map(_analyze_one, jobs, chunksize=64))
    else:
        rows = [_analyze_one(j) for j in jobs]
    good = [r for r in rows if r.ok]
    m = len(good)
    errors = [(i, r.error) for i, r in enumerate(rows) if not r.ok]

    cov = np.array([r.coverage for r in good]) if good else np.zeros(0)
    operands = sum(r.operands for r in good)
    degenerate = sum(r.degenerate for r in good)
    ops_plus = sum(r.operands_by_op[0] for r in good)
    ops_minus = sum(r.operands_by_op[1] for r in good)
    counts = np.array([r.counts for r in good]).sum(0) if good else np.zeros(4, dtype=int)
    n_prims = int(counts[0] + counts[1])
    n_ops = int(counts[2] + counts[3])
    params = {k: Counter(v for r in good for v in r.params[k]) for k in PARAMS}
    angles = Counter(a for r in good for a in r.angles)
    n_angles = sum(angles.values())
    heat = np.mean([r.heat for r in good], axis=0) if good else np.zeros((HEAT, HEAT))
    # Where the black is: centre of mass (canvas units) and the share in the outer band.
    yy, xx = np.mgrid[0:HEAT, 0:HEAT]
    mass = heat.sum()
    band = np.zeros_like(heat, dtype=bool)
    edge = HEAT // 8  # 2 canvas units
    band[:edge], band[-edge:], band[:, :edge], band[:, -edge:] = True, True, True, True
    half = HEAT // 2
    quadrants = [heat[:half, :half], heat[:half, half:], heat[half:, :half], heat[half:, half:]]

    overlap = {"program": 0, "image": 0}
    if check_test_overlap and good:
        from img2prog.data.testsets import standard_bar

        bar = standard_bar()
        keys = bar.image_keys(SIZE)
        overlap["program"] = sum(bar.bars_canonical(r.canonical) for r in good)
        overlap["image"] = sum(r.key in keys for r in good)

    texts = [p.strip() for p in programs]
    report = {
        "name": name,
        "n": n,
        "renderable": m,
        "errors": {"count": len(errors), "first": [f"row {i}: {e}" for i, e in errors[:5]]},
        "degenerate": {
            "programs_with_degenerate_operand": _share(sum(r.degenerate > 0 for r in good), m),
            "degenerate_operand_share": _share(degenerate, operands),
            "union_operand_share": _share(sum(r.degenerate_by_op[0] for r in good), ops_plus),
            "difference_operand_share": _share(sum(r.degenerate_by_op[1] for r in good), ops_minus),
            "operands_checked": operands,
        },
        "duplicates": {
            "program_text": 1.0 - _share(len(set(texts)), n) if n else 0.0,
            "canonical_program": 1.0 - _share(len({r.canonical for r in good}), m) if m else 0.0,
            "image": 1.0 - _share(len({r.key for r in good}), m) if m else 0.0,
            "near_image": _near_duplicate_rate([r.heat for r in good], [r.key for r in good]),
        },
        "constructs": {
            "circle": _share(counts[0], n_prims),
            "quad": _share(counts[1], n_prims),
            "union": _share(counts[2], n_ops),
            "difference": _share(counts[3], n_ops),
            "counts": {"circle": int(counts[0]), "quad": int(counts[1]), "union": int(counts[2]), "difference": int(counts[3])},
            "programs_with": {
                "circle": _share(sum(r.counts[0] > 0 for r in good), m),
                "quad": _share(sum(r.counts[1] > 0 for r in good), m),
                "union": _share(sum(r.counts[2] > 0 for r in good), m),
                "difference": _share(sum(r.counts[3] > 0 for r in good), m),
            },
            "redundant_nesting": _share(sum(r.redundant > 0 for r in good), m),
        },
        "depth": {str(k): v for k, v in sorted(Counter(r.depth for r in good).items())},
        "primitives": {str(k): v for k, v in sorted(Counter(r.n_primitives for r in good).items())},
        "mean_primitives": float(np.mean([r.n_primitives for r in good])) if good else 0.0,
        "parameters": {k: [int(c.get(v, 0)) for v in range(16)] for k, c in params.items()},
        "angles": {str(a): c for a, c in sorted(angles.items())},
        "angles_not_multiple_of_45": _share(sum(c for a, c in angles.items() if a % 45), n_angles),
        "coverage": {
            "mean": float(cov.mean()) if m else 0.0,
            "median": float(np.median(cov)) if m else 0.0,
            "p05": float(np.quantile(cov, 0.05)) if m else 0.0,
            "p95": float(np.quantile(cov, 0.95)) if m else 0.0,
            "under_5pct": _share(int((cov < LOW).sum()), m),
            "over_75pct": _share(int((cov > HIGH).sum()), m),
            "empty": _share(int((cov == 0).sum()), m),
            "full": _share(int((cov == 1).sum()), m),
            "histogram": np.histogram(cov, bins=20, range=(0, 1))[0].tolist(),
            "empty_program_pixel_accuracy": 1.0 - float(cov.mean()) if m else 1.0,
        },
        "position": {
            # canvas units, (0, 0) bottom-left as in the language
            "center_of_mass": [
                float((heat * (xx + 0.5)).sum() / mass * 16 / HEAT) if mass else 8.0,
                float(16 - (heat * (yy + 0.5)).sum() / mass * 16 / HEAT) if mass else 8.0,
            ],
            "border_band_share": float(heat[band].sum() / mass) if mass else 0.0,
            "quadrant_share": {
                name: float(q.sum() / mass) if mass else 0.25
                for name, q in zip(("top_left", "top_right", "bottom_left", "bottom_right"), quadrants)
            },
        },
        "test_overlap": overlap,
        "stored_image_mismatch": sum(r.image_mismatch for r in good) if images is not None else None,
    }
    report["_heatmap"] = heat  # not JSON; used by the plots and dropped when written
    return report


# --------------------------------------------------------------------------------------
# Loading and writing
# --------------------------------------------------------------------------------------

def load_for_analysis(path: str | Path, check_images: bool = True) -> tuple[list[str], list[np.ndarray] | None, str]:
    """Programs (and stored images, if any) from a dataset folder, a JSONL file or a test-set name."""
    from img2prog.data.io import DataError, load_dataset_dir, load_programs

    p = Path(path)
    if p.is_dir():
        ds = load_dataset_dir(p)
        if "program" not in ds.column_names:
            raise DataError(f"{p}: dataset has no 'program' column (columns: {ds.column_names})")
        programs = list(ds["program"])
        if any(not isinstance(x, str) for x in programs):
            raise DataError(f"{p}: some rows have no program; analysis needs programs")
        images = None
        if check_images and "image" in ds.column_names:
            images = [np.asarray(im.convert("L")) for im in ds["image"]]
        return programs, images, p.name
    if p.exists():
        return load_programs(p), None, p.stem
    from img2prog.data.testsets import get_recipe, testset_programs

    try:
        get_recipe(str(path))
    except KeyError:
        raise DataError(f"{path}: no such file or folder, and not a test-set name") from None
    return testset_programs(str(path)), None, str(path)


_ROWS = [
    ("samples", lambda r: f"{r['n']}"),
    ("render failures", lambda r: f"{r['errors']['count']}"),
    ("programs with a degenerate operand", lambda r: _pct(r["degenerate"]["programs_with_degenerate_operand"])),
    ("degenerate operands (all)", lambda r: _pct(r["degenerate"]["degenerate_operand_share"])),
    ("  of union operands", lambda r: _pct(r["degenerate"]["union_operand_share"])),
    ("  of difference operands", lambda r: _pct(r["degenerate"]["difference_operand_share"])),
    ("duplicate program text", lambda r: _pct(r["duplicates"]["program_text"])),
    ("duplicate canonical program", lambda r: _pct(r["duplicates"]["canonical_program"])),
    ("duplicate image", lambda r: _pct(r["duplicates"]["image"])),
    ("near-duplicate image (<1% px)", lambda r: _pct(r["duplicates"]["near_image"])),
    ("redundant nesting", lambda r: _pct(r["constructs"]["redundant_nesting"])),
    ("circle / quad (of primitives)", lambda r: f"{_pct(r['constructs']['circle'])} / {_pct(r['constructs']['quad'])}"),
    ("union / difference (of operations)", lambda r: f"{_pct(r['constructs']['union'])} / {_pct(r['constructs']['difference'])}"),
    ("mean primitives", lambda r: f"{r['mean_primitives']:.2f}"),
    ("depth 0 / 1 / 2 / 3+", lambda r: _depths(r)),
    ("coverage mean (median)", lambda r: f"{_pct(r['coverage']['mean'])} ({_pct(r['coverage']['median'])})"),
    ("coverage < 5%", lambda r: _pct(r["coverage"]["under_5pct"])),
    ("coverage > 75%", lambda r: _pct(r["coverage"]["over_75pct"])),
    ("empty-program pixel accuracy", lambda r: f"{r['coverage']['empty_program_pixel_accuracy']:.4f}"),
    ("black mass in outer 2-unit band", lambda r: _pct(r["position"]["border_band_share"])),
    ("centre of mass (x, y)", lambda r: "({:.1f}, {:.1f})".format(*r["position"]["center_of_mass"])),
    ("angles not multiple of 45", lambda r: _pct(r["angles_not_multiple_of_45"])),
    ("overlap with test sets (program / image)", lambda r: f"{r['test_overlap']['program']} / {r['test_overlap']['image']}"),
    ("stored images not matching program", lambda r: "n/a" if r["stored_image_mismatch"] is None else str(r["stored_image_mismatch"])),
]


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _depths(r: dict) -> str:
    d = {int(k): v for k, v in r["depth"].items()}
    m = max(r["renderable"], 1)
    parts = [d.get(0, 0), d.get(1, 0), d.get(2, 0), sum(v for k, v in d.items() if k >= 3)]
    return " / ".join(_pct(p / m) for p in parts)


def markdown_table(reports: Sequence[dict]) -> str:
    head = "| metric | " + " | ".join(r["name"] for r in reports) + " |"
    sep = "|---|" + "---|" * len(reports)
    lines = [head, sep]
    for label, fmt in _ROWS:
        lines.append(f"| {label} | " + " | ".join(fmt(r) for r in reports) + " |")
    return "\n".join(lines)


def write_report(
    reports: Sequence[dict], out: str | Path, samples: Sequence[Sequence[str]] | None = None, plots: bool = True
) -> Path:
    """Write ``report.json``, ``report.md`` and (unless ``plots=False``) PNG plots for one or
    more analysed datasets."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    clean = [{k: v for k, v in r.items() if not k.startswith("_")} for r in reports]
    payload = clean[0] if len(clean) == 1 else {"datasets": clean}
    (out / "report.json").write_text(json.dumps(payload, indent=2) + "\n")
    figures = []
    if plots:
        from img2prog.data.plots import plot_all

        figures = plot_all(reports, out, samples)
    title = reports[0]["name"] if len(reports) == 1 else " vs ".join(r["name"] for r in reports)
    md = [f"# Data quality: {title}", "", markdown_table(reports), ""]
    md.append(
        "Degenerate operand: removing it leaves the 256-px image unchanged. Duplicates: share of "
        "samples repeating an earlier one. Near-duplicate: within 1% of pixels of an earlier, "
        "different image (64 px, first 5,000 samples). Redundant nesting: an operation that could "
        "merge into its parent. Overlap: samples equal to a standard test program by spelling or image."
    )
    md.append("")
    for fig in figures:
        md.append(f"![{fig.stem}]({fig.name})")
        md.append("")
    (out / "report.md").write_text("\n".join(md))
    return out
