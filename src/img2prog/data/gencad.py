"""GenCAD-Code-style data: pictures of 3D parts paired with CadQuery scripts.

GenCAD-Code (``CADCODER/GenCAD-Code`` on the Hugging Face hub; columns ``image``, ``prompt``,
``cadquery``, ``deepcad_id``, ...) and its many copies pair a rendering of a DeepCAD part with
the CadQuery script that builds it. This module reads such data from wherever a user has it
and turns every row into a :class:`GencadRecord` of the ``cadquery`` language:

- a **local folder** holding
  (a) a ``datasets`` folder written by ``save_to_disk`` (a ``DatasetDict`` folder: the
  ``split`` sub-folder),
  (b) JSONL / CSV / Parquet files with an image column and a code column (images embedded as
  bytes, ``{"bytes", "path"}`` cells, base64 or data URIs, or as paths relative to the file;
  with several files, those whose path names ``split`` — ``train.jsonl``,
  ``data/test-00000-of-00001.parquet``, ``validation/metadata.csv`` — are read), or
  (c) pairs of files ``NAME.png`` + ``NAME.py`` (any image extension of
  :data:`~img2prog.data.io.IMAGE_EXTENSIONS`), at the top level or in a ``split`` sub-folder;
- a single JSONL / CSV / Parquet file;
- a **hub dataset id** (``owner/name``, or ``hub:owner/name``) that is not a local path,
  loaded with ``datasets.load_dataset(source, split=split)``.

Column names differ between copies; the image and code columns are detected
(:data:`IMAGE_COLUMNS`, :data:`CODE_COLUMNS`) or named by the caller.

Every script is checked by the static validator (nothing runs) and printed canonically; numbers
off the 1/128 token grid (GenCAD's ``0.18947368421052632`` and ``6e-17`` plane noise) are
snapped by :func:`~img2prog.lang.cadquery.tokens.quantize`. A row's status is one of

- ``ok`` — the script is a program of the subset, already on the token grid;
- ``quantized`` — it is, after snapping its numbers to the grid;
- ``off_grid`` — it is a program of the subset, but cannot be snapped (a plane that is not
  axis-aligned, a number outside [−2, 2], a size that would snap to 0): the canonical text
  is kept unsnapped — it parses, renders and scores, but has no token sequence;
- ``outside_subset`` — the script does not validate (or the row has no script); the
  validator's message is kept;
- ``unreadable_image`` — the picture is missing or cannot be decoded.

The first three are *kept*; the other two are reported by index and name and skipped, never
stopping the batch. Pictures are brought to the ``cadquery`` renderer's convention: an
``(S, S, 3)`` uint8 array with three equal channels — grey on white, because CadQuery
renderings are shaded, not black and white. Decoding is :mod:`img2prog.data.io`'s (EXIF
orientation, ITU-R 601 luma, transparency composited on white), then the picture is padded to
a square with white and resized with a box filter, as
:func:`~img2prog.data.io.normalize_image` does; ``threshold=`` gives its black/white
pictures instead.

CLI::

    python -m img2prog.data.gencad SOURCE OUT [--split train] [--limit N]
        [--image-column COL] [--code-column COL] [--image-size 256] [--jsonl PROGRAMS.jsonl]

writes a dataset folder (``program``, ``image``, ``name``, ``status``, ``source_code``) and
prints the summary as JSON; bad input exits 2 with one ``error: ...`` line on stderr.
"""

from __future__ import annotations

import base64
import binascii
import csv
import io as _io
import json
import os
import re
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from img2prog.data.io import (
    IMAGE_EXTENSIONS,
    DataError,
    _image_cell,
    _image_feature,
    _is_dataset_dict_dir,
    _is_dataset_dir,
    _make_dataset,
    iter_jsonl_lines,
    load_dataset_dir,
    normalize_image,
    save_dataset,
    square_luminance,
    write_jsonl,
)
from img2prog.lang.cadquery.ast import to_script
from img2prog.lang.cadquery.parser import parse
from img2prog.lang.cadquery.tokens import on_grid, quantize
from img2prog.lang.errors import ProgramError

if TYPE_CHECKING:  # pragma: no cover
    from datasets import Dataset

