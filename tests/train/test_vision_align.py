"""Vision alignment (grid transcription) on a tiny VLM built around a tiny Gemma 3 text model."""

from __future__ import annotations

import json

import numpy as np
import pytest

from img2prog.train.vision_align import grid_caption


def test_grid_caption_marks_cells_that_are_mostly_ink():
    img = np.full((32, 32, 3), 255, np.uint8)
    img[0:4, 0:4] = 0  # cell (0, 0) fully ink
    img[4:6, 8:12] = 0  # cell (1, 2) half ink: not more than half → paper
    img[12:16, 12:15] = 0  # cell (3, 3): 12 of 16 pixels → ink
    lines = grid_caption(img, cells=8).split("\n")
    assert len(lines) == 8 and all(len(line) == 8 for line in lines)
    assert lines[0] == "#......."
    assert lines[1] == "........"
    assert lines[3][3] == "#" and lines[3].count("#") == 1
    assert grid_caption(img[..., 0], cells=8) == grid_caption(img, cells=8)  # greyscale too
    with pytest.raises(ValueError, match="30x30"):
        grid_caption(np.zeros((30, 30), np.uint8), cells=8)


@pytest.fixture(scope="module")
def tiny_vlm(tmp_path_factory):
    """A tiny Gemma 3 VLM with a new tower around a tiny Gemma 3 text model (stands in for the 270M)."""
    pytest.importorskip("transformers", reason="needs the 'hf' extra")
    from img2prog.models.hf import pretrained as P
    from img2prog.models.hf.tiny import TinySpec, build_tiny_text

    root = tmp_path_factory.mktemp("tiny_vlm")
    lm = build_tiny_text(root / "lm", spec=TinySpec(hidden_size=32, num_layers=2))
    spec = P.VisionSpec(
        image_size=32, patch_size=8, tokens_per_image=4, hidden_size=32, intermediate_size=64, num_layers=1, num_heads=2
    )
    return P.build_gemma3_vlm(lm, root / "vlm", vision=spec)


def test_alignment_trains_the_tower_only_and_saves_a_loadable_model(tiny_vlm, tmp_path):
    import torch

    from img2prog.models.hf import pretrained as P
    from img2prog.models.hf.backend import load
    from img2prog.train.vision_align import AlignSettings, align_vision

    vlm = tiny_vlm
    rec = align_vision(
        AlignSettings(
            model=str(vlm),
            out=str(tmp_path / "aligned"),
            n=24,
            val=4,
            cells=4,
            batch_size=4,
            epochs=2,
            warmup=2,
            log_every=1,
            progress=False,
            device="cpu",
        )
    )
    assert rec["steps"] == 12 and rec["stop_reason"] == "done"
    losses = [r["loss"] for r in rec["log"]]
    assert all(np.isfinite(losses))
    assert set(rec["after"]) >= {"cell_accuracy", "row_accuracy", "grid_exact"}
    assert 0.0 <= rec["after"]["cell_accuracy"] <= 1.0

    base, aligned = load(str(vlm)), load(str(tmp_path / "aligned"))
    b, a = dict(base.model.named_parameters()), dict(aligned.model.named_parameters())
    lm_names = [n for n in b if ".language_model." in n]
    tower_names = [n for n in b if ".vision_tower." in n or ".multi_modal_projector." in n]
    assert lm_names and tower_names
    assert all(torch.equal(b[n], a[n]) for n in lm_names)  # the pretrained LM is untouched
    assert sum(not torch.equal(b[n], a[n]) for n in tower_names) > len(tower_names) // 2
    meta = json.loads((tmp_path / "aligned" / P.MODEL_META).read_text())
    assert "fresh_modules" not in meta and meta["vision_alignment"]["steps"] == 12
    assert meta["aligned_from"] == str(vlm)


def test_alignment_honours_its_time_budget(tiny_vlm, tmp_path):
    from img2prog.train.vision_align import AlignSettings, align_vision

    rec = align_vision(
        AlignSettings(
            model=str(tiny_vlm),
            out=str(tmp_path / "a"),
            n=400,
            val=2,
            cells=4,
            batch_size=4,
            max_seconds=0.0,
            progress=False,
            device="cpu",
        )
    )
    assert (
        rec["stop_reason"] == "time budget"
        and rec["steps"] == 0
        and rec["planned_steps"] == -(-rec["pictures"] // 4) > 50
    )
