"""Render parity: every fast path is pixel-identical to the plain SPEC recipe
(``render_reference``), on a thousand random programs and on named edge cases, and fails with
RenderError exactly where the reference's geometry engine fails."""

from __future__ import annotations

import gc
import pickle
import random
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import shapely
from csg2d_gen import random_primitive, random_program

from img2prog.lang import ProgramError, RenderError, get_language
from img2prog.lang.csg2d import parse, rendering
from img2prog.lang.csg2d.ast import Circle, Difference, Quad, Union, depth, primitives
from img2prog.lang.csg2d.rendering import (
    clear_caches,
    geometry,
    mask,
    rasterize,
    render,
    render_batch,
    render_batch_rgb,
    render_gray,
    render_reference,
    set_memo_size,
)

N_SWEEP = 1000


@pytest.fixture(autouse=True)
def fresh_caches():
    """Every test starts cold and leaves the default memo size behind."""
    clear_caches()
    yield
    set_memo_size(4096)
    clear_caches()


def reference_gray(program, size=256):
    """The reference image as (S, S) grey, or None where the reference's GEOS call fails."""
    try:
        rgb = render_reference(program, size)
    except RenderError:
        return None
    assert rgb.shape == (size, size, 3) and rgb.dtype == np.uint8
    assert (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 0] == rgb[..., 2]).all()
    return rgb[..., 0]


@pytest.fixture(scope="module")
def sweep():
    """1,000 random programs at 256 px and their reference images (None = GEOS failure)."""
    rng = random.Random(20240901)
    programs = [random_program(rng) for _ in range(N_SWEEP)]
    refs = [reference_gray(p) for p in programs]
    return programs, refs


def _first_mismatch(programs, refs, images, errors=None):
    for i, (p, ref) in enumerate(zip(programs, refs)):
        if ref is None:
            if errors is None or not isinstance(errors[i], RenderError):
                return f"{p}: reference fails in GEOS, this path did not raise RenderError"
            if (images[i] != 255).any():
                return f"{p}: failed slot is not blank"
        elif errors is not None and errors[i] is not None:
            return f"{p}: unexpected error {errors[i]}"
        elif not np.array_equal(images[i], ref):
            return f"{p}: {int((images[i] != ref).sum())} pixels differ"
    return None


def _render_each(fn, programs, blank_shape=(256, 256)):
    """Apply ``fn`` to each program; a RenderError leaves a white image and the error."""
    images, errors = [], []
    for p in programs:
        try:
            images.append(fn(p))
            errors.append(None)
        except RenderError as e:
            images.append(np.full(blank_shape, 255, np.uint8))
            errors.append(e)
    return images, errors


def test_sweep_is_varied(sweep):
    programs, refs = sweep
    n_prims = [len(primitives(p)) for p in programs]
    assert sum(n == 1 for n in n_prims) > 150 and sum(n >= 8 for n in n_prims) > 200
    assert sum(depth(p) >= 3 for p in programs) > 100
    angles = {q.angle for p in programs for q in primitives(p) if isinstance(q, Quad)}
    assert any(a % 45 for a in angles) and {0, 45, 90, 135} <= angles
    assert 0 < sum(r is None for r in refs) < 50  # a few GEOS failures are part of the sweep
    # Every branch of the rasteriser is exercised: one ring, holes, several parts, collections,
    # and line results of degenerate quads (which the reference does not draw).
    kinds: dict[str, int] = {}
    for p, ref in zip(programs, refs):
        if ref is None:
            continue
        g = geometry(p, memo=False)
        kind = "empty" if g.is_empty else g.geom_type
        if kind in ("Polygon", "MultiPolygon") and shapely.get_num_interior_rings(shapely.get_parts(g)).any():
            kind += " with holes"
        kinds[kind] = kinds.get(kind, 0) + 1
    required = ["Polygon", "Polygon with holes", "MultiPolygon", "MultiPolygon with holes",
                "GeometryCollection", "empty", "LineString"]
    assert all(kinds.get(k, 0) >= 5 for k in required), str(kinds)