#: side of the pictures by default: the ``cadquery`` language's rendering size
DEFAULT_IMAGE_SIZE = 256

#: image column names tried in this order (case-insensitive); then any column whose name
#: contains "image" or "img"
IMAGE_COLUMNS = ("image", "images", "img", "deepcad_image", "picture", "render", "rendering",
                 "image_path", "image_file", "file_name", "png")
#: code column names tried in this order (case-insensitive); then any column whose name
#: contains "cadquery" or "code" (GenCAD's ``prompt`` column is never taken)
CODE_COLUMNS = ("cadquery", "code", "program", "cad_code", "cadquery_code", "cq_code", "script",
                "source_code", "texts", "text")
#: columns that name a row (else its position: ``FILE:LINE``, ``FILE#ROW`` or ``row I``)
NAME_COLUMNS = ("deepcad_id", "id", "uid", "name", "key", "sample_id")

STATUSES = ("ok", "quantized", "off_grid", "outside_subset", "unreadable_image")
#: statuses of rows that hold a program of the language and a picture
KEPT = ("ok", "quantized", "off_grid")

TABLE_EXTENSIONS = (".jsonl", ".ndjson", ".csv", ".parquet")
_SPLIT_WORDS = {
    "train": {"train", "training"},
    "test": {"test", "testing"},
    "validation": {"validation", "valid", "val", "dev"},
}
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_FENCE = re.compile(r"^\s*```[\w+-]*[ \t]*\n(.*?)\n?```\s*$", re.S)
_PARQUET_BATCH = 256
_DATASET_CHUNK = 1024


@dataclass
class GencadRecord:
    """One row of GenCAD-style data, read and checked.

    ``program`` is the canonical script (None unless the status is one of :data:`KEPT`),
    ``source_code`` the row's script as given, ``image`` the picture as an (S, S, 3) uint8
    array (None when unreadable), ``message`` why the row is not ``ok`` (None when it is).
    ``index`` is the row's 0-based position in what was read; ``name`` its id column or place.
    """

    index: int
    name: str
    status: str
    program: str | None
    source_code: str | None
    image: np.ndarray | None
    message: str | None = None

    @property
    def kept(self) -> bool:
        return self.status in KEPT


# --------------------------------------------------------------------------------------
# One row: script and picture.
# --------------------------------------------------------------------------------------


def check_script(code: str | None) -> tuple[str, str | None, str | None]:
    """(status, canonical program or None, message or None) of one script."""
    if code is None:
        return "outside_subset", None, "no script"
    try:
        program = parse(code)
    except ProgramError as e:
        return "outside_subset", None, str(e)
    if on_grid(program):
        return "ok", to_script(program), None
    try:
        snapped = quantize(program)
    except ProgramError as e:
        return "off_grid", to_script(program), f"cannot snap to the token grid: {e.message}"
    if not on_grid(snapped):  # pragma: no cover - quantize guarantees the grid
        return "off_grid", to_script(program), "not on the token grid after quantize"
    return "quantized", to_script(snapped), None


def _code_text(value: Any) -> str | None:
    """The script in a code cell: text, bytes, or a chat (the assistant's turn); fences removed."""
    if value is None:
        return None
    if isinstance(value, (bytes, bytearray, memoryview)):
        try:
            value = bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            return None
    if isinstance(value, dict):
        if value.get("role", value.get("from")) not in (None, "assistant", "gpt"):
            return None
        for key in ("assistant", "gpt", "content", "value", "code", "text"):
            if key in value:
                return _code_text(value[key])
        return None
    if isinstance(value, (list, tuple)):
        if all(isinstance(v, dict) and v.get("type") == "text" for v in value) and value:
            return "\n".join(str(v.get("text", "")) for v in value)  # content parts
        texts = [t for t in (_code_text(v) for v in value) if t is not None]
        return texts[-1] if texts else None  # the last answer of a conversation
    if not isinstance(value, str):
        return None
    m = _FENCE.match(value)
    return m.group(1) + "\n" if m else value


