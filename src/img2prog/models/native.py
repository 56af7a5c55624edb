"""The native image→program model: a small convolutional/transformer encoder and an
autoregressive transformer decoder over a language's tokens.

Shape of the model (all sizes from :class:`NativeConfig`)::

    image (B, 1, S, S), black = 1
      └─ patch stem: conv k4 s4 → GELU → conv k2 s2 → GELU → conv k2 s2   (S/16 × S/16 tokens)
      └─ + learned 2-D position embedding → ``enc_layers`` pre-LN transformer blocks
    memory (B, N, d)
    tokens <bos> t1 t2 ...  → token + position embedding
      └─ ``dec_layers`` blocks: causal self-attention (KV cache) → cross-attention to memory → MLP
      └─ LayerNorm → logits over the vocabulary (tied with the token embedding)

At the default 256 px input and patch 16 each encoder token sees exactly one unit cell of the
16×16 canvas, so a token's position is a coordinate of the language. The stem is
non-overlapping (a hierarchical patchify), which keeps it cheap on a CPU; the encoder's
attention provides the context across cells.

Decoding (:meth:`NativeModel.generate`) is grammar-constrained with the language's batched
constraint (:mod:`img2prog.models.constraints`): every output parses and ends within
``max_len`` tokens. Greedy, temperature/top-p sampling with several sequences per image, and
beam search share one KV-cached step function.

Weights are stored as safetensors (sharded under 16 MiB per file) plus ``config.json``;
nothing is ever pickled.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from img2prog.lang import get_language
from img2prog.models.constraints import batched_constraint

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"
DEFAULT_MODEL = "native-csg2d"
MAX_SHARD_BYTES = 15 * 1024 * 1024  # each safetensors file stays under 16 MiB


@dataclass
class NativeConfig:
    language: str = "csg2d"
    image_size: int = 256  # model input (pixels per side); other sizes are resized to it
    patch: int = 16  # pixels per encoder token side; 4·2^k
    stem_channels: tuple[int, ...] = (32, 64)  # widths of the stem stages before the last
    d_model: int = 256
    n_heads: int = 8
    enc_layers: int = 4
    dec_layers: int = 4
    mlp_ratio: float = 4.0
    max_len: int = 192  # decoder positions: <bos> + program tokens + <eos>
    dropout: float = 0.0
    vocab_size: int = field(default=0)  # filled from the language's tokenizer

    def __post_init__(self) -> None:
        if self.vocab_size == 0:
            self.vocab_size = get_language(self.language).tokenizer.vocab_size
        self.stem_channels = tuple(self.stem_channels)
        k = math.log2(self.patch / 4)
        if self.patch < 4 or k != int(k) or len(self.stem_channels) != int(k):
            raise ValueError(
                f"patch={self.patch} needs patch = 4·2^k with k = len(stem_channels) "
                f"(got {len(self.stem_channels)} stem channels)"
            )
        if self.image_size % self.patch:
            raise ValueError(f"image_size {self.image_size} is not a multiple of patch {self.patch}")
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model {self.d_model} is not divisible by n_heads {self.n_heads}")

    @property
    def grid(self) -> int:
        return self.image_size // self.patch


# Named sizes. "base" is the shipped default; "tiny" is for tests.
PRESETS: dict[str, dict] = {
    "tiny": {"image_size": 64, "patch": 16, "stem_channels": (8, 16), "d_model": 32, "n_heads": 2,
             "enc_layers": 1, "dec_layers": 1, "max_len": 64},
    "small": {"d_model": 192, "n_heads": 6, "enc_layers": 3, "dec_layers": 3},
    "base": {"d_model": 256, "n_heads": 8, "enc_layers": 4, "dec_layers": 4},
    "wide": {"d_model": 384, "n_heads": 8, "enc_layers": 4, "dec_layers": 4},
    # CadQuery (docs/cadquery.md): a 128 px 2×2 multi-view picture (64 px per view) in 8 px
    # patches, so each view is 8×8 encoder tokens; programs reach ~170 tokens.
    "cad-small": {"language": "cadquery", "image_size": 128, "patch": 8, "stem_channels": (32,), "d_model": 256,
                  "n_heads": 8, "enc_layers": 4, "dec_layers": 4, "max_len": 256, "dropout": 0.1},
    "cad-tiny": {"language": "cadquery", "image_size": 32, "patch": 8, "stem_channels": (8,), "d_model": 32,
                 "n_heads": 2, "enc_layers": 1, "dec_layers": 1, "max_len": 256},
}


def preset(name: str, **overrides) -> NativeConfig:
    if name not in PRESETS:
        raise KeyError(f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}")
    return NativeConfig(**{**PRESETS[name], **overrides})


# ---- building blocks ------------------------------------------------------------------------


class Attention(nn.Module):
    """Multi-head attention; ``kv`` from another sequence makes it cross-attention."""

    def __init__(self, d: int, n_heads: int, dropout: float):
        super().__init__()
        self.n_heads, self.dropout = n_heads, dropout
        self.q = nn.Linear(d, d)
        self.kv = nn.Linear(d, 2 * d)
        self.out = nn.Linear(d, d)

    def heads(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, d) -> (B, H, T, hd)
        B, T, d = x.shape
        return x.view(B, T, self.n_heads, d // self.n_heads).transpose(1, 2)

    def project_kv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        k, v = self.kv(x).chunk(2, dim=-1)
        return self.heads(k), self.heads(v)

    def attend(self, x: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool = False) -> torch.Tensor:
        q = self.heads(self.q(x))
        p = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, is_causal=causal, dropout_p=p)
        B, H, T, hd = y.shape
        return self.out(y.transpose(1, 2).reshape(B, T, H * hd))

    def attend_grouped(self, x: torch.Tensor, k: torch.Tensor, v: torch.Tensor, group: int) -> torch.Tensor:
        """Decoding-time cross-attention where ``group`` consecutive rows of ``x`` (samples or
        beams of one image) share one row of ``k``/``v`` (B, H, N, hd).

        The rows' single queries become ``group`` query positions of one attention call, so the
        image's keys and values are read once per image rather than once per sample (on a CPU
        that memory traffic, not arithmetic, is what a sampling step costs).
        """
        if group == 1:
            return self.attend(x, k, v)
        R, T, d = x.shape  # T == 1 while decoding
        q = self.heads(self.q(x))  # (R, H, 1, hd)
        H, hd = q.shape[1], q.shape[3]
        q = q.view(R // group, group, H, hd).transpose(1, 2)  # (B, H, group, hd)
        y = F.scaled_dot_product_attention(q, k, v)  # (B, H, group, hd)
        return self.out(y.transpose(1, 2).reshape(R, 1, H * hd))

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None, causal: bool = False):
        k, v = self.project_kv(x if context is None else context)
        return self.attend(x, k, v, causal=causal)


class MLP(nn.Sequential):
    def __init__(self, d: int, ratio: float, dropout: float):
        h = int(d * ratio)
        super().__init__(nn.Linear(d, h), nn.GELU(approximate="tanh"), nn.Linear(h, d), nn.Dropout(dropout))


class EncoderBlock(nn.Module):
    def __init__(self, c: NativeConfig):
        super().__init__()
        self.ln1, self.attn = nn.LayerNorm(c.d_model), Attention(c.d_model, c.n_heads, c.dropout)
        self.ln2, self.mlp = nn.LayerNorm(c.d_model), MLP(c.d_model, c.mlp_ratio, c.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class DecoderBlock(nn.Module):
    def __init__(self, c: NativeConfig):
        super().__init__()
        self.ln1, self.self_attn = nn.LayerNorm(c.d_model), Attention(c.d_model, c.n_heads, c.dropout)
        self.ln2, self.cross_attn = nn.LayerNorm(c.d_model), Attention(c.d_model, c.n_heads, c.dropout)
        self.ln3, self.mlp = nn.LayerNorm(c.d_model), MLP(c.d_model, c.mlp_ratio, c.dropout)

    def forward(self, x: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        """Teacher-forced pass over whole sequences (training)."""
        x = x + self.self_attn(self.ln1(x), causal=True)
        x = x + self.cross_attn(self.ln2(x), memory)
        return x + self.mlp(self.ln3(x))

    def step(self, x: torch.Tensor, pos: int, cache: LayerCache) -> torch.Tensor:
        """One new position per row; appends its keys/values to ``cache``."""
        h = self.ln1(x)
        k, v = self.self_attn.project_kv(h)
        cache.k[:, :, pos : pos + 1] = k
        cache.v[:, :, pos : pos + 1] = v
        x = x + self.self_attn.attend(h, cache.k[:, :, : pos + 1], cache.v[:, :, : pos + 1])
        x = x + self.cross_attn.attend_grouped(self.ln2(x), cache.mk, cache.mv, cache.group)
        return x + self.mlp(self.ln3(x))


@dataclass
class LayerCache:
    k: torch.Tensor  # (B, H, max_len, hd) self-attention keys, filled up to the current position
    v: torch.Tensor
    mk: torch.Tensor  # (B / group, H, N, hd) cross-attention keys/values of the image memory,
    mv: torch.Tensor  # one row per image, shared by that image's ``group`` consecutive rows
    group: int = 1

    def reorder(self, index: torch.Tensor) -> LayerCache:
        """Gather rows of the self-attention cache. The image rows stay: ``index`` must keep
        every row within its own image's group (beam search only reorders beams of one image)."""
        return LayerCache(self.k.index_select(0, index), self.v.index_select(0, index), self.mk, self.mv, self.group)


