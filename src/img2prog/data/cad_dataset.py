"""Precomputed (image, program) datasets for the CadQuery language.

CadQuery (OCC) is needed to *build* a part's solid, and the solid to draw its picture, but the
model only needs the picture and the token sequence. So datasets are built once on a machine
with CadQuery and then carried, as plain arrays, to wherever the model trains (the project's
GPU machine has no OCC).

Building (:func:`build_shards`) is resumable and parallel:

- shard ``k`` holds the parts of generator streams ``k·B … k·B + B − 1`` (``B`` =
  ``shard_size``) of :class:`~img2prog.lang.cadquery.generator.PartGenerator` with ``seed``:
  a pure function of ``(seed, config, k)``, whatever the number of workers;
- a shard is written atomically (temp file + rename) when complete, so a build can be killed
  at any time and continued by running the same command again: finished shards are skipped;
- every part that is in the bar (``standard_bar()``: the canonical texts *and* geometric
  fingerprints of ``cadquery-test`` and ``cadquery-qualitative``) is dropped, so no test part
  is trained on, not even moved or scaled;
- the generator checks every operation in the sandbox anyway; its last successful check asks
  for the tessellation too, so a part costs no extra job to draw.

Each shard is ``shard-KKKKK.npz`` with ``images`` (n, S, S) uint8 (the grey 2×2 multi-view
rendering, :func:`~img2prog.lang.cadquery.render.render_mesh`) and ``indices`` (n,) int64, plus
``shard-KKKKK.jsonl`` (one ``{"index", "program", "fingerprint"}`` per row, same order).

:func:`pack` merges shards into one file for training (``train.npz``: ``images``, ``tokens``
(n, L) int16 padded with ``<pad>``, ``lengths``; plus ``programs.jsonl``), removing duplicates
across shards (by text and fingerprint) and holding out the last ``val`` parts as a validation
split (``val_*`` arrays).

CLI::

    nice -n 19 python -m img2prog.data.cad_dataset build data_cad/shards --shards 40 --workers 2
    python -m img2prog.data.cad_dataset pack data_cad/shards data_cad/cad-train-128.npz --val 200
    python -m img2prog.data.cad_dataset testset data_cad/cadquery-test-128.npz   # test images
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

META = "meta.json"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class CadDataConfig:
    seed: int = 1
    image_size: int = 128  # side of the whole 2×2 grid (each view is half of it)
    shard_size: int = 64  # generator streams per shard
    #: "occ": every operation checked and drawn through the sandbox (CadQuery); "mesh": built,
    #: checked and drawn with the mesh kernel (:mod:`~img2prog.lang.cadquery.meshkernel`),
    #: ~100× faster, no fillets/chamfers
    kernel: str = "occ"


def _shard_stem(k: int) -> str:
    return f"shard-{k:05d}"


def _check_meta(out: Path, cfg: CadDataConfig, generator_version: int) -> None:
    """A shard folder belongs to one recipe: refuse to mix recipes in one folder."""
    meta = {"format": FORMAT_VERSION, "generator_version": generator_version, **asdict(cfg)}
    path = out / META
    if path.is_file():
        old = json.loads(path.read_text())
        old.setdefault("kernel", "occ")  # folders from before the mesh kernel
        if old != meta:
            raise ValueError(f"{path}: the folder was built with {old}, not {meta}; use another folder")
    else:
        out.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(meta, indent=1) + "\n")


class _MeshGenerator:
    """A :class:`PartGenerator` whose sandbox checks also return the tessellation, so the
    accepted part's last check is also its rendering job (one job fewer per part)."""

    def __init__(self, executor, seed: int, bar: set):
        from img2prog.lang.cadquery.generator import PartGenerator

        outer = self
        self._local = threading.local()

        class Gen(PartGenerator):
            def _run(self, program):
                self.stats.attempt()
                r = self.executor.run(program, mesh=True)
                if r.ok:
                    outer._local.meshes[program] = r.solid.mesh
                return r

        self.gen = Gen(executor, seed=seed, bar=bar)

    def part(self, index: int):
        """(part, mesh) or None."""
        self._local.meshes = {}
        part = self.gen.part(index)
        if part is None:
            return None
        return part, self._local.meshes[part.program]