def _open_image(value: Any, base_dirs: tuple[Path, ...]) -> Image.Image | np.ndarray:
    """The picture in an image cell; ValueError/OSError when there is none or it cannot be read."""
    if value is None:
        raise _NoImage("no image")
    if isinstance(value, (Image.Image, np.ndarray)):
        return value
    if isinstance(value, dict):  # datasets' {"bytes": ..., "path": ...} cell
        if value.get("bytes") is not None:
            return _open_image(bytes(value["bytes"]), base_dirs)
        if value.get("path"):
            return _open_image(str(value["path"]), base_dirs)
        raise _NoImage("image cell holds neither bytes nor a path")
    if isinstance(value, (bytes, bytearray, memoryview)):
        img = Image.open(_io.BytesIO(bytes(value)))
        img.load()
        return img
    if isinstance(value, str):
        if value.startswith("data:"):
            _, _, payload = value.partition(",")
            return _open_image(base64.b64decode(payload, validate=False), base_dirs)
        path = Path(value)
        candidates = [path] if path.is_absolute() else [d / path for d in base_dirs]
        for c in candidates:
            if c.is_file():
                with Image.open(c) as img:
                    img.load()
                    return img.copy()
        if value and len(value) % 4 == 0:  # plain base64 (a path has a "." or the wrong length)
            try:
                raw = base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError):
                raw = None
            if raw is not None:
                return _open_image(raw, base_dirs)
        raise _NoImage(f"no such image file: {value[:200]}")
    if isinstance(value, (list, tuple)):
        if not value:
            raise _NoImage("empty image list")
        if isinstance(value[0], (int, float, list, tuple)) and not isinstance(value[0], bool):
            return np.asarray(value)  # pixels as nested lists
        return _open_image(value[0], base_dirs)  # several pictures: the first
    raise _NoImage(f"cannot read an image from a {type(value).__name__}")


def to_picture(img: Image.Image | np.ndarray, size: int | None = DEFAULT_IMAGE_SIZE,
               threshold: int | None = None) -> np.ndarray:
    """A picture in the ``cadquery`` convention: (S, S, 3) uint8, three equal channels, grey.

    Luminance as :func:`~img2prog.data.io.normalize_image` decodes it (EXIF orientation,
    ITU-R 601 luma, transparency on white), padded with white to a square and box-resized to
    ``size`` (None: the padded side). ``threshold`` (an int) returns
    :func:`~img2prog.data.io.normalize_image`'s black/white picture instead.
    """
    if threshold is not None:
        if size is None:
            h, w = (img.height, img.width) if isinstance(img, Image.Image) else np.asarray(img).shape[:2]
            size = max(h, w)
        return normalize_image(img, size, threshold)
    lum = square_luminance(img if isinstance(img, Image.Image) else np.asarray(img), size)
    grey = np.clip(np.rint(lum), 0, 255).astype(np.uint8)
    return np.repeat(grey[:, :, None], 3, axis=2)


class _NoImage(ValueError):
    """A cell that holds no picture (the message says why)."""


_IMAGE_ERRORS = (OSError, SyntaxError, ValueError, TypeError, EOFError, Image.DecompressionBombError)


def _record(index: int, name: str, image_value: Any, code_value: Any, base_dirs: tuple[Path, ...],
            size: int | None, threshold: int | None) -> GencadRecord:
    code = None if isinstance(code_value, _Missing) else _code_text(code_value)
    try:
        if isinstance(image_value, _Missing):
            raise _NoImage(image_value.why)
        picture = to_picture(_open_image(image_value, base_dirs), size, threshold)
    except _IMAGE_ERRORS as e:
        why = str(e) if isinstance(e, _NoImage) else f"unreadable image ({type(e).__name__}: {e})"
        return GencadRecord(index, name, "unreadable_image", None, code, None, why)
    if isinstance(code_value, _Missing):
        return GencadRecord(index, name, "outside_subset", None, None, picture, code_value.why)
    status, program, message = check_script(code)
    return GencadRecord(index, name, status, program, code, picture, message)


# --------------------------------------------------------------------------------------
# Columns.
# --------------------------------------------------------------------------------------


