"""Exact quality checks on csg2d programs: degenerate operands, coverage, image keys.

"Degenerate" is defined by the rendered image, as the seed notebook's "AST surgery" test:
an operand of an operation is degenerate when removing it leaves the image at the checked
size unchanged (for example a union operand hidden inside another, or a difference operand
that misses the shape it subtracts from). Removing one of two operands replaces the
operation by the remaining operand, which is exactly the program one would write instead.

The check is exact, not estimated: every removal variant is rasterised by the project's
renderer at the checked size (256 px, the SPEC size, unless told otherwise) and compared
pixel for pixel. It is also cheap enough to run on every generated sample because the
geometry of each subtree is computed once and reused: a removal only re-folds the operation
it touches and that operation's ancestors, with the very same shapely calls, in the same
order, as :func:`img2prog.lang.csg2d.rendering.geometry` would make on the edited program,
so the variant's pixels equal ``render(edited_program)`` (a test checks this).

Why not check at low resolution: Pillow rounds polygon vertices to whole pixels before it
fills them, so a 64-px raster is not a sub-sampling of the 256-px one. A removal can change
a 64-px image and leave the 256-px one untouched, which would let a degenerate program pass.
Checking at 256 px (and, where the caller asks, additionally at its own output size) never
accepts a program with an operand that is invisible at any of the checked sizes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import shapely
from PIL import Image, ImageChops, ImageDraw

from img2prog.lang.csg2d import rendering
from img2prog.lang.csg2d.ast import Difference, Program, Union
from img2prog.lang.csg2d.parser import parse
from img2prog.lang.errors import ProgramError, RenderError

SPEC_SIZE = rendering.DEFAULT_SIZE


def image_key(gray: np.ndarray) -> bytes:
    """A 16-byte fingerprint of a black-and-white image (equal images give equal keys).

    Images are hashed as their black mask, so the greyscale and RGB renderings of one program
    give the same key; the size is mixed in so a 64-px and a 256-px image never collide.
    """
    if gray.ndim == 3:
        gray = gray[..., 0]
    h = hashlib.blake2b(digest_size=16)
    h.update(np.asarray(gray.shape, dtype=np.int64).tobytes())
    h.update(np.packbits(gray == 0).tobytes())
    return h.digest()


def program_key(canonical_text: str) -> bytes:
    """A 16-byte fingerprint of a canonical program text."""
    return hashlib.blake2b(canonical_text.encode(), digest_size=16).digest()


def black_share(gray: np.ndarray) -> float:
    """Share of pixels that are black (value 0): the canvas coverage of a rendering."""
    return float(np.count_nonzero(gray == 0)) / gray.size


def _rings(g, out: list) -> None:
    # Same traversal as rendering.rasterize: exterior filled black, then each hole white;
    # the parts of a multi-part geometry in order.
    if g.is_empty:
        return
    t = g.geom_type
    if t == "Polygon":
        out.append((shapely.get_coordinates(g.exterior), 0))
        for ring in g.interiors:
            out.append((shapely.get_coordinates(ring), 255))
    elif t in ("MultiPolygon", "GeometryCollection"):
        for part in g.geoms:
            _rings(part, out)


def draw(geom, size: int) -> Image.Image:
    """:func:`rendering.rasterize` as a Pillow "L" image, without the numpy round trip.

    The same float arithmetic and Pillow calls in the same order, so the pixels are the same
    (a test compares the two on thousands of programs). Comparing two such images with
    ``ImageChops`` is several times cheaper than converting both to arrays first, and the
    removal test compares one image per operand.
    """
    img = Image.new("L", (size, size), 255)
    rings: list = []
    _rings(geom, rings)
    if rings:
        canvas = ImageDraw.Draw(img)
        scale = size / 16.0
        for coords, fill in rings:
            pts = np.empty_like(coords)
            pts[:, 0] = coords[:, 0] * scale
            pts[:, 1] = size - coords[:, 1] * scale
            canvas.polygon(pts.ravel().tolist(), fill=fill)
    return img


def fold_prefixes(op: Union | Difference, geoms: list, start=None) -> list:
    """Every intermediate result of the left fold of ``op`` over ``geoms``.

    The fold makes the same calls in the same order as :func:`rendering.geometry`, so the
    last element is the operation's geometry, identical to the renderer's. ``start`` (if given)
    is an already-folded prefix to continue from.
    """
    acc = geoms[0] if start is None else start
    rest = geoms[1:] if start is None else geoms
    out = [acc]
    if isinstance(op, Union):
        for g in rest:
            acc = acc.union(g)
            out.append(acc)
    else:
        for g in rest:
            acc = acc.difference(g)
            out.append(acc)
    return out


def _continue(op: Union | Difference, acc, geoms: list):
    if isinstance(op, Union):
        for g in geoms:
            acc = acc.union(g)
    else:
        for g in geoms:
            acc = acc.difference(g)
    return acc


@dataclass(frozen=True)
class OperandRef:
    """One operand of one operation: ``path`` leads from the root to the operation (operand
    indices at each level), ``index`` is the operand's position in it."""

    path: tuple[int, ...]
    index: int
    op: str  # "+" or "-"


