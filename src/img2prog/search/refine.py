"""Refinement: verifier-guided local search from a starting program.

One step:

1. list the local edits (:func:`img2prog.search.edits.local_edits`: ±1 on numbers, ±45° on
   angles, diagonal moves, remove an operand, swap union/difference, move a subtree) and rank
   them with the approximate raster algebra (:mod:`img2prog.search.raster`), tens of
   microseconds each;
2. render the best-ranked few *exactly* and take the best of them if it beats the current
   program — higher IoU, or equal IoU with fewer nodes (so redundant operands get dropped).
   Only exact scores are ever compared, so refinement never returns anything worse than its
   start;
3. if none helps, try pairs of steps on one primitive (shrink *and* move a circle), then
   regroupings (move an operand to another operation), then adding a primitive where the
   error is largest (:mod:`img2prog.search.additions`), ranked
   and confirmed the same way. Additions come last because they always find *something* that
   helps a little, and accepting that early clutters the program where two small steps would
   have fixed it;
4. stop at a fixed point (nothing confirmed better), a pixel-perfect match, or the budget.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from img2prog.lang.csg2d.ast import EMPTY
from img2prog.search.additions import AdditionConfig, Additions
from img2prog.search.edits import LOCAL_MOVES, PAIR_MOVES, STRUCTURE_MOVES, Edit, local_edits, move_edits
from img2prog.search.raster import Approx, StepContext
from img2prog.search.verify import Evaluated, Target, Verifier


@dataclass
class RefineConfig:
    moves: tuple[str, ...] = (*LOCAL_MOVES, *PAIR_MOVES, *STRUCTURE_MOVES, "add")
    confirm: int = 4  # edits rendered exactly per round
    max_confirm: int = 16  # exact renders per step before the step gives up
    margin: float = 0.01  # confirm only edits whose approximate IoU is within this of the current one
    # Endgame: when no ranked edit helps, render up to this many first- and second-ring edits
    # exactly (within the margin). Near a match, the few pixels that still differ are below
    # what the approximation can see, so only exact renders can find the last step.
    exhaustive: int = 0
    # An addition must gain at least this much IoU: smaller gains come from slivers along
    # boundaries, and accepting them piles up junk primitives that later edits must work around.
    min_add_gain: float = 0.002
    additions: AdditionConfig = field(default_factory=AdditionConfig)
    max_steps: int | None = None
    # Resolution of the approximate ranking (pixels per side). 128 keeps a ±1 edit a strip 8
    # pixels wide — plenty to rank by — at a quarter of the pixels of 256. Targets whose size
    # is not a multiple of it are ranked at full size.
    rank_size: int = 128


def downsample(mask: np.ndarray, size: int) -> np.ndarray:
    """A boolean mask at ``size`` pixels per side: black where most of each block is black
    (the area rule a rasteriser applies). ``mask``'s side must be a multiple of ``size``."""
    s = mask.shape[0]
    if s == size:
        return mask
    f = s // size
    return mask.reshape(size, f, size, f).mean(axis=(1, 3), dtype=np.float32) >= 0.5


@dataclass
class RefineOutcome:
    best: Evaluated
    steps: int = 0  # accepted edits
    evaluations: int = 0  # exact renders made
    trace: list[tuple[float, float]] = field(default_factory=list)  # (seconds, IoU) after each step


# Recent seconds per program node to list and rank each tier of edits (shared by all refiners
# in the process; it only decides whether a tier still fits before a deadline).
_TIER_COST: dict[int, float] = {}


def better(a: Evaluated, b: Evaluated) -> bool:
    """a beats b: higher exact IoU, or the same with fewer nodes."""
    return (a.iou, -a.size) > (b.iou, -b.size)


