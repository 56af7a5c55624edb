"""Evaluation of an image→CadQuery model on a test set: greedy and best-of-N.

Two stages, so the model and the geometry kernel need not share a machine:

1. :func:`write_candidates` — the model decodes each test picture (greedy + N samples) into a
   JSONL file (GPU or CPU; no CadQuery needed);
2. :func:`evaluate_candidates` — in the sandbox (CadQuery): every distinct candidate is built
   and drawn, best-of-N picks by *image agreement* with the test picture
   (:mod:`img2prog.models.cad_search`), and the greedy and chosen programs are scored against the
   ground-truth programs with the standard metrics
   (:func:`img2prog.lang.cadquery.metrics.score`: VSR, volumetric IoU, Chamfer distance).

Best-of-N for several N comes from one set of samples: best-of-N uses the greedy program and
the first N − 1 samples, so the numbers for growing N are nested.
"""

from __future__ import annotations

import gzip
import json
import time
from pathlib import Path

import numpy as np

from img2prog.models.cad_search import Candidate, best_of_n


def _open(path: Path, mode: str):
    """Text file, gzip-compressed when the name ends in .gz (candidate files of 200 × 33 scripts
    take ~10 MB as plain text)."""
    if path.suffix == ".gz":
        return gzip.open(path, mode + "t", encoding="utf-8")
    return path.open(mode, encoding="utf-8")