def test_render_rgb(sweep):
    programs, refs = sweep
    images, errors = _render_each(render, programs, blank_shape=(256, 256, 3))
    for img in images:
        assert img.shape == (256, 256, 3) and img.dtype == np.uint8 and img.flags.writeable
        assert (img[..., 0] == img[..., 1]).all() and (img[..., 0] == img[..., 2]).all()
    assert _first_mismatch(programs, refs, [img[..., 0] for img in images], errors) is None


def test_render_gray_from_text_then_mask_from_memo(sweep):
    programs, refs = sweep
    texts = [str(p) for p in programs]
    images, errors = _render_each(render_gray, texts)  # cold: parse + GEOS, memo fills up
    assert _first_mismatch(programs, refs, images, errors) is None
    masks, errors = _render_each(lambda p: np.where(mask(p), 0, 255).astype(np.uint8), programs)  # warm memo
    assert _first_mismatch(programs, refs, masks, errors) is None


def test_render_rgb_batch_in_process(sweep):
    programs, refs = sweep
    out, errors = render_batch_rgb(programs[:300], 256, workers=1)
    assert out.shape == (300, 256, 256, 3)
    assert (out[..., 0] == out[..., 1]).all() and (out[..., 0] == out[..., 2]).all()
    assert _first_mismatch(programs[:300], refs[:300], out[..., 0], errors) is None


def test_drawing_through_public_pillow_api_is_the_same(sweep, monkeypatch):
    """The fallback rasteriser (used if Pillow's internals change) gives the same pixels."""
    assert rendering._DIRECT, "Pillow's core drawing probe failed: the slower fallback is in use"
    programs, refs = sweep
    monkeypatch.setattr(rendering, "_DIRECT", False)
    images, errors = _render_each(render_gray, programs[:400])
    assert _first_mismatch(programs[:400], refs[:400], images, errors) is None
    rgb, errors = _render_each(render, programs[400:600], blank_shape=(256, 256, 3))
    assert _first_mismatch(programs[400:600], refs[400:600], [i[..., 0] for i in rgb], errors) is None


def test_without_memo(sweep):
    programs, refs = sweep
    set_memo_size(0)
    images, errors = _render_each(render_gray, programs[:500])
    assert _first_mismatch(programs[:500], refs[:500], images, errors) is None
    assert len(rendering._MEMO) == 0


def test_render_batch_in_process(sweep):
    programs, refs = sweep
    out, errors = render_batch(programs, 256, workers=1)
    assert out.shape == (N_SWEEP, 256, 256) and out.dtype == np.uint8
    assert _first_mismatch(programs, refs, out, errors) is None


def test_render_batch_processes(sweep):
    programs, refs = sweep
    out, errors = render_batch([str(p) for p in programs], 256, workers=2, chunk_size=100)
    assert _first_mismatch(programs, refs, out, errors) is None


def test_language_render_batch(sweep):
    programs, refs = sweep
    out, errors = get_language("csg2d").render_batch(programs, workers=2)  # RGB, in two processes
    assert out.shape == (N_SWEEP, 256, 256, 3)
    assert (out[..., 0] == out[..., 1]).all() and (out[..., 0] == out[..., 2]).all()
    assert _first_mismatch(programs, refs, out[..., 0], errors) is None


@pytest.mark.parametrize("size", [16, 64, 100, 255])
def test_other_sizes(size):
    rng = random.Random(size)
    programs = [random_program(rng) for _ in range(120)]
    refs = [reference_gray(p, size) for p in programs]
    gray, errors = render_batch(programs, size, workers=1)
    assert _first_mismatch(programs, refs, gray, errors) is None
    for p, ref in zip(programs[:40], refs[:40]):
        if ref is not None:
            assert np.array_equal(render(p, size)[..., 1], ref)