#: id(node) -> (node, fold prefixes). The node is kept alongside its id so that a recycled
#: id can never match; the last prefix is the node's geometry (a primitive has one "prefix").
NodeGeometries = dict[int, tuple[Program, list]]


class Evaluated:
    """A program with the geometry of every subtree computed once.

    :meth:`image` renders (greyscale, (S, S) uint8) and caches per size. Raises
    :class:`RenderError` if the geometry engine fails on the program.

    Every operation keeps the intermediate results of its fold, so removing operand ``i``
    continues from the fold of operands ``0..i-1`` instead of starting over, and each
    ancestor likewise continues from the fold of the operands left of the edited child.
    """

    def __init__(self, program: Program | str, known: NodeGeometries | None = None):
        self.program: Program = parse(program) if isinstance(program, str) else program
        # ``known`` holds operations someone already folded (the sampler does, and so does the
        # parent of a pruned program), in the same form as ``self.nodes``.
        self.nodes: NodeGeometries = {}
        self._known = known or {}
        try:
            self.geometry = self._eval(self.program)
        except shapely.errors.GEOSException as e:
            raise RenderError(f"geometry engine failed: {e}") from None
        self._images: dict[int, np.ndarray] = {}
        self._pil_images: dict[int, Image.Image] = {}

    def _eval(self, node):
        if isinstance(node, (Union, Difference)):
            geoms = [self._eval(o) for o in node.operands]
            hit = self._known.get(id(node))
            prefixes = hit[1] if hit is not None and hit[0] is node else fold_prefixes(node, geoms)
        else:
            prefixes = [rendering.geometry(node)]
        self.nodes[id(node)] = (node, prefixes)
        return prefixes[-1]

    def geometry_of(self, node: Program):
        return self.nodes[id(node)][1][-1]

    def image(self, size: int = SPEC_SIZE) -> np.ndarray:
        """The rendering at ``size``: (S, S) uint8, 0 = black, exactly :func:`rendering.render_gray`."""
        if size not in self._images:
            self._images[size] = np.asarray(self._pil(size))
        return self._images[size]

    def _pil(self, size: int) -> Image.Image:
        if size not in self._pil_images:
            self._pil_images[size] = draw(self.geometry, size)
        return self._pil_images[size]

    # --- removal variants -------------------------------------------------------------
    def operands(self) -> Iterator[tuple[OperandRef, list]]:
        """Every operand of every operation, with the chain of ancestors down to its operation."""
        stack: list[tuple[Program, tuple[int, ...], list]] = [(self.program, (), [])]
        while stack:
            node, path, chain = stack.pop()
            if not isinstance(node, (Union, Difference)):
                continue
            chain = chain + [node]
            op = "+" if isinstance(node, Union) else "-"
            for i in range(len(node.operands)):
                yield OperandRef(path, i, op), chain
            for i in range(len(node.operands) - 1, -1, -1):
                stack.append((node.operands[i], path + (i,), chain))

    def _with_child(self, op, idx: int, child_geom):
        """Geometry of ``op`` with operand ``idx`` replaced by ``child_geom`` (None: removed)."""
        prefixes = self.nodes[id(op)][1]
        geoms_after = [self.geometry_of(o) for o in op.operands[idx + 1 :]]
        if child_geom is None:
            if idx == 0:
                if len(geoms_after) == 1:
                    return geoms_after[0]  # (op a b) without a is b
                return _continue(op, geoms_after[0], geoms_after[1:])
            acc = prefixes[idx - 1]  # (op a b) without b is a: prefixes[0] is a itself
        else:
            acc = child_geom if idx == 0 else prefixes[idx - 1]
            if idx > 0:
                acc = _continue(op, acc, [child_geom])
        return _continue(op, acc, geoms_after)

    def without(self, ref: OperandRef, chain: list):
        """Geometry of the program with operand ``ref`` removed (the operation collapses to
        its remaining operand when only one is left), equal to ``geometry(remove_operand(...))``."""
        new = self._with_child(chain[-1], ref.index, None)
        # Re-fold the ancestors, bottom up, with the edited child in place.
        for level in range(len(chain) - 2, -1, -1):
            new = self._with_child(chain[level], ref.path[level], new)
        return new

    def operand_matters(self, ref: OperandRef, chain: list, sizes: tuple[int, ...] = (SPEC_SIZE,)) -> bool:
        """True when removing the operand changes the image at every size in ``sizes``.

        A removal the geometry engine cannot evaluate counts as "does not matter": we cannot
        show the operand is needed, and rejecting is the safe side for a data generator.
        """
        try:
            g = self.without(ref, chain)
        except shapely.errors.GEOSException:
            return False
        if g is self.geometry or g.equals_exact(self.geometry, 0.0):
            return False  # identical coordinates draw identical pixels
        for size in sizes:
            if ImageChops.difference(draw(g, size), self._pil(size)).getbbox() is None:
                return False
        return True

    def degenerate_operands(self, sizes: tuple[int, ...] = (SPEC_SIZE,), first_only: bool = False) -> list[OperandRef]:
        """Operands whose removal leaves the image unchanged at some size in ``sizes``."""
        bad = []
        for ref, chain in self.operands():
            if not self.operand_matters(ref, chain, sizes):
                bad.append(ref)
                if first_only:
                    break
        return bad

    def is_nondegenerate(self, sizes: tuple[int, ...] = (SPEC_SIZE,)) -> bool:
        return not self.degenerate_operands(sizes, first_only=True)


