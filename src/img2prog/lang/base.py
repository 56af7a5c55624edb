"""What a graphics language provides to the rest of img2prog.

Callers (metrics, datasets, generators, models, search, the CLI) talk to a
:class:`Language`, never to a concrete parser or renderer, so CadQuery or SVG can be added as
new subclasses without touching them. A language owns:

- ``parse`` / ``validate`` / ``canonical``: text ⇄ program, with :class:`ProgramError` on bad text;
- ``render`` (one program) and ``render_batch`` (many), to the image convention of the language;
- ``tokenizer``: a fixed vocabulary for sequence models, plus a grammar ``constraint`` that
  tells a decoder which next tokens keep a prefix valid;
- ``size``: a program-size measure (used for tie-breaks and complexity statistics).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from img2prog.lang.errors import ProgramError


@dataclass
class Tokenizer:
    """A fixed vocabulary with the usual special tokens, in the shape models expect.

    ``pad_id`` is 0, then ``bos_id`` and ``eos_id``; language tokens follow. Encoding a
    program always goes through its canonical form, so one program has one token sequence.
    """

    tokens: list[str]
    pad_token: str = "<pad>"
    bos_token: str = "<bos>"
    eos_token: str = "<eos>"
    _index: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._index = {t: i for i, t in enumerate(self.tokens)}
        if len(self._index) != len(self.tokens):
            raise ValueError("duplicate tokens in vocabulary")

    @property
    def vocab_size(self) -> int:
        return len(self.tokens)

    @property
    def pad_id(self) -> int:
        return self._index[self.pad_token]

    @property
    def bos_id(self) -> int:
        return self._index[self.bos_token]

    @property
    def eos_id(self) -> int:
        return self._index[self.eos_token]

    def token_to_id(self, token: str) -> int:
        try:
            return self._index[token]
        except KeyError:
            raise ProgramError(f"token {token!r} is not in the vocabulary") from None

    def id_to_token(self, i: int) -> str:
        return self.tokens[i]


class Constraint(ABC):
    """Grammar constraint for decoding: a state machine over token ids.

    ``start()`` gives the state before the first token; ``allowed(state)`` the ids that keep the
    prefix a valid prefix of a program *and* can still be completed within the remaining length
    budget (``eos`` is allowed exactly when the prefix is a complete program); ``advance`` moves.
    States are small immutable values so they can be copied per beam.
    """

    @abstractmethod
    def start(self, max_tokens: int) -> Any: ...

    @abstractmethod
    def allowed(self, state: Any) -> Sequence[int]: ...

    @abstractmethod
    def advance(self, state: Any, token_id: int) -> Any: ...


class Language(ABC):
    """A graphics language. Subclasses are stateless; get them with :func:`get_language`."""

    name: str
    #: default raster size of rendered images (pixels per side)
    image_size: int

    # --- text ⇄ program -------------------------------------------------------------
    @abstractmethod
    def parse(self, text: str) -> Any:
        """Parse text into the language's immutable program object; ProgramError on bad text."""

    @abstractmethod
    def to_text(self, program: Any) -> str:
        """Canonical text of a program object; ``parse(to_text(p)) == p``."""

    def canonical(self, text: str) -> str:
        """Canonical spelling of program text (raises ProgramError if it is not a program)."""
        return self.to_text(self.parse(text))

    def validate(self, text: str) -> ProgramError | None:
        """The error that makes ``text`` not a program, or None if it is one."""
        try:
            self.parse(text)
        except ProgramError as e:
            return e
        return None

    def is_valid(self, text: str) -> bool:
        return self.validate(text) is None

    # --- rendering --------------------------------------------------------------------
    @abstractmethod
    def render(self, program: Any, size: int | None = None) -> np.ndarray:
        """Render text or a program object to an (S, S, 3) uint8 array."""

    def render_batch(
        self, programs: Iterable[Any], size: int | None = None, workers: int | None = None
    ) -> tuple[np.ndarray, list[ProgramError | None]]:
        """Render many programs to (N, S, S, 3); failures leave a blank image and an error."""
        programs = list(programs)
        size = size or self.image_size
        out = np.full((len(programs), size, size, 3), 255, dtype=np.uint8)
        errors: list[ProgramError | None] = []
        for i, p in enumerate(programs):
            try:
                out[i] = self.render(p, size)
                errors.append(None)
            except ProgramError as e:
                errors.append(e)
        return out, errors

    # --- models -----------------------------------------------------------------------
    @property
    @abstractmethod
    def tokenizer(self) -> Tokenizer: ...

    @abstractmethod
    def encode(self, program: Any) -> list[int]:
        """Token ids of the canonical program (without bos/eos)."""

    @abstractmethod
    def decode(self, ids: Iterable[int]) -> str:
        """Text from token ids; stops at eos and skips pad/bos. May not be a valid program."""

    @abstractmethod
    def constraint(self) -> Constraint:
        """Grammar constraint for decoding (see :class:`Constraint`)."""

    # --- measures ---------------------------------------------------------------------
    @abstractmethod
    def size(self, program: Any) -> int:
        """Program size (e.g. number of nodes); used for tie-breaks and statistics."""


_REGISTRY: dict[str, type[Language]] = {}
_INSTANCES: dict[str, Language] = {}


def register(cls: type[Language]) -> type[Language]:
    """Class decorator: make a language available to :func:`get_language` by its ``name``."""
    _REGISTRY[cls.name] = cls
    return cls


def get_language(name: str = "csg2d") -> Language:
    """The language called ``name`` (``csg2d`` by default)."""
    if name not in _INSTANCES:
        if name not in _REGISTRY:
            # Languages register on import; import the built-in ones lazily.
            import img2prog.lang.cadquery.language  # noqa: F401  (does not import CadQuery itself)
            import img2prog.lang.csg2d.language  # noqa: F401
        if name not in _REGISTRY:
            raise KeyError(f"unknown language {name!r}; available: {', '.join(sorted(_REGISTRY))}")
        _INSTANCES[name] = _REGISTRY[name]()
    return _INSTANCES[name]


def available_languages() -> list[str]:
    import img2prog.lang.cadquery.language  # noqa: F401  (does not import CadQuery itself)
    import img2prog.lang.csg2d.language  # noqa: F401

    return sorted(_REGISTRY)
