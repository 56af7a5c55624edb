"""The native model: persistence, decoding modes, the proposer, and the shipped weights."""

import json
import time

import numpy as np
import pytest
import torch

from img2prog.lang import get_language
from img2prog.lang.csg2d import render
from img2prog.models import native
from img2prog.models.native import NativeConfig, NativeModel, preset
from img2prog.models.proposer import NativeProposer
from img2prog.search.base import Candidate, Proposer

LANG = get_language("csg2d")
PROGRAMS = ["(Circle 5 8 8)", "(+ (Quad 4 4 6 2 45) (Circle 3 10 10))", "(- (Circle 6 8 8) (Circle 3 8 8))"]


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return NativeModel(preset("tiny")).eval()


@pytest.fixture(scope="module")
def images():
    return np.stack([render(p) for p in PROGRAMS])


def test_config_validation():
    with pytest.raises(ValueError, match="patch"):
        NativeConfig(patch=12)
    with pytest.raises(ValueError, match="divisible"):
        NativeConfig(d_model=100, n_heads=8)
    with pytest.raises(KeyError, match="unknown preset"):
        preset("huge")


def test_save_load_round_trip(tiny, images, tmp_path):
    tiny.save_pretrained(tmp_path / "m")
    loaded = NativeModel.from_pretrained(tmp_path / "m")
    assert loaded.config == tiny.config
    for k, v in tiny.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k]), k
    assert loaded.generate(images) == tiny.generate(images)
    # Tied head: loading must not untie it.
    assert loaded.head.weight.data_ptr() == loaded.tok_emb.weight.data_ptr()


def test_sharded_fp16_save(tiny, images, tmp_path, monkeypatch):
    monkeypatch.setattr(native, "MAX_SHARD_BYTES", 20_000)
    tiny.save_pretrained(tmp_path / "m", dtype=torch.float16)
    meta = json.loads((tmp_path / "m" / "config.json").read_text())
    files = sorted(p for p in (tmp_path / "m").glob("*.safetensors"))
    assert len(files) == len(meta["weights"]) > 1
    assert not list((tmp_path / "m").glob("*.bin")) and not list((tmp_path / "m").glob("*.pt"))
    loaded = NativeModel.from_pretrained(tmp_path / "m")
    for k, v in tiny.state_dict().items():
        assert torch.allclose(v, loaded.state_dict()[k], atol=1e-3, rtol=1e-3), k
    files[0].unlink()
    with pytest.raises(FileNotFoundError, match="missing"):
        NativeModel.from_pretrained(tmp_path / "m")


def test_unknown_model_names_the_shipped_ones():
    with pytest.raises(FileNotFoundError, match="shipped"):
        NativeModel.from_pretrained("no-such-model")


def test_greedy_is_deterministic_and_parses(tiny, images):
    a, b = tiny.generate(images), tiny.generate(images)
    assert a == b and len(a) == len(images)
    for (text, lp), in a:
        LANG.parse(text)
        assert lp <= 0


def test_sampling_seeded_and_sized(tiny, images):
    a = tiny.generate(images, method="sample", num_return_sequences=5, temperature=2.0, seed=1)
    b = tiny.generate(images, method="sample", num_return_sequences=5, temperature=2.0, seed=1)
    c = tiny.generate(images, method="sample", num_return_sequences=5, temperature=2.0, seed=2)
    assert a == b and a != c
    assert [len(r) for r in a] == [5] * len(images)
    for row in a:
        for text, _ in row:
            LANG.parse(text)
    top = tiny.generate(images, method="sample", num_return_sequences=3, top_p=1e-6, seed=3)
    greedy = tiny.generate(images)
    for row, (g,) in zip(top, greedy):  # a tiny nucleus keeps only the argmax
        assert all(t == g[0] for t, _ in row)


def test_beam_search(tiny, images):
    one = tiny.generate(images, method="beam", num_beams=1)
    assert [[t for t, _ in r] for r in one] == [[t for t, _ in r] for r in tiny.generate(images)]
    rows = tiny.generate(images, method="beam", num_return_sequences=4, num_beams=6)
    for row in rows:
        texts = [t for t, _ in row]
        lps = [lp for _, lp in row]
        assert 1 <= len(row) <= 4 and len(set(texts)) == len(texts)
        assert lps == sorted(lps, reverse=True)
        for t in texts:
            LANG.parse(t)
    # The best beam is at least as likely as the greedy program.
    for row, ((_, g_lp),) in zip(rows, tiny.generate(images)):
        assert row[0][1] >= g_lp - 1e-4


def test_logprob_is_the_constrained_likelihood(tiny, images):
    """The reported log-probability equals a teacher-forced recomputation with the masks."""
    ((text, lp),) = tiny.generate(images[:1])[0]
    ids = [tiny.bos_id] + LANG.encode(text) + [tiny.eos_id]
    from img2prog.models.constraints import Csg2dTensorConstraint

    cons = Csg2dTensorConstraint()
    state = cons.start(1, tiny.config.max_len - 1)
    with torch.no_grad():
        logits, _ = tiny(tiny.prepare_images(images[:1]), torch.tensor([ids[:-1]]))
    total = 0.0
    for pos, tok in enumerate(ids[1:]):
        row = logits[0, pos].masked_fill(~cons.mask(state)[0], float("-inf")).log_softmax(-1)
        total += float(row[tok])
        state = cons.advance(state, torch.tensor([tok]))
    assert total == pytest.approx(lp, abs=1e-3)


