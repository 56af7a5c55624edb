"""GRPO-style online reinforcement learning for the native model (``img2prog train rl``).

One step:

1. take ``images_per_step`` target images (a seeded permutation of the target set: the data
   position is a pure function of the step, so resuming is exact);
2. sample ``group_size`` programs per image with the grammar-constrained sampler (every sample
   parses; the policy is the *constrained* distribution);
3. score them with a rendering reward (:mod:`img2prog.train.rewards`, 10·IoU by default);
4. group-relative advantages: ``A = (r − mean_group) / (std_group + eps)`` (or without the
   division, ``normalize_std=False``, as in Dr. GRPO);
5. hard-example filter: groups whose rewards all agree (all perfect, or all equally wrong)
   carry no signal and are dropped before the backward pass;
6. loss = −Σ A·log π(token) / (tokens kept) + β·KL(π‖π_ref), with log π recomputed with
   gradients by teacher forcing under the same constraint mask as sampling, and the KL the
   per-token k3 estimator against a frozen copy of the starting model (β = ``kl``; 0 skips
   the reference model).

Samples are drawn on-policy and used for one update, so the PPO ratio is 1 and its clipping
never binds; it is omitted. The token entropy of the constrained distribution is logged.
Checkpoints reuse the native trainer's format (safetensors + JSON, exact resume).

Several processes (``torchrun --nproc_per_node N -m img2prog.train rl ...``, DDP) split each
step's images between them; with the same samples the update equals one process's.
"""

from __future__ import annotations

import copy
import csv
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from img2prog.models.constraints import batched_constraint
from img2prog.models.native import NativeModel
from img2prog.train.native import Dist, load_checkpoint, save_checkpoint, setup_distributed
from img2prog.train.rewards import RewardConfig

# ---- config ---------------------------------------------------------------------------------


@dataclass
class RLConfig:
    model: str = "native-csg2d"  # starting weights (folder or shipped name); also the KL reference
    steps: int = 200
    images_per_step: int = 32
    group_size: int = 8  # G samples per image
    lr: float = 1e-5
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    kl: float = 0.0  # β of the KL penalty to the starting model (0: no reference model)
    temperature: float = 1.0  # sampling temperature (1.0 keeps the samples on-policy)
    top_p: float = 1.0
    max_len: int | None = None  # decoding limit (default: the model's)
    normalize_std: bool = True  # divide advantages by the group's reward std
    hard_filter: bool = True  # drop groups with zero reward variance
    reward: RewardConfig = field(default_factory=RewardConfig)
    seed: int = 0
    reward_workers: int | None = 1  # render processes for the rewards (1: in process; None: auto)
    time_budget: float | None = None  # stop after this many seconds of updates (the step count caps too)
    log_every: int = 1
    ckpt_every: int = 50

    @classmethod
    def from_dict(cls, d: dict) -> RLConfig:
        d = dict(d)
        d["reward"] = RewardConfig(**d.get("reward", {}))
        return cls(**d)


# ---- pieces ---------------------------------------------------------------------------------


@torch.no_grad()
def sample_groups(model: NativeModel, images: np.ndarray, group_size: int, *, temperature: float = 1.0,
                  top_p: float = 1.0, max_len: int | None = None, seed: int | None = None
                  ) -> tuple[torch.Tensor, list[str]]:
    """``group_size`` constrained samples per image: token ids (B·G, L) (pad after ``<eos>``,
    image-major: rows i·G … i·G+G−1 belong to image i) and their program texts."""
    was = model.training
    model.eval()
    max_len = min(max_len or model.config.max_len, model.config.max_len)
    memory = model.encode(model.prepare_images(images))  # one row per image; its G samples share it
    seqs, _, _ = model._decode(memory, max_len, sample=True, temperature=temperature, top_p=top_p, seed=seed,
                            group=group_size)
    model.train(was)
    length = int((seqs != model.pad_id).sum(1).max()) if len(seqs) else 0
    seqs = seqs[:, : max(length, 1)]
    return seqs, [model.language.decode(s) for s in seqs.tolist()]


def constraint_masks(model: NativeModel, seqs: torch.Tensor) -> torch.Tensor:
    """(N, L, V) bool: the tokens the constrained sampler allowed at each position of ``seqs``
    (replaying the grammar automaton over the sampled tokens)."""
    N, L = seqs.shape
    cons = batched_constraint(model.language, N, seqs.device)
    state = cons.start(N, model.config.max_len - 1, seqs.device)
    masks = []
    for t in range(L):
        masks.append(cons.mask(state))
        state = cons.advance(state, seqs[:, t])
    return torch.stack(masks, dim=1)


