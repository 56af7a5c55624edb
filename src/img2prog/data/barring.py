"""Barred programs: held-out programs that must never appear in training data.

A program is barred under *any spelling*: texts are compared in canonical form, so extra
whitespace or leading zeros do not sneak a test program in. And a program is barred if it
*draws the same image* as a barred one: ``(+ (Circle 3 8 8) (Circle 3 8 8))`` draws exactly
what ``(Circle 3 8 8)`` draws, so a model trained on one has seen the other's answer.
Images are compared exactly (a 128-bit hash of the black mask) at every size a generator
checks; 256 px, the SPEC size, is always among them.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from img2prog.data.checks import SPEC_SIZE, image_key
from img2prog.lang.csg2d import rendering
from img2prog.lang.csg2d.parser import parse
from img2prog.lang.errors import ProgramError


class BarSet:
    """Canonical texts and image fingerprints of barred programs.

    Image fingerprints are computed per size on first use, so one bar set serves generators
    that emit 64-px, 128-px or 256-px images. Texts that do not parse cannot be generated and
    are only counted in :attr:`skipped`.
    """

    def __init__(self, programs: Iterable[str] = ()):
        self._programs: dict[str, None] = {}  # canonical text, in insertion order
        self._image_keys: dict[int, set[bytes]] = {}
        self.skipped = 0
        self.add(programs)

    def add(self, programs: Iterable[str]) -> BarSet:
        new = []
        for text in programs:
            try:
                canonical = str(parse(text))
            except ProgramError:
                self.skipped += 1
                continue
            if canonical not in self._programs:
                self._programs[canonical] = None
                new.append(canonical)
        for size, keys in self._image_keys.items():
            keys.update(self._keys(new, size))
        return self

    def copy(self) -> BarSet:
        out = BarSet()
        out._programs = dict(self._programs)
        out._image_keys = {size: set(keys) for size, keys in self._image_keys.items()}
        out.skipped = self.skipped
        return out

    def union(self, other: BarSet) -> BarSet:
        """A new bar set barring everything either bars (neither operand changes)."""
        out = self.copy()
        out.add(other._programs)
        out.skipped += other.skipped
        return out

    @staticmethod
    def _keys(programs: Iterable[str], size: int) -> set[bytes]:
        keys = set()
        for p in programs:
            try:
                keys.add(image_key(rendering.render_gray(p, size)))
            except ProgramError:  # the geometry engine cannot draw it: no image to match
                pass
        return keys

    def image_keys(self, size: int = SPEC_SIZE) -> set[bytes]:
        if size not in self._image_keys:
            self._image_keys[size] = self._keys(self._programs, size)
        return self._image_keys[size]

    @property
    def programs(self) -> list[str]:
        """The barred programs, canonical, without duplicates."""
        return list(self._programs)

    def __len__(self) -> int:
        return len(self._programs)

    def __contains__(self, text: str) -> bool:
        return self.bars_program(text)

    def bars_program(self, text: str) -> bool:
        """Whether ``text`` (any spelling) is a barred program."""
        try:
            return str(parse(text)) in self._programs
        except ProgramError:
            return False

    def bars_canonical(self, canonical: str) -> bool:
        return canonical in self._programs

    def bars_image(self, gray: np.ndarray) -> bool:
        """Whether an (S, S) or (S, S, 3) rendering equals the rendering of a barred program."""
        return image_key(gray) in self.image_keys(gray.shape[0])

    def bars(self, text: str, size: int = SPEC_SIZE) -> bool:
        """Whether ``text`` is barred by spelling or by its image at ``size``."""
        if self.bars_program(text):
            return True
        try:
            return self.bars_image(rendering.render_gray(text, size))
        except ProgramError:
            return False

