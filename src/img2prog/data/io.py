"""Reading and writing img2prog data: datasets, JSONL program files and folders of images.

A dataset is a Hugging Face ``datasets.Dataset`` with (at least) two columns, as in the seed
experiments: ``program`` (the program text) and ``image`` (an RGB ``size×size`` image drawn
by the exact renderer). Datasets live on disk in ``save_to_disk`` form; programs travel as
JSONL (one ``{"program": ..., ...}`` object a line), and images are re-rendered on import,
because an image is a function of its program.

Images from elsewhere (photos, scans, drawings) are brought to the renderer's convention by
:func:`normalize_image` (see there): black shapes (0) on white (255), ``size×size``, three
equal channels, nothing but 0 and 255.

``datasets`` takes most of a second to import, so it is imported inside the functions that
need it: ``import img2prog.data.io`` stays cheap for the CLI and for code that only reads
JSONL or normalises images.
"""

from __future__ import annotations

import importlib
import inspect
import io
import json
import os
import warnings
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image, ImageOps

from img2prog.lang import ProgramError, get_language

if TYPE_CHECKING:  # pragma: no cover
    from datasets import Dataset

IMAGE_SIZE = 256
DEFAULT_THRESHOLD = 128
#: file name endings :func:`import_image_folder` reads (case-insensitive)
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")
IMAGE_EXTENSIONS += (".tif", ".tiff", ".ppm", ".pgm", ".pbm", ".pnm")
#: programs rendered (and PNG-encoded) per task when a dataset is built in several processes
_RENDER_CHUNK = 256


class DataError(ValueError):
    """A data file or folder is missing, unreadable or not in the expected form.

    The message names the path (and the line, for JSONL), so callers can show it as is.
    """


# --------------------------------------------------------------------------------------
# JSONL
# --------------------------------------------------------------------------------------


def iter_jsonl_lines(path: str | Path) -> Iterator[tuple[int, dict]]:
    """(line number, object) for every non-blank line of a JSONL file, streamed; a bad line is
    a :class:`DataError` naming it."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file" if not path.exists() else f"{path}: not a file")
    # Read bytes and decode line by line, so a bad byte is reported on the right line.
    with path.open("rb") as f:
        for lineno, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
            except UnicodeDecodeError:
                raise DataError(f"{path}:{lineno}: not UTF-8 text") from None
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{path}:{lineno}: not valid JSON ({e.msg})") from None
            if not isinstance(obj, dict):
                raise DataError(f"{path}:{lineno}: expected a JSON object, got {type(obj).__name__}")
            yield lineno, obj


def read_jsonl_lines(path: str | Path) -> list[tuple[int, dict]]:
    """(line number, object) for every non-blank line of a JSONL file, for messages that name lines."""
    return list(iter_jsonl_lines(path))


def read_jsonl(path: str | Path) -> list[dict]:
    """Read a JSONL file (blank lines are skipped); a bad line is reported as ``path:line: why``."""
    return [obj for _, obj in read_jsonl_lines(path)]


def _json_default(x: Any) -> Any:
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, Path):
        return str(x)
    raise TypeError(f"cannot write {type(x).__name__} to JSON")


def write_jsonl(rows: Iterable[dict], path: str | Path) -> Path:
    """Write one JSON object per line (UTF-8). The file appears whole or not at all.

    numpy scalars and arrays are written as plain numbers and lists.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with tmp.open("w", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False, default=_json_default))
                f.write("\n")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


# --------------------------------------------------------------------------------------
# Images: encoding for datasets, and normalisation of foreign images.
# --------------------------------------------------------------------------------------


def _image_feature():
    """The ``image`` column's feature: decoded as RGB whatever the stored PNG's mode.

    Renderings are stored as 1-bit PNGs (lossless for black/white images, ~0.7 kB each and
    several times faster to encode than RGB PNGs); ``mode="RGB"`` makes every reader get
    the SPEC's RGB images back.
    """
    from datasets import Image as ImageFeature

    return ImageFeature(mode="RGB")


