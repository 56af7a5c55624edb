"""Keeping a large, long-lived heap out of the cyclic garbage collector's way."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def frozen_heap() -> Iterator[None]:
    """Move every object that exists now out of the collector's reach until the block ends.

    A full collection walks every tracked object: with a model, its tensors' wrappers and the
    renderer's caches loaded that is ~10^5 objects and 0.1 s or more, at a moment nobody
    chooses — inside a time-limited search, say. Objects made inside the block are collected
    as usual. For forked workers it also spares the parent's pages: a collection in a child
    writes the headers of every inherited object, copying the parent's heap page by page.
    If the caller has frozen objects already, they manage that themselves: nothing is done.
    """
    if gc.get_freeze_count():
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