def _pick(columns: list[str], wanted: str | None, candidates: tuple[str, ...], fragments: tuple[str, ...],
          what: str, where: str, avoid: tuple[str, ...] = (), preferred: tuple[str, ...] = ()) -> str:
    if wanted is not None:
        if wanted not in columns:
            raise DataError(f"{where}: no {what} column {wanted!r} (columns: {', '.join(columns)})")
        return wanted
    lower = {c.lower(): c for c in reversed(columns)}
    for name in candidates:
        if name in lower and lower[name] not in avoid:
            return lower[name]
    for c in preferred:
        if c not in avoid:
            return c
    for c in columns:
        if c not in avoid and any(f in c.lower() for f in fragments):
            return c
    flag = f"--{what}-column"
    raise DataError(f"{where}: no {what} column found (columns: {', '.join(columns) or 'none'}); "
                    f"name it with {what}_column= / {flag}")


def _columns(columns: list[str], image_column: str | None, code_column: str | None, where: str,
             image_like: tuple[str, ...] = ()) -> tuple[str, str, str | None]:
    code = _pick(columns, code_column, CODE_COLUMNS, ("cadquery", "code"), "code", where)
    image = _pick(columns, image_column, IMAGE_COLUMNS, ("image", "img"), "image", where,
                  avoid=(code,), preferred=image_like)
    lower = {c.lower(): c for c in reversed(columns)}
    name = next((lower[n] for n in NAME_COLUMNS if n in lower and lower[n] not in (code, image)), None)
    return image, code, name


# --------------------------------------------------------------------------------------
# Readers: each yields (name, image cell, code cell, base folders).
# --------------------------------------------------------------------------------------

Row = tuple[str, Any, Any, tuple[Path, ...]]


@dataclass
class _Plan:
    kind: str  # saved-dataset | table | pairs | hub
    rows: Callable[[], Iterator[Row]]
    image_column: str | None
    code_column: str | None
    files: list[str]


def _dataset_plan(ds: Any, where: str, kind: str, image_column: str | None, code_column: str | None,
                  limit: int | None, base: tuple[Path, ...]) -> _Plan:
    features = getattr(ds, "features", None) or {}
    columns = list(getattr(ds, "column_names", None) or features)
    image_like = tuple(c for c, f in features.items() if "Image" in type(f).__name__
                       or "Image" in type(getattr(f, "feature", None)).__name__)
    image, code, name = _columns(columns, image_column, code_column, where, image_like)

    def rows() -> Iterator[Row]:
        if hasattr(ds, "with_format") and hasattr(ds, "select") and hasattr(ds, "__len__"):
            # Arrow batches: image cells stay {"bytes", "path"}, so one bad picture is one bad row.
            n = len(ds) if limit is None else min(limit, len(ds))
            table = ds.select_columns([c for c in (image, code, name) if c]).with_format("arrow")
            for start in range(0, n, _DATASET_CHUNK):
                batch = table[start : min(n, start + _DATASET_CHUNK)].to_pylist()
                for i, row in enumerate(batch, start):
                    yield _row_name(row, name, f"row {i}"), row.get(image), row.get(code), base
        else:  # an IterableDataset (streaming): rows come decoded
            for i, row in enumerate(ds):
                if limit is not None and i >= limit:
                    break
                yield _row_name(row, name, f"row {i}"), row.get(image), row.get(code), base

    return _Plan(kind, rows, image, code, [])


def _row_name(row: dict, column: str | None, default: str) -> str:
    value = row.get(column) if column else None
    return default if value is None or value == "" else str(value)


def _table_columns(path: Path) -> list[str]:
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            return list(pq.ParquetFile(path).schema_arrow.names)
        except Exception as e:  # pyarrow raises several types for a broken file
            raise DataError(f"{path}: not a readable Parquet file ({type(e).__name__}: {e})") from None
    if suffix == ".csv":
        try:
            with path.open(newline="", encoding="utf-8-sig") as f, _csv_field_limit():
                header = next(csv.reader(f), [])
        except (UnicodeDecodeError, csv.Error) as e:
            raise DataError(f"{path}: not a readable CSV file ({e})") from None
        return [h for h in header if h]
    seen: list[str] = []
    for _, obj in iter_jsonl_lines(path):
        seen.extend(k for k in obj if k not in seen)
        break
    return seen


class _csv_field_limit:
    """Let CSV cells hold embedded images (the default limit is 128 KiB)."""

    def __enter__(self):
        self.old = csv.field_size_limit(2**31 - 1)

    def __exit__(self, *exc) -> None:
        csv.field_size_limit(self.old)