# ---- the model ------------------------------------------------------------------------------


class NativeModel(nn.Module):
    def __init__(self, config: NativeConfig):
        super().__init__()
        self.config = c = config
        self.language = get_language(c.language)
        tok = self.language.tokenizer
        if tok.vocab_size != c.vocab_size:
            raise ValueError(f"config vocab_size {c.vocab_size} != {c.language} tokenizer's {tok.vocab_size}")
        self.bos_id, self.eos_id, self.pad_id = tok.bos_id, tok.eos_id, tok.pad_id

        chans = (1, *c.stem_channels, c.d_model)
        stem: list[nn.Module] = []
        for i in range(len(chans) - 1):
            k = 4 if i == 0 else 2
            stem.append(nn.Conv2d(chans[i], chans[i + 1], kernel_size=k, stride=k))
            if i < len(chans) - 2:
                stem.append(nn.GELU(approximate="tanh"))
        self.stem = nn.Sequential(*stem)
        self.enc_pos = nn.Parameter(torch.zeros(1, c.grid * c.grid, c.d_model))
        self.encoder = nn.ModuleList(EncoderBlock(c) for _ in range(c.enc_layers))
        self.enc_ln = nn.LayerNorm(c.d_model)

        self.tok_emb = nn.Embedding(c.vocab_size, c.d_model)
        self.dec_pos = nn.Parameter(torch.zeros(1, c.max_len, c.d_model))
        self.decoder = nn.ModuleList(DecoderBlock(c) for _ in range(c.dec_layers))
        self.dec_ln = nn.LayerNorm(c.d_model)
        self.head = nn.Linear(c.d_model, c.vocab_size, bias=False)
        self.head.weight = self.tok_emb.weight  # tied

        self.apply(self._init)
        nn.init.normal_(self.enc_pos, std=0.02)
        nn.init.normal_(self.dec_pos, std=0.02)
        # Scale residual projections by depth (GPT-2), so deep stacks start near identity.
        n_res = 2 * c.enc_layers + 3 * c.dec_layers
        for name, p in self.named_parameters():
            if name.endswith(("out.weight", "mlp.2.weight")):
                nn.init.normal_(p, std=0.02 / math.sqrt(n_res))

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            nn.init.normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, std=0.02)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    @property
    def device(self) -> torch.device:
        return self.tok_emb.weight.device

    # --- images ---------------------------------------------------------------------------
    def prepare_images(self, images) -> torch.Tensor:
        """uint8 images (B, S, S[, C]) in black-on-white → float (B, 1, s, s), black = 1.

        Any S is accepted: images are area-resized to the model's input size, which is exact
        for the 256 → 256 case and a faithful average otherwise.
        """
        x = torch.as_tensor(np.asarray(images)) if not torch.is_tensor(images) else images
        if x.ndim == 4:
            x = x[..., 0] if x.shape[-1] in (1, 3, 4) else x[:, 0]
        if x.ndim != 3:
            raise ValueError(f"expected images of shape (B, S, S) or (B, S, S, C), got {tuple(x.shape)}")
        x = x.to(self.device)
        x = 1.0 - x.float().unsqueeze(1) / 255.0
        s = self.config.image_size
        if x.shape[-1] != s or x.shape[-2] != s:
            x = F.interpolate(x, size=(s, s), mode="area" if x.shape[-1] > s else "bilinear")
        return x.to(self.tok_emb.weight.dtype)  # a model cast to bf16 takes bf16 input

    # --- forward --------------------------------------------------------------------------
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, S, S) float → memory (B, N, d)."""
        h = self.stem(x).flatten(2).transpose(1, 2) + self.enc_pos
        for blk in self.encoder:
            h = blk(h)
        return self.enc_ln(h)

    def forward(self, x: torch.Tensor, tokens: torch.Tensor, targets: torch.Tensor | None = None):
        """Teacher forcing. ``tokens`` (B, T) starts with <bos>; returns logits (B, T, V) and,
        with ``targets`` (B, T; pad = ignored), the mean next-token cross-entropy."""
        memory = self.encode(x)
        T = tokens.shape[1]
        h = self.tok_emb(tokens) + self.dec_pos[:, :T]
        for blk in self.decoder:
            h = blk(h, memory)
        logits = self.head(self.dec_ln(h))
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), ignore_index=self.pad_id)
        return logits, loss

    # --- decoding -------------------------------------------------------------------------
    def _start_cache(self, memory: torch.Tensor, group: int = 1) -> list[LayerCache]:
        """Caches for ``group`` decoding rows per image of ``memory`` (B images → B·group rows)."""
        B = memory.shape[0] * group
        c = self.config
        hd = c.d_model // c.n_heads
        caches = []
        for blk in self.decoder:
            mk, mv = blk.cross_attn.project_kv(memory)  # once per image, not per row
            z = memory.new_zeros(B, c.n_heads, c.max_len, hd)
            caches.append(LayerCache(z, z.clone(), mk, mv, group))
        return caches

    def _step(self, tok: torch.Tensor, pos: int, caches: list[LayerCache]) -> torch.Tensor:
        h = self.tok_emb(tok)[:, None] + self.dec_pos[:, pos : pos + 1]
        for blk, cache in zip(self.decoder, caches):
            h = blk.step(h, pos, cache)
        return self.head(self.dec_ln(h))[:, 0].float()

    @torch.inference_mode()
    def generate(
        self,
        images,
        method: Literal["greedy", "sample", "beam"] = "greedy",
        num_return_sequences: int = 1,
        temperature: float = 1.0,
        top_p: float = 1.0,
        num_beams: int | None = None,
        max_len: int | None = None,
        seed: int | None = None,
        memory: torch.Tensor | None = None,
        deadline: float | None = None,
        prefix: Sequence[Sequence[int]] | None = None,
    ) -> list[list[tuple[str, float]]]:
        """Programs for a batch of images: per image a list of ``(program_text, logprob)``.

        ``logprob`` is the sum over the program's tokens (``<eos>`` included) of the log-probability
        under the *constrained* distribution at temperature 1 (the model's own likelihood of the
        program, whatever temperature was used to draw it). Greedy returns one program per
        image; sampling ``num_return_sequences``; beam search the best ``num_return_sequences``
        distinct beams of ``num_beams`` (default: as many as returned). ``memory`` is the
        images' encoding (:meth:`encode` of :meth:`prepare_images`) when the caller has it
        already; ``images`` is then not looked at. ``deadline`` (a ``time.perf_counter()``
        value; greedy and sampling only) stops decoding when it passes: sequences not finished
        by then are left out, so an image may get fewer programs, or none. ``prefix`` (greedy and
        sampling only): per image, the token ids (after ``<bos>``) its programs must start with,
        e.g. the first steps of a program found earlier; decoding completes them, and ``logprob``
        counts the prefix's tokens too. A prefix token the language's constraint does not allow
        there is an error.
        """
        if method not in ("greedy", "sample", "beam"):
            raise ValueError(f"unknown decoding method {method!r}; use greedy, sample or beam")
        if temperature <= 0 and method == "sample":
            raise ValueError("temperature must be > 0 for sampling (use method='greedy')")
        if not 0 < top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {top_p}")
        max_len = min(max_len or self.config.max_len, self.config.max_len)
        if memory is None:
            memory = self.encode(self.prepare_images(images))
        if method == "beam":
            if prefix is not None:
                raise ValueError("prefix works with greedy decoding and sampling, not beam search")
            k = max(num_beams or num_return_sequences, num_return_sequences)
            return self._beam(memory, k, num_return_sequences, max_len)
        n = num_return_sequences if method == "sample" else 1
        seqs, logps, finished = self._decode(memory, max_len, sample=(method == "sample"), temperature=temperature,
                                             top_p=top_p, seed=seed, group=n, deadline=deadline, prefix=prefix)
        rows = [(self.language.decode(s), lp) if ok else None
                for s, lp, ok in zip(seqs.tolist(), logps.tolist(), finished.tolist())]
        return [[r for r in rows[i : i + n] if r is not None] for i in range(0, len(rows), n)]

    def _decode(self, memory, max_len, sample, temperature, top_p, seed, group: int = 1, deadline: float | None = None,
                prefix=None):
        """Decode ``group`` rows per image: per row its tokens, log-probability, and whether it
        counts (False only for rows a passing ``deadline`` cut short). ``prefix``: per image, the
        tokens its rows are forced to start with."""
        B = memory.shape[0] * group  # ``group`` rows (samples) per image, image by image
        dev = memory.device
        forced = self._forced(prefix, memory.shape[0], group, max_len, dev) if prefix is not None else None
        cons = batched_constraint(self.language, B, dev)
        state = cons.start(B, max_len - 1, dev)
        caches = self._start_cache(memory, group)
        gen = None
        if sample:
            gen = torch.Generator(device=dev)
            if seed is None:
                gen.seed()  # fresh entropy: no seed, no reproducibility promised
            else:
                gen.manual_seed(seed)
        tok = torch.full((B,), self.bos_id, dtype=torch.long, device=dev)
        out = torch.full((B, max_len - 1), self.pad_id, dtype=torch.long, device=dev)
        total = torch.zeros(B, device=dev)
        for pos in range(max_len - 1):
            logits = self._step(tok, pos, caches)
            allowed = cons.mask(state)
            logits = logits.masked_fill(~allowed, float("-inf"))
            logp = logits.log_softmax(-1)
            if sample:
                tok = _sample_top_p(logits / temperature, top_p, gen)
            else:
                tok = logits.argmax(-1)
            if forced is not None and pos < forced.shape[1]:
                f = forced[:, pos]
                on = f >= 0
                refused = on & ~allowed.gather(1, f.clamp(min=0)[:, None])[:, 0]
                if bool(refused.any()):
                    r = int(refused.nonzero()[0, 0])
                    name = self.language.tokenizer.id_to_token(int(f[r]))
                    raise ValueError(f"prefix of image {r // group}: token {name!r} is not allowed at position {pos}")
                tok = torch.where(on, f, tok)
            done = cons.done(state)
            total += torch.where(done, torch.zeros_like(total), logp.gather(1, tok[:, None])[:, 0])
            out[:, pos] = torch.where(done, torch.full_like(tok, self.pad_id), tok)
            state = cons.advance(state, tok)
            # One host sync every few steps is cheaper than one per step on a GPU.
            if (pos % 8 == 7 or dev.type == "cpu") and bool(cons.done(state).all()):
                break
            if deadline is not None and time.perf_counter() >= deadline:
                return out, total, cons.done(state)  # cut short: only finished rows count
        # Rows still open at max_len keep their truncated text, as they always did (a program
        # that does not parse is the model's answer, and metrics count it as one).
        return out, total, torch.ones(B, dtype=torch.bool, device=dev)

    @staticmethod
    def _forced(prefix, n_images: int, group: int, max_len: int, dev) -> torch.Tensor:
        """Per decoded row, the prefix token to force at each position (-1: free)."""
        if len(prefix) != n_images:
            raise ValueError(f"{len(prefix)} prefixes for {n_images} images")
        width = max([len(p) for p in prefix] + [1])
        if width >= max_len - 1:
            raise ValueError(f"a prefix of {width} tokens leaves no room under max_len {max_len}")
        forced = torch.full((n_images, width), -1, dtype=torch.long)
        for i, p in enumerate(prefix):
            if len(p):
                forced[i, : len(p)] = torch.as_tensor(list(p), dtype=torch.long)
        return forced.repeat_interleave(group, 0).to(dev)

    def _beam(self, memory, k: int, n_return: int, max_len: int) -> list[list[tuple[str, float]]]:
        B, dev = memory.shape[0], memory.device
        V = self.config.vocab_size
        cons = batched_constraint(self.language, B * k, dev)
        state = cons.start(B * k, max_len - 1, dev)
        caches = self._start_cache(memory, k)  # beams only ever move within their image's group
        tok = torch.full((B * k,), self.bos_id, dtype=torch.long, device=dev)
        seqs = torch.full((B * k, max_len - 1), self.pad_id, dtype=torch.long, device=dev)
        # Only the first beam of each image is alive at the start (the others are copies).
        score = torch.full((B, k), float("-inf"), device=dev)
        score[:, 0] = 0.0
        for pos in range(max_len - 1):
            logits = self._step(tok, pos, caches)
            logits = logits.masked_fill(~cons.mask(state), float("-inf"))
            # Rows of dead beams (score -inf) may have no allowed token: keep them -inf, not NaN.
            logp = logits.log_softmax(-1).nan_to_num(nan=float("-inf"))
            done = cons.done(state)
            # A finished beam continues with <eos> at no cost, so it competes unchanged.
            logp = torch.where(done[:, None], torch.full_like(logp, float("-inf")), logp)
            logp[:, self.eos_id] = torch.where(done, torch.zeros_like(done, dtype=logp.dtype), logp[:, self.eos_id])
            cand = (score.view(B * k, 1) + logp).view(B, k * V)
            top, idx = cand.topk(k, dim=1)
            src = (idx // V) + torch.arange(B, device=dev)[:, None] * k
            tok = (idx % V).flatten()
            src = src.flatten()
            score = top
            state = cons.reorder(state, src)
            caches = [c.reorder(src) for c in caches]
            seqs = seqs.index_select(0, src)
            was_done = cons.done(state)
            seqs[:, pos] = torch.where(was_done, torch.full_like(tok, self.pad_id), tok)
            state = cons.advance(state, tok)
            if bool(cons.done(state).all()):
                break
        results = []
        texts = [self.language.decode(s) for s in seqs.tolist()]
        sc = score.flatten().tolist()
        for b in range(B):
            seen, row = set(), []
            order = sorted(range(b * k, (b + 1) * k), key=lambda i: -sc[i])
            for i in order:
                if sc[i] == float("-inf") or texts[i] in seen:
                    continue
                seen.add(texts[i])
                row.append((texts[i], sc[i]))
                if len(row) == n_return:
                    break
            results.append(row)
        return results

    # --- persistence ----------------------------------------------------------------------
    def save_pretrained(self, path: str | Path, dtype: torch.dtype = torch.float32, extra: dict | None = None) -> Path:
        """Write ``config.json`` and ``model[-i-of-n].safetensors`` (each < 16 MiB) to ``path``."""
        from safetensors.torch import save_file

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        for old in path.glob("model*.safetensors"):
            old.unlink()
        state = {k: v.detach().to("cpu", dtype).contiguous() for k, v in self.state_dict().items()
                 if k != "head.weight"}  # tied to tok_emb.weight
        shards: list[dict[str, torch.Tensor]] = [{}]
        size = 0
        for name, t in state.items():
            nbytes = t.numel() * t.element_size()
            if shards[-1] and size + nbytes > MAX_SHARD_BYTES:
                shards.append({})
                size = 0
            shards[-1][name] = t
            size += nbytes
        files = []
        for i, shard in enumerate(shards):
            fname = "model.safetensors" if len(shards) == 1 else f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
            save_file(shard, str(path / fname), metadata={"format": "pt"})
            files.append(fname)
        meta = {"config": asdict(self.config), "weights": files, "dtype": str(dtype).removeprefix("torch."),
                "num_parameters": self.num_parameters(), **(extra or {})}
        (path / "config.json").write_text(json.dumps(meta, indent=2) + "\n")
        return path

    @classmethod
    def from_pretrained(cls, name_or_path: str | Path = DEFAULT_MODEL, device: str | torch.device = "cpu") -> NativeModel:
        """Load a model folder, or a shipped model by name (``img2prog/weights/<name>``)."""
        from safetensors.torch import load_file

        path = resolve_model_path(name_or_path)
        meta = json.loads((path / "config.json").read_text())
        model = cls(NativeConfig(**meta["config"]))
        state: dict[str, torch.Tensor] = {}
        for fname in meta["weights"]:
            f = path / fname
            if not f.is_file():
                raise FileNotFoundError(f"{path}: weights file {fname} listed in config.json is missing")
            state.update(load_file(str(f)))
        state = {k: v.float() for k, v in state.items()}
        state["head.weight"] = state["tok_emb.weight"]
        missing, unexpected = model.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise ValueError(f"{path}: weights do not match the config (missing {missing[:5]}, unexpected {unexpected[:5]})")
        return model.to(device).eval()


def resolve_model_path(name_or_path: str | Path) -> Path:
    """A model folder: a path with ``config.json``, or the name of a shipped model."""
    p = Path(name_or_path)
    if (p / "config.json").is_file():
        return p
    shipped = WEIGHTS_DIR / str(name_or_path)
    if (shipped / "config.json").is_file():
        return shipped
    names = sorted(d.name for d in WEIGHTS_DIR.glob("*") if (d / "config.json").is_file()) if WEIGHTS_DIR.is_dir() else []
    raise FileNotFoundError(
        f"no model at {str(name_or_path)!r}: not a folder with config.json, nor a shipped model "
        f"(shipped: {', '.join(names) or 'none'})"
    )


def _sample_top_p(logits: torch.Tensor, top_p: float, gen: torch.Generator) -> torch.Tensor:
    """Nucleus sampling per row from (B, V) logits (masked entries are -inf)."""
    probs = logits.softmax(-1)
    if top_p < 1.0:
        sp, si = probs.sort(-1, descending=True)
        keep = sp.cumsum(-1) - sp < top_p  # always keeps the most likely token
        sp = sp * keep
        probs = torch.zeros_like(probs).scatter_(1, si, sp)
    return torch.multinomial(probs, 1, generator=gen)[:, 0]