def encode_png(arr: np.ndarray) -> bytes:
    """PNG bytes of an (S,S) or (S,S,3) uint8 image; black/white images go in as 1-bit."""
    arr = np.asarray(arr)
    if arr.ndim == 3 and arr.shape[2] == 3:
        flat = np.ascontiguousarray(arr).reshape(-1)
        if np.array_equal(flat[0::3], flat[1::3]) and np.array_equal(flat[0::3], flat[2::3]):
            arr = flat[0::3].reshape(arr.shape[:2])  # three equal channels: store one
    if arr.ndim == 2 and not np.any((arr != 0) & (arr != 255)):
        img = Image.fromarray(arr == 255)  # bool → mode "1": white = 1
    else:
        img = Image.fromarray(arr)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _image_cell(arr: np.ndarray) -> dict:
    return {"bytes": encode_png(arr), "path": None}


def _float_luminance(rgb: np.ndarray) -> np.ndarray:
    # ITU-R 601-2 luma, the weights Pillow's convert("L") uses.
    return rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114


def _array_luminance(arr: np.ndarray, scale: float | None = None) -> np.ndarray:
    """(H,W[,C]) array → float32 (H,W) luminance in 0..255, alpha composited on white."""
    if arr.dtype == bool:
        # A mask, in the project's convention: True = black.
        return np.where(arr if arr.ndim == 2 else arr[..., 0], 0.0, 255.0).astype(np.float32)
    if scale is None:
        if arr.dtype == np.uint8:
            scale = 1.0
        elif arr.dtype == np.uint16:
            scale = 255.0 / 65535.0
        elif np.issubdtype(arr.dtype, np.floating):
            scale = 255.0  # float arrays are in [0, 1] (matplotlib / scikit-image convention)
        elif np.issubdtype(arr.dtype, np.integer):
            scale = 1.0 if arr.size == 0 or arr.max() <= 255 else 255.0 / 65535.0
        else:
            raise TypeError(f"unsupported image array dtype {arr.dtype}")
    x = np.clip(arr.astype(np.float32) * scale, 0.0, 255.0)
    if x.ndim == 3 and x.shape[2] == 1:
        x = x[..., 0]
    if x.ndim == 2:
        return x
    if x.ndim != 3 or x.shape[2] not in (2, 3, 4):
        raise ValueError(f"expected an (H, W), (H, W, 1|2|3|4) image array, got shape {arr.shape}")
    channels = x.shape[2]
    lum = x[..., 0] if channels == 2 else _float_luminance(x)
    if channels in (2, 4):  # composite on white: c·a + 255·(1 − a)
        alpha = x[..., -1] / 255.0
        lum = lum * alpha + 255.0 * (1.0 - alpha)
    return lum.astype(np.float32)


def _pil_luminance(img: Image.Image) -> np.ndarray:
    img = ImageOps.exif_transpose(img)  # camera/scanner orientation tag → upright pixels
    mode = img.mode
    if mode.startswith("I;16"):
        return _array_luminance(np.asarray(img).astype(np.uint16))
    if mode == "I":  # 32-bit ints; Pillow opens 16-bit PNG/TIFF greyscale as "I"
        return _array_luminance(np.asarray(img))
    if mode == "F":  # Pillow's float images use the 0..255 scale
        return _array_luminance(np.asarray(img), scale=1.0)
    if mode == "1":
        return _array_luminance(np.asarray(img.convert("L")))
    if mode == "La":  # premultiplied; Pillow converts it only to LA
        img = img.convert("LA")
    has_alpha = img.has_transparency_data
    if mode == "L" and not has_alpha:
        return _array_luminance(np.asarray(img))
    # Palette, CMYK, YCbCr, LAB, HSV, premultiplied alpha, ...: let Pillow bring it to RGB(A).
    return _array_luminance(np.asarray(img.convert("RGBA" if has_alpha else "RGB")))


