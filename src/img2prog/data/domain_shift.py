"""The domain-shift target set: pictures that no csg2d program need render exactly.

The standard test sets come from the same generator family as the training data. This set
does not: it holds

- **glyphs** — capital letters and digits in Pillow's built-in bitmap font
  (``ImageFont.load_default_imagefont``), drawn small and scaled up with nearest-neighbour
  resampling, so the strokes are blocky but not aligned to the csg2d grid;
- **silhouettes** — simple shapes drawn with Pillow's primitives: ellipses, regular polygons,
  stars, arrows, rings, crescents, crosses and hearts, at seeded positions and sizes.

Everything is drawn in 1-bit mode (no anti-aliasing) and is pure black (0) on white (255),
the csg2d convention, as RGB images like the other target sets. The set is deterministic: the
bitmap font ships inside Pillow (no FreeType rasterisation differences) and the silhouettes'
parameters come from a fixed seed. Rows have ``program`` None (there is no ground truth), plus
``source`` (``glyph`` or ``silhouette``) and ``kind`` (e.g. ``glyph:A``, ``star:5``).

Score a model on it with the reference metrics against the images (F1, pixel accuracy) and IoU.
"""

from __future__ import annotations

import math
import random
import string
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

GLYPHS = string.ascii_uppercase + string.digits
SILHOUETTE_KINDS = ("ellipse", "polygon", "star", "arrow", "ring", "crescent", "cross", "heart")
SILHOUETTES_PER_KIND = 4
SEED = 20241122
NAME = "domain-shift"


# ---- glyphs ---------------------------------------------------------------------------------


def _glyph_ink(char: str) -> np.ndarray:
    """``char`` in Pillow's bitmap font as a bool array cropped to its ink (True = ink)."""
    font = ImageFont.load_default_imagefont()
    small = Image.new("1", (32, 32), 1)
    ImageDraw.Draw(small).text((8, 8), char, font=font, fill=0)
    ink = np.asarray(small) == 0
    ys, xs = np.nonzero(ink)
    if len(ys) == 0:
        raise ValueError(f"the default font draws nothing for {char!r}")
    return ink[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]


def draw_glyph(char: str, size: int = 256) -> np.ndarray:
    """``char`` in Pillow's bitmap font, cropped to its ink, scaled up (nearest) to fill about
    70% of the canvas and centred. (S, S) uint8, 0 = black."""
    crop = _glyph_ink(char)
    h, w = crop.shape
    scale = max(1, int(0.7 * size / max(h, w)))
    big = np.kron(crop, np.ones((scale, scale), dtype=bool))  # nearest-neighbour upscaling
    canvas = np.zeros((size, size), dtype=bool)
    H, W = big.shape
    top, left = (size - H) // 2, (size - W) // 2
    canvas[top : top + H, left : left + W] = big
    return np.where(canvas, 0, 255).astype(np.uint8)


# ---- silhouettes ----------------------------------------------------------------------------


def _regular(cx: float, cy: float, r: float, n: int, phase: float) -> list[tuple[float, float]]:
    return [(cx + r * math.cos(phase + 2 * math.pi * k / n), cy + r * math.sin(phase + 2 * math.pi * k / n))
            for k in range(n)]


def _star(cx: float, cy: float, r: float, n: int, phase: float, inner: float) -> list[tuple[float, float]]:
    pts = []
    for k in range(2 * n):
        rr = r if k % 2 == 0 else r * inner
        a = phase + math.pi * k / n
        pts.append((cx + rr * math.cos(a), cy + rr * math.sin(a)))
    return pts


def _rotate(points, cx, cy, angle):
    c, s = math.cos(angle), math.sin(angle)
    return [(cx + (x - cx) * c - (y - cy) * s, cy + (x - cx) * s + (y - cy) * c) for x, y in points]


