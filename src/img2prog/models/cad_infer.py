"""Picture → CadQuery program with the native model: the recipe behind
``img2prog infer --model native-cadquery``.

Three stages, each optional after the first, all composed from the search pieces:

1. decode: the greedy program, plus ``samples`` sampled ones (:func:`cad_search.generate_candidates`);
2. choose: build and draw every distinct candidate with the mesh kernel and keep the one whose
   picture agrees best with the input (:func:`cad_search.best_of_n`); with a sandbox ``checker``
   (CadQuery installed) the choice must also build there, else the row's next best is taken;
3. refine: greedy search over the chosen program's numbers and structure against the input
   picture (:func:`cad_refine.refine_choices`), stepping back to the last step the checker builds
   (:func:`cad_refine.settled_programs`).

The input is the model's own kind of picture: the 2×2 multi-view rendering that
``img2prog render --lang cadquery`` writes. Any size is accepted (it is resized to the model's
``image_size``); a photograph or a single view is not something this model has seen.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


class PictureError(ValueError):
    """An input that is not a readable picture (names the file and why)."""


@dataclass
class CadPrediction:
    program: str  # the CadQuery script
    agreement: float  # picture agreement of its own picture with the input (0: it did not build)
    valid: bool  # built by the checker (the sandbox when given, else the mesh kernel)
    logprob: float | None  # the model's log-probability (None after refinement changed it)
    source: str  # "greedy", "sample" or "refined"
    candidates: int  # distinct candidates drawn for the choice

    def to_dict(self) -> dict:
        d = asdict(self)
        d["agreement"] = round(d["agreement"], 6)
        return d


def read_picture(path: str | Path, size: int) -> np.ndarray:
    """One picture file as grey (size, size) uint8; raises :class:`PictureError`."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.load()
            if im.mode in ("RGBA", "LA", "P"):  # transparent background → white, as the renderer draws it
                im = im.convert("RGBA")
                bg = Image.new("RGBA", im.size, (255, 255, 255, 255))
                im = Image.alpha_composite(bg, im)
            grey = im.convert("L")
    except (OSError, UnidentifiedImageError) as e:
        raise PictureError(f"{path}: not a readable image ({e})") from None
    w, h = grey.size
    if w < 8 or h < 8:
        raise PictureError(f"{path}: {w}×{h} is too small for a 2×2 multi-view picture")
    if w != h:
        raise PictureError(f"{path}: {w}×{h} is not square; expected the 2×2 multi-view picture of "
                           "`img2prog render --lang cadquery`")
    if w != size:
        # BOX averages when shrinking (like the renderer's coverage), BILINEAR when enlarging
        grey = grey.resize((size, size), Image.BOX if w > size else Image.BILINEAR)
    return np.asarray(grey, dtype=np.uint8)


def collect_pictures(specs: Sequence[str], size: int, limit: int | None = None,
                     warn=None, error=None) -> tuple[list[str], np.ndarray, int]:
    """Pictures from files, folders of images and ``.npz`` files with an ``images`` array
    (e.g. ``python -m img2prog.data.cad_dataset testset``): (names, (N, size, size) uint8,
    failures). An unreadable file in a folder is skipped (reported through ``warn``); an input
    named directly that cannot be read is a failure (through ``error``) while the others go on."""
    warn = warn or (lambda m: None)
    names: list[str] = []
    pics: list[np.ndarray] = []
    error = error or warn
    failures = 0
    for spec in specs:
        p = Path(spec)
        got_n, got_p = [], []
        try:
            if p.is_dir():
                files = sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
                if not files:
                    raise PictureError(f"{p}: no image files ({', '.join(IMAGE_SUFFIXES)})")
                for f in files[:limit]:
                    try:
                        got_p.append(read_picture(f, size))
                        got_n.append(str(f))
                    except PictureError as e:
                        warn(f"skipped {e}")
            elif p.suffix == ".npz":
                try:
                    with np.load(p, allow_pickle=False) as z:
                        arr = z["images"]
                except (OSError, KeyError, ValueError) as e:
                    raise PictureError(f"{p}: not an .npz with an 'images' array ({e})") from None
                arr = np.asarray(arr)[:limit]
                if arr.ndim == 4:
                    arr = arr[..., 0]
                if arr.ndim != 3 or arr.dtype != np.uint8 or arr.shape[1:] != (size, size):
                    raise PictureError(f"{p}: 'images' is {arr.dtype} {arr.shape}; expected (N, {size}, {size}) uint8")
                got_p += list(arr)
                got_n += [f"{p}[{i}]" for i in range(len(arr))]
            elif p.is_file():
                got_p.append(read_picture(p, size))
                got_n.append(str(p))
            else:
                raise PictureError(f"{spec}: no such file or folder")
        except PictureError as e:
            error(str(e))
            failures += 1
            continue
        names += got_n
        pics += got_p
    arr = np.stack(pics) if pics else np.zeros((0, size, size), np.uint8)
    return names, arr, failures


def predict(model, pictures: np.ndarray, samples: int = 0, refine_rounds: int = 0, donors: int = 8,
            top: int = 1, temperature: float = 1.0, top_p: float = 0.95, seed: int = 0, batch: int = 16,
            workers: int = 1, checker=None, progress=None) -> list[CadPrediction]:
    """Per picture, the program the model and the search make of it (see the module docstring).

    ``checker``: an executor every answer must build in (the sandbox); None checks with the
    mesh kernel only. ``top``/``donors``: how many best-agreeing candidates refinement starts
    from / takes whole steps from. ``progress``: called after each refined start."""
    from img2prog.lang.cadquery.meshkernel import MeshExecutor
    from img2prog.models.cad_refine import refine_choices, settled_programs
    from img2prog.models.cad_search import best_of_n, generate_candidates, render_programs

    pictures = np.asarray(pictures)
    if pictures.ndim == 4:
        pictures = pictures[..., 0]
    if pictures.ndim != 3 or pictures.shape[1:] != (model.config.image_size,) * 2:
        raise ValueError(f"pictures must be (N, {model.config.image_size}, {model.config.image_size}); "
                         f"got {pictures.shape}")
    if len(pictures) == 0:
        return []
    cands = generate_candidates(model, pictures, samples=samples, temperature=temperature, top_p=top_p,
                                batch=batch, seed=seed)
    mesh = MeshExecutor()
    size = pictures.shape[-1]
    drawn = render_programs([c.program for row in cands for c in row], mesh, size)
    verdicts: dict[str, bool] = {}
    choices = best_of_n(pictures, cands, mesh, size, pictures=drawn, verify=checker, verdicts=verdicts)
    out = []
    for row, c in zip(cands, choices):
        cand = row[c.index]
        ok = bool(np.isfinite(c.score))
        out.append(CadPrediction(c.program, float(c.score) if ok else 0.0, ok, cand.logprob, cand.source, c.built))
    if refine_rounds <= 0:
        return out
    best = refine_choices(pictures, choices, cands, rounds=refine_rounds, top=top, n_donors=donors,
                          workers=workers, progress=progress, rows=[i for i, p in enumerate(out) if p.valid])
    rows = sorted(best)
    refined = [best[i] for i in rows]
    for i, r, p in zip(rows, refined, settled_programs(refined, [out[i].program for i in rows], checker, verdicts)):
        if p == out[i].program:
            continue
        score = r.path_scores[r.path.index(p)]
        if score > out[i].agreement:
            out[i] = CadPrediction(p, float(score), True, None, "refined", out[i].candidates)
    return out
