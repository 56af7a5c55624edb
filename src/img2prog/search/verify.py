"""The rendering verifier: exact scores of programs against one target image.

Everything a search strategy decides in the end is decided here, with the renderer of SPEC §1
(pixel-identical), never with an approximation. The speed comes from the renderer's
geometry memo: a local edit changes one subtree, so every other subtree — and every left-fold
prefix of an operation's operands before the edited one — is looked up instead of recomputed
(``tests/search/test_verify.py`` checks the pixels against the plain recipe anyway).

Score: IoU of black pixels (1.0 when both images are blank). Ties between equal scores go to
the smaller program (``num_nodes``), then to the higher model log-likelihood.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import shapely

from img2prog.lang.csg2d import rendering
from img2prog.lang.csg2d.ast import Program, num_nodes
from img2prog.lang.csg2d.parser import parse
from img2prog.lang.errors import ProgramError, RenderError

# --------------------------------------------------------------------------------------
# Targets and scores.
# --------------------------------------------------------------------------------------

def black_mask(image: np.ndarray) -> np.ndarray:
    """Boolean (S, S) mask, True where ``image`` is black.

    ``image`` is (S, S) or (S, S, C) uint8. For images made by the renderer (values 0 and 255
    only) this is exactly "value 0" of SPEC §2; other images are thresholded at mid-grey.
    """
    image = np.asarray(image)
    if image.ndim == 3:
        image = image.mean(axis=2)
    if image.ndim != 2 or image.shape[0] != image.shape[1]:
        raise ValueError(f"target image must be square (S, S) or (S, S, C), got shape {image.shape}")
    return image < 128


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two boolean masks; 1.0 when both are empty."""
    union = np.count_nonzero(a | b)
    return 1.0 if union == 0 else np.count_nonzero(a & b) / union


@dataclass
class Target:
    """One target image, as the verifier needs it."""

    mask: np.ndarray  # (S, S) bool, True = black
    count: int = field(init=False)  # black pixels

    def __post_init__(self) -> None:
        self.mask = np.ascontiguousarray(self.mask, dtype=bool)
        self.count = int(np.count_nonzero(self.mask))

    @classmethod
    def from_image(cls, image: np.ndarray) -> Target:
        return cls(black_mask(image))

    @classmethod
    def from_program(cls, program: Program | str, size: int = rendering.DEFAULT_SIZE) -> Target:
        return cls(rendering.mask(program, size))

    @property
    def size(self) -> int:
        return self.mask.shape[0]

    def score(self, mask: np.ndarray) -> float:
        return iou(mask, self.mask)


# --------------------------------------------------------------------------------------
# Exact rendering with memoised subtrees.
# --------------------------------------------------------------------------------------

class ExactRenderer:
    """Exact masks of csg2d programs at one size.

    :func:`img2prog.lang.csg2d.rendering.geometry` memoises operation subtrees and left-fold
    prefixes process-wide (keyed by AST nodes), so a local edit re-runs only the GEOS
    operations on the path from the edited node to the root, and only from the edited operand
    on. Memoisation changes speed, never pixels: it returns the very geometry the reference
    computes.
    """

    def __init__(self, size: int = rendering.DEFAULT_SIZE):
        self.size = size

    def gray(self, program: Program) -> np.ndarray:
        """(S, S) uint8, identical to :func:`rendering.render_gray`; RenderError on GEOS failure."""
        try:
            geom = rendering.geometry(program)
        except shapely.errors.GEOSException as e:
            raise RenderError(f"geometry engine failed: {e}") from None
        return rendering.rasterize(geom, self.size)

    def mask(self, program: Program) -> np.ndarray:
        return self.gray(program) == 0


# --------------------------------------------------------------------------------------
# Evaluated candidates.
# --------------------------------------------------------------------------------------

@dataclass
class Evaluated:
    """A program checked by the verifier.

    ``ast``/``mask`` are None when the text does not parse or the geometry engine fails; such
    a candidate has ``iou = -1`` so that any renderable program ranks above it.
    """

    text: str  # canonical text when it parses, else the text as proposed
    ast: Program | None
    mask: np.ndarray | None
    iou: float
    perfect: bool
    size: int  # num_nodes (0 for the empty program and for failures)
    logprob: float | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.ast is not None

    def key(self) -> tuple:
        """Sort key, larger is better: IoU, then smaller program, then likelihood."""
        lp = self.logprob if self.logprob is not None else -np.inf
        return (self.iou, -self.size, lp)


class Verifier:
    """Scores programs against one :class:`Target`, exactly, with a per-target cache.

    ``evaluations`` counts distinct programs rendered (cache misses): the work measure that
    search budgets and reports use.
    """

    def __init__(self, target: Target, renderer: ExactRenderer | None = None):
        self.target = target
        self.renderer = renderer if renderer is not None else ExactRenderer(target.size)
        if self.renderer.size != target.size:
            raise ValueError(f"renderer size {self.renderer.size} != target size {target.size}")
        self.evaluations = 0
        self._cache: dict[str, Evaluated] = {}

    def evaluate_ast(self, program: Program, logprob: float | None = None) -> Evaluated:
        text = str(program)
        hit = self._cache.get(text)
        if hit is None:
            self.evaluations += 1
            try:
                m = self.renderer.mask(program)
            except RenderError as e:
                hit = Evaluated(text, None, None, -1.0, False, 0, error=str(e))
            else:
                hit = Evaluated(
                    text, program, m, self.target.score(m), bool(np.array_equal(m, self.target.mask)),
                    num_nodes(program),
                )
            self._cache[text] = hit
        if logprob is not None and hit.logprob != logprob:
            # The cache is keyed by program; the log-likelihood belongs to the proposal.
            hit = Evaluated(hit.text, hit.ast, hit.mask, hit.iou, hit.perfect, hit.size, logprob, hit.error)
        return hit

    def evaluate(self, text: str, logprob: float | None = None) -> Evaluated:
        """Score program text; text that does not parse comes back as a failed Evaluated."""
        try:
            program = parse(text)
        except ProgramError as e:
            return Evaluated(text, None, None, -1.0, False, 0, logprob, error=str(e))
        return self.evaluate_ast(program, logprob)