def normalize_image(
    img: Image.Image | np.ndarray, size: int = IMAGE_SIZE, threshold: int = DEFAULT_THRESHOLD
) -> np.ndarray:
    """Bring any picture to the renderer's convention: an (S, S, 3) uint8 array of 0s and 255s.

    The steps, in order:

    1. **Decode to luminance** (0 = black … 255 = white). Pillow images are first turned
       upright by their EXIF orientation tag. Colour becomes luma with the ITU-R 601-2
       weights (0.299 R + 0.587 G + 0.114 B, as Pillow's ``convert("L")``); palette, CMYK
       and other modes go through Pillow's RGB conversion; 16-bit images are scaled by
       255/65535. Transparent pixels are composited on **white**, the canvas colour, so a
       black logo on a transparent background stays a black logo. numpy input: uint8 as is,
       uint16 as 16-bit, other integers as 8-bit when none exceeds 255 and 16-bit otherwise
       (Pillow's 32-bit "I" images likewise), floats as [0, 1] (Pillow's "F" images as
       0..255, Pillow's own convention), bool as a mask with True = black.
    2. **Pad to a square** with white, centring the picture, so shapes keep their proportions
       (a circle stays a circle; the canvas of the language is square).
    3. **Resize** to ``size×size`` with Pillow's ``BOX`` filter on float luminance. When
       shrinking, BOX is an exact area average: an output pixel is the mean of the input area it
       covers, so step 4 makes it black when more than about half of that area is dark — the
       same "mostly covered" rule a rasteriser applies. NEAREST would sample one input pixel and
       can drop thin strokes; BICUBIC/LANCZOS overshoot at edges and leave halos once
       thresholded. When enlarging, BOX replicates pixels, so small inputs keep hard edges.
    4. **Threshold**: luminance < ``threshold`` becomes black (0), everything else white (255);
       the three channels are equal, as in the SPEC's rendered images.
    """
    if not isinstance(size, int) or size < 1:
        raise ValueError(f"size must be a positive integer, got {size!r}")
    lum = square_luminance(img, size)
    out = np.where(lum < threshold, np.uint8(0), np.uint8(255))
    return np.repeat(out[:, :, None], 3, axis=2)


def square_luminance(img: Image.Image | np.ndarray, size: int | None) -> np.ndarray:
    """Steps 1–3 of :func:`normalize_image`: float32 luminance (0 black … 255 white), padded
    with white to a square and box-resized to ``size`` × ``size`` (None: the padded side)."""
    if isinstance(img, Image.Image):
        lum = _pil_luminance(img)
    elif isinstance(img, np.ndarray):
        lum = _array_luminance(img)
    else:
        raise TypeError(f"expected a PIL image or numpy array, got {type(img).__name__}")
    h, w = lum.shape
    if h == 0 or w == 0:
        raise ValueError(f"image has no pixels ({w}×{h})")
    if h != w:
        side = max(h, w)
        square = np.full((side, side), 255.0, dtype=np.float32)
        top, left = (side - h) // 2, (side - w) // 2
        square[top : top + h, left : left + w] = lum
        lum = square
    if size is not None and lum.shape != (size, size):
        lum = np.asarray(Image.fromarray(lum).resize((size, size), Image.Resampling.BOX))  # float32 → "F"
    return lum


# --------------------------------------------------------------------------------------
# Datasets
# --------------------------------------------------------------------------------------


def _render_png_chunk(
    args: tuple[str, list[str], int],
) -> tuple[list[dict | None], list[ProgramError | None]]:
    """Render and PNG-encode a chunk of programs (runs in worker processes for big jobs)."""
    lang_name, texts, size = args
    lang = get_language(lang_name)
    cells: list[dict | None] = []
    errors: list[ProgramError | None] = []
    for text in texts:
        try:
            cells.append(_image_cell(lang.render(text, size)))
            errors.append(None)
        except ProgramError as e:
            cells.append(None)
            errors.append(e)
    return cells, errors


