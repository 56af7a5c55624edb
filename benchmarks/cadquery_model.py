"""The native model on CadQuery: candidates (model machine), evaluation (CadQuery machine).

    # where the model is (GPU: no CadQuery needed): greedy + 32 samples per test picture
    python benchmarks/cadquery_model.py candidates --model runs/cad/model \\
        --images data_cad/cadquery-test-128.npz --samples 32 --out out/cad_candidates.jsonl \\
        --val data_cad/cad-train-128.npz --val-json out/cad_val.json

    # early stopping after the fact: the snapshot with the lowest held-out loss
    python benchmarks/cadquery_model.py pick --run runs/cad --val data_cad/cad-train-128.npz --out runs/cad/best

    # where CadQuery is: build, draw, pick best-of-N by image agreement, score (VSR, IoU, Chamfer)
    python benchmarks/cadquery_model.py evaluate --candidates out/cad_candidates.jsonl \\
        --images data_cad/cadquery-test-128.npz --testset cadquery-test --ns 4,8,16 --json out/cad_eval.json

``--val`` also reports, on the dataset's held-out split: teacher-forced loss and token
accuracy, and the share of greedy programs identical to the target (no CadQuery needed).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))


def _images(path: str) -> np.ndarray:
    with np.load(path) as z:
        return z["images"]


def validation(model, dataset: str, batch: int = 128, limit: int = 1000, greedy: bool = True) -> dict:
    """Held-out loss, token accuracy and greedy exact-match rate of a packed dataset's val split."""
    import torch

    from img2prog.models.cad_data import load_dataset, to_input

    images, tokens = load_dataset(dataset, split="val")
    images, tokens = images[:limit], tokens[:limit]
    pad = model.pad_id
    loss_sum = correct = count = exact = 0
    model.eval()
    with torch.no_grad():
        for i in range(0, len(images), batch):
            im = torch.from_numpy(images[i : i + batch]).to(model.device)
            tk = torch.from_numpy(tokens[i : i + batch]).to(model.device)
            L = int((tk != pad).sum(1).max())
            tk = tk[:, :L]
            x = to_input(im).to(model.tok_emb.weight.dtype)
            logits, _ = model(x, tk[:, :-1])
            tgt = tk[:, 1:]
            m = tgt != pad
            loss_sum += float(torch.nn.functional.cross_entropy(logits.float().flatten(0, 1), tgt.flatten(),
                                                                ignore_index=pad, reduction="sum"))
            correct += int(((logits.argmax(-1) == tgt) & m).sum())
            count += int(m.sum())
            if greedy:
                outs = model.generate(images[i : i + batch])
                for (text, _), row in zip((g[0] for g in outs), tk.tolist()):
                    exact += text == model.language.decode([t for t in row[1:] if t != pad])
    res = {"n": len(images), "loss": loss_sum / count, "token_accuracy": correct / count}
    if greedy:
        res["greedy_exact"] = exact / len(images)
    return res


def cmd_candidates(a) -> dict:
    import torch

    from img2prog.eval.cad_eval import write_candidates
    from img2prog.models.cad_search import generate_candidates
    from img2prog.models.native import NativeModel

    dev = a.device or ("cuda" if torch.cuda.is_available() else "cpu")
    model = NativeModel.from_pretrained(a.model, device=dev)
    res: dict = {"device": dev}
    if a.val:
        t0 = time.perf_counter()
        res["val"] = validation(model, a.val)
        res["val"]["seconds"] = time.perf_counter() - t0
        print(f"val: {res['val']}", file=sys.stderr)
        if a.val_json:
            Path(a.val_json).parent.mkdir(parents=True, exist_ok=True)
            Path(a.val_json).write_text(json.dumps(res["val"], indent=1) + "\n")
    images = _images(a.images)[: a.limit]
    t0 = time.perf_counter()
    if a.complete:
        from img2prog.eval.cad_eval import read_predictions
        from img2prog.models.cad_search import complete_candidates

        starts = read_predictions(a.complete, a.complete_field)[: a.limit]
        if len(starts) != len(images):
            raise SystemExit(f"error: {a.complete} has {len(starts)} predictions for {len(images)} pictures")
        cands = complete_candidates(model, images, starts, samples=a.samples, temperature=a.temperature,
                                    top_p=a.top_p, batch=a.batch, seed=a.seed)
    else:
        cands = generate_candidates(model, images, samples=a.samples, temperature=a.temperature, top_p=a.top_p,
                                    batch=a.batch, seed=a.seed, turned=a.turned)
    res["candidates_seconds"] = time.perf_counter() - t0
    write_candidates(a.out, cands)
    res["images"] = len(images)
    res["distinct_per_image"] = float(np.mean([len({c.program for c in row}) for row in cands]))
    return res