def test_primitive_geometry_is_the_reference_geometry():
    """The fast primitive constructors give the reference's geometry, bit for bit (WKB).

    Circles exhaustively (all 16³); quads on every angle for a few boxes (degenerate ones
    included) plus a random sample. Both ways primitives are made: many per GEOS call (what
    ``geometry`` does for a program) and one at a time. See the comment above
    ``rendering._origin_circles`` for why they agree.
    """
    from shapely.affinity import rotate
    from shapely.geometry import Point, box

    rng = random.Random(99)
    boxes = [(0, 0, 0, 0), (15, 15, 15, 15), (7, 3, 0, 9), (2, 9, 11, 0), (8, 8, 15, 1)]
    quads = [(*b, a) for a in range(360) for b in boxes]
    quads += [(*(rng.randint(0, 15) for _ in range(4)), rng.randint(0, 359)) for _ in range(3000)]
    circles = [(r, x, y) for r in range(16) for x in range(16) for y in range(16)]
    nodes = [Circle(*c) for c in circles] + [Quad(*q) for q in quads]
    expected = [Point(x, y).buffer(r).wkb for r, x, y in circles]
    expected += [rotate(box(x - w / 2, y - h / 2, x + w / 2, y + h / 2), a, origin=(x, y)).wkb for x, y, w, h, a in quads]
    batched = rendering._build_primitives(nodes)
    for node, geom, wkb in zip(nodes, batched, expected):
        assert geom.wkb == wkb, node
    for node, wkb in list(zip(nodes, expected))[::7]:
        assert rendering._build_primitives([node])[0].wkb == wkb, node
    # Quads take array arithmetic from _VECTOR_QUADS on, one at a time below: both sides of
    # the threshold, a mix of w = 0 (4-point rings) and w > 0 (5 points) in the same call.
    pairs = list(zip(nodes, expected))[len(circles) :]
    for k in (rendering._VECTOR_QUADS - 1, rendering._VECTOR_QUADS):
        for lo in range(0, 400, k):
            part = pairs[lo : lo + k]
            assert [g.wkb for g in rendering._build_primitives([n for n, _ in part])] == [w for _, w in part]
    assert rendering._circle(3, 4, 5).wkb == Point(4, 5).buffer(3).wkb
    assert rendering._quad(1, 2, 3, 4, 5).wkb == rotate(box(-0.5, 0, 2.5, 4), 5, origin=(1, 2)).wkb


# --------------------------------------------------------------------------------------
# Named edge cases.
# --------------------------------------------------------------------------------------

