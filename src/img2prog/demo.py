"""`img2prog demo`: the main job on the shipped default, end to end, offline, on a CPU.

1. renders the four SPEC qualitative programs (what the language can express);
2. scores the empty-program baseline on the standard held-out sets;
3. runs the shipped native model greedily on the qualitative set, a slice of ``csg2d-test``
   and a slice of ``csg2d-hard``, then with verifier-guided search (``auto``) under a
   per-image time budget;
4. prints the reference metrics side by side and writes predictions, a gallery per set and
   ``summary.json`` under the output folder.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

QUALITATIVE = "csg2d-qualitative"


@dataclass
class DemoConfig:
    out: Path = Path("out/demo")
    model: str = "native-csg2d"
    test_limit: int = 50  # images of csg2d-test (the full set is 200)
    hard_limit: int = 20  # images of csg2d-hard (the full set is 100)
    search: str = "auto"  # strategy for the search rows ("none" to skip them)
    time_limit: float = 1.0  # seconds per image for the search rows
    seed: int = 0


def _table(rows: list[tuple[str, str, dict]]) -> str:
    keys = ("pixel_accuracy", "parse_rate", "precision", "recall", "f1_score", "iou", "perfect")
    head = "| set | method | " + " | ".join(keys) + " | ms/image |\n|---|---|" + "---|" * (len(keys) + 1)
    lines = [head]
    for name, method, m in rows:
        cells = " | ".join(f"{m[k]:.4f}" for k in keys)
        ms = f"{m['ms_per_image']:.0f}" if "ms_per_image" in m else "—"
        lines.append(f"| {name} | {method} | {cells} | {ms} |")
    return "\n".join(lines)


def run_demo(cfg: DemoConfig, echo=print) -> dict:
    import torch
    from PIL import Image

    from img2prog.data.testsets import load_testset
    from img2prog.eval.gallery import GalleryItem, write_gallery
    from img2prog.eval.metrics import compute_metrics
    from img2prog.lang import get_language
    from img2prog.models.native import NativeModel
    from img2prog.models.proposer import NativeProposer
    from img2prog.search import search_batch
    from img2prog.search.simplify import simplify

    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    csg = get_language("csg2d")
    torch.manual_seed(cfg.seed)

    # 1. The qualitative programs, rendered exactly.
    qual = load_testset(QUALITATIVE)
    (out / "qualitative").mkdir(exist_ok=True)
    for i, program in enumerate(qual["program"]):
        Image.fromarray(csg.render(program)).save(out / "qualitative" / f"{i}.png")
    echo(f"rendered the {len(qual)} qualitative programs to {out / 'qualitative'}")

    sets = {
        QUALITATIVE: qual,
        "csg2d-test": load_testset("csg2d-test").select(range(cfg.test_limit)),
        "csg2d-hard": load_testset("csg2d-hard").select(range(cfg.hard_limit)),
    }
    model = NativeModel.from_pretrained(cfg.model, device="cpu")
    model.eval()
    echo(f"model {cfg.model}: {model.num_parameters() / 1e6:.1f}M parameters (CPU)")
    proposer = NativeProposer(model, device="cpu")

    rows: list[tuple[str, str, dict]] = []
    summary: dict = {"config": {k: str(v) for k, v in vars(cfg).items()}, "sets": {}}
    for name, ds in sets.items():
        targets = np.stack([np.asarray(img.convert("RGB")) for img in ds["image"]])
        truth = list(ds["program"])
        results: dict[str, dict] = {}

        baseline = compute_metrics([""] * len(targets), targets).to_dict()
        rows.append((name, "empty program", baseline))
        results["empty"] = baseline

        methods = [("greedy", None)]
        if cfg.search != "none":
            methods.append((cfg.search, cfg.time_limit))
        for method, limit in methods:
            t0 = time.perf_counter()
            if method == "greedy":
                with torch.no_grad():
                    programs = [c[0][0] for c in model.generate(targets, method="greedy")]
            else:
                found = search_batch(targets, proposer, method, time_limit=limit, seed=cfg.seed)
                programs = [r.program for r in found]
            # same pictures, without operands they do not need (what `img2prog infer` prints)
            programs = [simplify(p, size=targets.shape[1]) for p in programs]
            seconds = time.perf_counter() - t0
            report = compute_metrics(programs, targets)
            label = "native greedy" if method == "greedy" else f"native + {method} ({limit:g} s/image)"
            metrics = {**report.to_dict(), "ms_per_image": 1000 * seconds / len(targets)}
            rows.append((name, label, metrics))
            results[label] = metrics

            stem = f"{name}.{method}"
            with (out / f"{stem}.jsonl").open("w", encoding="utf-8") as f:
                for i, (p, r) in enumerate(zip(programs, report.rows)):
                    f.write(json.dumps({"id": i, "program": p, "target": truth[i], "iou": r["iou"],
                                        "perfect": r["perfect"]}) + "\n")
            renders, errors = csg.render_batch(programs)
            items = [
                GalleryItem(f"{name}[{i}]", targets[i], p, None if err else img, truth[i],
                            {"iou": round(r["iou"], 4), "perfect": r["perfect"]})
                for i, (p, img, err, r) in enumerate(zip(programs, renders, errors, report.rows))
            ]
            write_gallery(out / f"{stem}.html", items, report.to_dict(), title=f"{name} — {label}")
        summary["sets"][name] = results

    table = _table(rows)
    (out / "summary.md").write_text("# img2prog demo\n\n" + table + "\n", encoding="utf-8")
    (out / "summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    echo("")
    echo(table)
    echo("")
    echo(f"galleries, predictions and summary written to {out}/")
    return summary