def cmd_pick(a) -> dict:
    """Early stopping after the fact: the run's final model or fp16 snapshot with the lowest
    held-out loss is copied to ``--out`` (a small dataset is overfitted long before the end)."""
    import shutil

    import torch

    from img2prog.models.native import NativeModel

    dev = a.device or ("cuda" if torch.cuda.is_available() else "cpu")
    run = Path(a.run)
    folders = sorted((run / "snapshots").glob("step-*")) + [run / "model"]
    scores = {}
    for f in folders:
        if (f / "config.json").is_file():
            scores[str(f)] = validation(NativeModel.from_pretrained(f, device=dev), a.val, limit=a.limit, greedy=False)
            print(f"{f.name}: {scores[str(f)]}", file=sys.stderr)
    if not scores:
        raise SystemExit(f"error: no model under {run}")
    best = min(scores, key=lambda k: scores[k]["loss"])
    out = Path(a.out)
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(best, out)
    return {"picked": best, "val": scores[best], "all": {Path(k).name: v["loss"] for k, v in scores.items()}}


def cmd_evaluate(a) -> dict:
    from img2prog.eval.cad_eval import evaluate_candidates, merge_candidates, read_candidates
    from img2prog.lang.cadquery.sandbox import Executor
    from img2prog.lang.cadquery.testsets import testset_programs

    cands = merge_candidates(*(read_candidates(f) for f in a.candidates))
    images = _images(a.images)[: len(cands)]
    if a.testset.endswith(".jsonl"):  # programs of another set, e.g. `fresh` below
        with open(a.testset) as f:
            targets = [json.loads(line)["program"] for line in f if line.strip()][: len(cands)]
    else:
        targets = testset_programs(a.testset)[: len(cands)]
    ns = tuple(int(x) for x in a.ns.split(",") if x)
    t0 = time.perf_counter()
    with Executor(workers=a.workers) as ex:
        pictures_by = None
        if a.pictures == "mesh":
            from img2prog.lang.cadquery.meshkernel import MeshFirst

            pictures_by = MeshFirst(ex)
        bar = tqdm(total=len(cands) * a.refine_top, desc="refine", file=sys.stderr) if a.refine else None
        rows: list = []
        res = evaluate_candidates(cands, targets, images, ex, ns=ns, chamfer_points=a.chamfer_points,
                                  pictures_by=pictures_by, refine_rounds=a.refine, refine_workers=a.workers,
                                  refine_top=a.refine_top, refine_donors=a.refine_donors,
                                  progress=bar.update if bar else None, predictions=rows)
        if bar:
            bar.close()
        res["pictures_by"] = a.pictures
    res["seconds"] = time.perf_counter() - t0
    if a.predictions:
        from img2prog.eval.cad_eval import write_jsonl

        write_jsonl(a.predictions, rows)
        res["predictions"] = a.predictions
    return res


