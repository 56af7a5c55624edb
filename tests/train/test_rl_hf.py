"""GRPO on a tiny random Hugging Face VLM through TRL: plumbing, not skill.

One short run (2 GRPO steps, 4 generations of at most 8 tokens, 2 csg2d targets) checks
that the policy's prompt carries the target image, that our reward sees the right targets
(one per completion, the group's own image), that TRL logs what the reward returned, and
that the LoRA adapter moved.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("trl", reason="GRPO for Hugging Face models needs the 'hf' extra")
pytest.importorskip("peft", reason="GRPO for Hugging Face models needs the 'hf' extra")

from img2prog.lang.csg2d import rendering  # noqa: E402
from img2prog.train.rewards import iou_reward  # noqa: E402
from img2prog.train.rl_hf import (  # noqa: E402
    NO_PROGRAM,
    GRPOSetupError,
    build_grpo_dataset,
    extracting,
    grpo_trainer,
)

TARGETS = ["(Circle 4 8 8)", "(- (Quad 8 8 10 10 0) (Circle 3 8 8))"]
SIZE = 32
N_GEN = 4


@pytest.fixture(scope="module")
def gemma3_dir(tmp_path_factory):
    """A tiny random Gemma 3 checkpoint (about 50k parameters), built offline."""
    from img2prog.models.hf.tiny import build_tiny

    return build_tiny("gemma3", tmp_path_factory.mktemp("tiny-gemma3"))


def test_dataset_is_conversational_with_an_image_slot():
    ds = build_grpo_dataset(TARGETS, image_size=SIZE)
    assert ds.column_names == ["prompt", "image"]
    turn = ds[0]["prompt"][0]
    assert turn["role"] == "user" and turn["content"][0]["type"] == "image"
    assert "csg2d" in turn["content"][1]["text"]
    np.testing.assert_array_equal(np.asarray(ds[1]["image"].convert("L")), rendering.render_gray(TARGETS[1], SIZE))
    with pytest.raises(GRPOSetupError, match="do not render|ProgramError|#0"):
        build_grpo_dataset(["(Circle 4 8"], image_size=SIZE)


def test_extracting_reads_programs_out_of_replies():
    seen = []

    def spy(completions, targets, **kw):
        seen.extend(completions)
        return [0.0] * len(completions)

    extracting(spy)([[{"role": "assistant", "content": "Sure:\n```\n(Circle 4 8 8)\n```"}], "(Circle 4 8"], None)
    # the truncated reply is not repaired: it must score as invalid
    assert seen == ["(Circle 4 8 8)", NO_PROGRAM]


def test_grpo_steps_on_tiny_gemma3(gemma3_dir, tmp_path):
    calls: list[tuple[list, np.ndarray, list[float]]] = []

    def spy(completions, targets, **kw):
        # IoU plus a per-completion offset so the group's rewards differ and GRPO has a gradient
        # (a random model's gibberish all scores -10, which would make every advantage zero)
        out = [r + 0.5 * i for i, r in enumerate(iou_reward(completions, targets, **kw))]
        calls.append((list(completions), np.stack([np.asarray(t.convert("L")) for t in targets]), out))
        return out

    trainer = grpo_trainer(
        gemma3_dir, TARGETS, reward_fns=[spy], image_size=SIZE, output_dir=str(tmp_path),
        max_steps=2, num_generations=N_GEN, max_completion_length=8, learning_rate=1e-2,
        seed=0,
    )
    lora = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if "lora_" in n}
    assert lora, "no LoRA adapter on the model"
    assert all(p.requires_grad == ("lora_" in n) for n, p in trainer.model.named_parameters())

    trainer.train()

    # one reward call per step, one target per completion, all of a group's targets the same image
    expected = {p: rendering.render_gray(p, SIZE) for p in TARGETS}
    assert len(calls) == 2
    seen = set()
    for completions, targets, _ in calls:
        assert len(completions) == len(targets) == N_GEN
        match = [p for p, img in expected.items() if all(np.array_equal(t, img) for t in targets)]
        assert len(match) == 1, "targets of a group are not all the rendering of one target program"
        seen.add(match[0])
    assert seen == set(TARGETS)  # one epoch of 2 steps visits both targets

    # TRL logged the mean of what our reward returned, under our reward's name
    logged = [h for h in trainer.state.log_history if "reward" in h]
    assert len(logged) == 2
    for h, (_, _, out) in zip(logged, calls):
        assert h["reward"] == pytest.approx(np.mean(out), abs=1e-5)
        assert "rewards/spy/mean" in h

    after = {n: p.detach() for n, p in trainer.model.named_parameters() if "lora_" in n}
    moved = [n for n in lora if not np.allclose(lora[n].numpy(), after[n].numpy())]
    assert moved, "GRPO steps did not change the LoRA adapter"


def test_rejects_dataset_without_image_column(gemma3_dir, tmp_path):
    from datasets import Dataset

    ds = Dataset.from_list([{"prompt": [{"role": "user", "content": "draw"}]}])
    with pytest.raises(GRPOSetupError, match="image"):
        grpo_trainer(gemma3_dir, ds, output_dir=str(tmp_path))
