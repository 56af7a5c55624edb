"""`img2prog infer`: image(s) → program(s) with a model."""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import typer

SEARCH_CHOICES = ("greedy", "best-of-n", "majority", "beam", "refine", "auto")


@dataclass
class InputImage:
    name: str  # file name, or "<set>[i]" for dataset rows
    image: np.ndarray  # (256, 256, 3) uint8, normalised
    target_program: str | None = None


def _error(message: str) -> None:
    typer.echo(f"error: {message}", err=True)


def collect_inputs(specs: list[str], limit: int | None = None) -> tuple[list[InputImage], int]:
    """Images from files, folders, JSONL/dataset folders or named test sets.

    Unreadable files inside a folder are skipped with a warning; an explicitly named input
    that cannot be read is reported as an error (and counted) while the others go on.
    """
    from img2prog.data.io import DataError, resolve_targets

    out: list[InputImage] = []
    failures = 0
    for spec in specs:
        try:
            ds, skipped = resolve_targets(spec)
        except DataError as e:
            _error(str(e))
            failures += 1
            continue
        for path, why in skipped:
            typer.echo(f"warning: skipped {path}: {why}", err=True)
        n = len(ds) if limit is None else min(limit, len(ds))
        sources = ds["source"] if "source" in ds.column_names else None
        programs = ds["program"] if "program" in ds.column_names else [None] * len(ds)
        single_file = Path(spec).is_file() and n == 1
        for i in range(n):
            img = ds[i]["image"]
            arr = np.asarray(img.convert("RGB")) if hasattr(img, "convert") else np.asarray(img)
            if single_file:
                name = spec
            elif sources is not None and sources[i]:
                name = str(Path(spec) / sources[i]) if Path(spec).is_dir() else str(sources[i])
            else:
                name = f"{spec}[{i}]"
            out.append(InputImage(name, arr, programs[i]))
    return out, failures


