"""Sampling candidate programs from a :class:`~img2prog.data.profiles.Profile`.

The sampler proposes; :mod:`img2prog.data.handcrafted` validates. The sampler's job is to
make proposals that usually pass, so that validation (which renders) is not wasted:

- Structure follows a normal form that has no redundant regrouping: a union's operands are
  primitives or differences, a difference subtracts primitives or differences from a
  primitive or a union. ``(+ a (+ b c))``, ``(- (- a b) c)`` and ``(- a (+ b c))`` say the same
  thing as a flatter program and would only teach a model that one image has several spellings.
- Placement is geometric: union operands are usually put next to the shapes already there
  (touching or overlapping) and sometimes anywhere; difference operands are put on the shape
  they cut, either across its edge or inside it as a hole, and kept smaller than it.
- Each operation checks its operands locally while it is built: what each union operand
  draws that no sibling draws, and what each difference operand alone removes, must stay at
  least ``profile.min_effect`` square units, and a difference must leave at least that much.
  A new operand that breaks this (for itself or for an earlier sibling) is redrawn a few times. This is a heuristic on exact geometry (the final word is the pixel
  test in :mod:`img2prog.data.checks`), but it turns most would-be degenerate proposals
  into useful ones before anything is rasterised. The geometry computed here is handed to
  the validator (:attr:`Sampler.geometries`) so no boolean operation is done twice.

All randomness goes through :meth:`random.Random.random`, whose stream Python keeps stable
across versions, so a seed gives the same programs on any machine.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence

from img2prog.data.profiles import Profile
from img2prog.lang.csg2d import rendering
from img2prog.lang.csg2d.ast import Circle, Difference, Primitive, Quad, Shape, Union

Box = tuple[float, float, float, float]  # x0, y0, x1, y1 in canvas units


def randint(rng: random.Random, lo: int, hi: int) -> int:
    """Uniform integer in lo..hi inclusive, from ``rng.random()`` only (version-stable)."""
    return lo + min(int(rng.random() * (hi - lo + 1)), hi - lo)


def weighted(rng: random.Random, pairs: Sequence[tuple[object, float]]):
    """Draw a value from ``(value, weight)`` pairs."""
    total = sum(w for _, w in pairs)
    u = rng.random() * total
    for value, w in pairs:
        u -= w
        if u < 0:
            return value
    return pairs[-1][0]


def bbox(node: Shape) -> Box:
    """Axis-aligned bounds of the set a shape draws (a difference lies within its first operand)."""
    if isinstance(node, Circle):
        return (node.x - node.r, node.y - node.r, node.x + node.r, node.y + node.r)
    if isinstance(node, Quad):
        a = math.radians(node.angle)
        c, s = abs(math.cos(a)), abs(math.sin(a))
        hw = (node.w * c + node.h * s) / 2
        hh = (node.w * s + node.h * c) / 2
        return (node.x - hw, node.y - hh, node.x + hw, node.y + hh)
    if isinstance(node, Difference):
        return bbox(node.operands[0])
    boxes = [bbox(o) for o in node.operands]
    return (min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes))


def _capacity(max_operands: int, depth_left: int) -> int:
    return max_operands**depth_left if depth_left > 0 else 1


class Sampler:
    """Draws candidate programs for one profile from one random stream.

    ``first_leaf_ok`` restricts the leftmost primitive (the first one drawn); streams use it to
    split the program space between shards without ever rendering a rejected candidate.
    """

    def __init__(
        self,
        profile: Profile,
        rng: random.Random,
        first_leaf_ok: Callable[[Primitive], bool] | None = None,
        max_first_leaf_tries: int = 100_000,
    ):
        self.p = profile
        self.rng = rng
        self.first_leaf_ok = first_leaf_ok
        self.max_first_leaf_tries = max_first_leaf_tries
        self._leaves = 0
        #: id(node) -> (node, fold prefixes) for the operations of the last sample, in the
        #: form :class:`img2prog.data.checks.Evaluated` accepts as ``known``
        self.geometries: dict[int, tuple[Shape, list]] = {}

    # --- public ---------------------------------------------------------------------
    def sample(self) -> Shape:
        n = weighted(self.rng, self.p.primitives)
        self._leaves = 0
        self.geometries = {}
        return self._shape(n, self.p.max_depth, None, limit=None, kinds="+-")

    def _geometry(self, node: Shape):
        if isinstance(node, (Circle, Quad)):
            return rendering.geometry(node)
        return self.geometries[id(node)][1][-1]

    # --- structure --------------------------------------------------------------------
    def _shape(self, n: int, depth_left: int, region: Box | None, limit: float | None, kinds: str) -> Shape:
        if n == 1:
            return self._leaf(region, limit)
        rng, p = self.rng, self.p
        if len(kinds) == 2:
            kind = "+" if rng.random() < p.p_union else "-"
        else:
            kind = kinds
        sub_cap = _capacity(p.max_operands, depth_left - 1)
        k_lo = max(2, -(-n // sub_cap))
        k_hi = min(n, p.max_operands)
        k = randint(rng, k_lo, k_hi)
        if kind == "-" and n - (k - 1) <= sub_cap and rng.random() >= p.p_compound_cut:
            # Subtract single primitives; the minuend takes the other leaves. A compound cut
            # (- a (- b c)) only matters where b meets a, which often leaves c with no effect.
            sizes = [n - (k - 1)] + [1] * (k - 1)
        else:
            sizes = self._split(n, k, sub_cap)
        if kind == "+":
            return self._union(sizes, depth_left, region, limit)
        return self._difference(sizes, depth_left, region, limit)

    def _split(self, n: int, k: int, cap: int) -> list[int]:
        """Random composition of n into k parts, each in 1..cap."""
        sizes = [1] * k
        for _ in range(n - k):
            open_ = [i for i in range(k) if sizes[i] < cap]
            sizes[open_[randint(self.rng, 0, len(open_) - 1)]] += 1
        return sizes

    def _union(self, sizes: list[int], depth_left: int, region: Box | None, limit: float | None) -> Union:
        operands: list[Shape] = []
        placed: Box | None = None
        current = None
        # own[j]: what operand j draws that no other operand draws. Removing j changes the
        # union exactly there, so each must stay at least min_effect large.
        own: list = []
        prefixes: list = []
        for i, m in enumerate(sizes):
            for _ in range(self.p.retries + 1):
                if i == 0 or self.rng.random() < self.p.p_detached:
                    where = region
                else:
                    # Next to what is already drawn: centre within the current bounds grown a
                    # little, so the new operand touches, overlaps or extends the shape.
                    where = _grow(placed, 1.5)
                child = self._shape(m, depth_left - 1, where, limit, kinds="-")
                g = self._geometry(child)
                if current is None:
                    new_own = [g]
                    break
                new_own = [o.difference(g) for o in own] + [g.difference(current)]
                if min(o.area for o in new_own) >= self.p.min_effect:
                    break
            own = new_own
            operands.append(child)
            current = g if current is None else current.union(g)
            prefixes.append(current)
            b = bbox(child)
            placed = b if placed is None else _merge(placed, b)
        node = Union(tuple(operands))
        self.geometries[id(node)] = (node, prefixes)
        return node

    def _difference(self, sizes: list[int], depth_left: int, region: Box | None, limit: float | None) -> Difference:
        minuend = self._shape(sizes[0], depth_left - 1, region, limit, kinds="+")
        current = self._geometry(minuend)
        mb = bbox(minuend)
        half = max(1.0, min(mb[2] - mb[0], mb[3] - mb[1]) / 2)
        operands: list[Shape] = [minuend]
        # cut[j]: what only subtrahend j removes. It must stay at least min_effect large, and
        # the difference must leave at least that much of the minuend.
        cut: list = []
        prefixes = [current]
        for m in sizes[1:]:
            for _ in range(self.p.retries + 1):
                if self.rng.random() < self.p.p_hole:
                    # A hole: centred well inside the shape and clearly smaller than it.
                    where = _grow(mb, -half * 0.5)
                    sub_limit = max(1.0, half * 0.6)
                else:
                    # A cut: centred near the shape's edge, at most as large as the shape.
                    where = _grow(mb, 0.5)
                    sub_limit = max(1.0, half * 1.1)
                child = self._shape(m, depth_left - 1, where, sub_limit, kinds="-")
                g = self._geometry(child)
                new_cut = [c.difference(g) for c in cut] + [current.intersection(g)]
                left = current.area - new_cut[-1].area
                if min(c.area for c in new_cut) >= self.p.min_effect and left >= self.p.min_effect:
                    break
            cut = new_cut
            operands.append(child)
            current = current.difference(g)
            prefixes.append(current)
        node = Difference(tuple(operands))
        self.geometries[id(node)] = (node, prefixes)
        return node

    # --- primitives -------------------------------------------------------------------
    def _leaf(self, region: Box | None, limit: float | None) -> Primitive:
        first = self._leaves == 0
        self._leaves += 1
        if not (first and self.first_leaf_ok is not None):
            return self._draw_leaf(region, limit)
        for _ in range(self.max_first_leaf_tries):
            leaf = self._draw_leaf(region, limit)
            if self.first_leaf_ok(leaf):
                return leaf
        raise RuntimeError(
            "could not draw a first primitive owned by this shard; the shard split is too fine "
            f"for profile {self.p.name!r}"
        )

    def _draw_leaf(self, region: Box | None, limit: float | None) -> Primitive:
        rng, p = self.rng, self.p
        x, y = self._center(region)
        if rng.random() < p.p_circle:
            r = self._size(p.radius, limit)
            return Circle(r, x, y)
        w = self._size(p.side, None if limit is None else 2 * limit)
        h = self._size(p.side, None if limit is None else 2 * limit)
        return Quad(x, y, w, h, weighted(rng, p.angles))

    def _size(self, pairs, limit: float | None) -> int:
        if limit is not None:
            allowed = [(v, w) for v, w in pairs if v <= limit]
            if not allowed:
                allowed = [min(pairs)]
            pairs = allowed
        return weighted(self.rng, pairs)

    def _center(self, region: Box | None) -> tuple[int, int]:
        lo, hi = self.p.center
        if region is None:
            return randint(self.rng, lo, hi), randint(self.rng, lo, hi)
        x0, y0, x1, y1 = region
        # Integer centres inside the region, clipped to the canvas.
        xs = (max(0, math.ceil(x0)), min(15, math.floor(x1)))
        ys = (max(0, math.ceil(y0)), min(15, math.floor(y1)))
        if xs[0] > xs[1]:
            xs = (min(15, max(0, round((x0 + x1) / 2))),) * 2
        if ys[0] > ys[1]:
            ys = (min(15, max(0, round((y0 + y1) / 2))),) * 2
        return randint(self.rng, *xs), randint(self.rng, *ys)


def _grow(b: Box, d: float) -> Box:
    x0, y0, x1, y1 = b
    if d < 0:  # shrinking never inverts the box: it collapses to its centre
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        return (min(x0 - d, cx), min(y0 - d, cy), max(x1 + d, cx), max(y1 + d, cy))
    return (x0 - d, y0 - d, x1 + d, y1 + d)


def _merge(a: Box, b: Box) -> Box:
    return (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))