def token_logprobs(model: NativeModel, x: torch.Tensor, seqs: torch.Tensor, masks: torch.Tensor,
                   net: torch.nn.Module | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Teacher-forced log-probabilities (N, L) of ``seqs`` under the constrained distribution,
    and the per-token entropy (N, L) of that distribution. ``x``: prepared images (N, 1, S, S).
    ``net`` runs the forward pass instead of ``model`` (its DDP wrapper)."""
    bos = torch.full((seqs.shape[0], 1), model.bos_id, dtype=torch.long, device=seqs.device)
    inp = torch.cat([bos, seqs[:, :-1]], dim=1)
    logits, _ = (net or model)(x, inp)
    logits = logits.float().masked_fill(~masks, float("-inf"))
    logp = logits.log_softmax(-1)
    # Padding after <eos> is scored as <eos> (the only token allowed there), so every entry
    # is finite and masking by multiplication cannot produce 0·(−inf) = NaN.
    tgt = seqs.masked_fill(seqs == model.pad_id, model.eos_id)
    tok_logp = logp.gather(-1, tgt[..., None])[..., 0]
    p = logp.exp()
    entropy = -(p * logp.nan_to_num(neginf=0.0)).sum(-1)
    return tok_logp, entropy


def group_advantages(rewards: torch.Tensor, group_size: int, normalize_std: bool = True, eps: float = 1e-4
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """Advantages (N,) from rewards (N,) in image-major groups, and a (N,) bool "group kept"
    mask: False where the group's rewards are all equal (no signal)."""
    r = rewards.view(-1, group_size)
    mean = r.mean(1, keepdim=True)
    std = r.std(1, keepdim=True, unbiased=False)
    adv = r - mean
    if normalize_std:
        adv = adv / (std + eps)
    keep = (r.max(1).values - r.min(1).values > 1e-9)[:, None].expand_as(r)
    return adv.flatten(), keep.flatten()


@dataclass
class StepStats:
    reward_mean: float
    reward_std: float
    perfect: float  # share of samples with IoU 1 (reward == iou_scale when iou is the reward)
    groups_kept: int
    groups: int
    loss: float
    kl: float
    entropy: float
    tokens: int


def grpo_step(model: NativeModel, ref: NativeModel | None, opt: torch.optim.Optimizer, images: np.ndarray,
              cfg: RLConfig, seed: int | None, net: torch.nn.Module | None = None, world: int = 1) -> StepStats:
    """One GRPO update of ``model`` on ``images`` (see the module docstring).

    Under DDP (``world`` > 1, ``net`` the DDP wrapper, ``images`` this process's share of the
    step's images) every process runs forward and backward on all its rows — groups the
    hard-example filter drops get zero weight instead of being removed, so no process can
    skip the gradient all-reduce — and the loss is normalised by the *global* token count, so
    the averaged gradient equals the single-process one on the same samples.
    """
    if world > 1:
        return _grpo_step_ddp(model, ref, opt, images, cfg, seed, net, world)
    seqs, rewards, adv, keep = _sample_and_score(model, images, cfg, seed)
    G = cfg.group_size
    perfect = float((rewards >= _perfect_reward(cfg)).float().mean()) if cfg.reward.iou else 0.0
    stats = {"reward_mean": float(rewards.mean()), "reward_std": float(rewards.std(unbiased=False)),
             "perfect": perfect, "groups_kept": int(keep.view(-1, G)[:, 0].sum()), "groups": len(images)}
    rows = keep.nonzero()[:, 0]
    if len(rows) == 0:  # nothing to learn from this batch
        return StepStats(**stats, loss=0.0, kl=0.0, entropy=0.0, tokens=0)
    seqs, adv = seqs[rows], adv[rows]
    tok_mask = seqs != model.pad_id  # program tokens and <eos>
    # Trim to the kept rows' longest sequence.
    L = int(tok_mask.sum(1).max())
    seqs, tok_mask = seqs[:, :L], tok_mask[:, :L]
    x = model.prepare_images(np.asarray(images)).repeat_interleave(G, dim=0)[rows]
    n_tok = tok_mask.sum().clamp(min=1)
    loss, kl, ent_sum = _policy_update(model, ref, opt, x, seqs, adv, tok_mask, cfg, n_tok)
    return StepStats(**stats, loss=float(loss), kl=float(kl), entropy=float(ent_sum / n_tok), tokens=int(n_tok))


def _perfect_reward(cfg: RLConfig) -> float:
    """The reward of a pixel-perfect sample (IoU 1), less a float tolerance."""
    return cfg.reward.iou * cfg.reward.iou_scale - 1e-6


def _sample_and_score(model: NativeModel, images: np.ndarray, cfg: RLConfig, seed: int | None):
    """``group_size`` samples per image, their rewards, group-relative advantages and the
    "group kept" mask (all True when the hard-example filter is off)."""
    G = cfg.group_size
    seqs, texts = sample_groups(model, images, G, temperature=cfg.temperature, top_p=cfg.top_p,
                                max_len=cfg.max_len, seed=seed)
    targets = np.repeat(np.asarray(images), G, axis=0)
    rewards = torch.tensor(cfg.reward(texts, targets, workers=cfg.reward_workers), dtype=torch.float32,
                           device=seqs.device)
    adv, keep = group_advantages(rewards, G, cfg.normalize_std)
    if not cfg.hard_filter:
        keep = torch.ones_like(keep)
    return seqs, rewards, adv, keep


def _policy_update(model: NativeModel, ref: NativeModel | None, opt: torch.optim.Optimizer, x: torch.Tensor,
                   seqs: torch.Tensor, adv: torch.Tensor, tok_mask: torch.Tensor, cfg: RLConfig, denom,
                   world: int = 1, net: torch.nn.Module | None = None):
    """One optimizer step on ``(−Σ A·log π + β·Σ k3) · world / denom`` over the ``tok_mask``
    tokens; returns the detached loss, KL term and Σ entropy over those tokens."""
    masks = constraint_masks(model, seqs)
    model.train()
    logp, entropy = token_logprobs(model, x, seqs, masks, net=net)
    pg = -(adv[:, None] * logp * tok_mask).sum() * world / denom
    kl = torch.zeros((), device=logp.device)
    if ref is not None and cfg.kl > 0:
        with torch.no_grad():
            ref_logp, _ = token_logprobs(ref, x, seqs, masks)
        d = (ref_logp - logp).masked_fill(~tok_mask, 0.0)
        kl = ((d.exp() - d - 1) * tok_mask).sum() * world / denom  # k3: unbiased, always ≥ 0
    loss = pg + cfg.kl * kl
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if cfg.grad_clip:
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
    opt.step()
    return loss.detach(), kl.detach(), (entropy.detach() * tok_mask).sum()


def _grpo_step_ddp(model, ref, opt, images, cfg: RLConfig, seed, net, world: int) -> StepStats:
    import torch.distributed as dist

    seqs, rewards, adv, keep = _sample_and_score(model, images, cfg, seed)
    G = cfg.group_size
    tok_mask = (seqs != model.pad_id) & keep[:, None]
    # global statistics: Σr, Σr², samples, perfect, groups kept, groups, kept tokens
    stats = torch.tensor([float(rewards.sum()), float((rewards ** 2).sum()), float(len(rewards)),
                          float((rewards >= _perfect_reward(cfg)).sum()) if cfg.reward.iou else 0.0,
                          float(keep.view(-1, G)[:, 0].sum()), float(len(images)), float(tok_mask.sum())],
                         dtype=torch.float64, device=seqs.device)
    dist.all_reduce(stats)
    s_r, s_r2, n, n_perfect, kept, groups, n_tok = stats.tolist()
    mean = s_r / n
    x = model.prepare_images(np.asarray(images)).repeat_interleave(G, dim=0)
    denom = max(n_tok, 1.0)
    # DDP averages gradients over processes: scaling by world / global tokens makes the result
    # d(global sum / global tokens)
    loss, kl, ent_sum = _policy_update(model, ref, opt, x, seqs, adv, tok_mask, cfg, denom, world, net)
    logged = torch.stack([loss / world, kl / world, ent_sum / denom]).double()
    dist.all_reduce(logged)
    return StepStats(reward_mean=mean, reward_std=max(s_r2 / n - mean * mean, 0.0) ** 0.5, perfect=n_perfect / n,
                     groups_kept=int(kept), groups=int(groups), loss=float(logged[0]), kl=float(logged[1]),
                     entropy=float(logged[2]), tokens=int(n_tok))


def step_indices(n: int, step: int, per_step: int, seed: int) -> np.ndarray:
    """Images of ``step``: consecutive slices of seeded epoch permutations (pure in the step)."""
    start = step * per_step
    out = []
    while len(out) < per_step:
        epoch, pos = divmod(start + len(out), n)
        perm = np.random.default_rng([seed, epoch]).permutation(n)
        take = min(per_step - len(out), n - pos)
        out.extend(perm[pos : pos + take].tolist())
    return np.asarray(out)


# ---- the loop -------------------------------------------------------------------------------

LOG_FIELDS = ["step", "reward_mean", "reward_std", "perfect", "groups_kept", "groups", "loss", "kl",
              "entropy", "tokens", "seconds"]


def train_rl(cfg: RLConfig, images: np.ndarray, out: str | Path, resume: bool = False, device: str = "cpu",
             model: NativeModel | None = None, echo=print) -> dict:
    """Run GRPO on ``images`` ((N, S, S[, 3]) uint8 targets) into ``out``.

    ``out/checkpoint`` resumes exactly; ``out/log.csv`` has one row per logged step; the final
    model is saved to ``out/model``. ``model`` overrides loading ``cfg.model`` (tests).
    """
    out = Path(out)
    ckpt_dir = out / "checkpoint"
    d = setup_distributed(device) if int(os.environ.get("WORLD_SIZE", "1")) > 1 else Dist(device=torch.device(device))
    images = np.asarray(images)
    if len(images) == 0:
        raise ValueError("no target images for RL")
    if cfg.images_per_step % d.world:
        raise ValueError(f"images_per_step {cfg.images_per_step} is not divisible by the {d.world} processes")
    if resume:
        if not (ckpt_dir / "trainer.json").is_file():
            raise FileNotFoundError(f"--resume: no checkpoint at {ckpt_dir}")
        saved = json.loads((ckpt_dir / "trainer.json").read_text())["config"]
        cfg = RLConfig.from_dict({**saved, "steps": cfg.steps})
    torch.manual_seed(cfg.seed)
    start_model = model if model is not None else NativeModel.from_pretrained(cfg.model)
    policy = copy.deepcopy(start_model).to(d.device)
    ref = None
    if cfg.kl > 0:
        ref = copy.deepcopy(start_model).to(d.device).eval()
        for p in ref.parameters():
            p.requires_grad_(False)
    opt = torch.optim.AdamW(policy.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.99))
    step = 0
    if resume:
        step = load_checkpoint(ckpt_dir, policy, opt, d)["step"]
        echo(f"resumed from {ckpt_dir} at step {step}")
    net = None
    if d.world > 1:
        from torch.nn.parallel import DistributedDataParallel as DDP

        net = DDP(policy, device_ids=[d.device.index] if d.device.type == "cuda" else None)
    if not d.main:
        echo = lambda *_: None  # noqa: E731
    out.mkdir(parents=True, exist_ok=True)
    if d.main:
        (out / "rl_config.json").write_text(json.dumps(asdict(cfg), indent=1) + "\n")
    log_f = (out / "log.csv").open("a", newline="") if d.main else open(os.devnull, "w")
    log = csv.DictWriter(log_f, LOG_FIELDS)
    if d.main and log_f.tell() == 0:
        log.writeheader()
    history = []
    t_start = time.perf_counter()
    try:
        while step < cfg.steps:
            over = cfg.time_budget is not None and time.perf_counter() - t_start > cfg.time_budget
            if d.world > 1:  # every process must stop at the same step
                flag = torch.tensor(float(over), device=d.device)
                torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
                over = bool(flag)
            if over:
                echo(f"time budget {cfg.time_budget:.0f} s reached at step {step}")
                break
            t0 = time.perf_counter()
            idx = step_indices(len(images), step, cfg.images_per_step, cfg.seed)[d.rank :: d.world]
            s = grpo_step(policy, ref, opt, images[idx], cfg, seed=cfg.seed * 1_000_003 + step + 7_919_993 * d.rank,
                          net=net, world=d.world)
            step += 1
            row = {"step": step, **asdict(s), "seconds": round(time.perf_counter() - t0, 4)}
            history.append(row)
            if step % cfg.log_every == 0 or step == cfg.steps:
                log.writerow(row)
                log_f.flush()
                echo(f"rl step {step}: reward {s.reward_mean:.3f} ± {s.reward_std:.3f}, perfect {s.perfect:.3f}, "
                     f"groups kept {s.groups_kept}/{s.groups}, kl {s.kl:.4f}, entropy {s.entropy:.3f}")
            if cfg.ckpt_every and step % cfg.ckpt_every == 0 and step < cfg.steps and d.main:
                save_checkpoint(ckpt_dir, policy, opt, cfg, step, d, {})
    finally:
        log_f.close()
    if d.main:
        save_checkpoint(ckpt_dir, policy, opt, cfg, step, d, {})
        policy.eval().save_pretrained(out / "model", extra={"recipe": {"rl": asdict(cfg)}})
    if d.world > 1:
        torch.distributed.barrier()  # the files exist before any process returns
    return {"steps": step, "out": str(out), "history": history}
