"""Training data for the native model: the handcrafted generator, pooled so a GPU never starves.

Why pooled: every accepted sample costs the generator several exact renders (the sample, its
removal test per operand, duplicate and bar checks), a few hundred samples per second per
core, while a small model on one H100 consumes tens of thousands per second. Streaming
sample by sample makes training data-bound. Instead training walks through *chunks*:

- chunk ``k`` of virtual shard ``v`` is the generator's blocks ``k·C … k·C + C − 1`` of shard
  ``v`` (of ``data_shards``), so it is a pure function of ``(mixture, seed, v, k)``;
- each chunk is used for ``reuse`` passes in a seeded random order, while worker processes
  generate the next chunk in the background;
- the images travel as bit-packed black masks (8 KiB at 256 px) and live on the GPU.

``reuse`` trades freshness for throughput: with generation at D samples/s and training at T,
``reuse ≈ T / D`` keeps both busy; the trainer logs the time it waited for data, so whether
a run was data- or compute-bound is measured, not guessed.

The batch at a step depends only on ``(config, step)``: ``data_shards`` is fixed for a run
(default: the number of processes at its start), each process owns the shards
``v ≡ rank (mod world)``, and a process's local batch is the concatenation of its shards'
parts. So a run resumes exactly from its step number, and the same global batch comes out of
one process or several (which the DDP test checks).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import time
import warnings
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import asdict, dataclass

import numpy as np
import torch

from img2prog.data.barring import BarSet
from img2prog.data.handcrafted import BlockSpec, derive_seed, iter_block
from img2prog.data.profiles import parse_mixture
from img2prog.lang.csg2d import tokens as T
from img2prog.lang.csg2d.parser import parse

# The four qualitative programs of SPEC §3: never trained on, whatever the test sets are.
QUALITATIVE = (
    "(+ (Quad 8 10 2 8 0) (Quad 8 3 2 2 0))",
    "(+ (Quad 4 4 2 4 0) (Quad 12 4 2 4 45) (Quad 4 12 2 4 90) (Quad 12 12 2 4 135))",
    "(+ (- (Circle 5 7 5) (Circle 5 7 6)) (Quad 7 6 2 2 45) (Circle 2 4 10) (Circle 2 10 10))",
    ("(- (+ (- (Circle 5 8 8) (Circle 4 8 8)) (- (Circle 4 8 12) (Circle 3 8 13)) (- (Circle 4 5 6) "
     "(Circle 3 4 5)) (- (Circle 4 11 6) (Circle 3 12 5))) (Circle 2 8 8))"),
)


def barred_programs() -> list[str]:
    """Every program training must never see: the named test sets and the qualitative four."""
    programs = list(QUALITATIVE)
    try:
        from img2prog.data import testsets
    except ModuleNotFoundError as e:
        if e.name != "img2prog.data.testsets":
            raise
        return programs
    if hasattr(testsets, "standard_bar"):  # the data package's own definition of "barred"
        try:
            return programs + list(testsets.standard_bar().programs)
        except ModuleNotFoundError as e:
            # The frozen programs are missing (a checkout in the making): re-run the recipes,
            # which make the same programs while the generator version is unchanged.
            warnings.warn(f"frozen test sets unavailable ({e}); rebuilding them from their recipes to bar them")
            built: dict[str, list[str]] = {}
            for name in ("csg2d-qualitative", "csg2d-test", "csg2d-hard"):
                key = testsets.get_recipe(name).key
                built[key] = testsets.build_testset(name, _built=built)
                programs += built[key]
            return programs
    if hasattr(testsets, "barred_programs"):
        return programs + list(testsets.barred_programs())
    names = getattr(testsets, "TESTSETS", None) or getattr(testsets, "NAMES", None) or ()
    for name in names:
        programs += [p for p in testsets.load_testset(name)["program"] if p]
    return programs


@dataclass(frozen=True)
class DataConfig:
    mixture: str = "mixed"  # generator profile or mixture (see img2prog.data.profiles)
    seed: int = 0
    image_size: int = 256
    block_size: int = 256  # generator block (its duplicate filter spans a block)
    chunk_blocks: int = 128  # blocks per chunk and shard: 32768 samples by default
    reuse: int = 4  # passes over each chunk
    data_shards: int = 1  # virtual shards; must be a multiple of the number of processes
    max_len: int = 192  # longest token sequence kept, <bos> and <eos> included
    # A precomputed dataset file (img2prog.data.cad_dataset) instead of the csg2d generator:
    # languages whose pictures need a geometry kernel train from one (models/cad_data.py).
    dataset: str | None = None

    @property
    def chunk_size(self) -> int:
        return self.block_size * self.chunk_blocks


# ---- worker side ----------------------------------------------------------------------------

_BAR: BarSet | None = None


def _init_worker(bar_programs: list[str], sizes: tuple[int, ...]) -> None:
    global _BAR
    torch.set_num_threads(1)
    _BAR = BarSet(bar_programs)
    for s in sizes:
        _BAR.image_keys(s)  # fingerprint the bar once per worker, not once per block


def make_block(cfg: DataConfig, shard: int, block: int) -> tuple[np.ndarray, np.ndarray, int]:
    """One generator block as (packed black masks (n, S·S/8) uint8, tokens (n, max_len) int16,
    number of samples dropped for being longer than ``max_len``)."""
    spec = BlockSpec(parse_mixture(cfg.mixture), cfg.seed, shard, cfg.data_shards, cfg.block_size, cfg.image_size)
    images, toks, dropped = [], [], 0
    try:
        for s in _samples(spec, block):
            ids = T.encode(parse(s.program))
            if len(ids) + 2 > cfg.max_len:
                dropped += 1
                continue
            row = np.zeros(cfg.max_len, dtype=np.int16)
            row[0], row[1 : len(ids) + 1], row[len(ids) + 1] = T.BOS, ids, T.EOS
            toks.append(row)
            images.append(np.packbits(s.image == 0))
    except Exception as e:  # noqa: BLE001
        # The geometry engine can fail inside the generator (GEOS assertion on a degenerate
        # candidate). A block is deterministic, so it fails the same way every time: keep
        # what it produced and go on, rather than lose the training run.
        warnings.warn(f"generator block {block} of shard {shard} stopped early ({type(e).__name__}: {e})")
        dropped += cfg.block_size - len(images)
    S = cfg.image_size
    return (np.stack(images) if images else np.zeros((0, S * S // 8), np.uint8),
            np.stack(toks) if toks else np.zeros((0, cfg.max_len), np.int16), dropped)


def _samples(spec: BlockSpec, block: int):
    return iter_block(spec, block, _BAR)


def _block_job(args):
    cfg, shard, block = args
    return make_block(DataConfig(**cfg), shard, block)


# ---- trainer side ---------------------------------------------------------------------------


def unpack_images(packed: torch.Tensor, size: int) -> torch.Tensor:
    """(B, S·S/8) uint8 bit-packed black masks → (B, 1, S, S) float, black = 1."""
    shifts = torch.arange(7, -1, -1, device=packed.device, dtype=torch.uint8)
    bits = (packed[:, :, None] >> shifts) & 1
    return bits.reshape(packed.shape[0], 1, size, size).float()


class ChunkLoader:
    """Serves the batches of the shards ``shards`` step by step (see module docstring).

    ``workers=0`` generates in this process (tests); otherwise a process pool generates the
    next chunk while the current one is trained on.
    """

    def __init__(self, cfg: DataConfig, shards: list[int], local_batch: int, device: torch.device,
                 workers: int | None = None, bar_programs: list[str] | None = None):
        if local_batch % len(shards):
            raise ValueError(f"local batch {local_batch} is not divisible by {len(shards)} data shards")
        self.cfg, self.shards, self.device = cfg, list(shards), device
        self.per_shard = local_batch // len(shards)
        bar_programs = barred_programs() if bar_programs is None else bar_programs
        self.workers = (os.cpu_count() or 2) - 1 if workers is None else workers
        self.pool = None
        if self.workers > 0:
            # spawn, not fork: the trainer may already hold a CUDA context.
            self.pool = ProcessPoolExecutor(self.workers, mp_context=mp.get_context("spawn"), initializer=_init_worker,
                                            initargs=(bar_programs, (256, cfg.image_size)))
        else:
            _init_worker(bar_programs, (256, cfg.image_size))
        self.chunk_index = -1
        # per shard: images and tokens (on the device), lengths and order (on the CPU)
        self.data: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]] = []
        self.pending: tuple[int, list[list[Future]]] | None = None
        self.wait_seconds = 0.0  # total time spent waiting for chunks
        self.samples_generated = 0
        self.dropped = 0
        # Generation speed: per chunk, samples / (last block done − submission).
        self._submitted: dict[int, float] = {}
        self._done_at: dict[int, float] = {}
        self.gen_rates: list[float] = []

    def steps_per_chunk(self, n: int | None = None) -> int:
        """Steps one chunk lasts (chunks may lose a few over-long samples; the shortest counts)."""
        n = self.cfg.chunk_size if n is None else n
        return max(1, n * self.cfg.reuse // self.per_shard)

    def _submit(self, k: int) -> tuple[int, list]:
        jobs = []
        cfgd = asdict(self.cfg)
        self._submitted[k] = time.perf_counter()

        def mark(_f, k=k):
            self._done_at[k] = time.perf_counter()

        for v in self.shards:
            blocks = range(k * self.cfg.chunk_blocks, (k + 1) * self.cfg.chunk_blocks)
            if self.pool is None:
                jobs.append([make_block(self.cfg, v, b) for b in blocks])
            else:
                futs = [self.pool.submit(_block_job, (cfgd, v, b)) for b in blocks]
                for f in futs:
                    f.add_done_callback(mark)
                jobs.append(futs)
        return k, jobs

    def _load(self, k: int) -> None:
        t0 = time.perf_counter()
        if self.pending is None or self.pending[0] != k:
            self.pending = self._submit(k)
        _, jobs = self.pending
        data = []
        for v, blocks in zip(self.shards, jobs):
            parts = [b.result() if isinstance(b, Future) else b for b in blocks]
            imgs = torch.from_numpy(np.concatenate([p[0] for p in parts]))
            toks = torch.from_numpy(np.concatenate([p[1] for p in parts]))
            self.dropped += sum(p[2] for p in parts)
            self.samples_generated += len(imgs)
            # A seeded order of `reuse` passes, each a fresh permutation of the chunk.
            g = torch.Generator().manual_seed(derive_seed("img2prog.native.order", self.cfg.seed, v, k) % 2**63)
            order = torch.cat([torch.randperm(len(imgs), generator=g) for _ in range(self.cfg.reuse)])
            lens = (toks != T.PAD).sum(1)
            data.append((imgs.to(self.device), toks.to(self.device), lens, order))
        self.data, self.chunk_index = data, k
        n = sum(len(x[0]) for x in data)
        took = self._done_at.get(k, time.perf_counter()) - self._submitted.get(k, t0)
        if took > 0:
            self.gen_rates.append(n / took)
        self.wait_seconds += time.perf_counter() - t0
        self.pending = self._submit(k + 1)  # generate the next chunk while this one trains

    def batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(packed images (B, S·S/8) uint8, tokens (B, L) long) of this process at ``step``.

        Chunks are sized by the nominal chunk size, so a step maps to a chunk without
        looking at data; a chunk that lost over-long samples wraps around its own order.
        """
        spc = self.steps_per_chunk()
        k, j = divmod(step, spc)
        if k != self.chunk_index:
            self._load(k)
        imgs, toks, length = [], [], 0
        for im, tk, lens, order in self.data:
            idx = order[(torch.arange(j * self.per_shard, (j + 1) * self.per_shard)) % len(order)]
            # Trim padding shared by the whole batch (sequences are <bos> … <eos> pad pad …);
            # lengths live on the CPU so this costs no device sync.
            length = max(length, int(lens[idx].max()))
            idx = idx.to(im.device, non_blocking=True)
            imgs.append(im.index_select(0, idx))
            toks.append(tk.index_select(0, idx))
        return torch.cat(imgs), torch.cat(toks)[:, :length].long()

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=False, cancel_futures=True)
            self.pool = None