def _render_cells(
    texts: list[str], size: int, workers: int | None, language: str
) -> tuple[list[dict | None], list[ProgramError | None]]:
    n = len(texts)
    if workers is None:
        workers = min(os.cpu_count() or 1, 8) if n >= 1024 else 1
    chunks = [texts[i : i + _RENDER_CHUNK] for i in range(0, n, _RENDER_CHUNK)]
    if workers <= 1 or len(chunks) < 2:
        return _render_png_chunk((language, texts, size))
    cells: list[dict | None] = []
    errors: list[ProgramError | None] = []
    with ProcessPoolExecutor(max_workers=workers) as pool:
        for c, e in pool.map(_render_png_chunk, [(language, chunk, size) for chunk in chunks]):
            cells.extend(c)
            errors.extend(e)
    return cells, errors


def _check_size(size: int) -> None:
    if type(size) is not int or not 1 <= size <= 8192:
        raise ValueError(f"image size must be an integer in 1..8192, got {size!r}")


def _make_dataset(columns: dict[str, list], image_cells: list[dict]) -> Dataset:
    """A Dataset from plain columns plus PNG cells, with the project's column types.

    ``program`` and ``source`` are strings (None allowed), ``image`` the RGB image feature;
    the types of other columns are inferred. Columns come out as program, image, the rest.
    """
    from datasets import Dataset, Features, Value

    fixed = {"program": Value("string"), "image": _image_feature(), "source": Value("string")}
    extra = {k: v for k, v in columns.items() if k not in fixed}
    inferred = Dataset.from_dict(extra).features if extra else {}
    features = Features(
        {k: t for k, t in fixed.items() if k in columns or k == "image"} | {k: inferred[k] for k in extra}
    )
    data = {**columns, "image": image_cells}
    return Dataset.from_dict({k: data[k] for k in features}, features=features)


def programs_to_dataset(
    programs: Sequence[str],
    size: int = IMAGE_SIZE,
    extra_columns: dict[str, list] | None = None,
    workers: int | None = None,
    language: str = "csg2d",
) -> Dataset:
    """Render programs into a dataset with columns ``program``, ``image`` and ``extra_columns``.

    Images are RGB ``size×size``, drawn by the language's exact renderer (in ``workers``
    processes; None: several only for a thousand programs or more). Every program must render:
    otherwise :class:`ProgramError` names the first bad index (and how many others failed).
    """
    _check_size(size)
    lang = get_language(language)
    texts = [p if isinstance(p, str) else lang.to_text(p) for p in programs]
    extra = dict(extra_columns or {})
    for name, values in extra.items():
        if name in ("program", "image"):
            raise ValueError(f"extra column {name!r} clashes with a built-in column")
        if len(values) != len(texts):
            raise ValueError(f"extra column {name!r} has {len(values)} values for {len(texts)} programs")
    cells, errors = _render_cells(texts, size, workers, language)
    bad = [i for i, e in enumerate(errors) if e is not None]
    if bad:
        e = errors[bad[0]]
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        raise ProgramError(f"program {bad[0]}{more}: {e.message}", e.offset)
    return _make_dataset({"program": texts, **{k: list(v) for k, v in extra.items()}}, cells)


def _is_dataset_dir(path: Path) -> bool:
    return (path / "state.json").is_file() and (path / "dataset_info.json").is_file()


def _is_dataset_dict_dir(path: Path) -> bool:
    return (path / "dataset_dict.json").is_file()


