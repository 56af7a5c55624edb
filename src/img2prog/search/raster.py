"""Approximate raster algebra: score thousands of local edits per second, on boolean masks.

Exact rendering (GEOS boolean operations, then one Pillow polygon fill) costs about a
millisecond per program. Refinement looks at a hundred or more edits per step, so it ranks
them first with a cheap stand-in and sends only the best few to the exact verifier:

- each *primitive* is rasterised once, exactly (same geometry, same Pillow fill), and cached
  cropped to its bounding box;
- an *operation* is the pixel-wise boolean algebra of its operands' masks: union = OR,
  difference = first AND NOT (OR of the rest). This is not the SPEC recipe (which fills the
  final polygon once), so pixels along boundaries can differ — about 20 pixels of 65,536 for
  unions and 60 where differences cut through a shape. That is small next to what a ±1 edit
  changes (a 16-pixel-wide strip), which is why it is good enough to rank with and never used
  to decide;
- a *slot* is "the node at this path": because every pixel of the root is a boolean function
  of the same pixel of that node, the root after replacing the node by a mask ``x`` is
  ``(x AND P) OR (NOT x AND Q)``, with ``P``/``Q`` the root when the node is all black/all
  white. Both are computed once per program in one top-down pass; then a candidate's IoU
  needs four pixel counts inside the candidate's bounding box only (outside it the root
  equals ``Q``). A ±1 edit of a small circle is scored from a few thousand pixels instead of
  re-rendering 65,536.
"""

from __future__ import annotations

import math
from collections import OrderedDict

import numpy as np

from img2prog.lang.csg2d import rendering
from img2prog.lang.csg2d.ast import Circle, Difference, Empty, Program, Quad, Union
from img2prog.search.edits import APPEND, REPLACE, WRAP_UNION, Edit, node_at
from img2prog.search.verify import Target

Path = tuple[int, ...]


class Crop:
    """A boolean mask known to be False outside rows y0:y0+h and columns x0:x0+w.

    ``weights`` is the same mask as float64, made on first use and kept: slot scoring with it is
    one BLAS-backed contraction instead of four boolean counts (see :meth:`Slot.score`).
    Primitive crops are cached and scored many times, so the copy pays for itself.
    """

    __slots__ = ("_weights", "mask", "x0", "y0")

    def __init__(self, y0: int, x0: int, mask: np.ndarray):
        self.y0 = y0
        self.x0 = x0
        self.mask = mask
        self._weights: np.ndarray | None = None

    @property
    def empty(self) -> bool:
        return self.mask.size == 0

    @property
    def weights(self) -> np.ndarray:
        if self._weights is None:
            self._weights = self.mask.astype(np.float64)
        return self._weights

    def full(self, size: int) -> np.ndarray:
        out = np.zeros((size, size), dtype=bool)
        h, w = self.mask.shape
        out[self.y0 : self.y0 + h, self.x0 : self.x0 + w] = self.mask
        return out


