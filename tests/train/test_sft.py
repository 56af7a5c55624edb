"""QLoRA/LoRA SFT on tiny offline VLMs: the loss mask, training, resume, NaN guard, CLI."""

from __future__ import annotations

import json
import math

import pytest

pytest.importorskip("trl", reason="SFT needs the 'hf' extra (transformers, peft, trl): pip install 'img2prog[hf]'")

from img2prog.models.hf.lora import LoraSettings
from img2prog.models.hf.tiny import FAMILIES, build_tiny
from img2prog.train import sft as S

PROGRAMS = [
    "(Circle 3 8 8)",
    "(Quad 5 5 4 6 45)",
    "(+ (Circle 3 8 8) (Quad 5 5 4 6 45))",
    "(- (Circle 5 5 5) (Circle 2 8 8))",
    "(Circle 4 4 4)",
    "(Quad 8 8 4 2 90)",
]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    cache = {}

    def get(family, chat_template="hand"):
        if (family, chat_template) not in cache:
            cache[family, chat_template] = str(
                build_tiny(family, tmp_path_factory.mktemp(f"{family}-{chat_template}"), chat_template=chat_template)
            )
        return cache[family, chat_template]

    return get


def write_programs(path, programs):
    path.write_text("".join(json.dumps({"program": p}) + "\n" for p in programs))
    return path


def settings(tmp_path, model, **kw):
    base = {
        "model": model, "data": str(write_programs(tmp_path / "train.jsonl", PROGRAMS)), "out": str(tmp_path / "run"),
        "max_steps": 2, "batch_size": 2, "grad_accum": 1, "save_steps": 2, "logging_steps": 1, "image_size": 32,
        "lora": LoraSettings(r=4, alpha=8, dropout=0.0), "bar_standard_tests": False, "progress": False,
    }
    return S.SFTSettings(**{**base, **kw})


# --- the loss mask -----------------------------------------------------------------------------

def _collator_and_processor(model_dir, chat_template=None):
    from trl.trainer.sft_trainer import DataCollatorForVisionLanguageModeling

    from img2prog.models.hf.backend import training_chat_template
    from img2prog.models.hf.processors import load_processor

    processor = load_processor(model_dir)
    template = chat_template or (training_chat_template(processor) or None)
    collator = DataCollatorForVisionLanguageModeling(processor=processor, assistant_only_loss=True,
                                                     chat_template=template)
    return collator, processor


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("chat_template", ["hand", "reference"])
def test_only_the_reply_and_end_of_turn_carry_loss(family, chat_template, tiny, tmp_path):
    """Decode the supervised tokens of a real training batch: exactly the programs (plus the
    end-of-turn marker), never image tokens or prompt text — with our hand-written templates
    and with the hub templates (where TRL swaps in its training variant)."""
    s = settings(tmp_path, tiny(family, chat_template))
    dataset = S.build_dataset(PROGRAMS[:3], s)
    collator, processor = _collator_and_processor(s.model)
    texts = S.check_batch(collator, [dataset[i] for i in range(3)], PROGRAMS[:3], processor)
    tok = processor.tokenizer
    ends = {"gemma3": "<end_of_turn>", "qwen2_5_vl": "<|im_end|>", "idefics3": "<end_of_utterance>"}
    for program, text in zip(PROGRAMS[:3], texts):
        assert text.strip() == program + ends[family]
        assert "image" not in text and "Write" not in text
    # the padded batch: pads are never supervised, rows are right-padded
    batch = collator([dict(dataset[i]) for i in range(3)])
    assert (batch["labels"][batch["attention_mask"] == 0] == -100).all()
    assert (batch["attention_mask"][:, 0] == 1).all()
    assert tok.pad_token_id is not None


def test_check_batch_rejects_a_template_that_supervises_the_prompt(tiny, tmp_path):
    s = settings(tmp_path, tiny("gemma3"))
    dataset = S.build_dataset(PROGRAMS[:2], s)
    from img2prog.models.hf.tiny import hand_template

    leaky = "{% generation %}" + hand_template("gemma3").replace("{% generation %}", "").replace(
        "{% endgeneration %}", "") + "{% endgeneration %}"
    collator, processor = _collator_and_processor(s.model, chat_template=leaky)
    with pytest.raises(S.SFTError, match="loss mask covers"):
        S.check_batch(collator, [dataset[i] for i in range(2)], PROGRAMS[:2], processor)


# --- data ----------------------------------------------------------------------------------------

def test_training_programs_are_canonical_valid_unbarred_and_unique(tmp_path):
    data = write_programs(tmp_path / "d.jsonl", PROGRAMS + ["(Circle 3  8 8)", "not a program", "(Circle 99 1 1)"])
    bar = write_programs(tmp_path / "bar.jsonl", ["( Quad 5 5 4 6 45 )", "(+ (Circle 4 4 4) (Circle 4 4 4))"])
    got = S.read_training_programs(S.SFTSettings(model="x", data=str(data), out="y", bar_standard_tests=False,
                                                 bar=[str(bar)]))
    # (Quad 5 5 4 6 45) barred by spelling, (Circle 4 4 4) barred by image
    assert got.programs == [p for p in PROGRAMS if p not in ("(Quad 5 5 4 6 45)", "(Circle 4 4 4)")]
    assert (got.n_read, got.n_invalid, got.n_barred, got.n_duplicates) == (9, 2, 2, 1)


