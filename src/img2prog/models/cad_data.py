"""Training batches from a precomputed dataset file (CadQuery: images built on a machine with OCC).

The csg2d trainer renders its data on the fly (:class:`img2prog.train.data.ChunkLoader`);
CadQuery parts need the geometry kernel to be drawn, so they are drawn once
(:mod:`img2prog.data.cad_dataset`) and this loader serves them: the whole file lives on the
training device (a few thousand 128 px images are a few tens of MB), and the batch at a step
is a pure function of ``(seed, step)`` — epoch ``e`` is a seeded permutation — so a run resumes
exactly from its step number like the csg2d path, and ``data_shards`` processes each take
their own slice of the same global batch.

Same interface as ``ChunkLoader``: ``batch(step) → (images, tokens)``, ``wait_seconds``,
``samples_generated``, ``dropped``, ``gen_rates``, ``close()``; here ``images`` are already the
model's float input (B, 1, S, S), black = 1.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch


class DatasetError(ValueError):
    """A dataset file that is missing arrays or inconsistent."""


def load_dataset(path: str | Path, split: str = "train", turned: bool = False):
    """(images (N, S, S) uint8, tokens (N, L) int64 with <bos> … <eos> <pad>…) of a packed file;
    with ``turned`` also the tokens of the parts turned half a turn (None if the file has none)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"dataset {path} does not exist (build it with python -m img2prog.data.cad_dataset)")
    prefix = "" if split == "train" else "val_"
    with np.load(path) as z:
        missing = [k for k in ("images", "tokens") if prefix + k not in z.files]
        if missing:
            raise DatasetError(f"{path}: no {', '.join(prefix + k for k in missing)} arrays (has {', '.join(z.files)})")
        images, tokens = z[prefix + "images"], z[prefix + "tokens"].astype(np.int64)
        extra = z[prefix + "tokens_turned"].astype(np.int64) if prefix + "tokens_turned" in z.files else None
    if extra is not None and extra.shape != tokens.shape:
        raise DatasetError(f"{path}: {prefix}tokens_turned {extra.shape} does not match {prefix}tokens {tokens.shape}")
    if images.ndim != 3 or images.shape[1] != images.shape[2] or images.dtype != np.uint8:
        raise DatasetError(f"{path}: {prefix}images must be (N, S, S) uint8, got {images.shape} {images.dtype}")
    if len(images) != len(tokens):
        raise DatasetError(f"{path}: {len(images)} {prefix}images but {len(tokens)} token rows")
    return (images, tokens, extra) if turned else (images, tokens)


def dataset_image_size(path: str | Path) -> int:
    with np.load(Path(path)) as z:
        if "images" not in z.files:
            raise DatasetError(f"{path}: no images array")
        return int(z["images"].shape[1])


def to_input(images: torch.Tensor) -> torch.Tensor:
    """uint8 (B, S, S) white background → float (B, 1, S, S), black = 1 (as ``prepare_images``)."""
    return 1.0 - images.float().unsqueeze(1) / 255.0


class DatasetLoader:
    """Serves shuffled epochs of a packed dataset (see the module docstring).

    When the file has ``tokens_turned`` (each part turned half a turn about +Z, see
    :func:`img2prog.data.cad_dataset.turn_program`), an epoch has 2N samples: sample ``N + i``
    is part ``i`` turned, its picture the stored one with left and right halves swapped —
    exactly what the renderer draws for the turned part. ``turn=False`` ignores them.
    """

    def __init__(self, path: str | Path, seed: int, shards: list[int], data_shards: int, local_batch: int,
                 device: torch.device, max_len: int | None = None, pad_id: int = 0, turn: bool = True):
        images, tokens, turned = load_dataset(path, turned=True)
        lens = (tokens != pad_id).sum(1)
        keep = np.ones(len(tokens), bool) if max_len is None else lens <= max_len
        self.dropped = int((~keep).sum())
        if not keep.any():
            raise DatasetError(f"{path}: no sequence fits max_len={max_len}")
        self.images = torch.from_numpy(images[keep]).to(device)
        self.tokens = torch.from_numpy(tokens[keep]).to(device)
        self.turned = torch.from_numpy(turned[keep]).to(device) if turn and turned is not None else None
        self.lens = torch.from_numpy(lens[keep])  # on the CPU: trimming costs no device sync
        self.parts = len(self.images)
        self.n = self.parts * (2 if self.turned is not None else 1)  # samples per epoch
        if local_batch % len(shards):
            raise ValueError(f"local batch {local_batch} is not divisible by {len(shards)} data shards")
        self.shards, self.data_shards = list(shards), data_shards
        self.per_shard = local_batch // len(shards)
        self.global_batch = self.per_shard * data_shards
        self.seed = seed
        self._epoch, self._order = -1, None
        self.wait_seconds = 0.0
        self.samples_generated = 0  # nothing is generated while training
        self.gen_rates: list[float] = []

    def _order_of(self, epoch: int) -> torch.Tensor:
        if epoch != self._epoch:
            g = torch.Generator().manual_seed((self.seed * 1_000_003 + epoch) % 2**63)
            self._order, self._epoch = torch.randperm(self.n, generator=g), epoch
        return self._order

    def batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(images (B, 1, S, S) float, tokens (B, L) long) of this process at ``step``.

        The global batch of a step is positions ``step·G … step·G + G − 1`` of the sample
        stream (epochs concatenated); shard ``v`` takes its ``v``-th slice of it.
        """
        parts = []
        for v in self.shards:
            pos = step * self.global_batch + v * self.per_shard + torch.arange(self.per_shard)
            epochs, within = pos // self.n, pos % self.n
            idx = torch.empty_like(pos)
            for e in epochs.unique().tolist():
                sel = epochs == e
                idx[sel] = self._order_of(e)[within[sel]]
            parts.append(idx)
        idx = torch.cat(parts)
        part, turn = idx % self.parts, idx >= self.parts
        length = int(self.lens[part].max())  # a turned part has as many tokens as the part
        dev = self.images.device
        part, turn = part.to(dev), turn.to(dev)
        images = self.images.index_select(0, part)
        tokens = self.tokens.index_select(0, part)[:, :length]
        if self.turned is not None:
            S = images.shape[-1]
            images = torch.where(turn[:, None, None], images.roll(S // 2, dims=-1), images)
            tokens = torch.where(turn[:, None], self.turned.index_select(0, part)[:, :length], tokens)
        return to_input(images), tokens

    def close(self) -> None:
        pass