EDGE_CASES = {
    "empty program": "",
    "whitespace program": " \n\t",
    "radius 0": "(Circle 0 8 8)",
    "radius 0 in a union": "(+ (Circle 0 8 8) (Circle 3 4 4))",
    "subtract radius 0": "(- (Circle 3 4 4) (Circle 0 4 4))",
    "radius 0 minus something": "(- (Circle 0 8 8) (Circle 3 8 8))",
    "zero-width quad": "(Quad 8 8 0 5 0)",
    "zero-height rotated quad": "(Quad 8 8 5 0 45)",
    "zero-size quad": "(Quad 8 8 0 0 0)",
    "zero-width quad in a union": "(+ (Quad 8 8 0 6 0) (Circle 2 3 3))",
    "zero-width quad overlapping": "(+ (Quad 8 8 0 6 0) (Circle 2 8 8))",
    "line minus empty": "(- (Quad 8 8 0 4 0) (Circle 0 8 8))",
    "crossing lines": "(+ (Quad 8 8 0 3 0) (Quad 8 8 3 0 0))",
    "off canvas": "(- (Circle 3 0 0) (Quad 2 2 4 4 0))",
    "partly off canvas circle": "(Circle 15 0 0)",
    "partly off canvas quad": "(Quad 15 15 10 10 30)",
    "corner quad": "(Quad 0 15 15 15 0)",
    "whole canvas": "(Quad 8 8 15 15 0)",
    "hole": "(- (Circle 6 8 8) (Circle 2 8 8))",
    "two holes": "(- (Quad 8 8 12 12 0) (Circle 2 5 5) (Circle 2 11 11))",
    "hole touching the border": "(- (Circle 6 8 8) (Quad 8 8 4 4 45) (Circle 2 8 13))",
    "nested differences": "(- (- (Circle 7 8 8) (Circle 5 8 8)) (- (Circle 3 8 8) (Circle 1 8 8)))",
    "difference of a difference": "(- (Circle 7 8 8) (- (Circle 5 8 8) (Circle 3 8 8)))",
    "island in a hole": "(+ (- (Circle 7 8 8) (Circle 5 8 8)) (Circle 2 8 8))",
    "A minus A": "(- (Circle 3 8 8) (Circle 3 8 8))",
    "A minus superset": "(- (Quad 8 8 4 4 0) (Circle 8 8 8))",
    "empty union member": "(+ (- (Circle 3 8 8) (Circle 3 8 8)) (Circle 2 4 4))",
    "disjoint union": "(+ (Circle 2 3 3) (Circle 2 12 12) (Quad 3 12 2 2 0))",
    "union of multipolygons": "(+ (+ (Circle 1 2 2) (Circle 1 6 6)) (+ (Circle 1 10 10) (Circle 1 14 14)))",
    "odd angle": "(Quad 8 8 10 3 7)",
    "angle 359": "(+ (Quad 8 8 10 3 359) (Quad 8 8 3 10 1))",
    "touching squares": "(+ (Quad 4 4 4 4 0) (Quad 8 4 4 4 0))",
    "many operands": "(+ " + " ".join(f"(Circle 1 {x} {y})" for x in range(1, 16, 3) for y in range(1, 16, 3)) + ")",
    "spec exclamation": "(+ (Quad 8 10 2 8 0) (Quad 8 3 2 2 0))",
    "spec bars": "(+ (Quad 4 4 2 4 0) (Quad 12 4 2 4 45) (Quad 4 12 2 4 90) (Quad 12 12 2 4 135))",
    "spec smiley": "(+ (- (Circle 5 7 5) (Circle 5 7 6)) (Quad 7 6 2 2 45) (Circle 2 4 10) (Circle 2 10 10))",
    "spec biohazard": "(- (+ (- (Circle 5 8 8) (Circle 4 8 8)) (- (Circle 4 8 12) (Circle 3 8 13)) "
    "(- (Circle 4 5 6) (Circle 3 4 5)) (- (Circle 4 11 6) (Circle 3 12 5))) (Circle 2 8 8))",
}

# Programs for which the reference's own geometry engine gives up (GEOS "Unable to determine
# overlay result geometry dimension" on a difference with a mixed-dimension collection).
GEOS_FAILURES = [
    "(- (Circle 3 7 12) (Circle 9 3 13) (+ (Circle 2 10 14) (Quad 9 10 0 14 352)))",
    "(- (Circle 0 5 5) (+ (Quad 0 0 0 12 45) (Circle 14 14 15) (Quad 15 11 11 13 315)))",
    "(+ (Circle 1 1 1) (- (Circle 3 7 12) (Circle 9 3 13) (+ (Circle 2 10 14) (Quad 9 10 0 14 352))))",
]


def _all_paths(text: str, size: int) -> dict[str, np.ndarray]:
    """Every public way to render one program, as (S, S) grey."""
    csg = get_language("csg2d")
    program = parse(text)
    out = {
        "render": render(program, size)[..., 0],
        "render text": render(text, size)[..., 2],
        "render_gray": render_gray(program, size),
        "mask": np.where(mask(text, size), 0, 255).astype(np.uint8),
        "geometry no memo": rasterize(geometry(program, memo=False), size),
        "render_batch": render_batch([text], size, workers=1)[0][0],
        "render_batch_rgb": render_batch_rgb([program], size, workers=1)[0][0, ..., 1],
        "Language.render": csg.render(text, size)[..., 0],
    }
    for name, img in out.items():
        assert img.shape == (size, size), name
    return out


