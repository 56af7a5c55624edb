"""Recombination: assemble one program from the parts of several.

On complex targets a model's samples tend to be right in different places: one draws the left
group of shapes well, another the ring at the top. Most programs are a union of parts at the
root, perhaps minus a few cuts, so the parts can be pooled across all proposals (and
refinement's results) and re-chosen:

1. collect the root-level union operands of every program (a program that is not a union is
   one part; the minuend of a root difference is treated as the program it cuts from);
2. forward selection: start from the blank canvas and keep adding the part that raises the
   IoU with the target most, until none does;
3. collect the root-level cuts (the subtracted operands of root differences) and add those
   that raise the IoU the same way.

Scores use the approximate raster algebra (parts are memoised masks, so this costs a few
milliseconds); the result is only a new starting point — it is scored exactly and refined
like any other.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from img2prog.lang.csg2d.ast import Difference, Empty, Program, Union
from img2prog.search.raster import Approx


def _parts(program: Program) -> tuple[list[Program], list[Program]]:
    """(union parts, root cuts) of a program."""
    cuts: list[Program] = []
    node = program
    if isinstance(node, Difference):
        cuts = list(node.operands[1:])
        node = node.operands[0]
    parts = list(node.operands) if isinstance(node, Union) else [node]
    return parts, cuts


def _iou(m: np.ndarray, t: np.ndarray, t_count: int) -> float:
    inter = np.count_nonzero(m & t)
    union = np.count_nonzero(m) + t_count - inter
    return 1.0 if union == 0 else inter / union


def recombine(programs: Iterable[Program], approx: Approx, max_parts: int = 64) -> Program | None:
    """The best program assembled greedily from the parts of ``programs`` (None if there are
    no parts). ``approx`` holds the target and the mask memo."""
    parts: dict[str, Program] = {}
    cuts: dict[str, Program] = {}
    for p in programs:
        if isinstance(p, Empty):
            continue
        ps, cs = _parts(p)
        for q in ps:
            parts.setdefault(str(q), q)
        for q in cs:
            cuts.setdefault(str(q), q)
    if not parts:
        return None
    t = approx.target.mask
    tc = approx.target.count
    pool = list(parts.values())[:max_parts]
    masks = [approx.mask(q) for q in pool]
    cur = np.zeros_like(t)
    score = _iou(cur, t, tc)
    chosen: list[int] = []
    while True:
        best, best_i = score, None
        for i, m in enumerate(masks):
            if i not in chosen:
                s = _iou(cur | m, t, tc)
                if s > best + 1e-12:
                    best, best_i = s, i
        if best_i is None:
            break
        chosen.append(best_i)
        cur = cur | masks[best_i]
        score = best
    if not chosen:
        return None
    cut_pool = list(cuts.values())[:max_parts]
    cut_masks = [approx.mask(q) for q in cut_pool]
    taken: list[int] = []
    while True:
        best, best_i = score, None
        for i, m in enumerate(cut_masks):
            if i not in taken:
                s = _iou(cur & ~m, t, tc)
                if s > best + 1e-12:
                    best, best_i = s, i
        if best_i is None:
            break
        taken.append(best_i)
        cur = cur & ~cut_masks[best_i]
        score = best
    body = pool[chosen[0]] if len(chosen) == 1 else Union(tuple(pool[i] for i in chosen))
    if taken:
        return Difference((body, *(cut_pool[i] for i in taken)))
    return body