def infer(
    images: list[str] = typer.Argument(..., help="Image files, folders of images, JSONL/dataset folders, or test-set names (e.g. csg2d-test)."),
    model: str = typer.Option("native-csg2d", "--model", help="Model folder or shipped model name."),
    device: str | None = typer.Option(None, "--device", help="cpu or cuda (default: cuda when available)."),
    batch_size: int = typer.Option(64, "--batch-size", min=1, help="Images per decoding batch."),
    jsonl: Path | None = typer.Option(None, "--jsonl", help="Write the JSON lines here instead of stdout."),
    render_dir: Path | None = typer.Option(None, "--render", help="Also write each predicted image (PNG) here."),
    gallery: Path | None = typer.Option(None, "--gallery", help="Write an HTML page: target | prediction | difference."),
    search: str = typer.Option("greedy", "--search", help=f"Strategy: {', '.join(SEARCH_CHOICES)}."),
    simplify: bool = typer.Option(True, "--simplify/--no-simplify", help="Drop operands the picture does not need "
                                  "(same rendering at the input size; the model's own answer goes to raw_program)."),
    samples: int | None = typer.Option(None, "--samples", min=1, help="Samples per image (search budget)."),
    time_limit: float | None = typer.Option(None, "--time-limit", min=0.0, help="Seconds per image (search budget)."),
    seed: int = typer.Option(0, "--seed", help="Seed for sampling strategies."),
    limit: int | None = typer.Option(None, "--limit", min=1, help="Use the first N images of each input."),
    threads: int | None = typer.Option(None, "--threads", min=1, help="CPU threads for PyTorch."),
    workers: int = typer.Option(1, "--workers", min=1, help="CadQuery models: processes for building and refining."),
) -> None:
    """Predict the program that draws each image, one JSON object per line.

    Each line has ``image`` (its name), ``program`` (canonical text), ``score`` (greedy: the
    model's probability of the program; search: the verifier's IoU), and ``iou``/``perfect``
    against the (normalised) input image. Pictures of any size or mode are normalised to
    black on white at 256×256 first. The reference metrics against the inputs go to stderr.

        img2prog infer picture.png

        img2prog infer photos/ --jsonl out.jsonl --render preds/ --gallery gallery.html

        img2prog infer csg2d-test --limit 100 --search auto --time-limit 1

    A CadQuery model (``--model native-cadquery``) reads 2×2 multi-view pictures (files,
    folders, or an .npz with an ``images`` array) and writes CadQuery scripts: ``greedy``;
    ``best-of-n`` (``--samples``, default 32: the candidate whose own picture agrees best with
    the input); ``refine`` and ``auto`` (best-of-n, then 12 rounds of refinement). Each line has
    ``program``, ``agreement`` (its picture vs the input), ``valid`` (built by the CadQuery
    sandbox when CadQuery is installed, else by the mesh kernel) and ``source``.

        img2prog infer part.png --model native-cadquery --search auto --render preds/
    """
    if search not in SEARCH_CHOICES:
        _error(f"unknown --search {search!r}; choose one of: {', '.join(SEARCH_CHOICES)}")
        raise typer.Exit(2)
    import torch

    from img2prog.eval.metrics import compute_metrics
    from img2prog.lang import get_language
    from img2prog.models.native import NativeModel

    if threads:
        torch.set_num_threads(threads)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    try:
        net = NativeModel.from_pretrained(model, device=device)
    except (FileNotFoundError, ValueError, KeyError) as e:
        _error(f"cannot load model: {e}")
        raise typer.Exit(2)
    lang = get_language(net.config.language)
    if lang.name == "cadquery":
        _infer_cadquery(images, net, search, samples, seed, limit, batch_size, workers, jsonl, render_dir, gallery,
                        model)
        return
    inputs, failures = collect_inputs(images, limit)
    if not inputs:
        _error("no readable images in the inputs")
        raise typer.Exit(1 if failures else 2)
    arrays = np.stack([x.image for x in inputs])

    t0 = time.perf_counter()
    rows: list[dict] = []
    if search == "greedy":
        for i in range(0, len(arrays), batch_size):
            for (text, lp), in net.generate(arrays[i : i + batch_size]):
                rows.append({"program": text, "score": float(np.exp(lp)), "logprob": lp})
    else:
        from img2prog.models.proposer import NativeProposer
        from img2prog.search import search_batch

        proposer = NativeProposer(net, device=device, batch_size=batch_size)
        results = search_batch(arrays, proposer, search, samples=samples, time_limit=time_limit, seed=seed,
                               batch_size=batch_size)
        for r in results:
            rows.append({"program": r.program, "score": float(r.score), "strategy": r.strategy,
                         "candidates": r.candidates_tried, "seconds": round(r.seconds, 4)})
    if simplify and lang.name == "csg2d":
        from img2prog.search.simplify import simplify as prune

        for r in rows:  # same picture at the input size, never longer (see search/simplify.py)
            short = prune(r["program"], size=arrays.shape[1])
            if short != r["program"]:
                r["raw_program"], r["program"] = r["program"], short
    seconds = time.perf_counter() - t0

    report = compute_metrics([r["program"] for r in rows], arrays, language=lang)
    renders, errors = lang.render_batch([r["program"] for r in rows], size=arrays.shape[1])
    stream = jsonl.open("w", encoding="utf-8") if jsonl else sys.stdout
    try:
        for inp, row, score_row in zip(inputs, rows, report.rows):
            obj = {"image": inp.name, **row, "iou": round(score_row["iou"], 6), "perfect": score_row["perfect"]}
            if inp.target_program is not None:
                obj["target"] = inp.target_program
            stream.write(json.dumps(obj) + "\n")
    finally:
        if jsonl:
            stream.close()
    if render_dir:
        from PIL import Image

        render_dir.mkdir(parents=True, exist_ok=True)
        used: set[str] = set()
        for k, (inp, arr, err) in enumerate(zip(inputs, renders, errors)):
            stem = Path(inp.name).stem if Path(inp.name).suffix else f"{k:05d}"
            stem = stem.replace("/", "_").replace("[", "_").replace("]", "") or f"{k:05d}"
            if stem in used:
                stem = f"{stem}-{k}"
            used.add(stem)
            if err is None:
                Image.fromarray(arr).save(render_dir / f"{stem}.png")
    metrics = report.to_dict()
    typer.echo(f"{len(rows)} images in {seconds:.2f}s ({1000 * seconds / len(rows):.1f} ms/image, "
               f"{search}); vs inputs: {report}", err=True)
    if gallery:
        from img2prog.eval.gallery import GalleryItem, write_gallery

        items = [GalleryItem(inp.name, inp.image, row["program"], arr if err is None else None, inp.target_program,
                             {"score": row["score"], "iou": sr["iou"], "perfect": sr["perfect"]})
                 for inp, row, arr, err, sr in zip(inputs, rows, renders, errors, report.rows)]
        write_gallery(gallery, items, metrics, title=f"img2prog infer — {model} ({search})",
                      notes=[f"{len(rows)} images; metrics compare each prediction with its input image."])
        typer.echo(f"gallery: {gallery}", err=True)
    if failures:
        raise typer.Exit(1)


