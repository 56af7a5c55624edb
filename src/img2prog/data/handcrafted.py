"""The handcrafted generator: sampled programs that pass exact quality checks.

Every emitted sample satisfies, for the profile it was drawn from:

1. it renders (the geometry engine evaluates it);
2. its canvas coverage at 256 px lies within the profile's bounds;
3. every operand of every operation changes the image (checked by removing it and
   re-rendering, see :mod:`img2prog.data.checks`) at every checked size;
4. it is not barred, neither by spelling nor by image (see :mod:`img2prog.data.barring`);
5. no two samples share a canonical program or an image (within a block for streams,
   globally for :func:`generate`);
6. quad angles are multiples of 45 (the profile refuses anything else).

Programs are produced in *blocks*. Block ``j`` of shard ``s`` is a pure function of
``(seed, s, num_shards, j)``: its random stream is seeded from those numbers and its
duplicate filter starts empty. That makes three things cheap: parallel generation (blocks go
to worker processes and are merged in order, so the output does not depend on the number of
workers), exact resumption of a stream (regenerate one block, skip what was consumed), and
disjoint shards (see :func:`leaf_owner`).
"""

from __future__ import annotations

import hashlib
import os
import random
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import shapely.errors

from img2prog.data.barring import BarSet
from img2prog.data.checks import SPEC_SIZE, Evaluated, black_share, image_key, remove_operand
from img2prog.data.profiles import Mixture, Profile, parse_mixture
from img2prog.data.sampler import Sampler, weighted
from img2prog.lang.csg2d.ast import Circle, Primitive, Quad, Shape, primitives
from img2prog.lang.errors import ProgramError

#: Bump when the programs drawn for a given seed change (sampler or validator changes). The
#: frozen test sets record the version that made them; see :mod:`img2prog.data.testsets`.
GENERATOR_VERSION = "handcrafted-1"


def derive_seed(*parts: object) -> int:
    """A 64-bit seed from any tuple of ints/strings, stable across Python versions and runs."""
    text = "\x1f".join(str(p) for p in parts).encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "little")