def _table_rows(path: Path, root: Path, image: str, code: str, name: str | None) -> Iterator[Row]:
    base = (path.parent, root)
    label = path.relative_to(root).as_posix() if path.is_relative_to(root) else path.name
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        pf = pq.ParquetFile(path)
        wanted = [c for c in (image, code, name) if c and c in pf.schema_arrow.names]
        i = 0
        for batch in pf.iter_batches(batch_size=_PARQUET_BATCH, columns=wanted):
            for row in batch.to_pylist():
                yield _row_name(row, name, f"{label}#{i}"), row.get(image), row.get(code), base
                i += 1
    elif suffix == ".csv":
        with path.open(newline="", encoding="utf-8-sig") as f, _csv_field_limit():
            reader = csv.DictReader(f)
            try:
                for row in reader:
                    yield (_row_name(row, name, f"{label}:{reader.line_num}"), row.get(image) or None,
                           row.get(code), base)
            except (UnicodeDecodeError, csv.Error) as e:
                raise DataError(f"{path}:{reader.line_num}: not a readable CSV row ({e})") from None
    else:
        for lineno, row in iter_jsonl_lines(path):
            yield _row_name(row, name, f"{label}:{lineno}"), row.get(image), row.get(code), base


def _split_files(files: list[Path], root: Path, split: str, what: str) -> list[Path]:
    """The files of ``split`` among several: those whose path names it (``train``, ``val`` ...)."""
    if len(files) <= 1:
        return files
    words = _SPLIT_WORDS.get(split.lower(), {split.lower()})
    known = set().union(*_SPLIT_WORDS.values()) | words

    def tokens(p: Path) -> set[str]:
        return set(re.split(r"[/_.\-\s]+", p.relative_to(root).as_posix().lower()))

    matching = [p for p in files if tokens(p) & words]
    if matching:
        return matching
    if any(tokens(p) & known for p in files):
        names = ", ".join(p.relative_to(root).as_posix() for p in files[:8])
        raise DataError(f"{root}: no {what} for split {split!r} among {names}")
    return files


def _table_plan(files: list[Path], root: Path, image_column: str | None, code_column: str | None,
                limit: int | None) -> _Plan:
    image, code, name = _columns(_table_columns(files[0]), image_column, code_column, str(files[0]))

    def rows() -> Iterator[Row]:
        n = 0
        for path in files:
            for row in _table_rows(path, root, image, code, name):
                if limit is not None and n >= limit:
                    return
                n += 1
                yield row

    return _Plan("table", rows, image, code, [str(p) for p in files])


def _pairs(folder: Path) -> dict[str, tuple[Path | None, Path | None]]:
    """stem → (image file, script file) of a folder's top level."""
    found: dict[str, list[Path | None]] = {}
    for p in sorted(folder.iterdir(), key=lambda q: q.name):
        if not p.is_file() or p.name.startswith("."):
            continue
        ext = p.suffix.lower()
        if ext == ".py":
            found.setdefault(p.stem, [None, None])[1] = p
        elif ext in IMAGE_EXTENSIONS:
            slot = found.setdefault(p.stem, [None, None])
            if slot[0] is None or IMAGE_EXTENSIONS.index(ext) < IMAGE_EXTENSIONS.index(slot[0].suffix.lower()):
                slot[0] = p
    return {k: (v[0], v[1]) for k, v in sorted(found.items())}


def _pairs_plan(folder: Path, pairs: dict[str, tuple[Path | None, Path | None]], limit: int | None) -> _Plan:
    def rows() -> Iterator[Row]:
        for i, (stem, (image, script)) in enumerate(pairs.items()):
            if limit is not None and i >= limit:
                return
            code: Any
            if script is None:
                code = _Missing(f"no script {stem}.py next to {image.name if image else stem}")
            else:
                try:
                    code = script.read_text(encoding="utf-8")
                except (OSError, UnicodeDecodeError) as e:
                    code = _Missing(f"{script.name}: cannot read the script ({type(e).__name__})")
            cell = str(image) if image is not None else _Missing(f"no image file for {stem}.py")
            yield stem, cell, code, (folder,)

    return _Plan("pairs", rows, None, None, [str(folder)])


