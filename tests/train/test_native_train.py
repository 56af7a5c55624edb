"""Training the native model: schedule, data determinism, exact resume, DDP equivalence."""

from __future__ import annotations

import json
import os
import socket

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from img2prog.lang import get_language
from img2prog.lang.csg2d import tokens as T
from img2prog.models.native import NativeModel
from img2prog.train.data import ChunkLoader, DataConfig, _init_worker, make_block, unpack_images
from img2prog.train.native import TrainConfig, lr_at, train

# Small enough for seconds on a CPU: 64-px images, 8-sample generator blocks.
DATA = DataConfig(image_size=64, block_size=8, chunk_blocks=2, reuse=2, max_len=64)
BAR = ["(Circle 3 8 8)"]


def tiny_cfg(**kw) -> TrainConfig:
    base = {"preset": "tiny", "steps": 6, "batch_size": 8, "warmup": 2, "lr": 3e-3, "eval_sets": (),
            "log_every": 1, "ckpt_every": 0, "data": DATA, "workers": 0}
    return TrainConfig(**{**base, **kw})


@pytest.fixture(autouse=True)
def _no_testset_bar(monkeypatch):
    # Rebuilding the standard bar is slow; these tests check mechanics, not barring.
    monkeypatch.setattr("img2prog.train.data.barred_programs", lambda: list(BAR))


def test_lr_schedule():
    cfg = tiny_cfg(steps=100, warmup=10, lr=1.0, min_lr_ratio=0.1)
    assert lr_at(cfg, 0) == pytest.approx(0.1)
    assert lr_at(cfg, 9) == pytest.approx(1.0)
    assert lr_at(cfg, 100) == pytest.approx(0.1)
    assert lr_at(cfg, 10) > lr_at(cfg, 50) > lr_at(cfg, 90)


def test_blocks_are_deterministic_and_well_formed():
    _init_worker(BAR, (256, 64))
    a_img, a_tok, _ = make_block(DATA, 0, 3)
    b_img, b_tok, _ = make_block(DATA, 0, 3)
    assert np.array_equal(a_img, b_img) and np.array_equal(a_tok, b_tok)
    lang = get_language("csg2d")
    imgs = unpack_images(torch.from_numpy(a_img), 64)
    for row, img in zip(a_tok, imgs):
        assert row[0] == T.BOS
        text = lang.decode(row[1:])
        black = torch.from_numpy(lang.render(text, 64)[..., 0] == 0).float()
        assert torch.equal(img[0], black)  # the image is the program's exact rendering
        assert "(Circle 3 8 8)" != text


def test_batches_depend_only_on_the_step():
    a = ChunkLoader(DATA, [0], 4, torch.device("cpu"), workers=0, bar_programs=BAR)
    b = ChunkLoader(DATA, [0], 4, torch.device("cpu"), workers=0, bar_programs=BAR)
    late = [b.batch(s) for s in (9, 2, 5)]  # b jumps around (as a resumed run does)
    for s, (img, tok) in zip((9, 2, 5), late):
        img_a, tok_a = a.batch(s)
        assert torch.equal(img, img_a) and torch.equal(tok, tok_a)
    assert tok.shape[1] == int((tok != T.PAD).sum(1).max())  # padding trimmed per batch


def test_resume_reproduces_the_uninterrupted_run(tmp_path):
    full = train(tiny_cfg(), tmp_path / "full", progress=False, echo=lambda *_: None)
    first = train(tiny_cfg(stop_at=3), tmp_path / "split", progress=False, echo=lambda *_: None)
    assert first["stop_reason"] == "stop_at" and first["step"] == 3
    second = train(tiny_cfg(), tmp_path / "split", resume=True, progress=False, echo=lambda *_: None)
    assert first["losses"] + second["losses"] == full["losses"]
    a = NativeModel.from_pretrained(tmp_path / "full" / "checkpoint" / "model")
    b = NativeModel.from_pretrained(tmp_path / "split" / "checkpoint" / "model")
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k]), k
    rows = (tmp_path / "split" / "log.csv").read_text().splitlines()
    assert rows[0].startswith("step,loss") and len(rows) == 1 + 6


def test_resume_without_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        train(tiny_cfg(), tmp_path / "none", resume=True, progress=False)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    from img2prog.train import data

    data.barred_programs = lambda: list(BAR)
    torch.set_num_threads(1)
    cfg = tiny_cfg(steps=4, data=DataConfig(**{**DATA.__dict__, "data_shards": 2}))
    summary = train(cfg, out, device="cpu", progress=False, echo=lambda *_: None)
    if rank == 0:
        with open(os.path.join(out, "losses.json"), "w") as f:
            json.dump(summary["losses"], f)
    torch.distributed.destroy_process_group()


def test_ddp_two_cpu_processes_match_one_process(tmp_path):
    torch.set_num_threads(1)
    single = train(tiny_cfg(steps=4, data=DataConfig(**{**DATA.__dict__, "data_shards": 2})), tmp_path / "one",
                   device="cpu", progress=False, echo=lambda *_: None)
    mp.spawn(_ddp_worker, args=(2, _free_port(), str(tmp_path / "two")), nprocs=2, join=True)
    ddp_losses = json.loads((tmp_path / "two" / "losses.json").read_text())
    assert ddp_losses == pytest.approx(single["losses"], rel=1e-5)
    a = NativeModel.from_pretrained(tmp_path / "one" / "checkpoint" / "model")
    b = NativeModel.from_pretrained(tmp_path / "two" / "checkpoint" / "model")
    for k, v in a.state_dict().items():
        assert torch.allclose(v, b.state_dict()[k], atol=1e-5), k
