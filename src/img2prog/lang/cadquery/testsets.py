"""Named CadQuery test sets: frozen programs, recorded recipes, barred from training.

========================  ===  ===========================================================
name                      n    what
========================  ===  ===========================================================
``cadquery-test``         200  procedural parts (:mod:`.generator`, default config, seed
                               8008, indices from 0), unique by text and by normalised
                               geometry, disjoint from the qualitative set
``cadquery-qualitative``  6    hand-written parts, easy to hard: a plate with four holes,
                               an L-bracket with a hole, a flange with bolt holes, a stepped
                               shaft, a pipe tee, a block with filleted corners, a slot and a pocket
========================  ===  ===========================================================

The programs (canonical scripts) and their geometric fingerprints are frozen in
:mod:`._testset_programs` and checked against a SHA-256 digest on load, so a set never
drifts when the generator or OCC changes. :func:`build_testset` re-runs the recipe (a test
checks it still reproduces the frozen programs while ``GENERATOR_VERSION`` is unchanged).

:func:`standard_bar` is the set of canonical texts *and* fingerprints of every test program:
pass it as ``bar=`` to :class:`~.generator.PartGenerator` so training data never contains a
test part, not even translated or scaled.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from img2prog.lang.cadquery.ast import to_script
from img2prog.lang.cadquery.generator import GENERATOR_VERSION, GeneratorConfig, PartGenerator
from img2prog.lang.cadquery.parser import parse

#: Hand-written qualitative parts (written the way a person would; canonicalised on load).
QUALITATIVE_SOURCES = (
    # 1. plate with four holes
    '''import cadquery as cq
plate = cq.Workplane("XY")
outline = plate.moveTo(-0.75, -0.5).lineTo(0.75, -0.5).lineTo(0.75, 0.5).lineTo(-0.75, 0.5).close()
h1 = plate.moveTo(-0.5625, -0.3125).circle(0.09375)
h2 = plate.moveTo(0.5625, -0.3125).circle(0.09375)
h3 = plate.moveTo(0.5625, 0.3125).circle(0.09375)
h4 = plate.moveTo(-0.5625, 0.3125).circle(0.09375)
solid = plate.add(outline).add(h1).add(h2).add(h3).add(h4).extrude(0.125)
''',
    # 2. L-bracket with a hole in its upright
    '''import cadquery as cq
side = cq.Workplane("XZ", origin=(0, 0.375, 0))
profile = side.moveTo(-0.5, 0).lineTo(0.5, 0).lineTo(0.5, 0.125).lineTo(-0.375, 0.125).lineTo(-0.375, 0.75).lineTo(-0.5, 0.75).close()
solid = side.add(profile).extrude(0.75)
wall = cq.Workplane(cq.Plane(cq.Vector(-0.375, 0, 0), cq.Vector(0, 1, 0), cq.Vector(1, 0, 0)))
hole = wall.moveTo(0, 0.46875).circle(0.125).extrude(-0.25)
solid = solid.cut(hole)
''',
    # 3. flange: disc with bore, hub, four bolt holes
    '''import cadquery as cq
base = cq.Workplane("XY")
disc = base.moveTo(0, 0).circle(0.75)
bore = base.moveTo(0, 0).circle(0.25)
solid = base.add(disc).add(bore).extrude(0.125)
hub_plane = cq.Workplane("XY", origin=(0, 0, 0.125))
outer = hub_plane.moveTo(0, 0).circle(0.375)
inner = hub_plane.moveTo(0, 0).circle(0.25)
solid = solid.union(hub_plane.add(outer).add(inner).extrude(0.375))
bolts = cq.Workplane("XY", origin=(0, 0, 0.125))
b1 = bolts.moveTo(0.5625, 0).circle(0.0625)
b2 = bolts.moveTo(0, 0.5625).circle(0.0625)
b3 = bolts.moveTo(-0.5625, 0).circle(0.0625)
b4 = bolts.moveTo(0, -0.5625).circle(0.0625)
solid = solid.cut(bolts.add(b1).add(b2).add(b3).add(b4).extrude(-0.125))
''',
    # 4. stepped shaft along Z
    '''import cadquery as cq
solid = cq.Workplane("XY").circle(0.375).extrude(0.25)
solid = solid.union(cq.Workplane("XY", origin=(0, 0, 0.25)).circle(0.25).extrude(0.5))
solid = solid.union(cq.Workplane("XY", origin=(0, 0, 0.75)).circle(0.1875).extrude(0.375))
solid = solid.union(cq.Workplane("XY", origin=(0, 0, 1.125)).circle(0.125).extrude(0.25))
''',
    # 5. pipe tee: two tubes at right angles, both bored
    '''import cadquery as cq
run = cq.Workplane("YZ").moveTo(0, 0).circle(0.25).extrude(0.75, both=True)
branch = cq.Workplane("XZ").moveTo(0, 0).circle(0.1875).extrude(-0.75)
solid = run.union(branch)
bore_run = cq.Workplane("YZ").moveTo(0, 0).circle(0.1875).extrude(0.75, both=True)
solid = solid.cut(bore_run)
bore_branch = cq.Workplane("XZ").moveTo(0, 0).circle(0.125).extrude(-0.75)
solid = solid.cut(bore_branch)
''',
    # 6. block with filleted vertical edges, a through slot and a side pocket
    '''import cadquery as cq
import math
w = 1.25
block = cq.Workplane("XY").moveTo(-w / 2, -0.375).lineTo(w / 2, -0.375).lineTo(w / 2, 0.375).lineTo(-w / 2, 0.375).close()
solid = block.extrude(0.5)
solid = solid.edges("|Z").fillet(0.0625)
top = cq.Workplane("XY", origin=(0, 0, 0.5))
slot = top.moveTo(-0.25, -0.125).lineTo(0.25, -0.125).threePointArc((0.375, 0), (0.25, 0.125)).lineTo(-0.25, 0.125).threePointArc((-0.375, 0), (-0.25, -0.125)).close()
solid = solid.cut(top.add(slot).extrude(-0.5))
front = cq.Workplane(cq.Plane((0, -0.375, 0), (1, 0, 0), (0, -1, 0)))
pocket = front.moveTo(0.3125, 0.25).circle(0.125).extrude(-0.25)
solid = solid.cut(pocket)
''',
)


@dataclass(frozen=True)
class TestSetRecipe:
    name: str
    n: int
    seed: int
    config: GeneratorConfig
    generator_version: int
    excludes: tuple[str, ...]  # test sets it is disjoint from


RECIPES = {
    "cadquery-test": TestSetRecipe("cadquery-test", 200, 8008, GeneratorConfig(), GENERATOR_VERSION,
                                   ("cadquery-qualitative",)),
}


def testset_names() -> list[str]:
    return ["cadquery-test", "cadquery-qualitative"]


def qualitative_programs() -> list[str]:
    return [to_script(parse(src)) for src in QUALITATIVE_SOURCES]


def digest(programs: list[str]) -> str:
    return hashlib.sha256("\x00".join(programs).encode("utf-8")).hexdigest()


def _frozen(name: str) -> tuple[tuple[str, ...], tuple[tuple, ...]]:
    from img2prog.lang.cadquery import _testset_programs as frozen

    entry = frozen.SETS.get(name)
    if entry is None:
        raise KeyError(f"no frozen programs for {name!r}")
    programs, fingerprints, sha = entry
    if digest(list(programs)) != sha:
        raise RuntimeError(f"frozen programs of {name!r} do not match their SHA-256 digest")
    return programs, fingerprints


def testset_programs(name: str) -> list[str]:
    """Canonical scripts of a named test set."""
    if name not in testset_names():
        raise KeyError(f"unknown CadQuery test set {name!r}; available: {', '.join(testset_names())}")
    return list(_frozen(name)[0])


def standard_bar() -> set:
    """Canonical texts and geometric fingerprints of every test program (for ``bar=``)."""
    out: set = set()
    for name in testset_names():
        programs, fingerprints = _frozen(name)
        out.update(programs)
        out.update(tuple(f) for f in fingerprints)
    return out


def build_testset(name: str, executor, with_fingerprints: bool = False):
    """Re-run a recipe (``cadquery-test``) or canonicalise the qualitative sources.

    Returns the programs, or (programs, fingerprints) with ``with_fingerprints``; the
    qualitative set's fingerprints need the executor to build each part.
    """
    from img2prog.lang.cadquery.generator import fingerprint

    if name == "cadquery-qualitative":
        programs = qualitative_programs()
        if not with_fingerprints:
            return programs
        results = executor.run_many(programs, mesh=False)
        for p, r in zip(programs, results):
            if not r.ok:
                raise RuntimeError(f"qualitative part does not build: {r.error}\n{p}")
        return programs, [fingerprint(r.solid) for r in results]
    recipe = RECIPES[name]
    if recipe.generator_version != GENERATOR_VERSION:
        raise RuntimeError(f"{name} was made by generator version {recipe.generator_version}, "
                           f"this is {GENERATOR_VERSION}: the recipe no longer reproduces it")
    bar: set = set()
    for other in recipe.excludes:
        progs, fps = build_testset(other, executor, with_fingerprints=True)
        bar.update(progs)
        bar.update(fps)
    gen = PartGenerator(executor, recipe.config, seed=recipe.seed, bar=bar)
    parts = gen.generate(recipe.n)
    programs = [p.text for p in parts]
    return (programs, [p.fingerprint for p in parts]) if with_fingerprints else programs


def freeze_source(executor) -> str:
    """Source of :mod:`._testset_programs` (run ``python -m img2prog.lang.cadquery.testsets``)."""
    lines = ['"""Frozen CadQuery test-set programs (generated by img2prog.lang.cadquery.testsets; do not edit)."""',
             "", "# name: (programs, fingerprints, sha256 of the programs)", "SETS = {"]
    for name in testset_names():
        programs, fingerprints = build_testset(name, executor, with_fingerprints=True)
        lines.append(f"    {name!r}: (")
        lines.append("        (")
        lines += [f"            {p!r}," for p in programs]
        lines.append("        ),")
        lines.append("        (")
        lines += [f"            {tuple(f)!r}," for f in fingerprints]
        lines.append("        ),")
        lines.append(f"        {digest(programs)!r},")
        lines.append("    ),")
    lines.append("}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":  # regenerate the frozen programs
    import sys
    from pathlib import Path

    from img2prog.lang.cadquery.sandbox import Executor

    with Executor(workers=2) as ex:
        src = freeze_source(ex)
    target = Path(__file__).with_name("_testset_programs.py")
    target.write_text(src)
    print(f"wrote {target}", file=sys.stderr)