@pytest.mark.parametrize("size", [256, 100, 16])
@pytest.mark.parametrize("name", list(EDGE_CASES))
def test_edge_cases(name, size):
    text = EDGE_CASES[name]
    ref = reference_gray(parse(text), size)
    assert ref is not None, f"{name}: the reference fails; move it to GEOS_FAILURES"
    for path, img in _all_paths(text, size).items():
        assert np.array_equal(img, ref), f"{name} at {size}px: {path} differs in {int((img != ref).sum())} pixels"


def test_edge_cases_have_the_expected_content():
    blank = lambda t: not mask(t).any()
    assert blank("") and blank("(Circle 0 8 8)") and blank("(- (Circle 3 8 8) (Circle 3 8 8))")
    # Entirely off the canvas but for its edge on the canvas border: at most the border pixels.
    off = mask("(- (Circle 3 0 0) (Quad 2 2 4 4 0))")
    assert not off[:-1, 1:].any()
    hole = mask("(- (Circle 6 8 8) (Circle 2 8 8))")
    assert hole.any() and not hole[128, 128]  # the centre is a hole
    assert mask("(Quad 8 8 15 15 0)").mean() > 0.85


@pytest.mark.parametrize("text", GEOS_FAILURES)
def test_geos_failures_raise_render_error_on_every_path(text):
    with pytest.raises(RenderError, match="geometry engine failed"):
        render_reference(text)
    csg = get_language("csg2d")
    for fn in (render, render_gray, mask, csg.render):
        with pytest.raises(RenderError):
            fn(text)
    with pytest.raises(shapely.errors.GEOSException):  # geometry() is the raw engine call
        geometry(parse(text), memo=False)
    with pytest.raises(RenderError):  # a second time: failures are not memoised as results
        render(text)
    batch = [text, "(Circle 3 8 8)"]
    for out, errors in (render_batch(batch, 64, workers=1), csg.render_batch(batch, 64, workers=1)):
        assert isinstance(errors[0], RenderError) and isinstance(errors[0], ProgramError)
        assert (out[0] == 255).all() and errors[1] is None and (out[1] == 0).any()


def test_render_error_is_a_program_error():
    assert issubclass(RenderError, ProgramError)


# --------------------------------------------------------------------------------------
# Batches, errors and the memo.
# --------------------------------------------------------------------------------------

def test_batch_errors_keep_offsets_across_processes():
    programs = ["(Circle 3 8 8)", "(Circle 3 8)", "(Quad 1 2 3 4 400)", ""] * 20
    for workers in (1, 2):
        out, errors = render_batch(programs, 32, workers=workers, chunk_size=16)
        for i in range(0, len(programs), 4):
            assert errors[i] is None and errors[i + 3] is None
            assert errors[i + 1].offset == 11 and "Circle expects y" in str(errors[i + 1])
            assert errors[i + 2].offset == 14 and "out of range" in str(errors[i + 2])
            assert (out[i + 1] == 255).all() and (out[i + 3] == 255).all()
            assert np.array_equal(out[i], render_gray("(Circle 3 8 8)", 32))