def save_dataset(ds: Dataset, path: str | Path) -> Path:
    """Save a dataset to a folder (``save_to_disk`` format); returns the path."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise DataError(f"{path}: exists and is not a folder")
    if path.is_dir() and any(path.iterdir()) and not _is_dataset_dir(path):
        raise DataError(f"{path}: folder is not empty and holds no dataset; refusing to write into it")
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_to_disk(str(path))
    return path


def load_dataset_dir(path: str | Path) -> Dataset:
    """Load a dataset saved by :func:`save_dataset` (or ``Dataset.save_to_disk``)."""
    from datasets import load_from_disk

    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such folder")
    if not path.is_dir():
        raise DataError(f"{path}: not a folder (a saved dataset is a folder)")
    if _is_dataset_dict_dir(path):
        splits = json.loads((path / "dataset_dict.json").read_text()).get("splits", [])
        raise DataError(
            f"{path}: holds several splits ({', '.join(splits)}); give one split's folder, e.g. {path}/{splits[0] if splits else 'test'}"
        )
    if not _is_dataset_dir(path):
        raise DataError(f"{path}: not a saved dataset (no state.json / dataset_info.json)")
    try:
        return load_from_disk(str(path))
    except (FileNotFoundError, ValueError, OSError) as e:
        raise DataError(f"{path}: cannot load dataset ({e})") from None


def load_programs(path: str | Path) -> list[str]:
    """Program texts from a JSONL file (a ``program`` field per line) or a dataset folder."""
    path = Path(path)
    if path.is_dir():
        ds = load_dataset_dir(path)
        if "program" not in ds.column_names:
            raise DataError(f"{path}: dataset has no 'program' column (columns: {ds.column_names})")
        programs = ds["program"]
        for i, p in enumerate(programs):
            if not isinstance(p, str):
                raise DataError(f"{path}: row {i} has no program")
        return list(programs)
    programs = []
    for lineno, row in read_jsonl_lines(path):
        p = row.get("program")
        if not isinstance(p, str):
            raise DataError(f"{path}:{lineno}: missing 'program' string")
        programs.append(p)
    return programs


def import_jsonl(
    path: str | Path, size: int = IMAGE_SIZE, workers: int | None = None, language: str = "csg2d"
) -> Dataset:
    """A dataset from a JSONL file of programs; images are rendered, other fields kept as columns.

    Fields missing on some lines are None there. A line without a ``program`` string, or whose
    program does not render, is an error naming the file and line.
    """
    _check_size(size)
    numbered = read_jsonl_lines(path)
    names: list[str] = []
    for lineno, row in numbered:
        p = row.get("program")
        if not isinstance(p, str):
            raise DataError(f"{path}:{lineno}: missing 'program' string")
        if "image" in row:
            raise DataError(f"{path}:{lineno}: field 'image' is reserved (images are rendered from programs)")
        names.extend(k for k in row if k not in names)
    texts = [row["program"] for _, row in numbered]
    cells, errors = _render_cells(texts, size, workers, language)
    for (lineno, _), e in zip(numbered, errors):
        if e is not None:
            raise ProgramError(f"{path}:{lineno}: {e.message}", e.offset)
    columns = {k: [row.get(k) for _, row in numbered] for k in names}
    columns.setdefault("program", [])
    return _make_dataset(columns, cells)


def export_jsonl(ds: Dataset, path: str | Path) -> Path:
    """Write every column but ``image`` as JSONL (images are re-rendered by :func:`import_jsonl`).

    A dataset with rows that have no program (e.g. imported images) cannot be exported this
    way — its images would be lost; save it with :func:`save_dataset` instead.
    """
    if "program" not in ds.column_names:
        raise DataError(f"dataset has no 'program' column (columns: {ds.column_names})")
    keep = [c for c in ds.column_names if c != "image"]
    rows = ds.select_columns(keep).to_list()
    for i, row in enumerate(rows):
        if not isinstance(row["program"], str):
            raise DataError(
                f"row {i} has no program; export_jsonl writes programs only (images are re-rendered "
                "on import) — save this dataset with save_dataset instead"
            )
    return write_jsonl(rows, path)


def import_image_folder(
    folder: str | Path, size: int = IMAGE_SIZE, threshold: int = DEFAULT_THRESHOLD
) -> tuple[Dataset, list[tuple[str, str]]]:
    """Normalise every image in a folder (top level, sorted by name) into a dataset.

    Columns: ``program`` (None: unknown), ``image`` (see :func:`normalize_image`) and
    ``source`` (the file name). Files that are not images (by extension) or cannot be read are
    skipped and returned as ``(path, reason)`` pairs; they never stop the import. Multi-frame
    files (GIF, TIFF) contribute their first frame.
    """
    _check_size(size)
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: no such folder" if not folder.exists() else f"{folder}: not a folder")
    sources: list[str] = []
    cells: list[dict] = []
    skipped: list[tuple[str, str]] = []
    for path in sorted(folder.iterdir(), key=lambda p: p.name):
        if path.is_dir():
            skipped.append((str(path), "a folder (only the top level is read)"))
            continue
        if path.suffix.lower() not in IMAGE_EXTENSIONS:
            skipped.append((str(path), f"not an image file name (extension {path.suffix or 'none'!r})"))
            continue
        try:
            with Image.open(path) as img:
                img.load()
                arr = normalize_image(img, size, threshold)
        except (OSError, SyntaxError, ValueError, TypeError, EOFError, Image.DecompressionBombError) as e:
            skipped.append((str(path), f"unreadable image ({type(e).__name__}: {e})"))
            continue
        sources.append(path.name)
        cells.append(_image_cell(arr))
    return _make_dataset({"program": [None] * len(sources), "source": sources}, cells), skipped


def _load_named_testset(name: str, size: int) -> Dataset:
    try:
        testsets = importlib.import_module("img2prog.data.testsets")
    except ModuleNotFoundError as e:
        if e.name != "img2prog.data.testsets":
            raise  # a bug inside the module, not its absence
        raise DataError(
            f"{name!r}: no such file or folder (and this install has no named test sets)"
        ) from None
    load = testsets.load_testset
    try:
        params = inspect.signature(load).parameters
        return load(name, size=size) if "size" in params else load(name)
    except (KeyError, ValueError) as e:
        msg = e.args[0] if e.args else str(e)
        raise DataError(f"{name!r} is neither a file, a folder nor a known test set ({msg})") from None


def resolve_targets(spec: str | Path, size: int = IMAGE_SIZE) -> tuple[Dataset, list[tuple[str, str]]]:
    """Targets from a dataset folder, a JSONL of programs, an image file or folder, or a test-set name.

    Returns the dataset and the files skipped while importing images (empty otherwise).
    Resolution order: an existing folder holding a saved dataset → :func:`load_dataset_dir`
    (as saved; ``size`` is not applied); another existing folder → :func:`import_image_folder`;
    an existing ``.jsonl``/``.json`` file → :func:`import_jsonl`; another existing file → one
    normalised image; otherwise a named test set from :mod:`img2prog.data.testsets`.
    """
    path = Path(spec)
    if path.is_dir():
        if _is_dataset_dir(path) or _is_dataset_dict_dir(path):
            return load_dataset_dir(path), []
        return import_image_folder(path, size)
    if path.is_file():
        if path.suffix.lower() in (".jsonl", ".json"):
            return import_jsonl(path, size), []
        try:
            with Image.open(path) as img:
                img.load()
                arr = normalize_image(img, size)
        except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as e:
            raise DataError(f"{path}: neither JSONL (by extension) nor a readable image ({e})") from None
        return _make_dataset({"program": [None], "source": [path.name]}, [_image_cell(arr)]), []
    text = str(spec)
    if os.sep in text or "/" in text or path.suffix:
        raise DataError(f"{spec}: no such file or folder")
    return _load_named_testset(text, size), []


def load_targets(spec: str | Path, size: int = IMAGE_SIZE) -> Dataset:
    """Like :func:`resolve_targets`, warning (not failing) about image files it had to skip."""
    ds, skipped = resolve_targets(spec, size)
    if skipped:
        shown = "; ".join(f"{p}: {why}" for p, why in skipped[:3])
        more = f" (and {len(skipped) - 3} more)" if len(skipped) > 3 else ""
        warnings.warn(f"skipped {len(skipped)} file(s) in {spec}: {shown}{more}", stacklevel=2)
    return ds


__all__ = [
    "DEFAULT_THRESHOLD",
    "IMAGE_EXTENSIONS",
    "IMAGE_SIZE",
    "DataError",
    "encode_png",
    "export_jsonl",
    "import_image_folder",
    "import_jsonl",
    "load_dataset_dir",
    "load_programs",
    "load_targets",
    "normalize_image",
    "programs_to_dataset",
    "read_jsonl",
    "read_jsonl_lines",
    "resolve_targets",
    "save_dataset",
    "write_jsonl",
]
