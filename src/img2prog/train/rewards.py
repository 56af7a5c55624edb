"""Rendering rewards for reinforcement learning and self-training.

Every reward is a plain function ``(completions, targets, **kw) -> list[float]``:

- ``completions``: program texts (or chat-style completions, see :func:`completion_text`);
- ``targets``: target images, one per completion — an (N, S, S) or (N, S, S, 3) uint8 array,
  a list of such images, or (N, S, S) bool masks (True = black). Pixels darker than 128 count
  as black, so anti-aliased or scanned targets work; csg2d renderings are exactly 0/255.

Programs are rendered once per *distinct* text at the target size with the fast batch renderer
(GRPO groups repeat programs often), and the pixel statistics are computed for the whole
batch in numpy.

The rewards
-----------
- :func:`iou_reward` — ``scale · IoU`` of the black pixels, and ``invalid`` for a program that
  does not parse or render. The defaults (10·IoU, −10 invalid) are cadrille's online-RL
  reward: the penalty sits far below any valid program's reward, so the policy learns
  validity first. With the native model's grammar-constrained sampler every program parses,
  so the penalty only fires on the rare geometry-engine failure; Hugging Face models need it.
- :func:`pixel_accuracy_reward` — share of pixels equal to the target (binarised), ``invalid``
  (default 0) otherwise. Dense but dominated by the background on sparse shapes.
- :func:`length_penalty` — ``−coef · tokens``: prefers shorter programs among equally good
  ones (add it to another reward; it ignores the targets).
- :func:`combined_reward` — a weighted sum of the above, as configured by :class:`RewardConfig`.

:func:`trl_reward` adapts any of them to TRL's ``GRPOTrainer`` convention
(``reward(prompts, completions, **dataset_columns)``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from img2prog.lang.csg2d import rendering
from img2prog.lang.csg2d import tokens as T
from img2prog.lang.csg2d.parser import parse
from img2prog.lang.errors import ProgramError

RewardFn = Callable[..., list[float]]

BLACK_BELOW = 128  # a target pixel darker than this counts as black
IOU_SCALE = 10.0  # cadrille: reward = 10 · IoU
INVALID_REWARD = -10.0  # cadrille: −10 for output that does not produce a shape


# ---- inputs ---------------------------------------------------------------------------------


def completion_text(completion: Any) -> str:
    """A completion as program text: a string, or a chat completion (a list of messages with
    ``content``, TRL's conversational format — the last message counts)."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, dict) and "content" in completion:
        return completion_text(completion["content"])
    if isinstance(completion, (list, tuple)) and completion:
        return completion_text(completion[-1])
    raise TypeError(f"cannot read a program from a completion of type {type(completion).__name__}")


def target_masks(targets: Any) -> np.ndarray:
    """Targets as an (N, S, S) bool array, True = black (see the module docstring)."""
    if isinstance(targets, np.ndarray):
        arrays = targets
    else:
        arrays = [np.asarray(t.convert("L")) if hasattr(t, "convert") else np.asarray(t) for t in targets]
        if not arrays:
            return np.zeros((0, 1, 1), dtype=bool)
        shapes = {a.shape for a in arrays}
        if len(shapes) != 1:
            raise ValueError(f"targets have different shapes {sorted(shapes)}; rewards need one size per batch")
        arrays = np.stack(arrays)
    if arrays.dtype == bool:
        masks = arrays
    else:
        if arrays.ndim == 4:
            arrays = arrays[..., :3].min(axis=-1) if arrays.shape[-1] >= 3 else arrays[..., 0]
        masks = arrays < BLACK_BELOW
    if masks.ndim != 3 or masks.shape[1] != masks.shape[2]:
        raise ValueError(f"targets must be square images (N, S, S[, C]), got shape {masks.shape}")
    return masks


def render_masks(completions: Sequence[Any], size: int, workers: int | None = 1) -> tuple[np.ndarray, np.ndarray]:
    """Black masks (N, S, S) of the completions and a (N,) bool "valid" flag.

    Each distinct text is parsed and rendered once. Invalid programs get an all-white mask.
    """
    texts = [completion_text(c) for c in completions]
    unique = list(dict.fromkeys(texts))
    images, errors = rendering.render_batch(unique, size=size, workers=workers)
    index = {t: i for i, t in enumerate(unique)}
    rows = np.fromiter((index[t] for t in texts), dtype=np.int64, count=len(texts))
    ok = np.array([e is None for e in errors], dtype=bool)
    masks = images == 0
    return masks[rows], ok[rows]


def _pair(completions: Sequence[Any], targets: Any, workers: int | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    tm = target_masks(targets)
    if len(tm) != len(completions):
        raise ValueError(f"{len(completions)} completions for {len(tm)} targets")
    pm, ok = render_masks(completions, tm.shape[1] if len(tm) else 1, workers)
    return pm, tm, ok


# ---- rewards --------------------------------------------------------------------------------


def iou_values(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """IoU of black pixels per row of (N, S, S) bool masks; 1.0 where both are empty."""
    inter = np.count_nonzero(pred & target, axis=(1, 2))
    union = np.count_nonzero(pred | target, axis=(1, 2))
    return np.where(union > 0, inter / np.maximum(union, 1), 1.0)


def iou_reward(completions: Sequence[Any], targets: Any, *, scale: float = IOU_SCALE,
               invalid: float = INVALID_REWARD, workers: int | None = 1, **_: Any) -> list[float]:
    """``scale · IoU(black pixels)`` per completion; ``invalid`` where it does not render."""
    pm, tm, ok = _pair(completions, targets, workers)
    r = np.where(ok, scale * iou_values(pm, tm), invalid)
    return r.astype(float).tolist()


def pixel_accuracy_reward(completions: Sequence[Any], targets: Any, *, scale: float = 1.0,
                          invalid: float = 0.0, workers: int | None = 1, **_: Any) -> list[float]:
    """``scale ·`` (share of pixels equal to the binarised target); ``invalid`` where it does not render."""
    pm, tm, ok = _pair(completions, targets, workers)
    acc = (pm == tm).mean(axis=(1, 2)) if len(tm) else np.zeros(0)
    return np.where(ok, scale * acc, invalid).astype(float).tolist()


def program_length(completion: Any) -> int | None:
    """Tokens of a program (``<eos>`` excluded); None when it does not parse."""
    try:
        return len(T.encode(parse(completion_text(completion))))
    except ProgramError:
        return None


def length_penalty(completions: Sequence[Any], targets: Any = None, *, coef: float = 0.01,
                   invalid_length: int = 0, **_: Any) -> list[float]:
    """``−coef · tokens`` per completion (``invalid_length`` tokens for unparsable ones, whose
    penalty comes from the main reward). ``targets`` is ignored."""
    out = []
    for c in completions:
        n = program_length(c)
        out.append(-coef * (invalid_length if n is None else n))
    return out


@dataclass
class RewardConfig:
    """A weighted sum of the rewards above (the RL and self-training reward)."""

    iou: float = 1.0  # weight of iou_reward (which is already scaled by iou_scale)
    iou_scale: float = IOU_SCALE
    invalid: float = INVALID_REWARD
    pixel_accuracy: float = 0.0  # weight of pixel_accuracy_reward
    length: float = 0.0  # coefficient of length_penalty per token (0: off)

    def __call__(self, completions: Sequence[Any], targets: Any, **kw: Any) -> list[float]:
        return combined_reward(completions, targets, config=self, **kw)


def combined_reward(completions: Sequence[Any], targets: Any, *, config: RewardConfig | None = None,
                    workers: int | None = 1, **_: Any) -> list[float]:
    """``iou·iou_reward + pixel_accuracy·pixel_accuracy_reward + length_penalty``, rendering once."""
    c = config or RewardConfig()
    pm, tm, ok = _pair(completions, targets, workers)
    total = np.zeros(len(tm))
    if c.iou:
        total += c.iou * np.where(ok, c.iou_scale * iou_values(pm, tm), c.invalid)
    if c.pixel_accuracy:
        acc = (pm == tm).mean(axis=(1, 2))
        total += c.pixel_accuracy * np.where(ok, acc, 0.0)
    if c.length:
        total += np.asarray(length_penalty(completions, coef=c.length))
    return total.astype(float).tolist()


def trl_reward(fn: RewardFn, target_column: str = "image", **fixed: Any) -> RewardFn:
    """Adapt a reward to TRL's ``GRPOTrainer``: it calls ``reward(prompts=..., completions=...,
    **columns)`` with the dataset's columns repeated per completion; the targets are read from
    ``target_column`` (PIL images or arrays)."""

    def reward(prompts=None, completions=None, **columns: Any) -> list[float]:
        if target_column not in columns:
            raise KeyError(f"reward needs the dataset column {target_column!r}; got {sorted(columns)}")
        return fn(completions, columns[target_column], **fixed)

    reward.__name__ = getattr(fn, "__name__", "reward")
    return reward