CAD_SEARCH = {"greedy": (0, 0), "best-of-n": (32, 0), "refine": (32, 12), "auto": (32, 12)}


def _infer_cadquery(specs, net, search, samples, seed, limit, batch_size, workers, jsonl, render_dir, gallery,
                    model_name) -> None:
    """`infer` for a CadQuery model (see img2prog.models.cad_infer)."""
    from img2prog.models.cad_infer import collect_pictures, predict

    if search not in CAD_SEARCH:
        _error(f"--search {search} is not available for CadQuery models; choose one of: {', '.join(CAD_SEARCH)}")
        raise typer.Exit(2)
    try:
        import manifold3d  # noqa: F401  (the mesh kernel draws the candidates)
    except ImportError:
        _error("CadQuery models need the mesh kernel: pip install 'img2prog[cad]'")
        raise typer.Exit(2)
    size = net.config.image_size
    names, pictures, failures = collect_pictures(specs, size, limit, warn=lambda m: typer.echo(f"warning: {m}", err=True),
                                                error=_error)
    if not names:
        _error("no readable pictures in the inputs")
        raise typer.Exit(1 if failures else 2)
    n_samples, rounds = CAD_SEARCH[search]
    if samples is not None and search != "greedy":
        n_samples = samples
    checker = None
    try:
        import cadquery  # noqa: F401

        from img2prog.lang.cadquery.sandbox import Executor

        checker = Executor(workers=workers)
    except ImportError:
        typer.echo("note: CadQuery is not installed; answers are checked by the mesh kernel only", err=True)
    t0 = time.perf_counter()
    try:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(names), desc="refine", file=sys.stderr, disable=rounds == 0)
        preds = predict(net, pictures, samples=n_samples, refine_rounds=rounds, seed=seed, batch=batch_size,
                        workers=workers, checker=checker, progress=bar.update)
        bar.close()
    finally:
        if checker is not None:
            checker.close()
    seconds = time.perf_counter() - t0
    stream = jsonl.open("w", encoding="utf-8") if jsonl else sys.stdout
    try:
        for name, p in zip(names, preds):
            stream.write(json.dumps({"image": name, **p.to_dict()}) + "\n")
    finally:
        if jsonl:
            stream.close()
    drawn = None
    if render_dir or gallery:
        from img2prog.lang.cadquery.meshkernel import MeshExecutor
        from img2prog.models.cad_search import render_programs

        drawn = render_programs([p.program for p in preds], MeshExecutor(), size)
    if render_dir:
        from PIL import Image

        render_dir.mkdir(parents=True, exist_ok=True)
        for k, (name, p) in enumerate(zip(names, preds)):
            pic = drawn.get(p.program)
            stem = Path(name).stem.replace("[", "_").replace("]", "") or f"{k:05d}"
            if pic is not None:
                Image.fromarray(pic).save(render_dir / f"{k:05d}-{stem}.png")
    valid = float(np.mean([p.valid for p in preds]))
    agreement = float(np.mean([p.agreement for p in preds]))
    typer.echo(f"{len(preds)} pictures in {seconds:.2f}s ({search}, {n_samples} samples, {rounds} refinement rounds); "
               f"valid {valid:.3f}, mean picture agreement {agreement:.3f}", err=True)
    if gallery:
        from img2prog.eval.gallery import GalleryItem, write_gallery

        items = [GalleryItem(name, pic, p.program, drawn.get(p.program), None,
                             {"agreement": round(p.agreement, 4), "valid": p.valid, "source": p.source})
                 for name, pic, p in zip(names, pictures, preds)]
        write_gallery(gallery, items, {"valid": valid, "agreement": agreement},
                      title=f"img2prog infer — {model_name} ({search})",
                      notes=[f"{len(preds)} pictures; agreement compares each answer's picture with its input."])
        typer.echo(f"gallery: {gallery}", err=True)
    if failures:
        raise typer.Exit(1)