def _write_shard(out: Path, k: int, rows: list[dict], images: list[np.ndarray], size: int) -> None:
    stem = out / _shard_stem(k)
    # The .jsonl first, the .npz last: a shard exists iff its .npz does.
    tmp = stem.with_suffix(".jsonl.tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in rows))
    tmp.rename(stem.with_suffix(".jsonl"))
    tmp = out / f"{_shard_stem(k)}.tmp.npz"
    arr = np.stack(images) if images else np.zeros((0, size, size), np.uint8)
    np.savez_compressed(tmp, images=arr, indices=np.array([r["index"] for r in rows], np.int64))
    tmp.rename(stem.with_suffix(".npz"))


def _shard(out: Path, k: int, cfg: CadDataConfig, bar: set, parts) -> tuple[int, int, int]:
    """Build shard ``k`` from ``parts`` ((index, (part, mesh) or None) pairs): (made, barred, failed)."""
    from img2prog.lang.cadquery.render import render_mesh

    rows, images, seen = [], [], set()
    barred = failed = 0
    for index, got in parts:
        if got is None:
            failed += 1
            continue
        part, mesh = got
        if part.text in bar or part.fingerprint in bar:
            barred += 1
            continue
        if part.text in seen or part.fingerprint in seen:
            continue
        seen.update((part.text, part.fingerprint))
        images.append(render_mesh(mesh, cfg.image_size)[..., 0])
        rows.append({"index": index, "program": part.text, "fingerprint": list(part.fingerprint)})
    _write_shard(out, k, rows, images, cfg.image_size)
    return len(rows), barred, failed


def mesh_bar() -> set:
    """:func:`~img2prog.lang.cadquery.testsets.standard_bar` plus the test parts' fingerprints
    as the mesh kernel measures them (its polygons give slightly different volumes and areas, so
    OCC's fingerprints would not catch a moved or scaled copy built with it)."""
    from img2prog.lang.cadquery.generator import fingerprint
    from img2prog.lang.cadquery.meshkernel import MeshExecutor
    from img2prog.lang.cadquery.parser import parse
    from img2prog.lang.cadquery.testsets import standard_bar, testset_names, testset_programs

    bar = standard_bar()
    ex = MeshExecutor()
    for name in testset_names():
        for text in testset_programs(name):
            r = ex.run(parse(text), mesh=False)
            if r.ok:  # parts with a fillet or chamfer: the mesh kernel never makes those
                bar.add(fingerprint(r.solid))
    return bar


def _mesh_shard(job: tuple[Path, int, CadDataConfig, set, float | None]) -> tuple[int, int, int, int, float] | None:
    """One shard with the mesh kernel, in a worker process: (k, made, barred, failed, seconds),
    or None when the build's deadline (wall clock, ``time.time()``) passed before it started."""
    from img2prog.lang.cadquery.meshkernel import MeshExecutor

    out, k, cfg, bar, deadline = job
    if deadline is not None and time.time() > deadline:
        return None
    t0 = time.perf_counter()
    gen = _MeshGenerator(MeshExecutor(), cfg.seed, bar)
    idx = range(k * cfg.shard_size, (k + 1) * cfg.shard_size)
    made, barred, failed = _shard(out, k, cfg, bar, ((i, gen.part(i)) for i in idx))
    return k, made, barred, failed, time.perf_counter() - t0


def build_shards(out: str | Path, shards: int, cfg: CadDataConfig = CadDataConfig(), workers: int = 1,
                 echo=print, time_budget: float | None = None) -> dict:
    """Build shards ``0 … shards − 1`` of ``out`` that do not exist yet; returns counts.

    ``time_budget`` (seconds): start no shard after it has passed (shards already started
    finish; run the same command again to build the rest)."""
    from img2prog.lang.cadquery.generator import GENERATOR_VERSION

    if cfg.kernel not in ("occ", "mesh"):
        raise ValueError(f"unknown kernel {cfg.kernel!r}: 'occ' or 'mesh'")
    out = Path(out)
    _check_meta(out, cfg, GENERATOR_VERSION)
    todo = [k for k in range(shards) if not (out / f"{_shard_stem(k)}.npz").is_file()]
    made = barred = failed = built = 0
    if not todo:
        return {"built": 0, "parts": 0}
    deadline = None if time_budget is None else time.time() + time_budget

    def report(k: int, m: int, b: int, f: int, dt: float) -> None:
        nonlocal made, barred, failed, built
        made, barred, failed, built = made + m, barred + b, failed + f, built + 1
        echo(f"{_shard_stem(k)}: {m} parts in {dt:.0f}s ({m / max(dt, 1e-9):.2f} parts/s); "
             f"total {made}, barred {barred}, failed {failed}")

    if cfg.kernel == "mesh":
        import multiprocessing as mp

        bar = mesh_bar()
        jobs = [(out, k, cfg, bar, deadline) for k in todo]
        with mp.get_context("forkserver").Pool(workers) if workers > 1 else contextlib.nullcontext() as pool:
            for res in (pool.imap_unordered(_mesh_shard, jobs) if pool else map(_mesh_shard, jobs)):
                if res is not None:
                    report(*res)
    else:
        from img2prog.lang.cadquery.sandbox import Executor
        from img2prog.lang.cadquery.testsets import standard_bar

        bar = standard_bar()
        with Executor(workers=workers) as ex:
            gen = _MeshGenerator(ex, cfg.seed, bar)
            for k in todo:
                if deadline is not None and time.time() > deadline:
                    break
                t0 = time.perf_counter()
                idx = list(range(k * cfg.shard_size, (k + 1) * cfg.shard_size))
                report(k, *_shard(out, k, cfg, bar, zip(idx, ex.map(gen.part, idx))), time.perf_counter() - t0)
    return {"built": built, "left": len(todo) - built, "parts": made, "barred": barred, "failed": failed}


def read_shards(folder: str | Path) -> tuple[np.ndarray, list[dict]]:
    """All finished shards of ``folder`` in shard order: images (N, S, S) uint8 and rows."""
    folder = Path(folder)
    images, rows = [], []
    for npz in sorted(folder.glob("shard-[0-9][0-9][0-9][0-9][0-9].npz")):
        with np.load(npz) as z:
            im = z["images"]
        lines = [json.loads(x) for x in npz.with_suffix(".jsonl").read_text().splitlines() if x.strip()]
        if len(lines) != len(im):
            raise ValueError(f"{npz}: {len(im)} images but {len(lines)} programs")
        images.append(im)
        rows += lines
    if not images:
        raise FileNotFoundError(f"no finished shards in {folder}")
    return np.concatenate(images), rows


# ---- scale canonicalisation -------------------------------------------------------------------
#
# Pictures (and IoU) are normalised: a part scaled by any factor looks the same. The generator's
# parts span a longest side of about 0.4 to 2.5 units, so from a picture alone the absolute size
# of the first sketch is a guess. Doubling a program is exact on the 1/128 grid (k/128 → 2k/128)
# and changes neither its picture nor its validity, so packing doubles small parts until their
# (approximate) longest side is at least ``SCALE_TARGET``: a model then guesses the size within
# a factor of 2, not 4, and spends less of its capacity on an unobservable choice.

SCALE_TARGET = 1.25


def scale_program(program, factor: float):
    """The program with every length multiplied by ``factor`` (plane axes unchanged)."""
    from img2prog.lang.cadquery.ast import Arc, Boolean, Circle, Extrusion, Finish, Line, Loop, Plane, Program

    def v(p):
        return tuple(factor * x for x in p)

    def body(b):
        profiles = tuple(Circle(v(c.center), factor * c.radius) if isinstance(c, Circle) else
                         Loop(v(c.start), tuple(Line(v(g.end)) if isinstance(g, Line) else Arc(v(g.mid), v(g.end))
                                                for g in c.segments)) for c in b.profiles)
        return Extrusion(Plane(v(b.plane.origin), b.plane.x_dir, b.plane.normal), profiles, factor * b.distance, b.both)

    steps = tuple(Boolean(s.op, body(s.body)) if isinstance(s, Boolean) else Finish(s.op, factor * s.amount, s.edges)
                  for s in program.steps)
    return Program(body(program.base), steps)


def approx_extent(program) -> float:
    """Longest side of the bounding box of the material-adding extrusions' control points
    (an over-estimate of the part's: cuts and intersections only remove)."""
    from img2prog.lang.cadquery.ast import Boolean
    from img2prog.lang.cadquery.meshkernel import control_points

    bodies = [program.base] + [s.body for s in program.steps if isinstance(s, Boolean) and s.op == "union"]
    pts = np.concatenate([control_points(b) for b in bodies])
    return float((pts.max(0) - pts.min(0)).max())


def canonical_scale(program):
    """(program doubled while its approximate extent stays below ``SCALE_TARGET``, factor)."""
    from img2prog.lang.cadquery import tokens
    from img2prog.lang.errors import ProgramError

    factor, extent = 1, approx_extent(program)
    while extent * factor < SCALE_TARGET and factor < 8:
        factor *= 2
    if factor == 1:
        return program, 1
    try:
        scaled = scale_program(program, factor)
        tokens.encode(scaled)  # on the grid and in range
    except ProgramError:
        return program, 1
    return scaled, factor


# ---- a symmetry of the renderer: half a turn about +Z -----------------------------------------
#
# The four views look from (+1,-1,+1), (-1,+1,+1), (+1,+1,-1), (-1,-1,-1) with +Z up and the light
# fixed to the camera. Turning a part half a turn about +Z, (x, y, z) → (-x, -y, z), maps view
# directions 0 ↔ 1 and 2 ↔ 3 and their cameras onto each other (the up vector is kept), so its
# picture is the original with the left and right halves swapped: a second, exact training
# pair per part for free (the loader swaps the halves; ``pack`` stores the turned tokens).

_TURN_SELECTORS = {">X": "<X", "<X": ">X", ">Y": "<Y", "<Y": ">Y"}


def turn_program(program):
    """The program turned half a turn about +Z (sketch coordinates ride along with their planes)."""
    from img2prog.lang.cadquery.ast import Boolean, Extrusion, Finish, Plane, Program

    def t3(v):
        return (-v[0] + 0.0, -v[1] + 0.0, v[2])  # + 0.0: no negative zeros in the canonical text

    def body(b):
        plane = Plane(t3(b.plane.origin), t3(b.plane.x_dir), t3(b.plane.normal))
        return Extrusion(plane, b.profiles, b.distance, b.both)

    steps = tuple(Boolean(s.op, body(s.body)) if isinstance(s, Boolean)
                  else Finish(s.op, s.amount, _TURN_SELECTORS.get(s.edges, s.edges)) for s in program.steps)
    return Program(body(program.base), steps)


def turn_picture(images: np.ndarray) -> np.ndarray:
    """The picture of the turned part: left and right halves swapped (last two axes: S, S)."""
    return np.roll(images, images.shape[-1] // 2, axis=-1)


def _pack_row(job: tuple[str, bool]) -> tuple[str | None, list[int], list[int]] | None:
    """(scaled text or None when unscaled, tokens, turned tokens) of one program text; None
    when it has no token sequence (a number off the grid, e.g. a through-cut deeper than 2)."""
    from img2prog.lang.cadquery import tokens
    from img2prog.lang.cadquery.ast import to_script
    from img2prog.lang.cadquery.parser import parse
    from img2prog.lang.errors import ProgramError

    text, scale = job
    program = parse(text)
    scaled = None
    if scale:
        program, factor = canonical_scale(program)
        if factor != 1:
            scaled = to_script(program)
    try:
        seq = [tokens.BOS, *tokens.encode(program), tokens.EOS]
        return scaled, seq, [tokens.BOS, *tokens.encode(turn_program(program)), tokens.EOS]
    except ProgramError:
        return None


def pack(folder: str | Path, out: str | Path, val: int = 200, max_len: int = 256, scale: bool = True,
         workers: int = 1, compress: bool = True) -> dict:
    """Merge the shards of ``folder`` into ``out`` (.npz) + ``out`` with .jsonl (programs).

    Duplicates across shards (by text or fingerprint), programs longer than ``max_len``
    tokens (``<bos>``/``<eos>`` included) and programs off the token grid are dropped; the last ``val`` parts become the
    validation split. With ``scale``, small parts are doubled (:func:`canonical_scale`; the
    JSONL keeps the generated program as ``source``). ``tokens_turned`` holds each training
    part turned half a turn about +Z (:func:`turn_program`), whose picture is
    :func:`turn_picture` of the stored one. ``workers`` processes tokenize (~1 ms a part);
    ``compress=False`` writes a plain .npz (faster to write and load for big sets).
    """
    from img2prog.lang.cadquery import tokens

    images, rows = read_shards(folder)
    first, seen = [], set()
    for i, r in enumerate(rows):
        fp = tuple(r["fingerprint"])
        if r["program"] in seen or fp in seen:
            continue
        seen.update((r["program"], fp))
        first.append(i)
    jobs = [(rows[i]["program"], scale) for i in first]
    if workers > 1:
        import multiprocessing as mp

        with mp.get_context("forkserver").Pool(workers) as pool:
            packed = pool.map(_pack_row, jobs, chunksize=256)
    else:
        packed = [_pack_row(j) for j in jobs]
    keep, seqs, turned, long, scaled, off_grid = [], [], [], 0, 0, 0
    for i, row in zip(first, packed):
        if row is None:
            off_grid += 1
            continue
        text, seq, seq_turned = row
        if len(seq) > max_len:
            long += 1
            continue
        if text is not None:
            scaled += 1
            rows[i] = {**rows[i], "source": rows[i]["program"], "program": text}
        keep.append(i)
        seqs.append(seq)
        turned.append(seq_turned)
    n = len(keep)
    if val >= n:
        raise ValueError(f"only {n} parts: cannot hold out {val} for validation")
    L = max(len(s) for s in seqs)
    toks = np.full((n, L), tokens.PAD, dtype=np.int16)
    toks_turned = np.full((n, L), tokens.PAD, dtype=np.int16)
    for j, (s, s2) in enumerate(zip(seqs, turned)):
        toks[j, : len(s)] = s
        toks_turned[j, : len(s2)] = s2
    lengths = np.array([len(s) for s in seqs], np.int32)
    ims = images[keep]
    cut = n - val
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    save = np.savez_compressed if compress else np.savez
    save(out, images=ims[:cut], tokens=toks[:cut], lengths=lengths[:cut], tokens_turned=toks_turned[:cut],
         val_images=ims[cut:], val_tokens=toks[cut:], val_lengths=lengths[cut:])
    with out.with_suffix(".jsonl").open("w") as f:
        for j, i in enumerate(keep):
            row = {"split": "train" if j < cut else "val", "index": rows[i]["index"], "program": rows[i]["program"]}
            if "source" in rows[i]:
                row["source"] = rows[i]["source"]
            f.write(json.dumps(row) + "\n")
    return {"parts": n, "train": cut, "val": val, "scaled_up": scaled, "dropped_duplicates": len(rows) - len(first),
            "dropped_long": long, "dropped_off_grid": off_grid, "max_tokens": L, "bytes": out.stat().st_size}


def render_testset(out: str | Path, name: str = "cadquery-test", image_size: int = 128, workers: int = 1) -> dict:
    """Render a named test set at ``image_size`` into ``out`` (.npz: ``images``; .jsonl: programs)."""
    from img2prog.lang.cadquery.testsets import testset_programs

    return {"name": name, **write_pictures(out, testset_programs(name), image_size, workers, what=name)}


def write_pictures(out: str | Path, programs: list[str], image_size: int = 128, workers: int = 1,
                   what: str = "programs") -> dict:
    """Build ``programs`` in the sandbox and write their pictures to ``out`` (.npz: ``images``)
    and the programs beside it (.jsonl: ``id``, ``program``), the layout ``evaluate`` reads."""
    from img2prog.lang.cadquery.render import render_mesh
    from img2prog.lang.cadquery.sandbox import Executor

    with Executor(workers=workers) as ex:
        results = ex.run_many(programs, mesh=True)
    bad = [i for i, r in enumerate(results) if not r.ok]
    if bad:
        raise RuntimeError(f"{what}: programs {bad[:5]} did not build")
    images = np.stack([render_mesh(r.solid.mesh, image_size)[..., 0] for r in results])
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, images=images)
    with out.with_suffix(".jsonl").open("w") as f:
        for i, p in enumerate(programs):
            f.write(json.dumps({"id": i, "program": p}) + "\n")
    return {"n": len(programs), "bytes": out.stat().st_size}


# ---- CLI -------------------------------------------------------------------------------------


def _main(argv: list[str]) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m img2prog.data.cad_dataset", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="build (or continue) shards of generated parts with their images")
    b.add_argument("out")
    b.add_argument("--shards", type=int, required=True)
    b.add_argument("--workers", type=int, default=1)
    b.add_argument("--seed", type=int, default=CadDataConfig.seed)
    b.add_argument("--image-size", type=int, default=CadDataConfig.image_size)
    b.add_argument("--shard-size", type=int, default=CadDataConfig.shard_size)
    b.add_argument("--kernel", choices=("occ", "mesh"), default=CadDataConfig.kernel,
                   help="occ: check and draw every part through the sandbox (CadQuery); mesh: the fast "
                        "mesh kernel (manifold3d; no fillets/chamfers)")
    b.add_argument("--time-budget", type=float, default=None,
                   help="seconds: start no shard after this (run again to continue)")
    p = sub.add_parser("pack", help="merge shards into one training file")
    p.add_argument("folder")
    p.add_argument("out")
    p.add_argument("--val", type=int, default=200)
    p.add_argument("--max-len", type=int, default=256)
    p.add_argument("--no-scale", action="store_true", help="keep every program at its generated size")
    p.add_argument("--workers", type=int, default=1, help="processes that tokenize (~1 ms a part)")
    p.add_argument("--no-compress", action="store_true", help="write a plain .npz (big sets: faster to write and load)")
    t = sub.add_parser("testset", help="render a named test set for a model's input")
    t.add_argument("out")
    t.add_argument("--name", default="cadquery-test")
    t.add_argument("--image-size", type=int, default=CadDataConfig.image_size)
    t.add_argument("--workers", type=int, default=1)
    a = ap.parse_args(argv)
    try:
        if a.cmd == "build":
            cfg = CadDataConfig(seed=a.seed, image_size=a.image_size, shard_size=a.shard_size, kernel=a.kernel)
            res = build_shards(a.out, a.shards, cfg, workers=a.workers,
                               echo=lambda s: print(s, file=sys.stderr, flush=True), time_budget=a.time_budget)
        elif a.cmd == "pack":
            res = pack(a.folder, a.out, val=a.val, max_len=a.max_len, scale=not a.no_scale, workers=a.workers,
                       compress=not a.no_compress)
        else:
            res = render_testset(a.out, a.name, a.image_size, a.workers)
    except (ValueError, FileNotFoundError, RuntimeError, KeyError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(_main(sys.argv[1:]))
