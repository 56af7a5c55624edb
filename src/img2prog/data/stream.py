"""An endless, sharded, resumable stream of validated training samples.

:class:`ProgramStream` is a plain Python iterator (no torch needed); the PyTorch wrapper
(:class:`img2prog.data.torch_stream.SyntheticProgramDataset`) only decides which shard a
DataLoader worker on a given rank serves and tracks how far each shard has been consumed.

Guarantees, per sample: everything :mod:`img2prog.data.handcrafted` guarantees (renders,
coverage within its profile's bounds, every operand changes the image at 256 px *and* at the
stream's image size, not barred by spelling or image at either size), with these scopes:

- **Deterministic**: sample ``i`` of shard ``s`` is a function of ``(seed, profile mix,
  block_size, image_size, s, num_shards, i)`` only — not of timing, worker start order or
  how many samples were skipped.
- **Disjoint shards**: a shard only emits programs whose leftmost primitive it owns
  (:func:`~img2prog.data.handcrafted.leaf_owner`), so no program is emitted by two shards.
  Two *different* programs drawn by different shards can still draw the same image.
- **Duplicates**: within a block of ``block_size`` consecutive samples of a shard there is no
  repeated program or image. Across blocks there is no check (that would need unbounded
  memory, or state that a resumed run cannot rebuild cheaply); for rich profiles repeats are
  rare, for a tiny space such as ``simple`` they become common after many blocks.
- **Exact resume**: starting a shard at index ``i`` regenerates block ``i // block_size``
  and drops its first ``i % block_size`` samples, so a resumed run continues with the same
  samples an uninterrupted one would have produced, at the cost of at most one block.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass
from itertools import islice

import numpy as np

from img2prog.data.barring import BarSet
from img2prog.data.checks import SPEC_SIZE
from img2prog.data.handcrafted import BlockSpec, Validator, iter_block
from img2prog.data.profiles import parse_mixture


@dataclass(frozen=True)
class StreamConfig:
    """What a training stream emits. Everything here goes into the stream's identity."""

    #: profile name, mixture name (``"mixed"``) or weighted mix (``"default=0.7,hard=0.3"``)
    profile: str = "default"
    seed: int = 0
    #: side of the emitted images in pixels (rendered exactly at this size, not resized)
    image_size: int = 128
    #: samples per block: the duplicate-filter window and the most a resume regenerates
    block_size: int = 1024
    #: emit (S, S, 3) RGB images as the SPEC does, else (S, S) greyscale
    rgb: bool = False
    #: bar every standard held-out test set (see :mod:`img2prog.data.testsets`)
    bar_standard: bool = True

    def __post_init__(self) -> None:
        parse_mixture(self.profile)  # fail early on unknown profiles
        if type(self.image_size) is not int or not 1 <= self.image_size <= 8192:
            raise ValueError(f"image_size must be an integer in 1..8192, got {self.image_size!r}")
        if self.block_size < 1:
            raise ValueError(f"block_size must be >= 1, got {self.block_size}")

    def to_dict(self) -> dict:
        return asdict(self)


def build_bar(config: StreamConfig, bar: BarSet | None) -> BarSet | None:
    """The bar set a stream uses: the standard test sets (unless disabled) plus ``bar``."""
    if config.bar_standard:
        from img2prog.data.testsets import standard_bar

        full = standard_bar()
        if bar is not None:
            full = full.union(bar)
    else:
        full = bar
    if full is not None:  # compute image keys now, so worker processes receive them
        full.image_keys(SPEC_SIZE)
        full.image_keys(config.image_size)
    return full


class ProgramStream:
    """The endless sample stream of one shard.

    Each sample is a dict: ``program`` (canonical text), ``image`` (uint8, 0 = black; (S, S)
    or (S, S, 3) with ``config.rgb``), ``profile`` (which profile drew it), ``shard`` and
    ``index`` (its position in the shard: the resume cursor).

    ``bar`` is used as given (no standard sets added); pass :func:`build_bar`'s result, or
    leave it None to have the stream build it from ``config``.
    """

    def __init__(
        self,
        config: StreamConfig,
        shard: int = 0,
        num_shards: int = 1,
        start: int = 0,
        bar: BarSet | None = None,
    ):
        if not 0 <= shard < num_shards:
            raise ValueError(f"shard {shard} is not in 0..{num_shards - 1}")
        if start < 0:
            raise ValueError(f"start must be >= 0, got {start}")
        self.config = config
        self.shard = shard
        self.num_shards = num_shards
        self.start = start
        self.bar = bar if bar is not None else build_bar(config, None)
        self.spec = BlockSpec(
            mixture=parse_mixture(config.profile),
            seed=config.seed,
            shard=shard,
            num_shards=num_shards,
            block_size=config.block_size,
            image_size=config.image_size,
            check_image_size=True,
        )
        sizes = (SPEC_SIZE, config.image_size)
        self.validator = Validator(self.bar, sizes)

    def __iter__(self) -> Iterator[dict]:
        bs = self.config.block_size
        block, skip = divmod(self.start, bs)
        index = self.start
        while True:
            for j, sample in enumerate(iter_block(self.spec, block, self.bar, self.validator)):
                if j < skip:
                    continue
                # A writable array of its own (the rendering cache hands out read-only views,
                # and torch warns about wrapping those).
                img = np.repeat(sample.image[:, :, None], 3, axis=2) if self.config.rgb else sample.image.copy()
                yield {
                    "program": sample.program,
                    "image": img,
                    "profile": sample.profile,
                    "shard": self.shard,
                    "index": index,
                }
                index += 1
            block += 1
            skip = 0

    def take(self, n: int) -> list[dict]:
        """The next ``n`` samples from ``start`` (convenience for scripts and tests)."""
        return list(islice(self, n))