def test_batch_forked_recycles_shared_slots(monkeypatch):
    """The fork path: workers render chunks into a few recycled shared scratch slots that the
    parent copies out; the result must be an ordinary, writable, picklable array equal to the
    in-process result, errors at their offsets, with more chunks than slots (every slot reused)."""
    if rendering._fork_context() is None:
        pytest.skip("no fork start method on this platform")
    rng = random.Random(11)
    programs = [random_program(rng) for _ in range(120)] + ["(Quad 1 2 3 4 400)"]
    expected, expected_errors = render_batch(programs, 48, workers=1)
    calls = []
    real = rendering._batch_forked
    monkeypatch.setattr(rendering, "_batch_forked", lambda *a: calls.append(1) or real(*a))
    out, errors = render_batch(programs, 48, workers=2, chunk_size=16)
    assert calls, "the fork path was not taken"
    assert np.array_equal(out, expected) and out.shape == (121, 48, 48)
    assert [type(e) for e in errors] == [type(e) for e in expected_errors] and errors[-1].offset == 14
    assert len(programs) > 16 * rendering._SLOTS_PER_WORKER * 2  # slots were reused
    assert rendering._FORKED_SCRATCH is None  # the module does not keep the scratch alive
    assert gc.get_freeze_count() == 0  # the parent's objects are back under the collector
    out[0] = 7  # writable, and a pickle round trip is a plain copy
    assert np.array_equal(pickle.loads(pickle.dumps(out))[0], out[0])


def test_batch_in_waves_when_shared_memory_is_small(monkeypatch):
    # The portable path (no fork: Windows, or a start method of spawn) uses named shared memory.
    monkeypatch.setattr(rendering, "_USE_FORK", False)
    rng = random.Random(5)
    programs = [random_program(rng) for _ in range(150)] + ["(Circle 3 8)"]
    expected, expected_errors = render_batch_rgb(programs, 64, workers=1)
    image_bytes = 64 * 64 * 3
    # Room for 3 chunks of 16 per wave: 4 waves through one pool.
    monkeypatch.setattr(rendering, "_shared_memory_budget", lambda: 3 * 16 * image_bytes + 5)
    out, errors = render_batch_rgb(programs, 64, workers=2, chunk_size=16)
    assert np.array_equal(out, expected)
    assert [type(e) for e in errors] == [type(e) for e in expected_errors]
    assert errors[-1].offset == 11
    # No room at all: stays in process, same result.
    monkeypatch.setattr(rendering, "_shared_memory_budget", lambda: 0)
    out, _ = render_batch_rgb(programs, 64, workers=2, chunk_size=16)
    assert np.array_equal(out, expected)


def test_batch_chunk_boundaries():
    """Chunks are parsed, built and rasterised together (one flat list of ring coordinates
    per chunk): every position in a chunk, the last included, gets its own program's pixels,
    unparsable and GEOS-failing programs among them."""
    rng = random.Random(17)
    programs = [random_program(rng) for _ in range(36)] + ["(Circle 3 8)", "(Circle 2 5 5)"]
    refs = [reference_gray(p, 32) for p in programs[:-2]] + [None, reference_gray("(Circle 2 5 5)", 32)]
    for k in range(1, len(programs) + 1):  # each program in turn is the last of the chunk
        out, errors = render_batch(programs[:k], 32, workers=1)
        i = k - 1
        if isinstance(errors[i], ProgramError) and not isinstance(errors[i], RenderError):
            assert refs[i] is None and (out[i] == 255).all()
        else:
            assert _first_mismatch(programs[i:k], refs[i:k], out[i:k], errors[i:k]) is None, k
    out, errors = render_batch(programs, 32, workers=2, chunk_size=5)
    assert isinstance(errors[-2], ProgramError) and (out[-2] == 255).all()
    keep = [i for i in range(len(programs)) if i != len(programs) - 2]
    picked = [programs[i] for i in keep], [refs[i] for i in keep], out[keep], [errors[i] for i in keep]
    assert _first_mismatch(*picked) is None


