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


@pytest.mark.parametrize("method", ["greedy", "sample"])
def test_decoding_from_a_prefix_completes_that_prefix(method):
    torch.manual_seed(0)
    model = NativeModel(preset("cad-tiny", max_len=128)).eval()
    images = np.random.default_rng(2).integers(0, 256, (2, 32, 32), dtype=np.uint8)
    progs = testsets.testset_programs("cadquery-test")[:2]
    ids = [t.encode(parse(p)) for p in progs]
    prefixes = [ids[0][:20], ids[1][:7]]  # different lengths, one mid-sketch
    outs = model.generate(images, method=method, num_return_sequences=3, seed=0, prefix=prefixes)
    assert [len(row) for row in outs] == [1 if method == "greedy" else 3] * 2
    for row, pre in zip(outs, prefixes):
        for text, logprob in row:
            assert t.encode(parse(text))[: len(pre)] == pre and np.isfinite(logprob)
    # the whole program as prefix: the model may only end it or add steps after it
    (row,) = model.generate(images[:1], method="sample", num_return_sequences=4, seed=1, prefix=[ids[0]])
    assert all(t.encode(parse(text))[: len(ids[0])] == ids[0] for text, _ in row)


def test_decoding_from_a_prefix_rejects_what_the_grammar_does_not_allow():
    model = NativeModel(preset("cad-tiny", max_len=64)).eval()
    images = np.zeros((2, 32, 32), np.uint8)
    with pytest.raises(ValueError, match=r"prefix of image 1: token 'close' is not allowed at position 0"):
        model.generate(images, prefix=[[], [t.CLOSE]])
    with pytest.raises(ValueError, match="2 prefixes for 1 images"):
        model.generate(images[:1], prefix=[[], []])
    with pytest.raises(ValueError, match="no room"):
        model.generate(images[:1], prefix=[[t.FRAME0] + [t.number_id(0)] * 70])
    with pytest.raises(ValueError, match="not beam search"):
        model.generate(images[:1], method="beam", prefix=[[]])


def test_completions_start_with_the_program_and_keep_its_steps():
    from img2prog.models.cad_search import Candidate, complete_candidates, step_prefixes

    torch.manual_seed(0)
    model = NativeModel(preset("cad-tiny", max_len=160)).eval()
    progs = [p for p in testsets.testset_programs("cadquery-test") if len(step_prefixes(p)) == 3][:2]
    assert len(progs) == 2
    cuts = step_prefixes(progs[0])  # before each of its 2 booleans, and the whole program
    full = t.encode(parse(progs[0]))
    assert [len(c) for c in cuts][-1] == len(full) and all(full[: len(c)] == c for c in cuts)
    assert full[len(cuts[0])] in t.OPS and len(cuts[0]) < len(cuts[1]) < len(full)
    assert step_prefixes("not a program") == []
    images = np.random.default_rng(3).integers(0, 256, (3, 32, 32), dtype=np.uint8)
    asked = []  # (image, prefix, samples) of every decoded group
    generate = model.generate

    def recording(ims, **kw):
        for im, pre in zip(ims, kw["prefix"]):
            asked.append((next(i for i in range(3) if np.array_equal(images[i], im)), pre, kw["num_return_sequences"]))
        return generate(ims, **kw)

    model.generate = recording
    rows = complete_candidates(model, images, progs + ["broken"], samples=7, batch=8, seed=0)
    assert [c.source for c in rows[2]] == ["start"]  # nothing to complete
    for i, p in enumerate(progs):
        # 7 samples split 3/2/2 over the 3 boundaries, each decoded from its own picture
        assert sorted((pre, n) for j, pre, n in asked if j == i) == sorted(zip(step_prefixes(p), (3, 2, 2)))
        row = rows[i]
        assert row[0] == Candidate(p, 0.0, "start") and len(row) == 8
        assert all(c.source == "completion" for c in row[1:])
        assert all(t.encode(parse(c.program))[: len(step_prefixes(p)[0])] == step_prefixes(p)[0] for c in row[1:])