def draw_silhouette(kind: str, rng: random.Random, size: int = 256) -> tuple[np.ndarray, str]:
    """One silhouette of ``kind`` with parameters from ``rng``; returns (image, detailed kind).

    Shapes are designed on a unit canvas and scaled to ``size``, so every size draws the same
    shape (up to rasterisation).
    """
    u = size  # design units: fractions of the canvas
    cx, cy = u * rng.uniform(0.4, 0.6), u * rng.uniform(0.4, 0.6)
    r = u * rng.uniform(0.22, 0.36)
    phase = rng.uniform(0, 2 * math.pi)
    img = Image.new("1", (size, size), 1)
    d = ImageDraw.Draw(img)
    detail = kind
    if kind == "ellipse":
        rx, ry = r, r * rng.uniform(0.45, 0.95)
        pts = [(cx + rx * math.cos(t) , cy + ry * math.sin(t)) for t in np.linspace(0, 2 * math.pi, 96, endpoint=False)]
        d.polygon(_rotate(pts, cx, cy, phase), fill=0)
    elif kind == "polygon":
        n = rng.choice((3, 5, 6, 7))
        d.polygon(_regular(cx, cy, r, n, phase), fill=0)
        detail = f"polygon:{n}"
    elif kind == "star":
        n = rng.choice((4, 5, 6, 8))
        d.polygon(_star(cx, cy, r, n, phase, rng.uniform(0.35, 0.55)), fill=0)
        detail = f"star:{n}"
    elif kind == "arrow":
        L, w, hw = r * 2, r * rng.uniform(0.25, 0.4), r * rng.uniform(0.6, 0.9)
        hl = L * rng.uniform(0.3, 0.45)
        x0 = cx - L / 2
        pts = [(x0, cy - w / 2), (x0 + L - hl, cy - w / 2), (x0 + L - hl, cy - hw), (x0 + L, cy),
               (x0 + L - hl, cy + hw), (x0 + L - hl, cy + w / 2), (x0, cy + w / 2)]
        d.polygon(_rotate(pts, cx, cy, phase), fill=0)
    elif kind == "ring":
        d.ellipse((cx - r, cy - r, cx + r, cy + r), fill=0)
        ri = r * rng.uniform(0.4, 0.7)
        d.ellipse((cx - ri, cy - ri, cx + ri, cy + ri), fill=1)
    elif kind == "crescent":
        d.ellipse((cx - r, cy - r, cx + r, cy + r), fill=0)
        off = r * rng.uniform(0.35, 0.6)
        ox, oy = cx + off * math.cos(phase), cy + off * math.sin(phase)
        d.ellipse((ox - r, oy - r, ox + r, oy + r), fill=1)
    elif kind == "cross":
        w = r * rng.uniform(0.3, 0.5)
        arms = [(-w, -r), (w, -r), (w, -w), (r, -w), (r, w), (w, w), (w, r), (-w, r), (-w, w), (-r, w), (-r, -w), (-w, -w)]
        d.polygon(_rotate([(cx + a, cy + b) for a, b in arms], cx, cy, phase), fill=0)
    elif kind == "heart":
        s = r / 16.5  # the classic parametric heart spans about ±16.5 units
        pts = [(cx + s * 16 * math.sin(t) ** 3,
                cy - s * (13 * math.cos(t) - 5 * math.cos(2 * t) - 2 * math.cos(3 * t) - math.cos(4 * t)))
               for t in np.linspace(0, 2 * math.pi, 128, endpoint=False)]
        d.polygon(pts, fill=0)
    else:
        raise ValueError(f"unknown silhouette kind {kind!r}; choose one of: {', '.join(SILHOUETTE_KINDS)}")
    return np.where(np.asarray(img), 255, 0).astype(np.uint8), detail


# ---- the set --------------------------------------------------------------------------------


def domain_shift_items(size: int = 256) -> list[tuple[np.ndarray, str, str]]:
    """(image (S, S) uint8, source, kind) for every item, in a fixed order."""
    items = [(draw_glyph(c, size), "glyph", f"glyph:{c}") for c in GLYPHS]
    rng = random.Random(SEED)
    for kind in SILHOUETTE_KINDS:
        for _ in range(SILHOUETTES_PER_KIND):
            image, detail = draw_silhouette(kind, rng, size)
            items.append((image, "silhouette", detail))
    return items


