"""The seed experiment pipeline end to end on a tiny random VLM (CPU, small n)."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("trl", reason="experiments need the 'hf' extra (transformers, peft, trl): pip install 'img2prog[hf]'")

from img2prog.experiments.seed_a3 import ExperimentError, SeedA3, SeedA3Config
from img2prog.models.hf.tiny import build_tiny


def small_config(tmp_path, model, **kw) -> SeedA3Config:
    base = {"model": str(model), "out": str(tmp_path / "exp"), "n": 6, "variants": ("evolved", "handcrafted"), "test_limit": 3,
                "mutator": "symbolic", "max_steps": 1, "batch_size": 2, "grad_accum": 1, "max_new_tokens": 6, "generation_batch": 8,
                "image_size": 64}
    return SeedA3Config(**{**base, **kw})


def test_seed_a3_runs_end_to_end_and_resumes(tmp_path):
    model = build_tiny("qwen2_5_vl", tmp_path / "tiny")
    log: list[str] = []
    exp = SeedA3(small_config(tmp_path, model), log=log.append)
    results = exp.run()
    expected = ["targets", "baseline", "zero-shot", "data-evolved", "sft-evolved", "eval-evolved",
                "data-handcrafted", "sft-handcrafted", "eval-handcrafted", "analysis", "report"]
    assert list(results) == expected
    out = tmp_path / "exp"
    assert all((out / "stages" / f"{s}.json").is_file() for s in expected)

    # targets: the first 3 test programs and the 4 qualitative ones; the empty baseline is exact
    assert results["targets"]["test"]["n"] == 3 and results["targets"]["qualitative"]["n"] == 4
    base = results["baseline"]["test"]
    assert base["parse_rate"] == 1.0 and base["precision"] == 1.0 and base["recall"] == 0.0
    # every model stage scored both sets and kept its replies
    for stage in ("zero-shot", "eval-evolved", "eval-handcrafted"):
        assert results[stage]["test"]["n"] == 3 and results[stage]["qualitative"]["n"] == 4
    assert results["zero-shot"]["prompt_style"] == "zero-shot"
    assert results["eval-evolved"]["prompt_style"] == "short"  # prompted as it was trained
    rows = [json.loads(line) for line in (out / "predictions" / "evolved" / "test.jsonl").read_text().splitlines()]
    assert len(rows) == 3 and {"target", "reply", "program", "repaired"} <= set(rows[0])
    # data: exactly n samples per variant, and SFT trained on them
    assert results["data-evolved"]["n"] == 6 and results["data-handcrafted"]["n"] == 6
    assert results["sft-evolved"]["n_train"] == 6 and results["sft-evolved"]["steps"] == 1
    assert (out / "sft" / "handcrafted" / "adapter" / "adapter_config.json").is_file()

    report = (out / "report.md").read_text()
    for row in ("| empty program |", "| zero-shot |", "| fine-tuned on evolved |", "| fine-tuned on handcrafted |"):
        assert row in report
    assert (out / "metrics.png").is_file() and (out / "qualitative.png").is_file()
    assert (out / "galleries" / "zero-shot.html").is_file() and (out / "analysis" / "report.md").is_file()
    # where it ran and how long each stage took
    assert json.loads((out / "environment.json").read_text())["device"] == "cpu"
    assert "## Run" in report and "| sft-evolved |" in report and "| total |" in report

    # resume: completed stages are skipped (the report is always rewritten), an interrupted one re-runs
    (out / "stages" / "eval-handcrafted.json").unlink()
    log.clear()
    again = SeedA3(small_config(tmp_path, model), log=log.append).run()
    assert "[eval-handcrafted] running" in log and "[sft-handcrafted] done earlier, skipped" in log
    assert "[zero-shot] done earlier, skipped" in log and "[report] running" in log
    assert again["eval-handcrafted"]["test"]["n"] == 3

    # rows from other tools (e.g. the native model) join the report
    (out / "extra_rows").mkdir()
    (out / "extra_rows" / "native.json").write_text(json.dumps(
        {"name": "native model", "test": {"pixel_accuracy": 0.9}, "qualitative": {"pixel_accuracy": 0.8}}))
    SeedA3(small_config(tmp_path, model), log=log.append).run(only=["report"])
    assert "| native model | 0.9000 |" in (out / "report.md").read_text()


def test_config_is_validated():
    with pytest.raises(ExperimentError, match="unknown variant"):
        SeedA3Config(model="m", variants=("evolved", "magic"))
    with pytest.raises(ExperimentError, match="mutator"):
        SeedA3Config(model="m", mutator="genetic")


def test_cli_builds_a_tiny_model_and_runs_selected_stages(tmp_path):
    import typer
    from typer.testing import CliRunner

    from img2prog.experiments.cli import app

    wrapper = typer.Typer()
    wrapper.add_typer(app, name="experiment")
    out = tmp_path / "cli"
    result = CliRunner().invoke(wrapper, ["experiment", "seed-a3", "--tiny", "idefics3", "--out", str(out),
                                          "--test-limit", "2", "--only", "targets", "--only", "baseline"])
    assert result.exit_code == 0, result.output
    assert (out / "tiny-model" / "config.json").is_file()
    assert json.loads((out / "stages" / "baseline.json").read_text())["test"]["n"] == 2
    assert not (out / "stages" / "zero-shot.json").exists()
    bad = CliRunner().invoke(wrapper, ["experiment", "seed-a3", "--out", str(out)])
    assert bad.exit_code == 2 and "--model NAME or --tiny" in bad.output
    bad = CliRunner().invoke(wrapper, ["experiment", "seed-a3", "--tiny", "llama", "--out", str(out)])
    assert bad.exit_code == 2 and "--tiny must be one of" in bad.output
    bad = CliRunner().invoke(wrapper, ["experiment", "seed-a3", "--tiny", "gemma3", "--tiny-size", "huge",
                                       "--out", str(tmp_path / "x")])
    assert bad.exit_code == 2 and "--tiny-size must be one of" in bad.output


def test_evolved_data_stage_uses_the_base_model_as_mutator(tmp_path):
    """The seed protocol's data stage: the base model proposes variations (scripted here,
    since a random tiny model cannot write programs) and exactly n valid samples come out."""
    import numpy as np

    rng = np.random.default_rng(0)

    class ScriptedBase:
        language, is_vision = "csg2d", True
        processor = tokenizer = type("P", (), {"chat_template": "x"})()
        seen_images = 0

        def generate_chats(self, conversations, n, *, settings=None, seed=None):
            self.seen_images += sum(p["type"] == "image" for p in conversations[0][0]["content"])
            lines = [f"{i + 1}. (Circle {rng.integers(2, 7)} {rng.integers(2, 14)} {rng.integers(2, 14)})"
                     for i in range(8)]
            return [["\n".join(lines)]]

    base = ScriptedBase()
    exp = SeedA3(small_config(tmp_path, "unused", mutator="model", variants=("evolved",)), log=lambda m: None)
    exp.base_model = lambda: base  # type: ignore[method-assign]
    results = exp.run(only=["data-evolved"])
    assert results["data-evolved"]["n"] == 6 and results["data-evolved"]["mutator"] == "model"
    assert base.seen_images > 0  # the VLM was shown its parents' images
    from img2prog.data.io import load_programs

    programs = load_programs(tmp_path / "exp" / "data" / "evolved")
    assert len(programs) == 6 and all(p.startswith("(Circle") for p in programs)