class _Missing:
    """A cell known to be unusable, with the reason (e.g. a script with no picture file)."""

    def __init__(self, why: str):
        self.why = why


def _is_hub_id(source: str) -> bool:
    return bool(_HUB_ID.match(source)) and ".." not in source


def _hub_plan(repo: str, split: str, image_column: str | None, code_column: str | None, limit: int | None,
              hub_kwargs: dict | None) -> _Plan:
    import datasets  # lazily: only a hub source needs it here

    try:
        ds = datasets.load_dataset(repo, split=split, **(hub_kwargs or {}))
    except Exception as e:  # network, authentication, unknown dataset/split: one message
        msg = " ".join(str(e).split()) or type(e).__name__
        raise DataError(f"{repo}: not a local folder, and the hub dataset could not be loaded "
                        f"({type(e).__name__}: {msg[:300]})") from None
    return _dataset_plan(ds, repo, "hub", image_column, code_column, limit, ())


def _local_plan(path: Path, split: str, image_column: str | None, code_column: str | None,
                limit: int | None, depth: int = 0) -> _Plan:
    if path.is_file():
        if path.suffix.lower() not in TABLE_EXTENSIONS:
            raise DataError(f"{path}: not a folder nor a JSONL/CSV/Parquet file")
        return _table_plan([path], path.parent, image_column, code_column, limit)
    if _is_dataset_dir(path):
        ds = load_dataset_dir(path)
        return _dataset_plan(ds, str(path), "saved-dataset", image_column, code_column, limit, (path,))
    if _is_dataset_dict_dir(path):
        splits = json.loads((path / "dataset_dict.json").read_text()).get("splits", [])
        if split not in splits or not _is_dataset_dir(path / split):
            raise DataError(f"{path}: no split {split!r} (splits: {', '.join(splits) or 'none'})")
        ds = load_dataset_dir(path / split)
        plan = _dataset_plan(ds, str(path / split), "saved-dataset", image_column, code_column, limit,
                             (path / split,))
        plan.files = [str(path / split)]
        return plan
    tables = sorted(
        (p for p in path.rglob("*") if p.suffix.lower() in TABLE_EXTENSIONS and p.is_file()
         and not any(part.startswith(".") for part in p.relative_to(path).parts)),
        key=lambda p: p.relative_to(path).as_posix(),
    )
    # Tables at the top level, then pairs at the top level, then tables further down (a hub
    # snapshot's data/*.parquet), so a stray CSV in a sub-folder does not hide a folder of pairs.
    pairs = _pairs(path)
    has_pairs = any(s is not None for _, s in pairs.values())
    if any(p.parent == path for p in tables) or (tables and not has_pairs):
        return _table_plan(_split_files(tables, path, split, "file"), path, image_column, code_column, limit)
    if has_pairs:
        if image_column or code_column:
            raise DataError(f"{path}: a folder of NAME.png + NAME.py pairs has no columns to name "
                            "(image_column / code_column apply to tables and datasets)")
        return _pairs_plan(path, pairs, limit)
    if depth == 0 and (path / split).is_dir():
        return _local_plan(path / split, split, image_column, code_column, limit, depth + 1)
    raise DataError(f"{path}: no GenCAD-style data (expected a saved dataset, JSONL/CSV/Parquet files "
                    "with image and code columns, or NAME.png + NAME.py pairs)")


def _plan(source: str | Path, split: str, image_column: str | None, code_column: str | None,
          limit: int | None, hub_kwargs: dict | None) -> _Plan:
    if limit is not None and (type(limit) is not int or limit < 0):
        raise ValueError(f"limit must be a non-negative integer or None, got {limit!r}")
    text = str(source)
    for prefix in ("hub:", "hf://datasets/"):
        if text.startswith(prefix):
            return _hub_plan(text[len(prefix):], split, image_column, code_column, limit, hub_kwargs)
    path = Path(source)
    if path.exists():
        return _local_plan(path, split, image_column, code_column, limit)
    if isinstance(source, str) and _is_hub_id(text):
        return _hub_plan(text, split, image_column, code_column, limit, hub_kwargs)
    raise DataError(f"{source}: no such folder or file (nor a hub dataset id such as owner/name)")


