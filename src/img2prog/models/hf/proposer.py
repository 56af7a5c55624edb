"""A Hugging Face VLM as a :class:`img2prog.search.base.Proposer`.

The model is asked for the program of each image (prompted in the style it was trained
with), each reply goes through the extraction rule of :mod:`.extract`, and the extracted
programs are the candidates. Search strategies (best-of-N, majority vote, refinement) then
work with a VLM exactly as with the native model.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from img2prog.models.hf.backend import GenerationSettings, HFModel
from img2prog.models.hf.extract import Extraction, extract
from img2prog.search.base import Candidate, ProposalMethod

#: the candidate program given for a reply with no program in it. It does not parse (so it
#: scores as unparsable) and cannot be mistaken for the empty program "".
NO_PROGRAM = "<no program in reply>"


@dataclass
class HFProposer:
    """Proposes programs for images with a chat VLM.

    ``settings`` holds the generation settings (the seed protocol's: top-k 64, at most 256
    new tokens, batching); ``propose``'s ``temperature`` and ``top_p`` apply per call.
    ``score=True`` fills each candidate's ``logprob`` with the teacher-forced log-likelihood
    of the extracted program (one extra forward pass per batch); otherwise it is None.
    ``repair`` is passed to the extraction rule (salvage truncated replies).
    """

    model: HFModel
    settings: GenerationSettings = field(default_factory=GenerationSettings)
    prompt: str | None = None  # None: the model's own prompt style
    score: bool = False
    repair: bool = True
    #: the replies and extractions of the last call, per image (for analysis and reports)
    last_replies: list[list[str]] = field(default_factory=list, repr=False)
    last_extractions: list[list[Extraction]] = field(default_factory=list, repr=False)

    def propose(
        self,
        images: np.ndarray,
        n: int = 1,
        *,
        method: ProposalMethod = "sample",
        temperature: float = 1.0,
        top_p: float = 0.95,
        seed: int | None = None,
    ) -> list[list[Candidate]]:
        """``n`` candidates per image. The defaults sample as the seed protocol does
        (temperature 1.0, top-p 0.95, and top-k 64 from ``settings``); ``greedy`` gives one
        candidate, ``beam`` up to ``n`` distinct ones."""
        images = np.asarray(images)
        if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
            raise ValueError(f"images must be a (B, S, S, 3) uint8 array, got {images.dtype} {images.shape}")
        if method == "greedy":
            settings, n = replace(self.settings, do_sample=False, num_beams=1), 1
        elif method == "beam":
            settings = replace(self.settings, do_sample=False, num_beams=max(n, 1))
        elif method == "sample":
            settings = replace(self.settings, do_sample=True, num_beams=1, temperature=temperature, top_p=top_p)
        else:
            raise ValueError(f"unknown proposal method {method!r}; expected greedy, sample or beam")
        replies = self.model.generate(images, n, prompt=self.prompt, settings=settings, seed=seed)
        language = self.model.language
        extractions = [[extract(r, language, repair=self.repair) for r in per_image] for per_image in replies]
        self.last_replies, self.last_extractions = replies, extractions
        out: list[list[Candidate]] = []
        for i, per_image in enumerate(extractions):
            programs = [e.program if e.program is not None else NO_PROGRAM for e in per_image]
            if method == "beam":  # beams can repeat a program once prose is stripped: keep distinct ones
                programs = list(dict.fromkeys(programs))
            logprobs: list[float | None] = [None] * len(programs)
            if self.score:
                valid = [j for j, p in enumerate(programs) if p != NO_PROGRAM]
                if valid:
                    scores = self.model.score(
                        [images[i]] * len(valid), [programs[j] for j in valid], prompt=self.prompt
                    )
                    for j, s in zip(valid, scores):
                        logprobs[j] = s
            out.append([Candidate(p, lp) for p, lp in zip(programs, logprobs)])
        return out
