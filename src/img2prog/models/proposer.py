"""The native model as a :class:`~img2prog.search.base.Proposer` for search strategies."""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch

from img2prog.models.native import DEFAULT_MODEL, NativeModel
from img2prog.search.base import Candidate, ProposalMethod


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


class NativeProposer:
    """Proposes programs with a :class:`NativeModel` (greedy, sampled or beam-searched).

    Images are processed ``batch_size`` at a time (counting every returned sequence: with
    ``n`` samples per image, ``batch_size // n`` images go through one decode). Candidates
    carry the model's constrained log-likelihood.
    """

    def __init__(self, model: NativeModel | str | Path = DEFAULT_MODEL, device: str | None = None,
                 batch_size: int = 64, max_len: int | None = None):
        device = device or default_device()
        if not isinstance(model, NativeModel):
            model = NativeModel.from_pretrained(model, device=device)
        self.model = model.to(device).eval()
        self.batch_size = batch_size
        self.max_len = max_len
        # Image encodings by image content: a search asks for the same picture again and again
        # (greedy, then rounds of samples), and encoding is a fifth of a small decode's cost.
        self._memory: OrderedDict[tuple, torch.Tensor] = OrderedDict()
        self.memory_cache_size = 64  # images (256 KiB each for the base model)

    def encode(self, images: np.ndarray) -> torch.Tensor:
        """The model's encoding of ``images`` (B, N, d), from the cache where it has them."""
        keys = [(im.shape, im.dtype.str, hashlib.blake2b(np.ascontiguousarray(im).tobytes(), digest_size=16).digest())
                for im in images]
        missing = [i for i, k in enumerate(keys) if k not in self._memory]
        if missing:
            with torch.inference_mode():
                fresh = self.model.encode(self.model.prepare_images(images[missing]))
            for i, m in zip(missing, fresh):
                self._memory[keys[i]] = m
        rows = []
        for k in keys:
            rows.append(self._memory[k])
            self._memory.move_to_end(k)
        while len(self._memory) > self.memory_cache_size:
            self._memory.popitem(last=False)
        return torch.stack(rows)

    def propose(self, images: np.ndarray, n: int = 1, *, method: ProposalMethod = "sample",
                temperature: float = 1.0, top_p: float = 1.0, seed: int | None = None,
                deadline: float | None = None) -> list[list[Candidate]]:
        """See :class:`~img2prog.search.base.Proposer`; ``deadline`` (``time.perf_counter()``)
        cuts greedy and sampled decoding short, leaving out the programs not finished by then."""
        images = np.asarray(images)
        if images.ndim not in (3, 4):
            raise ValueError(f"expected a batch of images (B, S, S[, C]), got shape {images.shape}")
        per_call = max(1, self.batch_size // (1 if method == "greedy" else max(1, n)))
        out: list[list[Candidate]] = []
        for i in range(0, len(images), per_call):
            chunk = images[i : i + per_call]
            rows = self.model.generate(
                chunk, method=method, num_return_sequences=1 if method == "greedy" else n,
                temperature=temperature, top_p=top_p, max_len=self.max_len,
                seed=None if seed is None else seed + i, memory=self.encode(chunk),
                deadline=None if method == "beam" else deadline,
            )
            out += [[Candidate(text, lp) for text, lp in row] for row in rows]
        return out