@lru_cache(maxsize=4)
def _cached(size: int):
    from datasets import Dataset, Features, Value
    from datasets import Image as ImageFeature

    items = domain_shift_items(size)
    features = Features({"program": Value("string"), "image": ImageFeature(),
                         "source": Value("string"), "kind": Value("string")})
    return Dataset.from_dict(
        {"program": [None] * len(items),
         "image": [Image.fromarray(np.repeat(im[..., None], 3, axis=-1), "RGB") for im, _, _ in items],
         "source": [s for _, s, _ in items], "kind": [k for _, _, k in items]},
        features=features,
    )


def load_domain_shift(size: int = 256):
    """The domain-shift set as a ``datasets.Dataset``: ``program`` (None), ``image`` (RGB,
    ``size``×``size``, black on white), ``source`` and ``kind``. 36 glyphs + 32 silhouettes."""
    if size < 32:
        raise ValueError(f"size {size} is too small to draw the domain-shift set (≥ 32)")
    return _cached(int(size))


def domain_shift_images(size: int = 256) -> np.ndarray:
    """The set's images as an (N, S, S, 3) uint8 array."""
    return np.stack([np.repeat(im[..., None], 3, axis=-1) for im, _, _ in domain_shift_items(size)])


# ---- an unlabeled pool of the same *kind* of pictures, for self-training and RL --------------

# Characters of Pillow's bitmap font that the test set does not use: a pool built from these
# never shows a model any test glyph, at any scale or position.
POOL_GLYPHS = string.ascii_lowercase + "#$%&*+<>?@[]{}~^=/\\|!"


def draw_glyph_at(char: str, scale_frac: float, dx: float, dy: float, size: int = 256) -> np.ndarray:
    """Like :func:`draw_glyph`, but the glyph fills ``scale_frac`` of the canvas and sits at an
    offset of (``dx``, ``dy``) × the free margin from the centre (each in [-1, 1])."""
    crop = _glyph_ink(char)
    h, w = crop.shape
    scale = max(1, int(scale_frac * size / max(h, w)))
    big = np.kron(crop, np.ones((scale, scale), dtype=bool))[:size, :size]
    H, W = big.shape
    top = int(round((size - H) / 2 * (1 + dy)))
    left = int(round((size - W) / 2 * (1 + dx)))
    canvas = np.zeros((size, size), dtype=bool)
    canvas[top : top + H, left : left + W] = big
    return np.where(canvas, 0, 255).astype(np.uint8)


def domain_shift_pool(n: int, seed: int = 0, size: int = 256, glyph_share: float = 0.5) -> np.ndarray:
    """``n`` unlabeled pictures of the domain-shift *kind* — glyphs and silhouettes — for
    self-training or RL, as (n, S, S, 3) uint8 black on white.

    Disjoint from the test set by construction where it can be and by check where it cannot:
    glyphs come only from :data:`POOL_GLYPHS` (characters the test set never draws), at random
    scales and offsets; silhouettes use the same shape kinds with parameters from ``seed``
    (never the test set's seed), and any picture equal to a test picture is skipped.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if not 0 <= glyph_share <= 1:
        raise ValueError(f"glyph_share must be in [0, 1], got {glyph_share}")
    if seed == SEED:
        raise ValueError(f"seed {seed} is the test set's own seed; pick another")
    test_keys = {im.tobytes() for im, _, _ in domain_shift_items(size)}
    rng = random.Random(seed)
    out: list[np.ndarray] = []
    seen: set[bytes] = set()
    tries = 0
    while len(out) < n:
        tries += 1
        if tries > 50 * max(n, 1):
            raise RuntimeError(f"could not draw {n} distinct pool pictures (got {len(out)})")
        if rng.random() < glyph_share:
            image = draw_glyph_at(rng.choice(POOL_GLYPHS), rng.uniform(0.45, 0.95),
                                  rng.uniform(-1, 1), rng.uniform(-1, 1), size)
        else:
            image, _ = draw_silhouette(rng.choice(SILHOUETTE_KINDS), rng, size)
        key = image.tobytes()
        if key in test_keys or key in seen or image.min() == 255:
            continue
        seen.add(key)
        out.append(image)
    if not out:
        return np.zeros((0, size, size, 3), np.uint8)
    return np.repeat(np.stack(out)[..., None], 3, axis=-1)
