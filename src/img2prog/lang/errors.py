"""The one exception type every language raises for text that is not a program."""

from __future__ import annotations


class ProgramError(ValueError):
    """A program text (or AST) is not a valid program.

    ``offset`` is the 0-based character offset in the source text where the problem was
    found, or ``None`` when the error concerns an AST built in code rather than parsed text.
    The message always names the problem; ``str(err)`` adds the offset.
    """

    def __init__(self, message: str, offset: int | None = None):
        self.message = message
        self.offset = offset
        super().__init__(message if offset is None else f"{message} (at offset {offset})")

    def __reduce__(self):  # keep the offset across process boundaries (batch rendering)
        return (type(self), (self.message, self.offset))


class RenderError(ProgramError):
    """A program parsed but the geometry engine could not evaluate it.

    The reference recipe fails on some degenerate inputs (e.g. the difference of an empty
    circle and a zero-width quad makes GEOS give up). SPEC §2 counts a program that fails to
    render as unparsable, so this is a :class:`ProgramError` too; the subclass lets callers
    tell "not a program" from "a program the engine cannot draw".
    """