def test_any_image_size_is_accepted(tiny):
    small = np.stack([render("(Circle 5 8 8)", 64)])
    gray = small[..., 0]
    assert tiny.generate(small) == tiny.generate(gray)
    with pytest.raises(ValueError, match="shape"):
        tiny.prepare_images(np.zeros((2, 3, 4, 5, 6), np.uint8))


def test_proposer_contract(tiny, images):
    prop = NativeProposer(tiny, device="cpu", batch_size=4)
    assert isinstance(prop, Proposer)
    g = prop.propose(images, method="greedy")
    assert [len(r) for r in g] == [1, 1, 1] and isinstance(g[0][0], Candidate)
    s = prop.propose(images, 3, method="sample", seed=5)
    assert [len(r) for r in s] == [3, 3, 3]
    assert s == prop.propose(images, 3, method="sample", seed=5)
    b = prop.propose(images, 2, method="beam")
    assert all(1 <= len(r) <= 2 for r in b)
    assert all(c.logprob is not None for r in b for c in r)


def test_generate_stops_at_a_deadline(tiny, images):
    """A deadline that has passed leaves out every unfinished program; a distant one changes
    nothing. Beam search ignores it (only greedy and sampling decode row by row)."""
    past = time.perf_counter() - 1.0
    assert tiny.generate(images, method="sample", num_return_sequences=3, seed=1, deadline=past) == [[], [], []]
    assert tiny.generate(images, deadline=past) == [[], [], []]
    future = time.perf_counter() + 3600.0
    assert tiny.generate(images, method="sample", num_return_sequences=3, seed=1, deadline=future) == \
        tiny.generate(images, method="sample", num_return_sequences=3, seed=1)
    prop = NativeProposer(tiny, device="cpu")
    assert prop.propose(images, 2, method="sample", seed=1, deadline=past) == [[], [], []]
    assert [len(r) for r in prop.propose(images, 2, method="beam", deadline=past)] == [2, 2, 2]


def test_proposer_reuses_image_encodings(tiny, images, monkeypatch):
    """The proposer encodes each distinct picture once, and what it decodes from the cached
    encoding is what the model decodes from the picture."""
    prop = NativeProposer(tiny, device="cpu", batch_size=4)
    calls = []
    real = tiny.encode
    monkeypatch.setattr(tiny, "encode", lambda x: calls.append(len(x)) or real(x))
    greedy = prop.propose(images, method="greedy")
    samples = prop.propose(images[1:], 3, method="sample", seed=2)
    assert calls == [3]  # the samples' pictures were all encoded for the greedy call
    monkeypatch.setattr(tiny, "encode", real)
    assert [[(c.program, pytest.approx(c.logprob, abs=1e-4)) for c in r] for r in greedy] == tiny.generate(images)
    # batch_size 4 over 3 samples: one picture per decode, seeded seed + its index
    expected = [tiny.generate(images[1 + i : 2 + i], method="sample", num_return_sequences=3, seed=2 + i)[0]
                for i in range(2)]
    assert [[(c.program, pytest.approx(c.logprob, abs=1e-4)) for c in r] for r in samples] == expected
    other = images[:1].copy()
    other[0, :8, :8] = 0  # a different picture is a cache miss, not a stale hit
    monkeypatch.setattr(tiny, "encode", lambda x: calls.append(len(x)) or real(x))
    prop.propose(np.concatenate([images[:1], other]), method="greedy")
    assert calls == [3, 1]
    prop.memory_cache_size = 2
    prop.propose(images, method="greedy")
    assert len(prop._memory) == 2  # bounded


def test_shipped_model_reconstructs_easy_shapes():
    model = NativeModel.from_pretrained()  # the default: img2prog/weights/native-csg2d
    targets = ["(Circle 5 8 8)", "(Quad 8 8 6 4 45)", "(- (Circle 6 8 8) (Circle 3 8 8))"]
    imgs = np.stack([render(p) for p in targets])
    from img2prog.search.simplify import simplify

    for program, target, ((text, lp),) in zip(targets, imgs, model.generate(imgs)):
        assert np.array_equal(render(text), target), text
        assert np.isfinite(lp) and lp <= 0
        # The RL-refined weights may pad an answer with operands that draw nothing (a pixel
        # reward does not see them); what users get after simplification is the plain program.
        assert simplify(text) == program, text


def test_grouped_cross_attention_equals_repeated_memory(tiny, images):
    """Sampling n rows per image with the image's keys shared (group=n) must decode exactly what
    the plain path decodes when the memory is repeated n times (group=1), draw for draw."""
    n = 5
    with torch.inference_mode():
        memory = tiny.encode(tiny.prepare_images(images[:2]))
        for sample in (True, False):
            a, la, _ = tiny._decode(memory.repeat_interleave(n, dim=0), 40, sample=sample, temperature=1.3,
                                    top_p=0.95, seed=7)
            b, lb, _ = tiny._decode(memory, 40, sample=sample, temperature=1.3, top_p=0.95, seed=7, group=n)
            assert torch.equal(a, b)
            assert torch.allclose(la, lb, atol=1e-4)
        # One attention call, rows of one image sharing keys: equal to attending row by row.
        attn = tiny.decoder[0].cross_attn
        k, v = attn.project_kv(memory)
        x = torch.randn(2 * n, 1, tiny.config.d_model)
        grouped = attn.attend_grouped(x, k, v, n)
        plain = attn.attend(x, k.repeat_interleave(n, dim=0), v.repeat_interleave(n, dim=0))
        assert torch.allclose(grouped, plain, atol=1e-5)