# --------------------------------------------------------------------------------------
# API.
# --------------------------------------------------------------------------------------


def _new_summary(plan: _Plan | None = None, source: str | Path | None = None, split: str | None = None) -> dict:
    summary: dict[str, Any] = {
        "source": None if source is None else str(source),
        "split": split,
        "format": plan.kind if plan else None,
        "image_column": plan.image_column if plan else None,
        "code_column": plan.code_column if plan else None,
        "rows": 0,
        **{s: 0 for s in STATUSES},
        "kept": 0,
        "skipped": [],
    }
    if plan and plan.files:
        summary["files"] = plan.files
    return summary


def _count(summary: dict, record: GencadRecord) -> None:
    """Add one record to a summary made by :func:`_new_summary` (in place)."""
    summary["rows"] += 1
    summary[record.status] += 1
    if record.kept:
        summary["kept"] += 1
    else:
        summary["skipped"].append(
            {"index": record.index, "name": record.name, "status": record.status, "message": record.message}
        )


def iter_gencad(source: str | Path, split: str = "train", limit: int | None = None, *,
                image_column: str | None = None, code_column: str | None = None,
                image_size: int | None = DEFAULT_IMAGE_SIZE, threshold: int | None = None,
                summary: dict | None = None, hub_kwargs: dict | None = None) -> Iterator[GencadRecord]:
    """Every row of ``source`` as a :class:`GencadRecord`, bad ones included, streamed.

    The source is resolved (and the columns detected) when this is called, so a missing folder
    or column raises :class:`~img2prog.data.io.DataError` at once; rows are read as the
    iterator is consumed. ``summary`` (a dict, e.g. ``{}``) is filled in place: the source's
    format and columns at once, the counts as rows go by (see :func:`load_gencad`).
    """
    if image_size is not None and (type(image_size) is not int or not 8 <= image_size <= 8192):
        raise ValueError(f"image_size must be an integer in 8..8192 or None, got {image_size!r}")
    plan = _plan(source, split, image_column, code_column, limit, hub_kwargs)
    if summary is not None:
        summary.clear()
        summary.update(_new_summary(plan, source, split))

    def records() -> Iterator[GencadRecord]:
        for index, (name, image, code, base) in enumerate(plan.rows()):
            rec = _record(index, name, image, code, base, image_size, threshold)
            if summary is not None:
                _count(summary, rec)
            yield rec

    return records()


def load_gencad(source: str | Path, split: str = "train", limit: int | None = None, *,
                image_column: str | None = None, code_column: str | None = None,
                image_size: int | None = DEFAULT_IMAGE_SIZE, threshold: int | None = None,
                keep_bad: bool = False, hub_kwargs: dict | None = None) -> tuple[list[GencadRecord], dict]:
    """Read GenCAD-style image + CadQuery pairs from a local folder/file or a hub dataset id.

    Returns ``(records, summary)``. ``records`` are the rows with status ``ok``, ``quantized``
    or ``off_grid`` (all rows with ``keep_bad=True``); ``summary`` holds the source's
    ``format`` (saved-dataset, table, pairs, hub), the ``image_column`` and ``code_column``
    used, ``rows`` read (the first ``limit``), a count for every status, ``kept``, and
    ``skipped``: ``{"index", "name", "status", "message"}`` for every row left out.
    ``image_size`` is the side of the pictures (None: as given, padded to a square);
    ``hub_kwargs`` go to ``datasets.load_dataset`` for a hub source.
    """
    summary: dict = {}
    it = iter_gencad(source, split, limit, image_column=image_column, code_column=code_column,
                     image_size=image_size, threshold=threshold, summary=summary, hub_kwargs=hub_kwargs)
    records = [r for r in it if keep_bad or r.kept]
    return records, summary


