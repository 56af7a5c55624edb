"""GRPO for the native model on CPU with the tiny preset."""

import csv

import numpy as np
import pytest
import torch

from img2prog.lang.csg2d import rendering
from img2prog.models.native import NativeModel, preset
from img2prog.train import rl
from img2prog.train.rewards import iou_reward

TARGET = "(Circle 6 8 8)"


def tiny(seed=0) -> NativeModel:
    torch.manual_seed(seed)
    return NativeModel(preset("tiny", max_len=32))


def test_group_advantages_and_filter():
    r = torch.tensor([1.0, 3.0, 2.0, 2.0, 5.0, 5.0])
    adv, keep = rl.group_advantages(r, 2, normalize_std=False)
    assert adv.tolist() == [-1.0, 1.0, 0.0, 0.0, 0.0, 0.0]
    assert keep.tolist() == [True, True, False, False, False, False]
    adv, _ = rl.group_advantages(r, 2, normalize_std=True)
    assert adv[:2].tolist() == pytest.approx([-1.0, 1.0], abs=1e-3)


def test_teacher_forced_logprobs_match_the_sampler():
    m = tiny().eval()
    img = rendering.render_gray(TARGET, 64)[None]
    seqs, texts = rl.sample_groups(m, img, 4, seed=3)
    gen = m.generate(img, "sample", num_return_sequences=4, seed=3)[0]
    assert texts == [t for t, _ in gen]
    masks = rl.constraint_masks(m, seqs)
    real = seqs != m.pad_id
    assert masks.gather(-1, seqs[..., None])[..., 0][real].all()  # every sampled token was allowed
    x = m.prepare_images(img).repeat_interleave(4, dim=0)
    logp, ent = rl.token_logprobs(m, x, seqs, masks)
    summed = (logp * (seqs != m.pad_id)).sum(1)
    assert summed.tolist() == pytest.approx([lp for _, lp in gen], abs=1e-3)
    assert torch.isfinite(logp).all() and (ent >= 0).all()


def test_step_indices_cover_epochs_deterministically():
    a = rl.step_indices(5, 0, 3, seed=1).tolist() + rl.step_indices(5, 1, 3, seed=1).tolist()
    assert sorted(a[:5]) == [0, 1, 2, 3, 4]  # the first epoch is a permutation
    assert rl.step_indices(5, 1, 3, seed=1).tolist() == a[3:]


def test_grpo_increases_mean_reward_on_a_toy_target():
    m = tiny()
    target = rendering.render_gray(TARGET, 64)
    imgs = np.stack([target] * 4)
    cfg = rl.RLConfig(group_size=16, lr=3e-3, kl=0.05)
    ref = tiny().eval()
    opt = torch.optim.AdamW(m.parameters(), lr=cfg.lr)

    def mean_reward():  # held-out sampling seed
        _, texts = rl.sample_groups(m, target[None], 64, seed=123)
        return float(np.mean(iou_reward(texts, np.stack([target] * 64))))

    before = mean_reward()
    stats = [rl.grpo_step(m, ref, opt, imgs, cfg, seed=s) for s in range(10)]
    after = mean_reward()
    assert after > before + 0.5, (before, after)
    assert stats[-1].kl > 0 and stats[0].groups_kept == 4


def test_zero_variance_groups_are_skipped():
    m = tiny()
    before = {k: v.clone() for k, v in m.state_dict().items()}
    cfg = rl.RLConfig(group_size=4, lr=1e-2)
    cfg.reward.iou, cfg.reward.length = 0.0, 0.0  # constant reward: no group has any signal
    opt = torch.optim.AdamW(m.parameters(), lr=cfg.lr)
    s = rl.grpo_step(m, None, opt, rendering.render_gray(TARGET, 64)[None], cfg, seed=0)
    assert s.groups_kept == 0 and s.tokens == 0
    assert all(torch.equal(before[k], v) for k, v in m.state_dict().items())


def test_train_rl_resume_is_exact(tmp_path):
    imgs = np.stack([rendering.render_gray(p, 64) for p in (TARGET, "(Quad 8 8 6 4 0)", "(Circle 3 4 4)")])
    cfg = rl.RLConfig(steps=3, images_per_step=2, group_size=4, lr=1e-3, kl=0.1, ckpt_every=1)
    full = rl.train_rl(cfg, imgs, tmp_path / "a", model=tiny(), echo=lambda *_: None)
    cfg2 = rl.RLConfig(**{**cfg.__dict__, "steps": 2})
    rl.train_rl(cfg2, imgs, tmp_path / "b", model=tiny(), echo=lambda *_: None)
    rl.train_rl(cfg, imgs, tmp_path / "b", resume=True, model=tiny(), echo=lambda *_: None)
    a = NativeModel.from_pretrained(tmp_path / "a" / "model").state_dict()
    b = NativeModel.from_pretrained(tmp_path / "b" / "model").state_dict()
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    rows = list(csv.DictReader((tmp_path / "a" / "log.csv").open()))
    assert [int(r["step"]) for r in rows] == [1, 2, 3] and full["steps"] == 3
    assert set(rl.LOG_FIELDS) <= set(rows[0])


def test_train_rl_time_budget_stops_early_and_still_saves(tmp_path):
    imgs = np.stack([rendering.render_gray(p, 64) for p in (TARGET, "(Quad 8 8 6 4 0)")])
    cfg = rl.RLConfig(steps=50, images_per_step=2, group_size=2, time_budget=0.0, reward_workers=0)
    res = rl.train_rl(cfg, imgs, tmp_path, model=tiny(), echo=lambda *_: None)
    assert res["steps"] == 0 and (tmp_path / "model" / "config.json").is_file()


def cli_app():
    import typer

    from img2prog.train.rl_cli import rl as rl_cmd
    from img2prog.train.rl_cli import self_train as self_cmd

    app = typer.Typer()
    app.command("rl")(rl_cmd)
    app.command("self")(self_cmd)
    return app


def test_cli_rl_runs_and_fails_cleanly(tmp_path):
    from typer.testing import CliRunner

    runner = CliRunner()
    tiny().save_pretrained(tmp_path / "m")
    for cmd in ("rl", "self"):
        h = runner.invoke(cli_app(), [cmd, "--help"])
        assert h.exit_code == 0 and "--images" in h.output
    res = runner.invoke(cli_app(), ["rl", "--model", str(tmp_path / "m"), "--images", "domain-shift", "--limit", "2",
                                    "--steps", "1", "--images-per-step", "2", "--group-size", "2",
                                    "--device", "cpu", "--out", str(tmp_path / "run")])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "run" / "model" / "config.json").is_file()
    bad = runner.invoke(cli_app(), ["rl", "--model", str(tmp_path / "nope"), "--images", "domain-shift",
                                    "--device", "cpu", "--out", str(tmp_path / "r2")])
    assert bad.exit_code == 2 and "error: no model at" in bad.output
