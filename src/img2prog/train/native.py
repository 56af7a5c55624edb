"""Training recipe for the native model (``img2prog train native``).

One loop for one CPU, one GPU or many (``torchrun --nproc_per_node N``, DDP):

- data: :mod:`img2prog.train.data` (handcrafted generator, pooled chunks, test sets barred);
- AdamW with linear warmup and cosine decay, gradient clipping, bf16 autocast on CUDA;
- the loss is the mean over *all target tokens of the global batch*, whatever the number of
  processes (each process divides its token sum by the global token count), so one process
  and N processes compute the same update from the same global batch;
- periodic greedy evaluation on held-out sets with the reference metrics (rank 0);
- checkpoints that resume exactly: model, optimizer, scheduler position, RNG states and the
  data position (the step: batches are a pure function of the step, see ``train/data.py``).
  Checkpoints are safetensors + JSON, never pickle;
- logs: ``log.csv`` (+ TensorBoard when installed), ``eval.jsonl``, a progress bar.
"""

from __future__ import annotations

import csv
import json
import math
import os
import random
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F

from img2prog.models.native import NativeModel, preset
from img2prog.train.data import ChunkLoader, DataConfig, unpack_images


@dataclass
class TrainConfig:
    preset: str = "base"
    model: dict = field(default_factory=dict)  # overrides of the preset's NativeConfig fields
    steps: int = 10_000
    batch_size: int = 512  # global, over all processes
    lr: float = 1e-3
    min_lr_ratio: float = 0.05
    warmup: int = 300
    weight_decay: float = 0.05
    beta2: float = 0.98
    grad_clip: float = 1.0
    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    workers: int | None = None  # generator processes per training process (None: all cores but one)
    eval_every: int = 1000
    eval_sets: tuple[str, ...] = ("csg2d-test",)
    eval_limit: int = 1000  # images per set in periodic evaluations (the final one uses all)
    eval_batch: int = 500
    ckpt_every: int = 1000
    snapshot_every: int = 0  # also keep an fp16 copy of the model every N steps (for curves)
    log_every: int = 50
    amp: str = "auto"  # "bf16", "none", or "auto" (bf16 on CUDA)
    compile: bool = False
    time_limit: float | None = None  # seconds: save and stop when exceeded (a lease ends)
    # Seconds of training wanted: steps 50..150 are timed and ``steps`` is then lowered to fit
    # (before the warmup ends, so the LR schedule is exactly that of a run given those steps).
    time_budget: float | None = None
    stop_at: int | None = None  # save and stop at this step, as if interrupted
    init_from: str | None = None  # start from these weights (a model folder or shipped name): fine-tuning

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        d = dict(d)
        d["data"] = DataConfig(**d.get("data", {}))
        d["eval_sets"] = tuple(d.get("eval_sets", ()))
        return cls(**d)


def lr_at(cfg: TrainConfig, step: int) -> float:
    """Linear warmup to ``lr``, then cosine decay to ``min_lr_ratio · lr`` at ``steps``."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    t = min(1.0, (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup))
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t)))


# ---- distributed --------------------------------------------------------------------------


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup_distributed(device: str | None = None) -> Dist:
    """Read torchrun's environment; NCCL on GPUs, gloo on CPUs."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    cuda = torch.cuda.is_available() and device != "cpu"
    if world > 1:
        if not dist.is_initialized():
            dist.init_process_group("nccl" if cuda else "gloo")
        rank = dist.get_rank()
        local = int(os.environ.get("LOCAL_RANK", "0"))
    else:
        rank, local = 0, 0
    if cuda:
        torch.cuda.set_device(local)
        dev = torch.device("cuda", local)
    else:
        dev = torch.device(device or "cpu")
    return Dist(rank, world, dev)


# ---- checkpoints (safetensors + JSON) --------------------------------------------------------