def cmd_fresh(a) -> dict:
    """Held-out parts the test set's numbers can be checked against: the generator's default
    recipe with another seed, through the sandbox (OCC, finishes included, as ``cadquery-test``),
    with every standard test part barred by text and fingerprint. The training data (mesh kernel,
    seed 0 streams) may still contain some of them: this measures how representative
    ``cadquery-test`` is, not novelty."""
    from img2prog.data.cad_dataset import write_pictures
    from img2prog.lang.cadquery.generator import GeneratorConfig, PartGenerator
    from img2prog.lang.cadquery.sandbox import Executor
    from img2prog.lang.cadquery.testsets import RECIPES, standard_bar

    if a.seed in {r.seed for r in RECIPES.values()}:
        raise SystemExit(f"error: seed {a.seed} makes a standard test set; pick another")
    t0 = time.perf_counter()
    with Executor(workers=a.workers) as ex:
        programs = [p.text for p in PartGenerator(ex, GeneratorConfig(), seed=a.seed, bar=standard_bar()).generate(a.n)]
    res = write_pictures(a.out, programs, a.image_size, a.workers, what=f"fresh set (seed {a.seed})")
    return {**res, "seed": a.seed, "images": a.out, "programs": str(Path(a.out).with_suffix(".jsonl")),
            "seconds": time.perf_counter() - t0}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("candidates")
    c.add_argument("--model", required=True)
    c.add_argument("--images", required=True, help="npz with the test pictures (python -m img2prog.data.cad_dataset testset)")
    c.add_argument("--out", required=True)
    c.add_argument("--samples", type=int, default=32)
    c.add_argument("--temperature", type=float, default=1.0)
    c.add_argument("--top-p", type=float, default=0.95)
    c.add_argument("--batch", type=int, default=50)
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--limit", type=int, default=None)
    c.add_argument("--turned", action="store_true",
                   help="also decode the half-swapped picture (the part turned about +Z) and turn back")
    c.add_argument("--complete", default=None, metavar="PREDICTIONS",
                   help="instead of sampling from scratch, sample completions of each picture's predicted program "
                        "(a file from `evaluate --predictions`) cut at its step boundaries; --batch then counts "
                        "sequences, and each row starts with the predicted program itself")
    c.add_argument("--complete-field", default="refined", help="which prediction to complete (refined, greedy, best_of_N)")
    c.add_argument("--device", default=None)
    c.add_argument("--val", default=None, help="packed dataset whose val split to report on")
    c.add_argument("--val-json", default=None)
    k = sub.add_parser("pick", help="copy the run's model or snapshot with the lowest held-out loss")
    k.add_argument("--run", required=True)
    k.add_argument("--val", required=True)
    k.add_argument("--out", required=True)
    k.add_argument("--limit", type=int, default=1000)
    k.add_argument("--device", default=None)
    f = sub.add_parser("fresh", help="a new procedural set (another generator seed, test parts barred): "
                                     "pictures (.npz) and programs (.jsonl) for evaluate --images/--testset")
    f.add_argument("--out", required=True, help="the .npz to write (the .jsonl goes beside it)")
    f.add_argument("--n", type=int, default=100)
    f.add_argument("--seed", type=int, default=4242)
    f.add_argument("--image-size", type=int, default=128)
    f.add_argument("--workers", type=int, default=2)
    e = sub.add_parser("evaluate")
    e.add_argument("--candidates", required=True, nargs="+",
                   help="candidates JSONL file(s); several files for the same pictures are joined row by row "
                        "(the first file's row, then the others' samples)")
    e.add_argument("--images", required=True)
    e.add_argument("--testset", default="cadquery-test",
                   help="named test set, or a JSONL of target programs (`fresh` writes one beside its pictures)")
    e.add_argument("--ns", default="4,8,16")
    e.add_argument("--workers", type=int, default=2)
    e.add_argument("--pictures", choices=("occ", "mesh"), default="occ",
                   help="what draws the candidates for ranking: the sandbox (OCC) or the mesh kernel "
                        "(fast; the sandbox for fillets/chamfers). Scores always come from the sandbox.")
    e.add_argument("--chamfer-points", type=int, default=2048)
    e.add_argument("--refine", type=int, default=0, metavar="ROUNDS",
                   help="also refine the best-of-all choices' numbers against the test pictures for up to "
                        "ROUNDS rounds (img2prog.models.cad_refine; mesh kernel, ~0.3-0.5 s per round and picture)")
    e.add_argument("--refine-top", type=int, default=1, metavar="K",
                   help="refine each picture's K best-agreeing distinct candidates, keep the best refined one")
    e.add_argument("--refine-donors", type=int, default=0, metavar="D",
                   help="let the refinement also take whole extrusions from each picture's D best-agreeing "
                        "distinct candidates (structural moves: drop, add or swap a boolean step or the base; "
                        "also change a boolean's operation, reverse an extrusion or make it two-sided)")
    e.add_argument("--predictions", default=None, metavar="PATH",
                   help="also write each picture's greedy, best-of-all and refined program with its IoU and "
                        "picture agreement to this JSONL file (.gz: compressed)")
    e.add_argument("--json", default=None)
    a = ap.parse_args(argv)
    res = {"candidates": cmd_candidates, "pick": cmd_pick, "evaluate": cmd_evaluate, "fresh": cmd_fresh}[a.cmd](a)
    text = json.dumps(res, indent=1)
    if getattr(a, "json", None):
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
