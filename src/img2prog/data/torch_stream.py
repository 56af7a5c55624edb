"""PyTorch ``IterableDataset`` over :class:`~img2prog.data.stream.ProgramStream`.

Importing this module imports torch; the rest of :mod:`img2prog.data` does not.

Sharding: with ``W`` DataLoader workers on each of ``R`` ranks, worker ``w`` on rank ``r``
serves shard ``r * W + w`` of ``R * W``. Shards emit disjoint programs and each is
deterministic (see :mod:`img2prog.data.stream`), so a run is reproducible for a given seed,
world size and worker count.

Resuming exactly::

    ds = SyntheticProgramDataset(StreamConfig(seed=1, image_size=64))
    loader = DataLoader(ds, batch_size=256, num_workers=4)
    for step, batch in enumerate(loader):
        ...                      # train
        ds.advance(batch)        # record which samples were consumed (cheap)
        if step % 1000 == 0:
            save({"data": ds.state_dict(), ...})

    # later, in a new process, with the same world size and num_workers:
    ds = SyntheticProgramDataset(StreamConfig(seed=1, image_size=64))
    ds.load_state_dict(saved["data"])
    loader = DataLoader(ds, batch_size=256, num_workers=4)   # continues where it stopped

``advance`` reads each sample's ``shard``, ``index`` and ``num_shards`` fields, which come with
every sample (keep them through any ``transform``), so prefetched-but-unused batches never
count as consumed, and a resume with a different worker count or world size is refused
instead of silently replaying or skipping data.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

import torch
from torch.utils.data import IterableDataset, get_worker_info

from img2prog.data.barring import BarSet
from img2prog.data.stream import ProgramStream, StreamConfig, build_bar

STATE_VERSION = 1


def _dist_rank_world() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


class SyntheticProgramDataset(IterableDataset):
    """Endless validated samples, sharded over DataLoader workers and distributed ranks.

    ``rank``/``world_size`` default to ``torch.distributed``'s when it is initialised, else
    0 and 1. ``bar`` adds programs to the standard test sets that ``config.bar_standard``
    already bars. ``transform`` is applied to each sample dict inside the worker (e.g. to
    tokenise); it should keep the ``shard``, ``index`` and ``num_shards`` fields (the wrapper
    adds ``num_shards`` to every sample) for :meth:`advance`.
    """

    def __init__(
        self,
        config: StreamConfig | None = None,
        *,
        bar: BarSet | None = None,
        rank: int | None = None,
        world_size: int | None = None,
        transform: Callable[[dict], Any] | None = None,
    ):
        super().__init__()
        self.config = config or StreamConfig()
        if (rank is None) != (world_size is None):
            raise ValueError("give both rank and world_size, or neither")
        if rank is not None and not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in 0..{world_size - 1}")
        self.rank = rank
        self.world_size = world_size
        self.transform = transform
        # Built once here, in the main process, and pickled to the workers with the dataset.
        self.bar = build_bar(self.config, bar)
        self._positions: dict[int, int] = {}
        self._num_shards: int | None = None  # fixed by load_state_dict or the first advance

    # --- sharding ----------------------------------------------------------------------
    def _rank_world(self) -> tuple[int, int]:
        if self.rank is not None:
            return self.rank, self.world_size
        return _dist_rank_world()

    def shard_info(self) -> tuple[int, int]:
        """(shard, num_shards) of the calling process (a DataLoader worker or the main one).

        Worker ``w`` of rank ``r`` serves shard ``r·W + (w + k) mod W``. The rotation ``k`` is 0
        on a fresh start; on a resume it is the first of the rank's shards that is furthest
        behind. A DataLoader polls its workers round robin starting with worker 0, so after
        ``K`` consumed batches the next one must come from shard ``K mod W`` — which is the
        first shard furthest behind — for the resumed run to replay the batch order exactly.
        """
        rank, world = self._rank_world()
        info = get_worker_info()
        wid, nworkers = (info.id, info.num_workers) if info is not None else (0, 1)
        base = rank * nworkers
        behind = [self._positions.get(base + j, 0) for j in range(nworkers)]
        k = behind.index(min(behind))
        return base + (wid + k) % nworkers, world * nworkers

    def __iter__(self) -> Iterator[Any]:
        shard, num_shards = self.shard_info()
        if self._num_shards is not None and self._num_shards != num_shards:
            raise RuntimeError(
                f"this stream state was recorded with {self._num_shards} shards "
                f"(ranks × DataLoader workers), but it now runs with {num_shards}; resume with "
                "the same world size and num_workers"
            )
        stream = ProgramStream(self.config, shard, num_shards, self._positions.get(shard, 0), self.bar)
        for sample in stream:
            sample["num_shards"] = num_shards
            yield self.transform(sample) if self.transform is not None else sample

    # --- resume ------------------------------------------------------------------------
    def advance(self, batch: Mapping[str, Any]) -> None:
        """Record that the samples of ``batch`` (a collated batch or one sample) were consumed."""
        shards, indices, counts = batch["shard"], batch["index"], batch.get("num_shards")
        if isinstance(shards, torch.Tensor):
            shards, indices = shards.reshape(-1).tolist(), indices.reshape(-1).tolist()
            counts = counts.reshape(-1).tolist() if isinstance(counts, torch.Tensor) else counts
        elif isinstance(shards, int):
            shards, indices, counts = [shards], [indices], [counts] if counts is not None else None
        pos = self._positions
        for s, i in zip(shards, indices):
            if i + 1 > pos.get(s, 0):
                pos[s] = i + 1
        if counts:
            n = int(counts[0])
            if self._num_shards is not None and self._num_shards != n:
                raise RuntimeError(f"batch comes from {n} shards but the stream state has {self._num_shards}")
            self._num_shards = n

    def state_dict(self) -> dict:
        """The consumed position of every shard seen so far, plus the stream's identity."""
        return {
            "version": STATE_VERSION,
            "config": self.config.to_dict(),
            "num_shards": self._num_shards,
            "positions": {str(k): v for k, v in sorted(self._positions.items())},
        }

    def load_state_dict(self, state: Mapping[str, Any], num_shards: int | None = None) -> None:
        """Continue from ``state``. The config must match; ``num_shards`` (ranks × workers),
        if given or recorded, is checked when iteration starts."""
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"unsupported stream state version {state.get('version')!r}")
        now = self.config.to_dict()
        if state["config"] != now:
            diff = {k: (v, now.get(k)) for k, v in state["config"].items() if now.get(k) != v}
            raise ValueError(f"stream state was saved with a different config (field: (saved, now)): {diff}")
        self._positions = {int(k): int(v) for k, v in state["positions"].items()}
        self._num_shards = num_shards if num_shards is not None else state.get("num_shards")
