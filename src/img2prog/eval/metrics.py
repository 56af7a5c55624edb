"""The reference metrics of SPEC §2, plus a few of our own, computed in bulk.

Scoring compares a rendered prediction with a target image *value by value* over H×W×3
uint8 arrays, exactly as the seed's ``Metrics`` class does:

- ``pixel_accuracy`` — mean over samples of the share of equal values; an unparsable sample
  scores 0.
- ``parse_rate`` — share of samples whose program renders (``None``, text that does not parse
  and programs the geometry engine cannot draw all count as unparsable).
- ``precision`` / ``recall`` / ``f1_score`` — over *black* values (value 0), aggregated over
  all samples before dividing. An unparsable sample adds TP = 0, FP = the number of non-black
  target values and FN = the number of black target values ("everything wrong").
  Zero denominators follow the reference: when TP + FP = 0 (nothing predicted black anywhere)
  precision is 1.0 and recall 0.0; f1 is 0 when precision + recall = 0. The one case the
  reference leaves undefined — TP + FP > 0 but TP + FN = 0 (something predicted black, no
  black in any target) — would give NaN there (0/0 in numpy); we report recall 0.0, and f1 is
  0 either way because precision is 0.

Ours, reported beside those and never instead of them:

- ``iou`` — mean over samples of TP / (TP + FP + FN) of black values in that sample. Two empty
  masks (nothing black predicted, nothing black in the target) have IoU **1.0**: the
  prediction is exactly right. An unparsable sample has IoU 0.
- ``perfect`` — share of samples whose rendering equals the target in every value.

Everything streams in chunks, so a large test set never sits in memory as one array, and
rendering goes through the language's batch renderer (processes for large jobs).
:func:`metrics_from_masks` scores images that are already rendered, and :func:`score_pair`
one prediction against one target, for search and RL code that has the renderings anyway.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from img2prog.lang import Language, get_language

BLACK = 0
#: keys of :meth:`MetricsReport.to_dict` (reference metrics first, then ours, then n)
REPORT_KEYS = ("pixel_accuracy", "parse_rate", "precision", "recall", "f1_score", "iou", "perfect", "n")
#: targets are decoded and programs rendered this many at a time (~200 MB of renderings at 256 px)
DEFAULT_CHUNK = 1024


# --------------------------------------------------------------------------------------
# Aggregation: the reference formulas.
# --------------------------------------------------------------------------------------


def precision_recall_f1(tp: int, fp: int, fn: int) -> tuple[float, float, float]:
    """Precision, recall and F1 from aggregated black-value counts, with SPEC §2's rules.

    >>> precision_recall_f1(0, 0, 10)   # nothing predicted black
    (1.0, 0.0, 0.0)
    >>> precision_recall_f1(3, 1, 0)
    (0.75, 1.0, 0.8571428571428571)
    """
    if tp + fp > 0:
        precision = tp / (tp + fp)
        recall = tp / (tp + fn) if tp + fn > 0 else 0.0  # undefined in the reference (NaN)
    else:  # TP = FP = 0: nothing predicted black anywhere
        precision, recall = 1.0, 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return float(precision), float(recall), float(f1)


@dataclass
class MetricsReport:
    """Scores of a set of predictions. ``rows`` holds one dict per sample (see below).

    Per-sample rows have: ``index``, ``program`` (text or None), ``parsed``, ``error`` (why it
    did not render, or None), ``pixel_accuracy``, ``iou``, ``perfect``, ``tp``, ``fp``, ``fn``
    (counts over the 3 channels), ``length`` (characters of program text, None without text)
    and ``size`` (the language's program size, e.g. node count; None when unparsable).
    """

    pixel_accuracy: float
    parse_rate: float
    precision: float
    recall: float
    f1_score: float
    iou: float
    perfect: float
    n: int
    tp: int = 0
    fp: int = 0
    fn: int = 0
    seconds: float = 0.0
    rows: list[dict] = field(default_factory=list, repr=False)

    def to_dict(self, rows: bool = False) -> dict[str, Any]:
        """JSON-ready summary with :data:`REPORT_KEYS` (and the per-sample rows if asked)."""
        out: dict[str, Any] = {k: getattr(self, k) for k in REPORT_KEYS}
        if rows:
            out["rows"] = list(self.rows)
        return out

    def __str__(self) -> str:
        return ", ".join(f"{k}={getattr(self, k):.4f}" if k != "n" else f"n={self.n}" for k in REPORT_KEYS)


@dataclass(frozen=True)
class SampleScore:
    """The scores of one prediction against one target."""

    parsed: bool
    pixel_accuracy: float
    iou: float
    perfect: bool
    tp: int
    fp: int
    fn: int


def _report(scores: Sequence[SampleScore], rows: list[dict], seconds: float) -> MetricsReport:
    n = len(scores)
    tp = sum(s.tp for s in scores)
    fp = sum(s.fp for s in scores)
    fn = sum(s.fn for s in scores)
    precision, recall, f1 = precision_recall_f1(tp, fp, fn)

    def mean(values) -> float:  # the reference reports 0.0 for an empty list
        return float(sum(values) / n) if n else 0.0

    return MetricsReport(
        pixel_accuracy=mean([s.pixel_accuracy for s in scores]),
        parse_rate=mean([1.0 if s.parsed else 0.0 for s in scores]),
        precision=precision,
        recall=recall,
        f1_score=f1,
        iou=mean([s.iou for s in scores]),
        perfect=mean([1.0 if s.perfect else 0.0 for s in scores]),
        n=n,
        tp=tp,
        fp=fp,
        fn=fn,
        seconds=seconds,
        rows=rows,
    )


# --------------------------------------------------------------------------------------
# Counting, one (prediction, target) pair at a time.
#
# Per-sample work on 256² planes stays in the CPU cache; whole-batch numpy expressions over
# (N, 256, 256, 3) arrays do not, and were measured 10× slower (benchmarks/metrics_io.py).
# Images whose three channels are equal — every rendering, every normalised image — are
# counted on one plane and the counts multiplied by 3, which is exact.
# --------------------------------------------------------------------------------------

CHANNELS = 3  # SPEC §2 counts over all 3 channels of an RGB image


def image_plane(x: np.ndarray, what: str = "image") -> np.ndarray:
    """An image as an (H, W) plane when its 3 channels are equal, else as (H, W, 3) uint8.

    Accepts (H, W) (a plane already: 3 equal channels), (H, W, 1), (H, W, 3) uint8 arrays and
    (H, W) bool masks (True = black). The result stands for the same H·W·3 values.
    """
    if x.dtype == bool:
        x = np.where(x, np.uint8(BLACK), np.uint8(255))
    if x.dtype != np.uint8:
        raise TypeError(f"{what}: expected uint8 values or a bool mask, got dtype {x.dtype}")
    if x.ndim == 2:
        return x
    if x.ndim == 3 and x.shape[2] == 1:
        return x[:, :, 0]
    if x.ndim != 3 or x.shape[2] != CHANNELS:
        raise ValueError(f"{what}: expected an (H, W) or (H, W, 3) image, got shape {x.shape}")
    flat = np.ascontiguousarray(x).reshape(-1)
    r = flat[0::CHANNELS]
    if np.array_equal(r, flat[1::CHANNELS]) and np.array_equal(r, flat[2::CHANNELS]):
        return np.ascontiguousarray(r).reshape(x.shape[:2])  # r is a strided view: copy it
    return x


def _count_black(x: np.ndarray) -> int:
    """Black values of a plane or RGB image, over 3 channels."""
    n = int(np.count_nonzero(x == BLACK))
    return n * CHANNELS if x.ndim == 2 else n


def score_pair(pred: np.ndarray | None, target: np.ndarray, parsed: bool = True) -> SampleScore:
    """Score one rendered prediction against one target (SPEC §2 counts, plus IoU and perfect).

    ``pred``/``target``: see :func:`image_plane`. ``parsed=False`` or ``pred=None`` scores the
    sample as unparsable whatever ``pred`` holds.
    """
    t = image_plane(np.asarray(target), "target")
    values = t.shape[0] * t.shape[1] * CHANNELS
    if pred is None or not parsed:
        return unparsable_score(_count_black(t), values)
    p = image_plane(np.asarray(pred), "prediction")
    if p.shape[:2] != t.shape[:2]:
        raise ValueError(f"prediction is {p.shape[1]}×{p.shape[0]} but target is {t.shape[1]}×{t.shape[0]}")
    if p.ndim == 2 and t.ndim == 2:
        pb, tb = p == BLACK, t == BLACK
        equal = int(np.count_nonzero(p == t)) * CHANNELS
        tp = int(np.count_nonzero(pb & tb)) * CHANNELS
        pred_black = int(np.count_nonzero(pb)) * CHANNELS
        target_black = int(np.count_nonzero(tb)) * CHANNELS
    else:  # colour on at least one side: broadcast a plane over the 3 channels
        p3 = p if p.ndim == 3 else p[:, :, None]
        t3 = t if t.ndim == 3 else t[:, :, None]
        pb, tb = p3 == BLACK, t3 == BLACK
        equal = int(np.count_nonzero(p3 == t3))
        tp = int(np.count_nonzero(pb & tb))
        pred_black = _count_black(p)
        target_black = _count_black(t)
    fp, fn = pred_black - tp, target_black - tp
    union = tp + fp + fn
    return SampleScore(
        parsed=True,
        pixel_accuracy=equal / values,
        iou=tp / union if union else 1.0,  # nothing black on either side: exactly right
        perfect=equal == values,
        tp=tp,
        fp=fp,
        fn=fn,
    )


def unparsable_score(target_black: int, values: int) -> SampleScore:
    """SPEC §2's score for a program that does not render: everything counts as wrong."""
    return SampleScore(
        parsed=False,
        pixel_accuracy=0.0,
        iou=0.0,
        perfect=False,
        tp=0,
        fp=values - target_black,
        fn=target_black,
    )


def score_batch(preds: Any, targets: Any, parsed: Sequence[bool] | None = None) -> list[SampleScore]:
    """:func:`score_pair` over aligned sequences (or (N, ...) arrays) of predictions and targets."""
    n = len(targets)
    if len(preds) != n:
        raise ValueError(f"{len(preds)} predictions for {n} targets")
    if parsed is None:
        parsed = [True] * n
    elif len(parsed) != n:
        raise ValueError(f"{len(parsed)} parsed flags for {n} samples")
    return [score_pair(preds[i], targets[i], parsed[i]) for i in range(n)]


# --------------------------------------------------------------------------------------
# Targets: arrays, images, dataset rows or a datasets.Dataset → chunks of planes.
# --------------------------------------------------------------------------------------


def _pil_plane(img: Any) -> np.ndarray:
    """A PIL image as a plane (modes 1 and L) or RGB array (others, via Pillow's RGB conversion)."""
    if img.mode == "1":
        return np.where(np.asarray(img), np.uint8(255), np.uint8(BLACK))
    if img.mode == "L":
        return np.asarray(img)
    return np.asarray(img if img.mode == "RGB" else img.convert("RGB"))


def _decode_cell(cell: dict) -> np.ndarray:
    """Decode a ``datasets`` image cell ({"bytes", "path"}) as the Image feature would, minus
    its RGB conversion: 1-bit and greyscale PNGs stay single planes (3× less work)."""
    import io

    from PIL import Image, ImageOps

    src = io.BytesIO(cell["bytes"]) if cell.get("bytes") is not None else cell["path"]
    with Image.open(src) as img:
        if img.getexif().get(0x0112) is not None:  # EXIF orientation, as datasets applies it
            img = ImageOps.exif_transpose(img)
        img.load()
        return _pil_plane(img)


def _target_plane(x: Any, index: int) -> np.ndarray:
    """One target as a plane or (H, W, 3) array (see :func:`image_plane`).

    Accepts a PIL image (non-RGB modes go through Pillow's ``convert("RGB")``), a uint8
    array, a bool mask (True = black), or a dict with an ``"image"`` entry (a dataset row).
    Images in other conventions (any size, alpha, 16-bit, ...) should go through
    :func:`img2prog.data.io.normalize_image` first.
    """
    where = f"target {index}" if index >= 0 else "target"
    if isinstance(x, dict):
        if "image" not in x:
            raise ValueError(f"{where}: a dict target needs an 'image' entry, got keys {sorted(x)}")
        x = x["image"]
    if hasattr(x, "convert") and hasattr(x, "mode"):  # a PIL image, tested without importing PIL
        return _pil_plane(x)
    if isinstance(x, np.ndarray):
        return image_plane(x, where)
    raise TypeError(f"{where}: expected a PIL image or numpy array, got {type(x).__name__}")


def target_array(x: Any, index: int | None = None) -> np.ndarray:
    """One target (PIL image, uint8 array, bool mask or dataset row) as an (H, W, 3) uint8 array.

    The SPEC's array form of what :func:`compute_metrics` accepts as a target; ``index`` only
    names the target in error messages.
    """
    plane = _target_plane(x, -1 if index is None else index)
    return np.repeat(plane[:, :, None], CHANNELS, axis=2) if plane.ndim == 2 else plane


def _is_hf_dataset(x: Any) -> bool:
    return hasattr(x, "column_names") and hasattr(x, "select_columns") and hasattr(x, "features")


class _Targets:
    """Uniform, chunked access to the kinds of targets :func:`compute_metrics` accepts."""

    def __init__(self, targets: Any):
        self._decode = None
        if _is_hf_dataset(targets):
            if "image" not in targets.column_names:
                raise ValueError(f"target dataset has no 'image' column (columns: {targets.column_names})")
            data = targets.select_columns(["image"])
            feature = data.features["image"]
            if type(feature).__name__ == "Image" and getattr(feature, "decode", False):
                # Fetch the encoded cells and decode them here (see _decode_cell).
                data = data.cast_column("image", type(feature)(decode=False))
                self._decode = _decode_cell
            self._data, self._kind = data, "dataset"
        elif isinstance(targets, np.ndarray):
            if targets.ndim not in (3, 4):
                raise ValueError(f"a target array must be (N,H,W,3) or (N,H,W), got shape {targets.shape}")
            self._data, self._kind = targets, "array"
        else:
            self._data = targets if isinstance(targets, Sequence) else list(targets)
            self._kind = "sequence"
        self._side: int | None = None

    def __len__(self) -> int:
        return len(self._data)

    def _check(self, plane: np.ndarray, index: int) -> np.ndarray:
        h, w = plane.shape[:2]
        if self._side is None:
            if h != w:
                raise ValueError(
                    f"target {index} is {w}×{h}; targets must be square "
                    "(img2prog.data.io.normalize_image pads and resizes images)"
                )
            self._side = h
        elif (h, w) != (self._side, self._side):
            raise ValueError(
                f"target {index} is {w}×{h} but earlier targets are {self._side}×{self._side}; "
                "bring all targets to one size (img2prog.data.io.normalize_image)"
            )
        return plane

    def chunks(self, chunk_size: int) -> Iterator[tuple[int, list[np.ndarray]]]:
        """Yield (start index, list of target planes) pieces in order."""
        n = len(self)
        for start in range(0, n, chunk_size):
            stop = min(start + chunk_size, n)
            if self._kind == "dataset":
                items = self._data[start:stop]["image"]
                if self._decode is not None:
                    items = [self._decode(c) for c in items]
            else:
                items = self._data[start:stop]
            yield start, [self._check(_target_plane(x, start + i), start + i) for i, x in enumerate(items)]


# --------------------------------------------------------------------------------------
# Public entry points.
# --------------------------------------------------------------------------------------


def _language(language: str | Language) -> Language:
    return get_language(language) if isinstance(language, str) else language


def _program_text(program: Any, language: Language) -> str | None:
    """Text of a prediction: strings as they are, None stays None, program objects spelled out."""
    if program is None or isinstance(program, str):
        return program
    return language.to_text(program)


def _row(index: int, text: str | None, error: str | None, score: SampleScore, size: int | None) -> dict:
    return {
        "index": index,
        "program": text,
        "parsed": score.parsed,
        "error": error,
        "pixel_accuracy": score.pixel_accuracy,
        "iou": score.iou,
        "perfect": score.perfect,
        "tp": score.tp,
        "fp": score.fp,
        "fn": score.fn,
        "length": None if text is None else len(text),
        "size": size,
    }


def compute_metrics(
    programs: Sequence[Any],
    targets: Any,
    language: str | Language = "csg2d",
    size: int | None = None,
    workers: int | None = None,
    chunk_size: int = DEFAULT_CHUNK,
) -> MetricsReport:
    """Score predicted programs against target images (SPEC §2 plus IoU and pixel-perfect share).

    ``programs``: program texts, one per target; ``None`` means "no prediction" and, like text
    that does not parse or cannot be drawn, counts as unparsable.
    ``targets``: an (N,H,W,3) uint8 array, a sequence of arrays / PIL images / dataset rows,
    or a ``datasets.Dataset`` with an ``image`` column. All targets must be square and of one
    size; programs are rendered at that size (``size``, if given, must agree with it).
    ``workers``: processes for rendering (None: the renderer decides by job size).

    >>> import numpy as np
    >>> white = np.full((1, 16, 16, 3), 255, np.uint8)
    >>> compute_metrics([""], white).to_dict()["pixel_accuracy"]
    1.0
    """
    start_time = time.perf_counter()
    lang = _language(language)
    programs = list(programs)
    tsource = _Targets(targets)
    if len(programs) != len(tsource):
        raise ValueError(f"{len(programs)} programs but {len(tsource)} targets; they are matched one to one")
    scores: list[SampleScore] = []
    rows: list[dict] = []
    for start, planes in tsource.chunks(chunk_size):
        side = planes[0].shape[0]
        if size is not None and size != side:
            raise ValueError(f"size={size} but the targets are {side}×{side}")
        texts = [_program_text(p, lang) for p in programs[start : start + len(planes)]]
        todo = [i for i, t in enumerate(texts) if t is not None]
        errors: list[str | None] = ["no program" if t is None else None for t in texts]
        preds: list[np.ndarray | None] = [None] * len(texts)
        if todo:
            rendered, errs = lang.render_batch([texts[i] for i in todo], size=side, workers=workers)
            for j, i in enumerate(todo):
                if errs[j] is None:
                    preds[i] = rendered[j]
                else:
                    errors[i] = str(errs[j])
        for k, (text, err, pred, target) in enumerate(zip(texts, errors, preds, planes)):
            sc = score_pair(pred, target, parsed=err is None)
            scores.append(sc)
            rows.append(_row(start + k, text, err, sc, lang.size(text) if sc.parsed else None))
    return _report(scores, rows, time.perf_counter() - start_time)


def metrics_from_masks(
    predictions: Any,
    targets: Any,
    errors: Sequence[Any] | None = None,
    programs: Sequence[str | None] | None = None,
    chunk_size: int = DEFAULT_CHUNK,
) -> MetricsReport:
    """Score predictions that are already rendered (no re-rendering), as :func:`compute_metrics` does.

    ``predictions``: an (N,H,W) bool mask array (True = black), an (N,H,W) greyscale or
    (N,H,W,3) uint8 array, or a sequence of such per-sample arrays where ``None`` marks an
    unparsable sample. ``errors[i]`` not None also marks sample i unparsable (pass the error
    list of ``render_batch`` straight through). ``programs`` only fills the per-sample rows.
    ``targets``: as for :func:`compute_metrics`.
    """
    start_time = time.perf_counter()
    tsource = _Targets(targets)
    n = len(tsource)
    if len(predictions) != n:
        raise ValueError(f"{len(predictions)} predictions but {n} targets; they are matched one to one")
    if errors is not None and len(errors) != n:
        raise ValueError(f"{len(errors)} errors for {n} targets")
    if programs is not None and len(programs) != n:
        raise ValueError(f"{len(programs)} programs for {n} targets")
    scores: list[SampleScore] = []
    rows: list[dict] = []
    for start, planes in tsource.chunks(chunk_size):
        for k, target in enumerate(planes):
            i = start + k
            pred = predictions[i]
            err = errors[i] if errors is not None else None
            if pred is None and err is None:
                err = "no prediction"
            sc = score_pair(pred, target, parsed=err is None)
            scores.append(sc)
            text = programs[i] if programs is not None else None
            rows.append(_row(i, text, None if err is None else str(err), sc, None))
    return _report(scores, rows, time.perf_counter() - start_time)


class Metrics:
    """The seed notebook's call shape: ``Metrics(generated_programs, targets)``.

    ``targets`` are dataset rows (dicts with an ``"image"``) or anything
    :func:`compute_metrics` accepts. The five reference figures are attributes; the full
    :class:`MetricsReport` (IoU, pixel-perfect share, per-sample rows) is ``.report``.
    Unlike the seed, a different number of programs and targets is an error rather than a
    silent truncation.
    """

    pixel_accuracy: float
    parse_rate: float
    precision: float
    recall: float
    f1_score: float

    def __init__(self, generated_programs: Sequence[str | None], targets: Any, language: str = "csg2d"):
        self.report = compute_metrics(generated_programs, targets, language=language)
        self.pixel_accuracy = self.report.pixel_accuracy
        self.parse_rate = self.report.parse_rate
        self.precision = self.report.precision
        self.recall = self.report.recall
        self.f1_score = self.report.f1_score

    def __str__(self) -> str:
        names = ("pixel_accuracy", "parse_rate", "precision", "recall", "f1_score")
        return "Metrics(" + ", ".join(f"{k}={getattr(self, k):.4f}" for k in names) + ")"


__all__ = [
    "BLACK",
    "REPORT_KEYS",
    "Metrics",
    "MetricsReport",
    "SampleScore",
    "compute_metrics",
    "image_plane",
    "metrics_from_masks",
    "precision_recall_f1",
    "score_batch",
    "score_pair",
    "target_array",
    "unparsable_score",
]