def to_dataset(records: Iterable[GencadRecord]) -> Dataset:
    """A dataset like the project's others: ``program``, ``image`` (RGB), ``name``, ``status``,
    ``source_code``. Only kept records (``ok``, ``quantized``, ``off_grid``) go in; records are
    consumed in chunks, so an iterator from :func:`iter_gencad` is never held whole."""
    from datasets import concatenate_datasets

    parts: list[Dataset] = []
    chunk: list[GencadRecord] = []

    def flush() -> None:
        columns = {
            "program": [r.program for r in chunk],
            "name": [str(r.name) for r in chunk],
            "status": [r.status for r in chunk],
            "source_code": [r.source_code for r in chunk],
        }
        parts.append(_make_dataset(columns, [_image_cell(r.image) for r in chunk]))
        chunk.clear()

    for r in records:
        if r.kept and r.program is not None and r.image is not None:
            chunk.append(r)
            if len(chunk) >= _DATASET_CHUNK:
                flush()
    if chunk or not parts:
        flush()
    ds = parts[0] if len(parts) == 1 else concatenate_datasets(parts)
    if len(ds) == 0:  # nothing to infer the text columns' types from: name them
        from datasets import Dataset, Features, Value

        features = Features({c: _image_feature() if c == "image" else Value("string") for c in ds.column_names})
        ds = Dataset.from_dict({c: [] for c in features}, features=features)
    return ds


# --------------------------------------------------------------------------------------
# CLI.
# --------------------------------------------------------------------------------------

_SHOWN_SKIPPED = 20


def _check_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise DataError(f"{out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not _is_dataset_dir(out):
        raise DataError(f"{out}: folder is not empty and holds no dataset; refusing to write into it")


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(
        prog="python -m img2prog.data.gencad",
        description="Convert GenCAD-Code-style image + CadQuery pairs (a local folder or file, or a hub "
                    "dataset id) into an img2prog dataset folder; prints a summary as JSON.",
    )
    ap.add_argument("source", help="folder (saved dataset, JSONL/CSV/Parquet, NAME.png + NAME.py), file, "
                                   "or hub id owner/name")
    ap.add_argument("out", help="dataset folder to write (save_to_disk format)")
    ap.add_argument("--split", default="train")
    ap.add_argument("--limit", type=int, default=None, help="read only the first N rows")
    ap.add_argument("--image-column", default=None)
    ap.add_argument("--code-column", default=None)
    ap.add_argument("--image-size", type=int, default=DEFAULT_IMAGE_SIZE, help="side of the pictures (0: as given)")
    ap.add_argument("--threshold", type=int, default=None, help="black/white pictures (csg2d style) at this level")
    ap.add_argument("--jsonl", default=None, help="also write {id, program} lines here, for "
                                                  "`img2prog score --lang cadquery -t`")
    ap.add_argument("--report", default=None, help="write every skipped row here as JSONL")
    a = ap.parse_args(argv)
    out = Path(a.out)
    summary: dict = {}
    kept: list[tuple[str, str]] = []
    try:
        if a.limit is not None and a.limit < 0:
            raise DataError(f"--limit must be >= 0, got {a.limit}")
        _check_out(out)
        it = iter_gencad(a.source, a.split, a.limit, image_column=a.image_column, code_column=a.code_column,
                         image_size=a.image_size or None, threshold=a.threshold, summary=summary)

        def noted() -> Iterator[GencadRecord]:
            for r in it:
                if r.kept and a.jsonl:
                    kept.append((r.name, r.program))
                yield r

        ds = to_dataset(noted())
        save_dataset(ds, out)
        if a.jsonl:
            write_jsonl(({"id": n, "program": p} for n, p in kept), a.jsonl)
        if a.report:
            write_jsonl(summary["skipped"], a.report)
    except (DataError, ValueError, OSError) as e:
        print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    shown = dict(summary)
    shown["out"] = str(out)
    if len(summary["skipped"]) > _SHOWN_SKIPPED:
        shown["skipped"] = summary["skipped"][:_SHOWN_SKIPPED]
        shown["skipped_not_shown"] = len(summary["skipped"]) - _SHOWN_SKIPPED
    print(json.dumps(shown, ensure_ascii=False))
    return 0


__all__ = [
    "CODE_COLUMNS",
    "DEFAULT_IMAGE_SIZE",
    "IMAGE_COLUMNS",
    "KEPT",
    "NAME_COLUMNS",
    "STATUSES",
    "GencadRecord",
    "check_script",
    "iter_gencad",
    "load_gencad",
    "main",
    "to_dataset",
    "to_picture",
]


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main())
