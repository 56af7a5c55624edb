"""Tiny offline models for the Hugging Face backend tests (built once per test session)."""

from __future__ import annotations

import pytest

#: reason shown when the optional Hugging Face stack is not installed
HF_MISSING = "the Hugging Face backend needs the 'hf' extra: pip install 'img2prog[hf]'"


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory):
    """``tiny_dir(family, chat_template="hand")`` → folder of a tiny random checkpoint."""
    pytest.importorskip("transformers", reason=HF_MISSING)
    from img2prog.models.hf.tiny import build_tiny

    built: dict[tuple[str, str], object] = {}

    def get(family: str, chat_template: str = "hand"):
        key = (family, chat_template)
        if key not in built:
            built[key] = build_tiny(family, tmp_path_factory.mktemp(f"tiny-{family}-{chat_template}"),
                                    chat_template=chat_template)
        return built[key]

    return get
