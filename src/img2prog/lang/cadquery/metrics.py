"""Scores for predicted CadQuery programs against target parts.

- ``vsr`` — **valid-syntax rate**: share of predictions that pass the static validator *and*
  execute in the sandbox to a valid solid of positive volume (the seeds' VSR counts scripts
  that run; ours also requires a solid, since a script that runs to nothing is no answer).
- ``parse_rate`` — share that pass the static validator (an upper bound on ``vsr``).
- ``iou`` — mean volumetric IoU over **all** samples (an invalid prediction scores 0), computed
  exactly with OCC boolean operations (``vol(A∩B) / (vol A + vol B − vol(A∩B))``) after the
  normalisation of :mod:`.geometry` (each solid centred on its bounding box and scaled to a
  longest side of 1); ``iou_valid`` is the mean over valid predictions only.
- ``chamfer`` — mean symmetric Chamfer distance (:func:`~.geometry.chamfer_distance`) between
  2048 points sampled on each normalised surface, over valid predictions; ``median_chamfer``.
  CAD papers often report Chamfer ×1000 on the same normalisation. Sampling puts a floor
  under it for equal shapes with different tessellations (about ``0.5·sqrt(area / 2048)``,
  ~0.015 for a unit-size part); identical meshes score exactly 0.

The seeds report VSR 0.94 / mean IoU 0.409 (InternVL3-8B + LoRA on GenCAD-Code).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from img2prog.lang.cadquery.ast import Program
from img2prog.lang.cadquery.geometry import chamfer_distance, sample_surface
from img2prog.lang.cadquery.parser import parse
from img2prog.lang.cadquery.sandbox import Brep, Executor, cadquery_available, default_executor
from img2prog.lang.errors import ProgramError

CHAMFER_POINTS = 2048
REPORT_KEYS = ("vsr", "parse_rate", "iou", "iou_valid", "chamfer", "median_chamfer", "n")


@dataclass
class CadMetricsReport:
    """Scores of a set of predictions; ``rows`` has one dict per sample: ``index``,
    ``program`` (text or None), ``parsed``, ``valid``, ``error``, ``iou``, ``chamfer``,
    ``seconds``."""

    vsr: float
    parse_rate: float
    iou: float
    iou_valid: float
    chamfer: float | None
    median_chamfer: float | None
    n: int
    seconds: float
    rows: list[dict[str, Any]] = field(default_factory=list, repr=False)

    def to_dict(self, rows: bool = False) -> dict[str, Any]:
        d: dict[str, Any] = {k: getattr(self, k) for k in REPORT_KEYS}
        d["seconds"] = self.seconds
        if rows:
            d["rows"] = self.rows
        return d

    def __str__(self) -> str:
        ch = "n/a" if self.chamfer is None else f"{self.chamfer:.4f}"
        return (f"vsr {self.vsr:.4f}  parse_rate {self.parse_rate:.4f}  iou {self.iou:.4f}  "
                f"iou_valid {self.iou_valid:.4f}  chamfer {ch}  (n={self.n}, {self.seconds:.1f} s)")


def _text(p: str | Program | None) -> str | None:
    if p is None or isinstance(p, str):
        return p
    from img2prog.lang.cadquery.ast import to_script

    return to_script(p)


def _score_one(executor: Executor, pred: str | Program | None, target: str | Program | Brep,
               normalize: bool, points: int, index: int) -> dict[str, Any]:
    start = time.perf_counter()
    row: dict[str, Any] = {"index": index, "program": _text(pred), "parsed": False, "valid": False,
                           "error": None, "iou": 0.0, "chamfer": None}
    if pred is None:
        row["error"] = "no prediction"
    else:
        try:
            program = pred if isinstance(pred, Program) else parse(pred)
            row["parsed"] = True
        except ProgramError as e:
            row["error"] = f"not a program: {e}"
        else:
            r = executor.compare(program, target, mesh=points > 0, normalize=normalize)
            if r.ok:
                row.update(valid=True, iou=r.iou)
                if points > 0:
                    a, b = (s.mesh.normalized() if normalize else s.mesh for s in r.solids)
                    # one seed for both: identical meshes give exactly 0
                    row["chamfer"] = chamfer_distance(sample_surface(a, points, seed=index),
                                                      sample_surface(b, points, seed=index))
            else:
                row["error"] = r.error
                if (r.error or "").startswith("target:"):
                    raise ValueError(f"target {index} does not build a solid: {r.error}")
    row["seconds"] = time.perf_counter() - start
    return row


def score(
    predictions: Sequence[str | Program | None],
    targets: Sequence[str | Program | Brep],
    executor: Executor | None = None,
    normalize: bool = True,
    chamfer_points: int = CHAMFER_POINTS,
) -> CadMetricsReport:
    """Score ``predictions[i]`` against ``targets[i]`` (scripts, programs or BREPs).

    A ``None`` prediction, text that does not validate, or a script that does not build a
    valid solid counts as invalid (IoU 0, no Chamfer distance). A target that does not build
    raises ``ValueError`` (the targets are wrong, not the predictions). ``chamfer_points=0``
    skips the Chamfer distance (and the meshes it needs).
    """
    if len(predictions) != len(targets):
        raise ValueError(f"{len(predictions)} predictions for {len(targets)} targets")
    if executor is None and not cadquery_available():
        raise ValueError("scoring CadQuery programs needs CadQuery: pip install 'img2prog[cad]'")
    executor = executor or default_executor()
    start = time.perf_counter()
    rows = executor.map(
        lambda i: _score_one(executor, predictions[i], targets[i], normalize, chamfer_points, i),
        range(len(predictions)),
    )
    n = len(rows)
    valid = [r for r in rows if r["valid"]]
    chamfers = [r["chamfer"] for r in valid if r["chamfer"] is not None]
    return CadMetricsReport(
        vsr=len(valid) / n if n else 0.0,
        parse_rate=sum(r["parsed"] for r in rows) / n if n else 0.0,
        iou=float(np.mean([r["iou"] for r in rows])) if n else 0.0,
        iou_valid=float(np.mean([r["iou"] for r in valid])) if valid else 0.0,
        chamfer=float(np.mean(chamfers)) if chamfers else None,
        median_chamfer=float(np.median(chamfers)) if chamfers else None,
        n=n,
        seconds=time.perf_counter() - start,
        rows=rows,
    )


def iou(a: str | Program | Brep, b: str | Program | Brep, normalize: bool = True,
        executor: Executor | None = None) -> float:
    """Volumetric IoU of two parts (normalised by default); ProgramError if one is not a
    program, RuntimeError if one does not build."""
    r = (executor or default_executor()).compare(a, b, normalize=normalize)
    if r.rejected:
        raise ProgramError(r.error)
    if not r.ok:
        raise RuntimeError(r.error)
    return r.iou


def valid_syntax_rate(programs: Sequence[str | Program | None], executor: Executor | None = None) -> float:
    """Share of programs that validate and build a valid solid."""
    executor = executor or default_executor()
    todo = []
    for p in programs:
        if p is None:
            continue
        try:
            todo.append(p if isinstance(p, Program) else parse(p))
        except ProgramError:
            continue
    results = executor.run_many(todo, mesh=False)
    return sum(r.ok for r in results) / len(programs) if programs else 0.0


# --------------------------------------------------------------------------------------
# Loading targets and predictions (for the CLI).
# --------------------------------------------------------------------------------------


def load_programs(spec: str | Path) -> tuple[list[str], list[str]]:
    """(ids, scripts) of a named test set (e.g. ``cadquery-test``), a JSONL file with a
    ``program`` field per line (``id`` optional), or a folder of ``*.py`` scripts (ids = file
    stems, sorted)."""
    from img2prog.lang.cadquery.testsets import testset_names, testset_programs

    spec_s = str(spec)
    if spec_s in testset_names():
        programs = testset_programs(spec_s)
        return [str(i) for i in range(len(programs))], programs
    path = Path(spec)
    if path.is_dir():
        files = sorted(path.glob("*.py"))
        if not files:
            raise ValueError(f"{path}: no *.py scripts in this folder")
        return [f.stem for f in files], [f.read_text() for f in files]
    if not path.is_file():
        raise ValueError(f"{spec}: not a named test set ({', '.join(testset_names())}), folder or JSONL file")
    ids, programs = [], []
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}:{lineno}: not JSON ({e.msg})") from None
        if not isinstance(row, dict) or not isinstance(row.get("program"), str):
            raise ValueError(f"{path}:{lineno}: missing 'program' string")
        ids.append(str(row.get("id", len(ids))))
        programs.append(row["program"])
    return ids, programs


def read_script_argument(arg: str) -> str:
    """A script given on the command line: the text of ``arg`` if it names a file, else ``arg``."""
    path = Path(arg)
    try:
        if path.suffix == ".py" or (len(arg) < 4096 and "\n" not in arg and path.is_file()):
            return path.read_text()
    except OSError as e:
        raise ValueError(f"{arg}: cannot read the script ({e.strerror or e})") from None
    return arg


def score_files(predictions: str | Path, targets: str | Path, executor: Executor | None = None,
                chamfer_points: int = CHAMFER_POINTS) -> tuple[CadMetricsReport, list[str], str]:
    """Score a predictions JSONL (``program`` per line, null = no answer; optional ``id``)
    against targets (see :func:`load_programs`). Lines are matched by ``id`` when every
    prediction has one, else by line order. Returns (report, target ids, how matched);
    ``ValueError`` names the line for anything malformed or unmatched."""
    target_ids, target_programs = load_programs(targets)
    path = Path(predictions)
    if not path.is_file():
        raise ValueError(f"{path}: no such predictions file")
    rows = []
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}:{lineno}: not JSON ({e.msg})") from None
        if not isinstance(row, dict) or "program" not in row:
            raise ValueError(f"{path}:{lineno}: missing 'program' field")
        if row["program"] is not None and not isinstance(row["program"], str):
            raise ValueError(f"{path}:{lineno}: 'program' must be a string or null")
        rows.append((lineno, row))
    if rows and all("id" in r for _, r in rows):
        index = {t: i for i, t in enumerate(target_ids)}
        preds: list[str | None] = [None] * len(target_ids)
        seen: dict[int, int] = {}
        for lineno, r in rows:
            key = str(r["id"])
            if key not in index:
                raise ValueError(f"{path}:{lineno}: id {key!r} is not among the targets")
            if index[key] in seen:
                raise ValueError(f"{path}:{lineno}: id {key!r} predicted twice (first on line {seen[index[key]]})")
            seen[index[key]] = lineno
            preds[index[key]] = r["program"]
        if len(seen) != len(target_ids):
            missing = next(t for i, t in enumerate(target_ids) if i not in seen)
            raise ValueError(f"{path}: no prediction for target id {missing!r}")
        how = "id"
    else:
        if len(rows) != len(target_ids):
            raise ValueError(f"{path}: {len(rows)} predictions for {len(target_ids)} targets (matched by line "
                             "order; give every line an 'id' to match by name)")
        preds, how = [r["program"] for _, r in rows], "line order"
    report = score(preds, target_programs, executor=executor, chamfer_points=chamfer_points)
    return report, target_ids, how