def test_no_trainable_programs_is_an_error(tmp_path):
    data = write_programs(tmp_path / "d.jsonl", ["nope"])
    with pytest.raises(S.SFTError, match="no trainable programs"):
        S.read_training_programs(S.SFTSettings(model="x", data=str(data), out="y", bar_standard_tests=False))


# --- training ------------------------------------------------------------------------------------

def test_sft_trains_saves_resumes_and_skips_when_done(tiny, tmp_path):
    from img2prog.models.hf.backend import SFT_META, load
    from img2prog.models.hf.lora import adapted_modules

    s = settings(tmp_path, tiny("gemma3"))
    first = S.train_sft(s)
    assert first.steps == 2 and not first.skipped and math.isfinite(first.train_loss)
    meta = json.loads((first.adapter / SFT_META).read_text())
    assert meta["completed"] and meta["base_model"] == s.model and meta["prompt_style"] == "short"
    assert meta["n_train"] == len(PROGRAMS) and meta["quantize"] == "none"
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert log[0]["event"] == "mask-check" and log[0]["supervised_example"].startswith(PROGRAMS[0])
    assert [r["step"] for r in log if "loss" in r] == [1, 2]

    # the adapter loads on its own (base model found from the adapter folder)
    hfm = load(str(first.adapter))
    assert hfm.prompt_style == "short" and len(adapted_modules(hfm.model)) == 14

    # a finished run is not redone
    assert S.train_sft(s).skipped

    # an interrupted run (no final adapter metadata) resumes from its last checkpoint
    (first.adapter / SFT_META).unlink()
    resumed = S.train_sft(settings(tmp_path, tiny("gemma3"), max_steps=4))
    meta = json.loads((resumed.adapter / SFT_META).read_text())
    assert resumed.steps == 4 and meta["resumed_from"].endswith("checkpoint-2")
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if "loss" in r] == [1, 2, 3, 4]


def test_nan_loss_stops_training_without_writing_an_adapter(tiny, tmp_path, monkeypatch):
    import torch

    from img2prog.models.hf import lora as L

    real_add_lora = L.add_lora
    assert "add_lora" not in S.__dict__  # train_sft imports add_lora at call time, so the patch applies

    def poisoned(model, *a, **kw):
        with torch.no_grad():
            model.get_output_embeddings().weight.fill_(float("nan"))
        return real_add_lora(model, *a, **kw)

    monkeypatch.setattr(L, "add_lora", poisoned)
    s = settings(tmp_path, tiny("idefics3"))
    with pytest.raises(S.SFTError, match="NaN"):
        S.train_sft(s)
    assert not (tmp_path / "run" / "adapter").exists()


def test_cli_trains_and_reports(tiny, tmp_path):
    import typer
    from typer.testing import CliRunner

    from img2prog.train.sft_cli import sft

    app = typer.Typer()
    app.command()(sft)
    data = write_programs(tmp_path / "train.jsonl", PROGRAMS[:4])
    args = ["--model", tiny("qwen2_5_vl"), "--data", str(data), "--out", str(tmp_path / "cli"), "--max-steps", "1",
            "--batch-size", "2", "--grad-accum", "1", "--lora-r", "2", "--no-standard-bar"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "trained 4 examples, 1 steps" in result.output
    assert (tmp_path / "cli" / "adapter" / "adapter_config.json").is_file()
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0 and "already trained" in again.output
    bad = CliRunner().invoke(app, ["--model", "m", "--data", str(tmp_path / "missing.jsonl")])
    assert bad.exit_code == 2 and "no such file" in bad.output


def test_fine_tuned_model_answers_with_the_trained_program(tiny, tmp_path):
    """The whole loop is coherent: what the mask supervises is what inference generates. A
    tiny model trained on one example replies to its image with exactly that program (and
    stops: the end-of-turn token was supervised too)."""
    from img2prog.lang import get_language
    from img2prog.models.hf.backend import GenerationSettings, load
    from img2prog.models.hf.extract import extract

    program = "(+ (Circle 3 8 8) (Quad 5 5 4 6 45))"
    data = write_programs(tmp_path / "one.jsonl", [program])
    s = settings(tmp_path, tiny("gemma3"), data=str(data), max_steps=40, batch_size=1, learning_rate=2e-2,
                 warmup_ratio=0.0, save_steps=1000, logging_steps=10, lora=LoraSettings(r=8, alpha=16, dropout=0.0))
    result = S.train_sft(s)
    losses = [json.loads(line)["loss"] for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()
              if '"loss"' in line]
    assert losses[-1] < 0.5 * losses[0]
    model = load(str(result.adapter))
    image = get_language("csg2d").render(program, 32)
    reply = model.generate([image], 1, settings=GenerationSettings(max_new_tokens=24, do_sample=False))[0][0]
    assert reply.strip() == program
    assert extract(reply).program == program