def remove_operand(program: Program, ref: OperandRef) -> Program:
    """The program with one operand removed. Subtrees off the edited path are reused as they
    are, so their geometry can be passed on (``Evaluated(new, known=old.nodes)``)."""

    def rebuild(node, depth: int):
        if depth == len(ref.path):
            kept = tuple(o for j, o in enumerate(node.operands) if j != ref.index)
            return kept[0] if len(kept) == 1 else type(node)(kept)
        i = ref.path[depth]
        ops = list(node.operands)
        ops[i] = rebuild(ops[i], depth + 1)
        return type(node)(tuple(ops))

    return rebuild(program, 0)


def degenerate_operands(program: Program | str, size: int = SPEC_SIZE) -> list[OperandRef]:
    """Operands of ``program`` whose removal does not change its image at ``size``.

    Raises :class:`ProgramError` if the text does not parse or the program cannot be rendered.
    """
    return Evaluated(program).degenerate_operands((size,))


def is_nondegenerate(program: Program | str, size: int = SPEC_SIZE) -> bool:
    """True when every operand of every operation changes the image at ``size``."""
    try:
        return Evaluated(program).is_nondegenerate((size,))
    except ProgramError:
        return False


def redundant_nesting(program: Program) -> int:
    """Operations that could be merged into their parent without changing the set drawn:
    a union directly inside a union, a difference as the first operand of a difference,
    and a union subtracted in a difference (``a - (b ∪ c) = a - b - c``)."""
    count = 0
    stack = [program]
    while stack:
        node = stack.pop()
        if isinstance(node, (Union, Difference)):
            for i, child in enumerate(node.operands):
                if isinstance(node, Union) and isinstance(child, Union) or isinstance(node, Difference) and i == 0 and isinstance(child, Difference) or isinstance(node, Difference) and i > 0 and isinstance(child, Union):
                    count += 1
                stack.append(child)
    return count