def leaf_owner(leaf: Primitive, num_shards: int) -> int:
    """The shard that owns programs whose leftmost primitive is ``leaf``.

    Identical programs have identical leftmost primitives, so shards that only emit programs
    whose leftmost primitive they own can never emit the same program. The split is a hash,
    so every shard owns a spread-out 1/num_shards of all primitives, not a corner of the canvas.
    """
    if num_shards <= 1:
        return 0
    digest = hashlib.blake2b(str(leaf).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") % num_shards


def leftmost_primitive(program: Shape) -> Primitive:
    node = program
    while not isinstance(node, (Circle, Quad)):
        node = node.operands[0]
    return node


@dataclass
class Sample:
    """One accepted program with its rendering (greyscale, at the block's output size)."""

    program: str  # canonical text
    profile: str
    image: np.ndarray  # (S, S) uint8, 0 = black
    coverage: float  # share of black pixels at 256 px


class Seen:
    """Duplicate filter: canonical programs and image fingerprints already emitted."""

    def __init__(self) -> None:
        self.programs: set[str] = set()
        self.images: set[bytes] = set()

    def __len__(self) -> int:
        return len(self.programs)


@dataclass
class Accepted:
    text: str  # canonical program
    evaluated: Evaluated  # geometry and renderings
    coverage: float  # share of black pixels at 256 px


@dataclass
class Validator:
    """Applies the generator's guarantees to one candidate at a time.

    ``sizes`` are the image sizes at which non-degeneracy, barring and duplicates are checked;
    256 px (the SPEC size) is always included. ``rejected`` counts rejections by reason.

    With ``prune`` (the default) a candidate with a degenerate operand is not thrown away
    at once: the operand is removed — which by definition leaves the image unchanged — and
    the smaller program is checked again from the start, as long as it keeps at least the
    profile's minimum number of primitives. ``pruned`` counts operands removed this way.
    """

    bar: BarSet | None = None
    sizes: tuple[int, ...] = (SPEC_SIZE,)
    prune: bool = True
    rejected: Counter = field(default_factory=Counter)
    pruned: int = 0

    def __post_init__(self) -> None:
        # Smallest first: a removal invisible at the small size is rejected before the
        # dearer 256-px raster is drawn (an accepted operand must pass every size anyway).
        self.sizes = tuple(sorted(set(self.sizes) | {SPEC_SIZE}))
        if self.bar is not None:
            for s in self.sizes:  # compute the bar's image keys once, up front
                self.bar.image_keys(s)

    def check(
        self,
        program: Shape,
        profile: Profile,
        seen: Seen | None,
        known: dict | None = None,
        owned: Callable[[Primitive], bool] | None = None,
    ) -> Accepted | None:
        """The accepted program (possibly pruned) if it passes every check, else None.

        Cheap checks run first: spelling (bar, duplicate), then coverage, then images (bar,
        duplicate), and last the removal test, which costs one render per operand.
        ``owned`` (streams' shard split) must accept the leftmost primitive; pruning can
        remove it, so it is checked again after every pruning step.
        """
        lo_n, hi_n = profile.primitive_range
        lo_c, hi_c = profile.coverage
        while True:
            n_prims = len(primitives(program))
            if not lo_n <= n_prims <= hi_n:
                return self._reject("primitive_count")
            if owned is not None and not owned(leftmost_primitive(program)):
                return self._reject("other_shard")
            text = str(program)
            if self.bar is not None and self.bar.bars_canonical(text):
                return self._reject("barred_program")
            if seen is not None and text in seen.programs:
                return self._reject("duplicate_program")
            try:
                ev = Evaluated(program, known)
            except ProgramError:
                return self._reject("render_error")
            cov = black_share(ev.image(SPEC_SIZE))
            if not lo_c <= cov <= hi_c:
                return self._reject("coverage")
            keys = []
            for size in self.sizes:
                key = image_key(ev.image(size))
                if self.bar is not None and key in self.bar.image_keys(size):
                    return self._reject("barred_image")
                if seen is not None and key in seen.images:
                    return self._reject("duplicate_image")
                keys.append(key)
            bad = ev.degenerate_operands(self.sizes, first_only=True)
            if not bad:
                break
            if not self.prune:
                return self._reject("degenerate")
            program, known = remove_operand(program, bad[0]), ev.nodes
            self.pruned += 1
        if seen is not None:
            seen.programs.add(text)
            seen.images.update(keys)
        return Accepted(text, ev, cov)

    def _reject(self, reason: str) -> None:
        self.rejected[reason] += 1


@dataclass(frozen=True)
class BlockSpec:
    """Everything that determines a block's content."""

    mixture: Mixture
    seed: int
    shard: int = 0
    num_shards: int = 1
    block_size: int = 512
    image_size: int = SPEC_SIZE
    check_image_size: bool = True  # also require the guarantees at image_size


class GenerationStalled(RuntimeError):
    """The generator rejects (almost) everything: the profile or the bar set leave no room."""


def iter_block(
    spec: BlockSpec,
    block: int,
    bar: BarSet | None,
    validator: Validator | None = None,
    max_consecutive_rejections: int = 20_000,
) -> Iterator[Sample]:
    """Yield the samples of block ``block`` (``spec.block_size`` of them), in order."""
    if not 0 <= spec.shard < spec.num_shards:
        raise ValueError(f"shard {spec.shard} is not in 0..{spec.num_shards - 1}")
    sizes = (SPEC_SIZE, spec.image_size) if spec.check_image_size else (SPEC_SIZE,)
    validator = validator or Validator(bar, sizes)
    rng = random.Random(derive_seed("img2prog.handcrafted", spec.seed, spec.shard, spec.num_shards, block))
    owner_ok: Callable[[Primitive], bool] | None = None
    if spec.num_shards > 1:
        owner_ok = lambda leaf: leaf_owner(leaf, spec.num_shards) == spec.shard
    components = [(Sampler(p, rng, owner_ok), w) for p, w in zip(spec.mixture.profiles, spec.mixture.weights)]
    single = len(components) == 1
    seen = Seen()
    produced = misses = 0
    while produced < spec.block_size:
        sampler = components[0][0] if single else weighted(rng, components)
        try:
            candidate = sampler.sample()
        except shapely.errors.GEOSException:
            # The sampler's local checks run boolean operations; GEOS gives up on a few
            # degenerate configurations (as the SPEC recipe would when rendering them). Such a
            # candidate could never be rendered, so it is a rejection like any other.
            validator.rejected["render_error"] += 1
            ok = None
        else:
            ok = validator.check(candidate, sampler.p, seen, sampler.geometries, owner_ok)
        if ok is None:
            misses += 1
            if misses >= max_consecutive_rejections:
                top = ", ".join(f"{k}={v}" for k, v in validator.rejected.most_common())
                raise GenerationStalled(
                    f"{misses} candidates in a row were rejected (profile mix {spec.mixture.spec()!r}, "
                    f"block {block}); rejections so far: {top}"
                )
            continue
        misses = 0
        produced += 1
        yield Sample(ok.text, sampler.p.name, ok.evaluated.image(spec.image_size), ok.coverage)


def _block_job(args) -> tuple[list[Sample], Counter]:
    spec, block, bar = args
    v = Validator(bar, (SPEC_SIZE, spec.image_size) if spec.check_image_size else (SPEC_SIZE,))
    return list(iter_block(spec, block, bar, v)), v.rejected


@dataclass
class GenerationResult:
    samples: list[Sample]
    rejected: Counter
    blocks: int


def generate(
    n: int,
    seed: int = 0,
    profile: str | Profile | Mixture = "default",
    bar: BarSet | None = None,
    workers: int | None = 1,
    block_size: int = 64,
    image_size: int = SPEC_SIZE,
    progress: Callable[[int], None] | None = None,
) -> GenerationResult:
    """Exactly ``n`` samples satisfying every guarantee, the same for a seed on any machine.

    The samples are the first ``n`` of block 0, 1, 2, ... (shard 0 of 1) that are new across
    blocks (no canonical program or image twice in the whole result). ``workers`` processes
    generate blocks in parallel; the result does not depend on how many. ``progress`` is
    called with the number of samples accepted so far.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    mixture = parse_mixture(profile)
    spec = BlockSpec(mixture, seed, 0, 1, block_size, image_size)
    if bar is not None:
        bar.image_keys(SPEC_SIZE)
        bar.image_keys(image_size)
    workers = max(1, workers or (os.cpu_count() or 1))
    out: list[Sample] = []
    seen_programs: set[str] = set()
    seen_images: set[bytes] = set()
    rejected: Counter = Counter()
    block = 0

    def take(samples: list[Sample]) -> bool:
        for s in samples:
            key = image_key(s.image)
            if s.program in seen_programs or key in seen_images:
                rejected["duplicate_across_blocks"] += 1
                continue
            seen_programs.add(s.program)
            seen_images.add(key)
            out.append(s)
            if len(out) == n:
                return True
        return False

    done = n == 0
    if workers == 1:
        while not done:
            samples, rej = _block_job((spec, block, bar))
            rejected += rej
            block += 1
            done = take(samples)
            if progress:
                progress(len(out))
        return GenerationResult(out, rejected, block)
    with ProcessPoolExecutor(max_workers=workers) as pool:
        pending = []
        while not done:
            # Keep the pool busy with the next blocks, but do not start blocks the result
            # cannot need; merge strictly in block order.
            needed = -(-(n - len(out)) // block_size)
            while len(pending) < min(2 * workers, max(needed, 1)):
                pending.append(pool.submit(_block_job, (spec, block + len(pending), bar)))
            samples, rej = pending.pop(0).result()
            rejected += rej
            block += 1
            done = take(samples)
            if progress:
                progress(len(out))
        pool.shutdown(cancel_futures=True)
    return GenerationResult(out, rejected, block)


def sample_candidates(profile: str | Profile, n: int, seed: int = 0) -> list[Shape]:
    """Raw sampler output (unvalidated), for inspecting what validation removes."""
    mixture = parse_mixture(profile)
    rng = random.Random(derive_seed("img2prog.candidates", seed))
    samplers = [(Sampler(p, rng), w) for p, w in zip(mixture.profiles, mixture.weights)]
    return [weighted(rng, samplers).sample() for _ in range(n)]


def programs_of(samples: Sequence[Sample]) -> list[str]:
    return [s.program for s in samples]
