"""Shared stand-ins for the model tests."""

import pytest


class Verdicts:
    """A stand-in for the sandbox (``run_many``): builds exactly the texts in ``ok``, and
    records what it was asked, call by call."""

    def __init__(self, ok):
        self.ok, self.asked = set(ok), []

    def run_many(self, texts, mesh=True):
        self.asked.append(list(texts))
        return [type("Result", (), {"ok": t in self.ok})() for t in texts]


@pytest.fixture
def verdicts():
    """The :class:`Verdicts` class (call it with the texts that build)."""
    return Verdicts