def crop_of(mask: np.ndarray) -> Crop:
    """Tightest crop of a full (S, S) mask."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return Crop(0, 0, np.zeros((0, 0), dtype=bool))
    cols = np.flatnonzero(mask.any(axis=0))
    y0, y1, x0, x1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    return Crop(int(y0), int(x0), np.ascontiguousarray(mask[y0:y1, x0:x1]))


class PrimitiveMasks:
    """Exact masks of single primitives at one size, cached as crops (LRU, bounded in bytes).

    A process-wide instance per size is shared through :func:`primitive_masks`: primitives
    recur across targets, so the cache keeps paying off over a whole test set.
    """

    def __init__(self, size: int, max_bytes: int = 256 << 20):
        self.size = size
        self.max_bytes = max_bytes
        self._cache: OrderedDict = OrderedDict()
        self._bytes = 0

    def get(self, prim: Circle | Quad) -> Crop:
        hit = self._cache.get(prim)
        if hit is not None:
            self._cache.move_to_end(prim)
            return hit
        m = rendering.rasterize(rendering.geometry(prim), self.size) == 0
        hit = crop_of(m)
        self._cache[prim] = hit
        self._bytes += 9 * hit.mask.nbytes + 64  # the mask and, once scored, its float64 copy
        while self._bytes > self.max_bytes and self._cache:
            _, old = self._cache.popitem(last=False)
            self._bytes -= 9 * old.mask.nbytes + 64
        return hit


_SHARED: dict[int, PrimitiveMasks] = {}


def primitive_masks(size: int) -> PrimitiveMasks:
    if size not in _SHARED:
        _SHARED[size] = PrimitiveMasks(size)
    return _SHARED[size]


class Approx:
    """Approximate masks of programs for one target (see the module docstring)."""

    def __init__(self, target: Target, prims: PrimitiveMasks | None = None, max_entries: int = 4096):
        self.target = target
        self.size = target.size
        self.prims = prims if prims is not None else primitive_masks(self.size)
        if self.prims.size != self.size:
            raise ValueError(f"primitive cache size {self.prims.size} != target size {self.size}")
        self.max_entries = max_entries
        self._memo: dict = {}
        self.zeros = np.zeros((self.size, self.size), dtype=bool)
        self.ones = np.ones((self.size, self.size), dtype=bool)

    def mask(self, node: Program) -> np.ndarray:
        """Full (S, S) approximate mask of ``node`` (exact for a lone primitive)."""
        if isinstance(node, (Circle, Quad)):
            return self.prims.get(node).full(self.size)
        if isinstance(node, Empty):
            return self.zeros
        hit = self._memo.get(node)
        if hit is None:
            masks = [self.mask(o) for o in node.operands]
            if isinstance(node, Union):
                hit = np.logical_or.reduce(masks)
            else:
                hit = masks[0] & ~np.logical_or.reduce(masks[1:]) if len(masks) > 2 else masks[0] & ~masks[1]
            if len(self._memo) >= self.max_entries:
                self._memo.clear()
            self._memo[node] = hit
        return hit

    def crop(self, node: Program) -> Crop:
        """The mask of ``node`` as a crop: tight for primitives (cached), the whole canvas for
        operations (finding their bounding box costs more than it saves)."""
        if isinstance(node, (Circle, Quad)):
            return self.prims.get(node)
        return Crop(0, 0, self.mask(node))

    def shifted(self, node: Program, dx: int, dy: int) -> Crop:
        """The mask of ``node`` moved by (dx, dy) canvas units, by shifting pixels (what was
        clipped at the border stays lost: fine for ranking, and the edit is rendered exactly
        before anything is decided)."""
        m = self.mask(node)
        px = round(dx * self.size / 16)
        py = -round(dy * self.size / 16)  # canvas y points up, rows point down
        out = np.zeros_like(m)
        S = self.size
        src = m[max(0, -py) : S - max(0, py), max(0, -px) : S - max(0, px)]
        out[max(0, py) : max(0, py) + src.shape[0], max(0, px) : max(0, px) + src.shape[1]] = src
        return Crop(0, 0, out)

    def score(self, node: Program) -> float:
        """Approximate IoU of a whole program."""
        m = self.mask(node)
        u = np.count_nonzero(m | self.target.mask)
        return 1.0 if u == 0 else np.count_nonzero(m & self.target.mask) / u

    def contexts(self, program: Program) -> dict[Path, tuple[np.ndarray, np.ndarray]]:
        """``{path: (P, Q)}`` for every node: the root's mask when that node is all black (P) or
        all white (Q), everything else fixed. One top-down pass over the tree."""
        out: dict[Path, tuple[np.ndarray, np.ndarray]] = {(): (self.ones, self.zeros)}
        stack: list[tuple[Path, Program]] = [((), program)]
        while stack:
            path, node = stack.pop()
            if not isinstance(node, (Union, Difference)):
                continue
            P, Q = out[path]
            masks = [self.mask(o) for o in node.operands]
            # Leave-one-out ORs from prefix and suffix ORs (of all operands for a union, of the
            # subtracted ones for a difference).
            start = 0 if isinstance(node, Union) else 1
            pre = [self.zeros]
            for m in masks[start:]:
                pre.append(pre[-1] | m)
            suf = [self.zeros]
            for m in reversed(masks[start:]):
                suf.append(suf[-1] | m)
            suf.reverse()  # suf[j] = OR of masks[start + j:]
            for i, child in enumerate(node.operands):
                if isinstance(node, Union):
                    others = pre[i] | suf[i + 1]
                    n1, n0 = self.ones, others  # this node when the child is black / white
                elif i == 0:
                    rest = pre[-1]
                    n1, n0 = ~rest, self.zeros
                else:
                    j = i - start
                    n1, n0 = self.zeros, masks[0] & ~(pre[j] | suf[j + 1])
                cp = self._through(n1, P, Q)
                cq = self._through(n0, P, Q)
                out[path + (i,)] = (cp, cq)
                stack.append((path + (i,), child))
        return out


    def _through(self, n: np.ndarray, P: np.ndarray, Q: np.ndarray) -> np.ndarray:
        # The root as a function of this node's mask n: (n & P) | (~n & Q).
        if n is self.ones:
            return P
        if n is self.zeros:
            return Q
        return (n & P) | (~n & Q)


class Slot:
    """Scores replacements of one node: the root is ``(x & P) | (~x & Q)`` for a new mask ``x``.

    Outside ``x`` the root is ``Q``; inside, ``P``. So with ``x`` black on a set of pixels, the
    intersection with the target changes by ``Σ (P∧T − Q∧T)`` and the black area by
    ``Σ (P − Q)`` over those pixels. Both sums come from one contraction with the packed
    per-pixel weights ``2²⁰·(P∧T − Q∧T) + (P − Q)`` (exact in float64: the second sum is below
    2¹⁶ in magnitude, so the two never mix).
    """

    __slots__ = ("P", "PT", "Q", "QT", "W", "cQ", "cQT", "cT")
    _SHIFT = float(1 << 20)

    def __init__(self, P: np.ndarray, Q: np.ndarray, target: Target):
        self.P, self.Q = P, Q
        self.PT = P & target.mask
        self.QT = Q & target.mask
        self.cQ = int(np.count_nonzero(Q))
        self.cQT = int(np.count_nonzero(self.QT))
        self.cT = target.count
        self.W: np.ndarray | None = None

    def _packed(self) -> np.ndarray:
        if self.W is None:
            dt = self.PT.astype(np.float64) - self.QT
            self.W = dt * self._SHIFT + (self.P.astype(np.float64) - self.Q)
        return self.W

    def score(self, x: Crop) -> float:
        inter, area = self.cQT, self.cQ
        if not x.empty:
            h, w = x.mask.shape
            if h * w < self.P.size // 2:  # a crop: contract with the packed weights
                W = self._packed()[x.y0 : x.y0 + h, x.x0 : x.x0 + w]
                t = float(np.einsum("ij,ij->", W, x.weights))
                d_inter = math.floor((t + self._SHIFT / 2) / self._SHIFT)
                inter += d_inter
                area += int(t - d_inter * self._SHIFT)
            else:  # (nearly) the whole canvas: plain counts, no float copy of the mask
                sl = (slice(x.y0, x.y0 + h), slice(x.x0, x.x0 + w))
                m = x.mask
                inter += np.count_nonzero(self.PT[sl] & m) - np.count_nonzero(self.QT[sl] & m)
                area += np.count_nonzero(self.P[sl] & m) - np.count_nonzero(self.Q[sl] & m)
        union = area + self.cT - inter
        return 1.0 if union == 0 else inter / union

    def score_many(self, crops: list[Crop]) -> np.ndarray:
        """:meth:`score` for many crops at once: they are stacked into their common bounding
        box and contracted with the packed weights in one call."""
        live = [c for c in crops if not c.empty]
        out = np.empty(len(crops))
        if len(live) < 2:
            return np.array([self.score(c) for c in crops])
        y0 = min(c.y0 for c in live)
        x0 = min(c.x0 for c in live)
        y1 = max(c.y0 + c.mask.shape[0] for c in live)
        x1 = max(c.x0 + c.mask.shape[1] for c in live)
        stack = np.zeros((len(live), y1 - y0, x1 - x0))
        for k, c in enumerate(live):
            h, w = c.mask.shape
            stack[k, c.y0 - y0 : c.y0 - y0 + h, c.x0 - x0 : c.x0 - x0 + w] = c.weights
        t = stack.reshape(len(live), -1) @ self._packed()[y0:y1, x0:x1].ravel()
        d_inter = np.floor((t + self._SHIFT / 2) / self._SHIFT)
        inter = self.cQT + d_inter
        area = self.cQ + (t - d_inter * self._SHIFT)
        union = area + self.cT - inter
        scores = np.where(union > 0, inter / np.maximum(union, 1), 1.0)
        j = 0
        for i, c in enumerate(crops):
            if c.empty:
                out[i] = self.score(c)
            else:
                out[i] = scores[j]
                j += 1
        return out

    def counts_lowres(self, stride: int) -> np.ndarray:
        """(4, M) float32 rows [PT, QT, P, Q] subsampled at pixel centres every ``stride``
        pixels: the vectors the add-primitive pre-filter correlates candidates with."""
        o = stride // 2
        rows = [a[o::stride, o::stride].ravel() for a in (self.PT, self.QT, self.P, self.Q)]
        return np.stack(rows).astype(np.float32)


class StepContext:
    """The approximate state of one program during one refinement step: its node contexts and
    the slots built from them (lazily), to score any :class:`~img2prog.search.edits.Edit`."""

    def __init__(self, approx: Approx, program: Program):
        self.approx = approx
        self.program = program
        self.root = approx.mask(program)
        self.current_score = approx.score(program)
        if isinstance(program, Empty):
            self._contexts = {(): (approx.ones, approx.zeros)}
        else:
            self._contexts = approx.contexts(program)
        self._slots: dict = {}

    def slot(self, path: Path, kind: str) -> Slot:
        key = (path, kind)
        s = self._slots.get(key)
        if s is None:
            P, Q = self._contexts[path]
            if kind == REPLACE:
                s = Slot(P, Q, self.approx.target)
            else:
                # Adding x as a new operand or wrapper: x white leaves the root as it is; x black
                # makes the node all black (union) or all white (difference).
                grows = kind == WRAP_UNION or (kind == APPEND and isinstance(node_at(self.program, path), Union))
                s = Slot(P if grows else Q, self.root, self.approx.target)
            self._slots[key] = s
        return s

    def score(self, edit: Edit) -> float:
        """Approximate IoU of the program after ``edit``."""
        if edit.shift is not None:
            part = self.approx.shifted(node_at(self.program, edit.path), *edit.shift)
        else:
            part = self.approx.crop(edit.part)
        return self.slot(edit.path, edit.slot).score(part)

    def score_all(self, edits: list[Edit]) -> np.ndarray:
        """:meth:`score` for many edits; those putting a primitive into the same slot (all the
        parameter steps of one primitive, say) are scored together in one contraction."""
        out = np.empty(len(edits))
        groups: dict[tuple, list[int]] = {}
        for i, e in enumerate(edits):
            if e.shift is None and isinstance(e.part, (Circle, Quad)):
                groups.setdefault((e.path, e.slot), []).append(i)
            else:
                out[i] = self.score(e)
        for (path, kind), idx in groups.items():
            crops = [self.approx.crop(edits[i].part) for i in idx]
            out[idx] = self.slot(path, kind).score_many(crops)
        return out