def test_chunk_rings_are_each_geometrys_rings():
    """``_chunk_rings`` on many geometries = ``_pixel_rings`` on each (same coordinates, same
    hole flags, same order), for Polygons with and without holes, MultiPolygons, empty
    geometry and collections (None: drawn part by part)."""
    rng = random.Random(23)
    geoms = []
    while len(geoms) < 300:
        try:
            geoms.append(geometry(random_program(rng)))
        except shapely.errors.GEOSException:  # the reference fails on it too; not a geometry
            pass
    geoms += [shapely.Polygon(), shapely.from_wkt("MULTIPOLYGON EMPTY"), shapely.from_wkt("LINESTRING (0 0, 1 1)")]
    kinds = {g.geom_type for g in geoms}
    assert {"Polygon", "MultiPolygon", "GeometryCollection"} <= kinds
    assert any(shapely.get_num_interior_rings(g) for g in geoms if g.geom_type == "Polygon")
    for size in (256, 37):
        coords, spans = rendering._chunk_rings(geoms, size)
        for g, own in zip(geoms, spans):
            single = rendering._pixel_rings(g, size)
            if single is None:
                assert own is None, g.wkt
                continue
            assert [coords[a:b] for a, b, _ in own] == [single[0][a:b] for a, b, _ in single[1]], g.wkt
            assert [h for _, _, h in own] == [h for _, _, h in single[1]], g.wkt


def test_batch_edge_sizes():
    out, errors = render_batch([], 64)
    assert out.shape == (0, 64, 64) and errors == []
    with pytest.raises(ValueError, match="render size"):
        render("(Circle 1 1 1)", 0)
    with pytest.raises(ValueError, match="render size"):
        render_batch(["(Circle 1 1 1)"], 2.5)


def _mutants(rng: random.Random, base, n: int):
    """Programs that share subtrees and fold prefixes with ``base`` (what search produces)."""
    out = []
    for _ in range(n):
        node = base
        path = []
        while isinstance(node, (Union, Difference)):
            i = rng.randrange(len(node.operands))
            path.append((node, i))
            node = node.operands[i]
        new = random_primitive(rng)
        for parent, i in reversed(path):
            ops = parent.operands[:i] + (new,) + parent.operands[i + 1:]
            if rng.random() < 0.2:
                ops = ops + (random_primitive(rng),)  # sometimes also append an operand
            new = type(parent)(ops)
        out.append(new)
    return out


def test_memo_reuses_subtrees_and_prefixes_exactly():
    rng = random.Random(7)
    programs = []
    for _ in range(5):
        base = Union((random_program(rng), random_program(rng), random_program(rng), Circle(2, 8, 8)))
        programs += [base, *_mutants(rng, base, 20)]
    refs = [reference_gray(p) for p in programs]
    memo = rendering._MEMO
    images, errors = _render_each(render_gray, programs)
    assert _first_mismatch(programs, refs, images, errors) is None
    assert memo.hits > len(programs)  # the memo was actually used
    # A memo so small that it keeps evicting is still exact.
    set_memo_size(3)
    images, errors = _render_each(render_gray, programs)
    assert _first_mismatch(programs, refs, images, errors) is None
    assert len(memo) <= 3


def test_memo_is_bounded_and_can_be_disabled():
    rng = random.Random(3)
    set_memo_size(50)
    for _ in range(200):
        _safe_gray(random_program(rng), 16)
    assert len(rendering._MEMO) <= 50
    set_memo_size(0)
    render_gray("(+ (Circle 1 1 1) (Circle 2 2 2))", 16)
    assert len(rendering._MEMO) == 0
    with pytest.raises(ValueError):
        set_memo_size(-1)


def test_threads_share_the_memo_safely():
    rng = random.Random(11)
    base = random_program(rng)
    programs = _mutants(rng, Union((base, Circle(3, 8, 8))), 120)
    refs = [reference_gray(p, 64) for p in programs]
    with ThreadPoolExecutor(4) as pool:
        images = list(pool.map(lambda p: _safe_gray(p, 64), programs))
    for p, ref, img in zip(programs, refs, images):
        assert (ref is None and img is None) or np.array_equal(ref, img), str(p)


def _safe_gray(p, size):
    try:
        return render_gray(p, size)
    except RenderError:
        return None