class Refiner:
    """Hill climbing on exact IoU for one target (see the module docstring)."""

    def __init__(self, verifier: Verifier, config: RefineConfig | None = None):
        self.verifier = verifier
        self.config = config or RefineConfig()
        size = verifier.target.size
        # Ranking runs at a reduced resolution (exact confirmation stays at full size).
        self.rank_size = size if size % self.config.rank_size else min(size, self.config.rank_size)
        rank_target = Target(downsample(verifier.target.mask, self.rank_size))
        self.approx = Approx(rank_target)
        self.additions = Additions(rank_target.mask, self.config.additions)

    def run(
        self, start: Evaluated, deadline: float | None = None, max_evaluations: int | None = None
    ) -> RefineOutcome:
        t0 = time.perf_counter()
        ev0 = self.verifier.evaluations

        def out_of_budget() -> bool:
            if deadline is not None and time.perf_counter() >= deadline:
                return True
            return max_evaluations is not None and self.verifier.evaluations - ev0 >= max_evaluations

        def time_left() -> float:
            return float("inf") if deadline is None else deadline - time.perf_counter()

        # A start that does not render is no start: begin from the blank canvas instead.
        cur = start if start.ok else self.verifier.evaluate_ast(EMPTY)
        out = RefineOutcome(cur)
        while not cur.perfect and not out_of_budget():
            if self.config.max_steps is not None and out.steps >= self.config.max_steps:
                break
            nxt = self._step(cur, out_of_budget, time_left)
            if nxt is None:
                break  # fixed point
            cur = nxt
            out.steps += 1
            out.trace.append((time.perf_counter() - t0, cur.iou))
        out.best = cur
        out.evaluations = self.verifier.evaluations - ev0
        return out

    def _step(self, cur: Evaluated, out_of_budget: Callable[[], bool], time_left: Callable[[], float]) -> Evaluated | None:
        ctx = StepContext(self.approx, cur.ast)
        moves = self.config.moves
        tiers = [  # (edits, minimum IoU gain)
            (lambda: local_edits(cur.ast, tuple(m for m in moves if m in LOCAL_MOVES)), 0.0),
            (lambda: local_edits(cur.ast, tuple(m for m in moves if m in PAIR_MOVES)), 0.0),
            (lambda: move_edits(cur.ast) if "move" in moves else [], 0.0),
            (lambda: self.additions.edits(cur.ast, downsample(cur.mask, self.rank_size), ctx) if "add" in moves else [],
             self.config.min_add_gain),
        ]
        size = max(cur.size, 1)
        for i, (make, min_gain) in enumerate(tiers):
            # Listing and ranking a tier cannot be interrupted; skip it when it is not expected
            # to finish in time (its recent cost per program node, process-wide), so the
            # deadline is overshot by little.
            if out_of_budget() or time_left() < _TIER_COST.get(i, 0.0) * size:
                return None
            t = time.perf_counter()
            edits = make()
            scores = ctx.score_all(edits) if edits else np.zeros(0)
            cost = (time.perf_counter() - t) / size
            _TIER_COST[i] = cost if i not in _TIER_COST else 0.7 * _TIER_COST[i] + 0.3 * cost
            found = self._confirm(cur, ctx, edits, scores, out_of_budget)
            if found is not None and found.iou >= cur.iou + min_gain:
                return found
        if self.config.exhaustive and not out_of_budget():
            ring = local_edits(cur.ast, tuple(m for m in moves if m in LOCAL_MOVES or m in PAIR_MOVES))
            return self._confirm(cur, ctx, ring, ctx.score_all(ring), out_of_budget, limit=self.config.exhaustive)
        return None

    def _confirm(
        self,
        cur: Evaluated,
        ctx: StepContext,
        edits: list[Edit],
        scores: np.ndarray,
        out_of_budget: Callable[[], bool],
        limit: int | None = None,
    ) -> Evaluated | None:
        """Given the edits' approximate scores, render the best ``limit`` (default
        ``max_confirm``) exactly in rounds of ``confirm``; return the best of the first round
        that improves on ``cur``."""
        if not edits:
            return None
        cfg = self.config
        # Best first; among equal scores, the edit leaving the smaller program first.
        growth = np.array([e.growth for e in edits])
        order = np.lexsort((growth, -scores))
        floor = ctx.current_score - cfg.margin
        order = [i for i in order[: limit or cfg.max_confirm] if scores[i] >= floor]
        for start in range(0, len(order), cfg.confirm):
            best = None
            for i in order[start : start + cfg.confirm]:
                if out_of_budget():
                    return best if best is not None and better(best, cur) else None
                ev = self.verifier.evaluate_ast(edits[i].apply(cur.ast))
                if ev.ok and (best is None or better(ev, best)):
                    best = ev
            if best is not None and better(best, cur):
                return best
        return None


def refine(
    verifier: Verifier,
    start: Evaluated,
    deadline: float | None = None,
    config: RefineConfig | None = None,
    max_evaluations: int | None = None,
) -> RefineOutcome:
    """Refine ``start`` against the verifier's target (see the module docstring)."""
    return Refiner(verifier, config).run(start, deadline, max_evaluations)
