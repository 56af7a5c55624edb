"""The native model on CadQuery tokens: training from a precomputed dataset, constrained decoding.

No CadQuery needed: the dataset is fabricated from test-set programs and random pictures.
"""

import json

import numpy as np
import pytest
import torch

from img2prog.lang.cadquery import testsets
from img2prog.lang.cadquery import tokens as t
from img2prog.lang.cadquery.parser import parse
from img2prog.models.cad_data import DatasetError, DatasetLoader, load_dataset
from img2prog.models.native import NativeModel, preset
from img2prog.train.data import DataConfig
from img2prog.train.native import TrainConfig, train


def _fake_dataset(path, n=12, size=32, val=4):
    progs = testsets.testset_programs("cadquery-test")[:n + val]
    seqs = [[t.BOS, *t.encode(parse(p)), t.EOS] for p in progs]
    L = max(map(len, seqs))
    toks = np.zeros((len(seqs), L), np.int16)
    for i, s in enumerate(seqs):
        toks[i, : len(s)] = s
    rng = np.random.default_rng(0)
    ims = rng.integers(0, 256, (len(seqs), size, size), dtype=np.uint8)
    np.savez_compressed(path, images=ims[:n], tokens=toks[:n], lengths=np.zeros(n), val_images=ims[n:],
                        val_tokens=toks[n:], val_lengths=np.zeros(val))
    return ims, seqs


def test_loader_batches_are_a_function_of_the_step_and_shard_consistently(tmp_path):
    path = tmp_path / "d.npz"
    _fake_dataset(path)
    one = DatasetLoader(path, seed=3, shards=[0], data_shards=1, local_batch=4, device=torch.device("cpu"))
    again = DatasetLoader(path, seed=3, shards=[0], data_shards=1, local_batch=4, device=torch.device("cpu"))
    two = [DatasetLoader(path, seed=3, shards=[v], data_shards=2, local_batch=2, device=torch.device("cpu"))
           for v in (0, 1)]
    seen = []
    for step in (0, 1, 2, 5):  # 12 samples, batch 4: steps 0-2 are one epoch, 5 crosses into the next
        x, tk = one.batch(step)
        x2, tk2 = again.batch(step)
        assert torch.equal(x, x2) and torch.equal(tk, tk2)
        parts = [ld.batch(step) for ld in two]
        assert torch.equal(torch.cat([p[0] for p in parts]), x)
        assert x.shape == (4, 1, 32, 32) and x.dtype == torch.float32 and 0 <= x.min() and x.max() <= 1
        assert (tk[:, 0] == t.BOS).all() and (tk == t.EOS).sum() == 4  # trimmed, never cut
        if step < 3:
            seen += [tuple(r) for r in tk.tolist()]
    assert len(seen) == 12  # one epoch visits every sample once (all sequences are distinct)


def test_loader_serves_turned_parts_with_swapped_halves(tmp_path):
    path = tmp_path / "d.npz"
    ims, seqs = _fake_dataset(path, n=4, val=1)
    with np.load(path) as z:
        arrays = dict(z)
    arrays["tokens_turned"] = arrays["tokens"] + 1000 * (arrays["tokens"] != t.PAD)  # recognisable stand-ins
    np.savez(path, **arrays)
    ld = DatasetLoader(path, seed=0, shards=[0], data_shards=1, local_batch=8, device=torch.device("cpu"))
    assert ld.parts == 4 and ld.n == 8
    x, tk = ld.batch(0)  # one epoch: every part once as is, once turned
    images = torch.from_numpy(ims[:4])
    plain = turned = 0
    for xi, ti in zip(x, tk):
        row = [v for v in ti.tolist() if v != t.PAD]
        if row[1] < 1000:
            j = seqs.index(row)
            assert torch.allclose(xi[0], 1 - images[j].float() / 255)
            plain += 1
        else:
            j = seqs.index([v - 1000 for v in row])
            assert torch.allclose(xi[0], 1 - images[j].roll(16, dims=-1).float() / 255)
            turned += 1
    assert plain == turned == 4
    off = DatasetLoader(path, seed=0, shards=[0], data_shards=1, local_batch=4, device=torch.device("cpu"), turn=False)
    assert off.n == 4 and (off.batch(0)[1] < 1000).all()


def test_loader_rejects_bad_files(tmp_path):
    np.savez(tmp_path / "x.npz", images=np.zeros((2, 4, 4), np.uint8))
    with pytest.raises(DatasetError, match="tokens"):
        load_dataset(tmp_path / "x.npz")
    with pytest.raises(FileNotFoundError):
        load_dataset(tmp_path / "missing.npz")


def test_training_on_cadquery_tokens_lowers_the_loss(tmp_path):
    path = tmp_path / "d.npz"
    _fake_dataset(path, n=4)
    cfg = TrainConfig(preset="cad-tiny", steps=40, batch_size=4, lr=3e-3, warmup=5, log_every=10, eval_every=0,
                      eval_sets=(), ckpt_every=0, data=DataConfig(dataset=str(path), image_size=32, max_len=256),
                      amp="none")
    summary = train(cfg, tmp_path / "run", device="cpu", progress=False, echo=lambda *_: None)
    assert summary["step"] == 40
    assert summary["losses"][-1] < 0.75 * summary["losses"][0]
    meta = json.loads((tmp_path / "run" / "model" / "config.json").read_text())
    assert meta["config"]["language"] == "cadquery" and meta["dtype"] == "float16"
    m = NativeModel.from_pretrained(tmp_path / "run" / "model")
    assert m.config.vocab_size == t.VOCAB_SIZE


def test_train_cli_requires_a_dataset_for_cadquery(tmp_path):
    from typer.testing import CliRunner

    from img2prog.train.cli import app

    r = CliRunner().invoke(app, ["native", "--preset", "cad-tiny", "--out", str(tmp_path / "r")])
    assert r.exit_code == 2 and "--dataset" in r.output


@pytest.mark.parametrize("batch", [2, 9])  # the Python automaton (small CPU batches) and the tensor one
def test_constrained_decoding_yields_valid_scripts(batch):
    torch.manual_seed(0)
    model = NativeModel(preset("cad-tiny", max_len=64)).eval()
    images = np.random.default_rng(1).integers(0, 256, (batch, 32, 32), dtype=np.uint8)
    outs = model.generate(images, method="sample", temperature=1.5, seed=0)
    outs += model.generate(images, method="greedy")
    texts = [text for row in outs for text, _ in row]
    assert len(texts) == 2 * batch
    for text in texts:
        assert "!! tokens" not in text
        parse(text)  # raises on anything the static validator rejects
