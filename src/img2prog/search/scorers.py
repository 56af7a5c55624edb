"""Scorers: how selection strategies rank candidate programs for a target.

- :class:`VerifierScorer` (the default): IoU of black pixels between the rendered program and
  the target — exact, and the right choice whenever the target was drawn by the language.
- :class:`LikelihoodScorer`: the model's own log-likelihood of each program; ignores the target,
  so it is what best-of-n means without a renderer-exact target.
- :class:`RewardModelScorer`: an external learned reward model, any Hugging Face
  sequence-classification checkpoint (hub name or local folder), loaded lazily on first use.
  It reads a text pair: the target as a small ASCII bitmap (rows of ``#``/``.``) and the
  program; the reward is the logit of a one-label model, or the log-probability of the
  "good" label (the last one unless told otherwise) of a multi-label one.

Higher is better for all of them. A candidate that does not render scores ``-inf``.
Refinement always uses the verifier: its edits are defined by what the renderer shows.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np

from img2prog.search.verify import Evaluated, Target


@runtime_checkable
class Scorer(Protocol):
    name: str

    def score(self, target: Target, candidates: Sequence[Evaluated]) -> np.ndarray:
        """One float per candidate, higher is better; ``-inf`` for candidates that failed."""
        ...


class VerifierScorer:
    name = "verifier"

    def score(self, target: Target, candidates: Sequence[Evaluated]) -> np.ndarray:
        return np.array([c.iou if c.ok else -np.inf for c in candidates], dtype=np.float64)


class LikelihoodScorer:
    """Model log-likelihood; ``per_token=True`` divides by the program's token count (+1 for
    ``<eos>``), which stops long programs from being penalised just for being long."""

    def __init__(self, per_token: bool = False):
        self.per_token = per_token
        self.name = "likelihood-per-token" if per_token else "likelihood"

    def score(self, target: Target, candidates: Sequence[Evaluated]) -> np.ndarray:
        from img2prog.lang.csg2d.tokens import encode

        out = np.full(len(candidates), -np.inf)
        for i, c in enumerate(candidates):
            if c.ok and c.logprob is not None:
                out[i] = c.logprob / (len(encode(c.ast)) + 1) if self.per_token else c.logprob
        return out


def image_as_text(mask: np.ndarray, grid: int = 32) -> str:
    """A target mask as ``grid`` rows of ``#`` (mostly black) and ``.``, space separated."""
    s = mask.shape[0]
    if s % grid:
        idx = (np.arange(grid) * s) // grid
        small = mask[np.ix_(idx, idx)]
    else:
        f = s // grid
        small = mask.reshape(grid, f, grid, f).mean(axis=(1, 3)) >= 0.5
    return " ".join("".join("#" if v else "." for v in row) for row in small)


class RewardModelScorer:
    """A Hugging Face sequence-classification model as a reward (see the module docstring)."""

    def __init__(
        self,
        model: str,
        *,
        device: str = "cpu",
        batch_size: int = 16,
        label: int | None = None,
        grid: int | None = 32,
        max_length: int = 1024,
    ):
        self.model_name = model
        self.name = f"reward:{model}"
        self.device = device
        self.batch_size = batch_size
        self.label = label
        self.grid = grid  # None: the model sees the program only
        self.max_length = max_length
        self._model = None
        self._tokenizer = None

    def _load(self) -> None:
        try:
            import torch  # noqa: F401
            from transformers import AutoModelForSequenceClassification, AutoTokenizer
        except ImportError:
            raise RuntimeError(
                "the reward-model scorer needs transformers and torch: pip install 'img2prog[hf]'"
            ) from None
        try:
            self._tokenizer = AutoTokenizer.from_pretrained(self.model_name)
            model = AutoModelForSequenceClassification.from_pretrained(self.model_name)
        except OSError as e:
            raise RuntimeError(f"cannot load reward model {self.model_name!r}: {e}") from None
        self._model = model.to(self.device).eval()
        n = self._model.config.num_labels
        if self.label is not None and not 0 <= self.label < n:
            raise ValueError(f"reward label {self.label} out of range for a model with {n} labels")

    def score(self, target: Target, candidates: Sequence[Evaluated]) -> np.ndarray:
        import torch

        if self._model is None:
            self._load()
        out = np.full(len(candidates), -np.inf)
        idx = [i for i, c in enumerate(candidates) if c.ok]
        if not idx:
            return out
        image = image_as_text(target.mask, self.grid) if self.grid else None
        n_labels = self._model.config.num_labels
        label = self.label if self.label is not None else n_labels - 1
        for s in range(0, len(idx), self.batch_size):
            chunk = idx[s : s + self.batch_size]
            programs = [candidates[i].text for i in chunk]
            if image is None:
                enc = self._tokenizer(programs, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")
            else:
                enc = self._tokenizer(
                    [image] * len(chunk), programs, padding=True, truncation="only_first",
                    max_length=self.max_length, return_tensors="pt",
                )
            with torch.no_grad():
                logits = self._model(**enc.to(self.device)).logits.float()
            reward = logits[:, 0] if n_labels == 1 else torch.log_softmax(logits, -1)[:, label]
            out[chunk] = reward.cpu().numpy()
        return out


def get_scorer(spec: str | Scorer | None = None) -> Scorer:
    """``None``/``"verifier"``, ``"likelihood"``, ``"likelihood-per-token"``, or
    ``"reward:NAME_OR_PATH"`` for a Hugging Face reward model; a Scorer is returned as is."""
    if spec is None or spec == "verifier":
        return VerifierScorer()
    if not isinstance(spec, str):
        if isinstance(spec, Scorer):
            return spec
        raise TypeError(f"not a scorer: {spec!r}")
    if spec == "likelihood":
        return LikelihoodScorer()
    if spec == "likelihood-per-token":
        return LikelihoodScorer(per_token=True)
    if spec.startswith("reward:") and len(spec) > len("reward:"):
        return RewardModelScorer(spec[len("reward:") :])
    raise ValueError(
        f"unknown scorer {spec!r}; use verifier, likelihood, likelihood-per-token or reward:MODEL"
    )