def write_jsonl(path: str | Path, rows: list[dict]) -> None:
    """One JSON object per line (gzip-compressed when the name ends in .gz)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _open(path, "w") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")


def write_candidates(path: str | Path, candidates: list[list[Candidate]]) -> None:
    write_jsonl(path, [{"id": i, "candidates": [[c.program, c.logprob, c.source] for c in row]}
                       for i, row in enumerate(candidates)])


def read_predictions(path: str | Path, field: str = "refined") -> list[str]:
    """Per picture (ordered by ``id``), the ``field`` program of a predictions file written by
    ``evaluate --predictions`` (``greedy``, ``refined`` or ``best_of_<N>``)."""
    rows = []
    with _open(Path(path), "r") as f:
        lines = f.read().splitlines()
    for ln, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            d = json.loads(line)
            rows.append((int(d["id"]), str(d[field]["program"] or "")))
        except (ValueError, KeyError, TypeError) as e:
            raise ValueError(f"{path}:{ln}: no {field!r} prediction ({e!r})") from None
    rows.sort(key=lambda r: r[0])
    if [r[0] for r in rows] != list(range(len(rows))):
        raise ValueError(f"{path}: ids are not 0..{len(rows) - 1}")
    return [r[1] for r in rows]


def read_candidates(path: str | Path) -> list[list[Candidate]]:
    rows = []
    with _open(Path(path), "r") as f:
        text = f.read()
    for ln, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            d = json.loads(line)
            rows.append((int(d["id"]), [Candidate(str(p), float(lp), str(s)) for p, lp, s in d["candidates"]]))
        except (ValueError, KeyError, TypeError) as e:
            raise ValueError(f"{path}:{ln}: not a candidates row ({e})") from None
    rows.sort(key=lambda r: r[0])
    ids = [r[0] for r in rows]
    if ids != list(range(len(ids))):
        raise ValueError(f"{path}: ids are not 0..{len(ids) - 1}")
    return [r[1] for r in rows]


def merge_candidates(*files: list[list[Candidate]]) -> list[list[Candidate]]:
    """Rows of several candidate files for the same pictures joined: the first file's row, then
    each later file's samples (their greedy candidates repeat the first's and are dropped), e.g.
    to add samples decoded later with another seed."""
    if len({len(f) for f in files}) > 1:
        raise ValueError(f"candidate files have different row counts: {[len(f) for f in files]}")
    return [list(rows[0]) + [c for row in rows[1:] for c in row if c.source != "greedy"] for rows in zip(*files)]


def evaluate_candidates(candidates: list[list[Candidate]], target_programs: list[str], target_images: np.ndarray,
                        executor, ns: tuple[int, ...] = (), chamfer_points: int = 2048, pictures_by=None,
                        refine_rounds: int = 0, refine_workers: int = 1, refine_top: int = 1,
                        refine_donors: int = 0, progress=None, predictions: list | None = None) -> dict:
    """Greedy and best-of-N metrics (N in ``ns`` plus all candidates) for one test set.

    Every distinct candidate is drawn once, by ``pictures_by`` (default: ``executor``; e.g.
    :class:`~img2prog.lang.cadquery.meshkernel.MeshFirst` to rank by the mesh kernel's
    pictures); scores (validity, IoU, Chamfer) always come from ``executor``.

    ``refine_rounds`` > 0: the best-of-all choices are also refined against the test pictures
    (:func:`~img2prog.models.cad_refine.refine_many`, mesh kernel, ``refine_workers``
    processes; ``progress`` is called after each picture) and scored as
    ``best_of_<N>_refined``; where ``executor`` cannot build a refined program, the row
    steps back to the last refinement step it builds (``stepped_back``: share of refined rows).
    ``refine_top`` > 1 refines that many of a row's best-agreeing distinct candidates and keeps
    the refined one that agrees best (``refine_top`` times the cost). ``refine_donors`` > 0 also
    lets the refinement take whole extrusions from that many of the row's best-agreeing distinct
    candidates (structural moves, :func:`~img2prog.models.cad_refine.structural_moves`).

    ``predictions``: a list that receives one dict per picture — ``id`` and, for ``greedy``,
    ``best_of_<N>`` (all candidates) and the refined choice if any, the ``program``, its ``iou``
    and ``valid`` (and ``agreement`` with the picture where ranked) — e.g. to look at rows or to
    decode completions of the refined programs (``cadquery_model.py candidates --complete``)."""
    from img2prog.lang.cadquery.metrics import score
    from img2prog.models.cad_search import render_programs

    if not (len(candidates) == len(target_programs) == len(target_images)):
        raise ValueError(f"{len(candidates)} candidate rows, {len(target_programs)} targets, "
                         f"{len(target_images)} target pictures")
    n_all = max(len(r) for r in candidates)
    out: dict = {"n": len(candidates), "samples_per_image": n_all - 1}
    greedy = [r[0].program for r in candidates]
    rep = score(greedy, target_programs, executor, chamfer_points=chamfer_points)
    out["greedy"] = rep.to_dict()
    rows: list[dict] = [{"id": i, "greedy": _row(r)} for i, r in enumerate(rep.rows)]
    t0 = time.perf_counter()
    pictures = render_programs([c.program for row in candidates for c in row], pictures_by or executor,
                               np.asarray(target_images).shape[1])
    out["pictures_seconds"] = time.perf_counter() - t0
    verdicts: dict[str, bool] = {}  # which programs ``executor`` builds, shared by every N
    for n in sorted({*(k for k in ns if k < n_all), n_all}):
        # pictures from another kernel: the chosen program must also build in ``executor``
        choices = best_of_n(target_images, [r[:n] for r in candidates], executor, pictures=pictures,
                            verify=executor if pictures_by not in (None, executor) else None, verdicts=verdicts)
        rep = score([c.program for c in choices], target_programs, executor, chamfer_points=chamfer_points)
        d = rep.to_dict()
        d["mean_agreement"] = float(np.mean([c.score if np.isfinite(c.score) else 0.0 for c in choices]))
        d["built_per_image"] = float(np.mean([c.built for c in choices]))
        d["chose_greedy"] = float(np.mean([c.index == 0 for c in choices]))
        out[f"best_of_{n}"] = d
    for row, r, c in zip(rows, rep.rows, choices):
        row[f"best_of_{n_all}"] = _row(r, c.score)
    if refine_rounds > 0:
        key = (f"best_of_{n_all}_refined" + (f"_top{refine_top}" if refine_top > 1 else "")
               + (f"_donors{refine_donors}" if refine_donors > 0 else ""))
        out[key], rep, agreements = _refined(choices, candidates, target_programs, target_images, executor,
                                             chamfer_points, refine_rounds, refine_workers, refine_top,
                                             refine_donors, progress, verdicts)
        for row, r, a in zip(rows, rep.rows, agreements):
            row["refined"] = _row(r, a)
    if predictions is not None:
        predictions.extend(rows)
    return out


def _row(r: dict, agreement: float | None = None) -> dict:
    """One prediction of a report row, for ``predictions``."""
    d = {"program": r["program"], "valid": r["valid"], "iou": r["iou"]}
    if agreement is not None:
        d["agreement"] = float(agreement) if np.isfinite(agreement) else None
    return d


def _refined(choices, candidates, target_programs, target_images, executor, chamfer_points, rounds, workers, top,
             n_donors, progress, verdicts) -> tuple[dict, object, list[float]]:
    """The refined rows' metrics, their score report and each final program's picture agreement."""
    from img2prog.lang.cadquery.metrics import score
    from img2prog.models.cad_refine import refine_choices, settled_programs

    t0 = time.perf_counter()
    best = refine_choices(target_images, choices, candidates, rounds=rounds, top=top, n_donors=n_donors,
                          workers=workers, progress=progress)
    seconds = time.perf_counter() - t0
    refined = [best[i] for i in range(len(choices))]
    programs = settled_programs(refined, [c.program for c in choices], executor, verdicts)
    rep = score(programs, target_programs, executor, chamfer_points=chamfer_points)
    # the agreement of the program each row ends with (a step back ends on an earlier step's)
    agreements = [r.path_scores[r.path.index(p)] if p in r.path else c.score
                  for p, r, c in zip(programs, refined, choices)]
    d = rep.to_dict()
    d.update(
        refine_rounds=rounds,
        refine_top=top,
        refine_donors=n_donors,
        refine_seconds=seconds,
        changed=float(np.mean([p != c.program for p, c in zip(programs, choices)])),
        stepped_back=float(np.mean([p != r.program for p, r in zip(programs, refined) if r.rounds > 0] or [0.0])),
        agreement_before=float(np.mean([c.score if np.isfinite(c.score) else 0.0 for c in choices])),
        agreement_refined=float(np.mean([r.score if np.isfinite(r.score) else 0.0 for r in refined])),
        rounds_used=float(np.mean([r.rounds for r in refined])),
        drawn_per_image=float(np.mean([r.drawn for r in refined])),
    )
    return d, rep, agreements