def _rng_state(device: torch.device) -> tuple[dict[str, torch.Tensor], dict]:
    tensors = {"torch_cpu": torch.get_rng_state()}
    if device.type == "cuda":
        tensors["torch_cuda"] = torch.cuda.get_rng_state(device)
    np_state = np.random.get_state()
    py_state = random.getstate()
    meta = {"numpy": [np_state[0], np_state[1].tolist(), *np_state[2:]],
            "python": [py_state[0], list(py_state[1]), py_state[2]]}
    return tensors, meta


def _set_rng_state(tensors: dict[str, torch.Tensor], meta: dict, device: torch.device) -> None:
    torch.set_rng_state(tensors["torch_cpu"])
    if device.type == "cuda" and "torch_cuda" in tensors:
        torch.cuda.set_rng_state(tensors["torch_cuda"], device)
    n = meta["numpy"]
    np.random.set_state((n[0], np.array(n[1], dtype=np.uint32), *n[2:]))
    p = meta["python"]
    random.setstate((p[0], tuple(p[1]), p[2]))


def save_checkpoint(path: Path, model: NativeModel, opt: torch.optim.Optimizer, cfg: TrainConfig,
                    step: int, d: Dist, extra: dict) -> None:
    """Write ``path`` atomically (a temp folder renamed into place)."""
    from safetensors.torch import save_file

    tmp = path.with_name(path.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp / "model")
    osd = opt.state_dict()
    tensors, scalars = {}, {}
    for pid, st in osd["state"].items():
        for k, v in st.items():
            if torch.is_tensor(v) and v.ndim > 0:
                tensors[f"{pid}.{k}"] = v.detach().cpu().contiguous()
            else:
                scalars[f"{pid}.{k}"] = float(v)
    save_file(tensors, str(tmp / "optimizer.safetensors"))
    rng_t, rng_meta = _rng_state(d.device)
    save_file({k: v.contiguous() for k, v in rng_t.items()}, str(tmp / "rng.safetensors"))
    state = {"step": step, "config": asdict(cfg), "param_groups": osd["param_groups"],
             "optimizer_scalars": scalars, "rng": rng_meta, **extra}
    (tmp / "trainer.json").write_text(json.dumps(state, indent=1) + "\n")
    shutil.rmtree(path, ignore_errors=True)
    tmp.rename(path)


def load_checkpoint(path: Path, model: NativeModel, opt: torch.optim.Optimizer, d: Dist) -> dict:
    from safetensors.torch import load_file

    state = json.loads((path / "trainer.json").read_text())
    src = NativeModel.from_pretrained(path / "model")
    model.load_state_dict(src.state_dict())
    tensors = load_file(str(path / "optimizer.safetensors"))
    osd: dict[str, Any] = {"state": {}, "param_groups": state["param_groups"]}
    for key, v in tensors.items():
        pid, k = key.split(".", 1)
        osd["state"].setdefault(int(pid), {})[k] = v.to(d.device)
    for key, v in state["optimizer_scalars"].items():
        pid, k = key.split(".", 1)
        osd["state"].setdefault(int(pid), {})[k] = torch.tensor(v)
    opt.load_state_dict(osd)
    _set_rng_state(load_file(str(path / "rng.safetensors")), state["rng"], d.device)
    return state


# ---- evaluation ---------------------------------------------------------------------------


def load_eval_sets(names: tuple[str, ...], warn=print) -> dict[str, tuple[np.ndarray, list]]:
    """Name → (images (N, S, S, 3) uint8, target programs). Missing sets are skipped with a warning."""
    from img2prog.data.io import DataError, load_targets

    out = {}
    for name in names:
        try:
            ds = load_targets(name)
        except (DataError, FileNotFoundError, ModuleNotFoundError) as e:
            warn(f"warning: evaluation set {name!r} skipped: {e}")
            continue
        images = np.stack([np.asarray(im.convert("RGB")) if hasattr(im, "convert") else np.asarray(im)
                           for im in ds["image"]])
        out[name] = (images, list(ds["program"]))
    return out


