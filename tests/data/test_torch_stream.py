"""SyntheticProgramDataset: worker and rank sharding, determinism, exact resume via state_dict."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch.utils.data import DataLoader

from img2prog.data.stream import ProgramStream, StreamConfig
from img2prog.data.torch_stream import SyntheticProgramDataset

CFG = StreamConfig(profile="default", seed=11, image_size=32, block_size=12, bar_standard=False)


def _batches(ds, n, workers, batch_size=4):
    loader = DataLoader(ds, batch_size=batch_size, num_workers=workers)
    return list(itertools.islice(iter(loader), n))


def _programs(batches):
    return [p for b in batches for p in b["program"]]


def test_workers_serve_disjoint_shards_deterministically():
    batches = _batches(SyntheticProgramDataset(CFG), 6, workers=2)
    assert [int(b["shard"][0]) for b in batches] == [0, 1, 0, 1, 0, 1]  # round robin over workers
    assert all(int(b["num_shards"][0]) == 2 for b in batches)
    programs = _programs(batches)
    assert len(set(programs)) == len(programs)
    # Worker w yields exactly shard w of 2 of the plain stream.
    shard1 = ProgramStream(CFG, 1, 2).take(12)
    assert _programs(batches[1::2]) == [s["program"] for s in shard1]
    assert _programs(_batches(SyntheticProgramDataset(CFG), 6, workers=2)) == programs
    img = batches[0]["image"]
    assert img.shape == (4, 32, 32) and img.dtype == torch.uint8


def test_ranks_split_the_data():
    r0 = _programs(_batches(SyntheticProgramDataset(CFG, rank=0, world_size=2), 4, workers=0))
    r1 = _programs(_batches(SyntheticProgramDataset(CFG, rank=1, world_size=2), 4, workers=0))
    assert not set(r0) & set(r1)
    with pytest.raises(ValueError):
        SyntheticProgramDataset(CFG, rank=0)


@pytest.mark.parametrize("workers", [0, 2])
def test_exact_resume_from_state_dict(workers):
    full = _batches(SyntheticProgramDataset(CFG), 10, workers)
    ds = SyntheticProgramDataset(CFG)
    for b in _batches(ds, 10, workers)[:5]:  # consume five batches (more were prefetched)
        ds.advance(b)
    state = ds.state_dict()
    assert state["num_shards"] == (workers or 1)
    resumed = SyntheticProgramDataset(CFG)
    resumed.load_state_dict(state)
    rest = _batches(resumed, 5, workers)
    assert _programs(rest) == _programs(full[5:])
    assert all(np.array_equal(a["image"], b["image"]) for a, b in zip(rest, full[5:]))


def test_resume_with_another_worker_count_is_refused():
    ds = SyntheticProgramDataset(CFG)
    for b in _batches(ds, 2, workers=2):
        ds.advance(b)
    resumed = SyntheticProgramDataset(CFG)
    resumed.load_state_dict(ds.state_dict())
    with pytest.raises(RuntimeError, match="same world size and num_workers"):
        next(iter(resumed))  # num_workers=0 here: 1 shard instead of 2


def test_state_from_another_config_is_refused():
    ds = SyntheticProgramDataset(CFG)
    other = SyntheticProgramDataset(StreamConfig(**{**CFG.to_dict(), "seed": 12}))
    with pytest.raises(ValueError, match="seed"):
        other.load_state_dict(ds.state_dict())


def test_transform_runs_per_sample():
    ds = SyntheticProgramDataset(CFG, transform=lambda s: {**s, "length": len(s["program"])})
    sample = next(iter(ds))
    assert sample["length"] == len(sample["program"])