@torch.no_grad()
def evaluate(model: NativeModel, images: np.ndarray, batch: int = 500, amp: bool = False) -> tuple[list[str], Any]:
    """Greedy programs for ``images`` and their reference metrics."""
    from img2prog.eval.metrics import compute_metrics

    was_training = model.training
    model.eval()
    programs: list[str] = []
    with torch.autocast(model.device.type, dtype=torch.bfloat16, enabled=amp):
        for i in range(0, len(images), batch):
            programs += [c[0][0] for c in model.generate(images[i : i + batch])]
    model.train(was_training)
    return programs, compute_metrics(programs, images)


# ---- the loop -----------------------------------------------------------------------------


def train(cfg: TrainConfig, out: str | Path, resume: bool = False, device: str | None = None,
          progress: bool = True, echo=print) -> dict:
    """Train (or resume) a native model into ``out``; returns the final summary."""
    out = Path(out)
    d = setup_distributed(device)
    ckpt_dir = out / "checkpoint"
    if resume:
        if not (ckpt_dir / "trainer.json").is_file():
            raise FileNotFoundError(f"--resume: no checkpoint at {ckpt_dir}")
        saved = json.loads((ckpt_dir / "trainer.json").read_text())["config"]
        # The saved run's recipe wins; only how long and where to stop may change.
        cfg = TrainConfig.from_dict({**saved, "stop_at": cfg.stop_at, "time_limit": cfg.time_limit,
                                     "workers": cfg.workers})
    if cfg.data.data_shards % d.world:
        raise ValueError(f"data_shards={cfg.data.data_shards} is not a multiple of {d.world} processes")
    if cfg.batch_size % cfg.data.data_shards:
        raise ValueError(f"batch size {cfg.batch_size} is not divisible by data_shards={cfg.data.data_shards}")

    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    np.random.seed(cfg.seed % 2**32)
    if d.device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    mcfg = preset(cfg.preset, **cfg.model, image_size=cfg.data.image_size)
    if mcfg.max_len < cfg.data.max_len:
        raise ValueError(f"model max_len {mcfg.max_len} < data max_len {cfg.data.max_len}")
    model = NativeModel(mcfg).to(d.device)
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "pos" not in n]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2 or "pos" in n]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=cfg.lr, betas=(0.9, cfg.beta2), fused=d.device.type == "cuda")
    start = 0
    history: dict = {"curve": []}
    if cfg.init_from and not resume:
        src = NativeModel.from_pretrained(cfg.init_from)
        if asdict(src.config) != asdict(model.config):
            raise ValueError(f"--init-from {cfg.init_from}: its config differs from preset {cfg.preset!r} + overrides")
        model.load_state_dict(src.state_dict())
        echo(f"initialised from {cfg.init_from}")
    if resume:
        state = load_checkpoint(ckpt_dir, model, opt, d)
        start = state["step"]
        history = state.get("history", history)
        echo(f"resumed from {ckpt_dir} at step {start}")
    amp = cfg.amp == "bf16" or (cfg.amp == "auto" and d.device.type == "cuda")
    net: torch.nn.Module = model
    if d.world > 1:
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=[d.device.index] if d.device.type == "cuda" else None)
    fwd = torch.compile(net) if cfg.compile else net

    shards = [v for v in range(cfg.data.data_shards) if v % d.world == d.rank]
    if cfg.data.dataset:  # precomputed (image, program) pairs, e.g. CadQuery parts
        from img2prog.models.cad_data import DatasetLoader

        loader = DatasetLoader(cfg.data.dataset, cfg.data.seed, shards, cfg.data.data_shards, cfg.batch_size // d.world,
                               d.device, max_len=cfg.data.max_len, pad_id=model.pad_id)
        to_input = lambda batch: batch  # noqa: E731 — already the model's float input
    else:
        loader = ChunkLoader(cfg.data, shards, cfg.batch_size // d.world, d.device, workers=cfg.workers)
        to_input = lambda batch: unpack_images(batch, cfg.data.image_size)  # noqa: E731
    eval_sets = load_eval_sets(cfg.eval_sets, warn=echo) if d.main and cfg.eval_sets else {}

    out.mkdir(parents=True, exist_ok=True)
    if d.main:
        (out / "train_config.json").write_text(json.dumps(asdict(cfg), indent=1) + "\n")
        echo(f"model: {model.num_parameters() / 1e6:.2f}M parameters ({cfg.preset}); device {d.device}"
             f" × {d.world}; global batch {cfg.batch_size}; steps {cfg.steps}")
    log_f = (out / "log.csv").open("a", newline="") if d.main else None
    log = csv.writer(log_f) if log_f else None
    if log and log_f.tell() == 0:
        log.writerow(["step", "loss", "lr", "grad_norm", "tokens", "samples_per_s", "data_wait_s", "elapsed_s"])
    tb = None
    if d.main:
        try:
            from torch.utils.tensorboard import SummaryWriter

            tb = SummaryWriter(str(out / "tb"))
        except Exception:  # noqa: BLE001 — TensorBoard is optional; any import/setup failure skips it
            tb = None
    bar = None
    if d.main and progress and sys.stderr.isatty():
        from tqdm import tqdm

        bar = tqdm(total=cfg.steps, initial=start, desc="train native", mininterval=5, dynamic_ncols=True)

    t_start = time.perf_counter()
    t_calib = t_start
    elapsed0 = history.get("elapsed_s", 0.0)
    t_log, n_log = time.perf_counter(), 0
    loss_acc = torch.zeros((), device=d.device)
    tok_acc = torch.zeros((), dtype=torch.long, device=d.device)
    gn = torch.zeros(())
    losses: list[float] = []
    step = start
    stop_reason = "done"

    def run_eval(limit: int | None) -> dict:
        res = {}
        for name, (imgs, _) in eval_sets.items():
            sel = imgs if limit is None else imgs[:limit]
            t0 = time.perf_counter()
            _, rep = evaluate(model, sel, cfg.eval_batch, amp)
            res[name] = {**rep.to_dict(), "seconds": time.perf_counter() - t0}
            echo(f"eval step {step} {name}: {rep}")
        return res

    def checkpoint() -> None:
        if d.main:
            history["elapsed_s"] = elapsed0 + time.perf_counter() - t_start
            save_checkpoint(ckpt_dir, model, opt, cfg, step, d, {"history": history})
        if d.world > 1:
            dist.barrier()

    model.train()
    while step < cfg.steps:
        if cfg.stop_at is not None and step >= cfg.stop_at:
            stop_reason = "stop_at"
            break
        if cfg.time_limit is not None and time.perf_counter() - t_start > cfg.time_limit:
            stop_reason = "time_limit"
            break
        for g in opt.param_groups:
            g["lr"] = lr_at(cfg, step)
        packed, toks = loader.batch(step)
        x = to_input(packed)
        inp, tgt = toks[:, :-1], toks[:, 1:]
        ntok_local = (tgt != model.pad_id).sum()
        ntok = ntok_local.clone()
        if d.world > 1:
            dist.all_reduce(ntok)
        with torch.autocast(d.device.type, dtype=torch.bfloat16, enabled=amp):
            logits, _ = fwd(x, inp)
        loss_sum = F.cross_entropy(logits.float().flatten(0, 1), tgt.flatten(), ignore_index=model.pad_id, reduction="sum")
        # DDP averages gradients over processes: scale so the update is d(mean over global tokens).
        loss = loss_sum * d.world / ntok
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gn = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        step += 1
        if cfg.time_budget and step in (50, 150) and start < 50:
            if d.device.type == "cuda":
                torch.cuda.synchronize()
            if step == 50:
                t_calib = time.perf_counter()
            else:
                per_step = (time.perf_counter() - t_calib) / 100
                left = cfg.time_budget - (time.perf_counter() - t_start)
                fit = step + int(0.95 * left / per_step)
                if d.world > 1:  # every process must agree on the schedule
                    t = torch.tensor(fit, device=d.device)
                    dist.all_reduce(t, op=dist.ReduceOp.MIN)
                    fit = int(t)
                if fit < cfg.steps:
                    cfg.steps = max(fit, step + 1)
                    if bar:
                        bar.total = cfg.steps
                echo(f"time budget {cfg.time_budget:.0f}s: {1000 * per_step:.1f} ms/step → {cfg.steps} steps")
                if d.main:
                    (out / "train_config.json").write_text(json.dumps(asdict(cfg), indent=1) + "\n")
        loss_acc += loss_sum.detach()
        tok_acc = tok_acc + ntok  # the global count (no host sync until the next log)
        n_log += 1

        if step % cfg.log_every == 0 or step == cfg.steps:
            la = loss_acc.clone()
            if d.world > 1:
                dist.all_reduce(la)
            mean_loss = float(la) / float(tok_acc)
            losses.append(mean_loss)
            now = time.perf_counter()
            rate = n_log * cfg.batch_size / (now - t_log)
            elapsed = elapsed0 + now - t_start
            if log:
                log.writerow([step, f"{mean_loss:.6f}", f"{lr_at(cfg, step - 1):.3e}", f"{float(gn):.4f}",
                              int(tok_acc), f"{rate:.1f}", f"{loader.wait_seconds:.2f}", f"{elapsed:.1f}"])
                log_f.flush()
            if tb:
                tb.add_scalar("train/loss", mean_loss, step)
                tb.add_scalar("train/samples_per_s", rate, step)
            if bar:
                bar.set_postfix(loss=f"{mean_loss:.4f}", sps=f"{rate:.0f}", wait=f"{loader.wait_seconds:.0f}s")
            elif d.main:
                echo(f"step {step}/{cfg.steps} loss {mean_loss:.4f} lr {lr_at(cfg, step - 1):.2e} "
                     f"{rate:.0f} samples/s, data wait {loader.wait_seconds:.1f}s, {elapsed:.0f}s")
            loss_acc.zero_()
            tok_acc, n_log, t_log = torch.zeros_like(tok_acc), 0, now
        if bar:
            bar.update(1)
        if eval_sets and cfg.eval_every and step % cfg.eval_every == 0 and step < cfg.steps:
            res = run_eval(cfg.eval_limit)
            history["curve"].append({"step": step, "elapsed_s": elapsed0 + time.perf_counter() - t_start,
                                     "samples": step * cfg.batch_size, **{k: v for k, v in res.items()}})
            if tb:
                for name, r in res.items():
                    tb.add_scalar(f"eval/{name}/f1", r["f1_score"], step)
            with (out / "eval.jsonl").open("a") as f:
                f.write(json.dumps({"step": step, **res}) + "\n")
        if d.main and cfg.snapshot_every and step % cfg.snapshot_every == 0 and step < cfg.steps:
            model.save_pretrained(out / "snapshots" / f"step-{step:06d}", dtype=torch.float16,
                                  extra={"training": {"steps": step, "elapsed_s": elapsed0 + time.perf_counter() - t_start}})
        if cfg.ckpt_every and step % cfg.ckpt_every == 0 and step < cfg.steps:
            checkpoint()
    if bar:
        bar.close()
    train_seconds = elapsed0 + time.perf_counter() - t_start
    checkpoint()
    summary = {"step": step, "stop_reason": stop_reason, "train_seconds": train_seconds,
               "data_wait_s": loader.wait_seconds, "samples_generated": loader.samples_generated,
               "dropped_long": loader.dropped, "losses": losses,
               "generation_samples_per_s": [round(r) for r in loader.gen_rates],
               "num_parameters": model.num_parameters()}
    loader.close()
    if d.main:
        final = run_eval(None)
        history["final"] = final
        summary["final_eval"] = final
        model.save_pretrained(out / "model", dtype=torch.float16,
                              extra={"training": {"steps": step, "of_steps": cfg.steps, "stop_reason": stop_reason,
                                                  "batch_size": cfg.batch_size,
                                                  "train_seconds": round(train_seconds, 1),
                                                  "data": asdict(cfg.data)}})
        summary["curve"] = history["curve"]
        (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    if log_f:
        log_f.close()
    if tb:
        tb.close()
    if d.world > 1:
        dist.barrier()
    return summary
