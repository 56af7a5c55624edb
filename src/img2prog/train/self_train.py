"""Self-training on unlabeled targets (``img2prog train self``), in the PLAD/GIFT spirit.

Each round:

1. **search** every target image with the current model (:func:`img2prog.search.search_batch`,
   best-of-N by default);
2. **verify**: keep a result when it renders pixel-perfectly, or when its IoU with the target
   is at least ``threshold`` (the best found for a picture no program draws exactly);
3. **bar**: drop results whose program is a standard test program (any spelling, or the same
   rendering — :class:`~img2prog.data.barring.BarSet`) and targets that *are* a test image, so
   self-training never learns a test answer;
4. **fine-tune** the model with cross-entropy on the kept (image, program) pairs mixed with
   fresh synthetic samples from the handcrafted generator (``synthetic_ratio`` of each batch;
   the generator bars the test sets too), which keeps the model from forgetting the
   in-distribution data;
5. **report**: searched / kept / perfect / barred counts, mean search IoU, and the greedy
   metrics on the targets before and after the round (``rounds.jsonl``).

A kept pair is (target image, program) by default — learning to answer the *target* with the
best program found is what moves the greedy output on shifted data. ``pair_with="render"``
pairs the program with its own rendering instead (always consistent, as in GIFT).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from img2prog.data.barring import BarSet
from img2prog.lang.csg2d import rendering
from img2prog.lang.csg2d import tokens as T
from img2prog.lang.csg2d.parser import parse
from img2prog.models.native import NativeModel
from img2prog.search.base import Proposer, SearchResult


@dataclass
class SelfTrainConfig:
    model: str = "native-csg2d"
    rounds: int = 3
    strategy: str = "best-of-n"  # any search strategy (best-of-n, majority, refine, auto, ...)
    samples: int = 64  # search budget per image
    time_limit: float | None = None  # search seconds per image (with or instead of samples)
    threshold: float = 0.95  # keep best-found results with at least this IoU (perfect ones always)
    pair_with: str = "target"  # "target" or "render": which image a kept program is trained on
    steps: int = 200  # fine-tuning steps per round
    batch_size: int = 64
    lr: float = 1e-4
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    synthetic_ratio: float = 0.5  # share of each batch from the handcrafted generator
    synthetic_profile: str = "mixed"
    synthetic_pool: int = 2048  # synthetic samples generated per round
    search_batch: int = 16
    seed: int = 0

    def __post_init__(self) -> None:
        if self.pair_with not in ("target", "render"):
            raise ValueError(f"pair_with must be 'target' or 'render', got {self.pair_with!r}")
        if not 0 <= self.synthetic_ratio < 1:
            raise ValueError(f"synthetic_ratio must be in [0, 1), got {self.synthetic_ratio}")
        if not 0 < self.threshold <= 1:
            raise ValueError(f"threshold must be in (0, 1], got {self.threshold}")


@dataclass
class Verified:
    index: int  # position in the target set
    image: np.ndarray  # (S, S) uint8 training image
    program: str
    iou: float
    perfect: bool


def _gray(image: np.ndarray) -> np.ndarray:
    a = np.asarray(image)
    return a[..., :3].min(axis=-1) if a.ndim == 3 else a


def select_verified(images: np.ndarray, results: list[SearchResult], threshold: float, bar: BarSet | None,
                    pair_with: str = "target") -> tuple[list[Verified], dict[str, int]]:
    """Results worth training on (see the module docstring) and the counts of what was dropped."""
    kept: list[Verified] = []
    counts = {"searched": len(results), "perfect": 0, "above_threshold": 0, "below_threshold": 0,
              "barred_program": 0, "barred_target": 0}
    for i, (image, r) in enumerate(zip(images, results)):
        gray = _gray(image)
        iou = float(r.iou if r.iou is not None else r.score)
        if not (r.perfect or iou >= threshold):
            counts["below_threshold"] += 1
            continue
        if bar is not None and bar.bars_image(np.where(gray < 128, 0, 255).astype(np.uint8)):
            counts["barred_target"] += 1
            continue
        if bar is not None and bar.bars(r.program):
            counts["barred_program"] += 1
            continue
        counts["perfect" if r.perfect else "above_threshold"] += 1
        train_image = gray if pair_with == "target" else rendering.render_gray(r.program, gray.shape[0])
        kept.append(Verified(i, train_image, r.program, iou, bool(r.perfect)))
    counts["kept"] = len(kept)
    return kept, counts


def _autocast(model: NativeModel):
    """bf16 autocast for decoding on a GPU (no-op on the CPU)."""
    return torch.autocast("cuda", dtype=torch.bfloat16, enabled=model.device.type == "cuda")


def best_of_n_sampled(model: NativeModel, images: np.ndarray, n: int, *, chunk: int = 128, temperature: float = 1.0,
                      seed: int = 0, workers: int | None = None, timings: dict | None = None) -> list[SearchResult]:
    """Best-of-N for many targets at once: the greedy decode plus ``n`` samples per image on the
    model's device, every *distinct* program rendered once by the process-pool batch renderer,
    the highest IoU of black pixels with the binarised target kept (ties to the shorter
    program, as the search's ``best-of-n`` strategy does). ``timings``, if given, accumulates
    the seconds spent decoding, rendering and selecting.

    The search module verifies one image at a time in one process, which is right for a
    latency budget but leaves a GPU host's cores idle; a self-training round over thousands of
    targets wants the throughput path.
    """
    from img2prog.train.rewards import iou_values, render_masks, target_masks

    images = np.asarray(images)
    results: list[SearchResult] = []
    for c0 in range(0, len(images), chunk):
        t0 = time.perf_counter()
        block = images[c0 : c0 + chunk]
        with _autocast(model):
            greedy = model.generate(block)
            sampled = model.generate(block, method="sample", num_return_sequences=n, temperature=temperature,
                                     seed=seed * 1_000_003 + c0)
        per_image = [[g[0][0], *(t for t, _ in rows)] for g, rows in zip(greedy, sampled)]
        flat = [t for row in per_image for t in row]
        t1 = time.perf_counter()
        targets = target_masks(block)
        masks, ok = render_masks(flat, targets.shape[1], workers=workers)
        t2 = time.perf_counter()
        k = 0
        spent = (time.perf_counter() - t0) / len(block)
        for i, row in enumerate(per_image):
            m = len(row)
            ious = iou_values(masks[k : k + m], np.broadcast_to(targets[i], (m, *targets.shape[1:])))
            ious = np.where(ok[k : k + m], ious, -1.0)
            perfect = ok[k : k + m] & (masks[k : k + m] == targets[i]).all(axis=(1, 2))
            # best IoU, then perfect, then the shorter text (a proxy for the smaller program)
            best = min(range(m), key=lambda j: (-ious[j], not perfect[j], len(row[j]), row[j]))
            results.append(SearchResult(program=row[best], score=float(ious[best]), perfect=bool(perfect[best]),
                                        strategy="best-of-n", candidates_tried=len(set(row)), seconds=spent,
                                        iou=float(max(ious[best], 0.0)), samples=n))
            k += m
        if timings is not None:
            for key, v in (("decode", t1 - t0), ("render", t2 - t1), ("select", time.perf_counter() - t2)):
                timings[key] = timings.get(key, 0.0) + v
    return results


def search_targets(images: np.ndarray, proposer: Proposer, cfg: SelfTrainConfig, round_: int) -> list[SearchResult]:
    from img2prog.search import search_batch

    return search_batch(images, proposer, cfg.strategy, samples=cfg.samples, time_limit=cfg.time_limit,
                        seed=cfg.seed * 7919 + round_, batch_size=cfg.search_batch)


def _tokens(programs: list[str], max_len: int) -> torch.Tensor:
    rows = []
    for p in programs:
        ids = [T.BOS, *T.encode(parse(p)), T.EOS]
        if len(ids) > max_len:
            raise ValueError(f"program of {len(ids)} tokens exceeds the model's max_len {max_len}: {p[:60]}")
        rows.append(ids + [T.PAD] * (max_len - len(ids)))
    return torch.tensor(rows, dtype=torch.long)


def finetune(model: NativeModel, images: np.ndarray, programs: list[str], cfg: SelfTrainConfig,
             synthetic: tuple[np.ndarray, list[str]] | None, round_: int) -> list[float]:
    """Cross-entropy fine-tuning on (images, programs) mixed with ``synthetic``; returns losses."""
    if len(programs) == 0:
        return []
    rng = np.random.default_rng([cfg.seed, round_])
    toks = _tokens(programs, model.config.max_len)
    syn_toks = _tokens(synthetic[1], model.config.max_len) if synthetic and len(synthetic[1]) else None
    n_syn = round(cfg.batch_size * cfg.synthetic_ratio) if syn_toks is not None else 0
    n_own = cfg.batch_size - n_syn
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    model.train()
    losses = []
    for _ in range(cfg.steps):
        own = rng.integers(0, len(programs), n_own)
        batch_imgs, batch_toks = [images[own]], [toks[own]]
        if n_syn:
            syn = rng.integers(0, len(synthetic[1]), n_syn)
            batch_imgs.append(synthetic[0][syn])
            batch_toks.append(syn_toks[syn])
        x = model.prepare_images(np.concatenate(batch_imgs))
        tk = torch.cat(batch_toks).to(model.device)
        L = int((tk != T.PAD).sum(1).max())
        # bf16 autocast on a GPU, as in supervised training; full precision on the CPU
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=model.device.type == "cuda"):
            _, loss = model(x, tk[:, : L - 1], tk[:, 1:L])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        losses.append(float(loss.detach()))
    model.eval()
    return losses


def greedy_report(model: NativeModel, images: np.ndarray) -> dict[str, float]:
    from img2prog.eval.metrics import compute_metrics

    programs = []
    with _autocast(model):
        for c0 in range(0, len(images), 512):
            programs += [row[0][0] for row in model.generate(images[c0 : c0 + 512])]
    rep = compute_metrics(programs, np.stack([np.repeat(_gray(im)[..., None], 3, -1) for im in images]),
                          workers=None if len(images) >= 1000 else 1)
    return {"f1": rep.f1_score, "iou": rep.iou, "pixel_accuracy": rep.pixel_accuracy, "perfect": rep.perfect}


def synthetic_data(cfg: SelfTrainConfig, size: int, bar: BarSet | None, round_: int,
                   workers: int | None = 1) -> tuple[np.ndarray, list[str]]:
    from img2prog.data.handcrafted import generate

    if cfg.synthetic_ratio == 0 or cfg.synthetic_pool == 0:
        return np.zeros((0, size, size), np.uint8), []
    res = generate(cfg.synthetic_pool, seed=cfg.seed * 1009 + round_, profile=cfg.synthetic_profile, bar=bar,
                   image_size=size, workers=workers)
    return np.stack([s.image for s in res.samples]), [s.program for s in res.samples]


POOL_SOURCES = ("hard", "mixed", "default", "holes", "simple", "shift")


def parse_pool(spec: str) -> dict[str, int]:
    """``"hard:4096,shift:2048"`` → {"hard": 4096, "shift": 2048} (see :func:`unlabeled_pool`)."""
    out: dict[str, int] = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        name, _, n = part.partition(":")
        if name not in POOL_SOURCES:
            raise ValueError(f"pool source {name!r} in {spec!r}: choose from {', '.join(POOL_SOURCES)}")
        try:
            out[name] = int(n)
        except ValueError:
            raise ValueError(f"pool source {part!r} in {spec!r}: expected NAME:COUNT, e.g. hard:4096") from None
        if out[name] <= 0:
            raise ValueError(f"pool source {part!r} in {spec!r}: the count must be positive")
    if not out:
        raise ValueError(f"empty pool spec {spec!r}")
    return out


def unlabeled_pool(spec: str | dict[str, int], round_: int, seed: int = 0, size: int = 256,
                   bar: BarSet | None = None, workers: int | None = 1) -> np.ndarray:
    """A fresh pool of unlabeled targets for round ``round_``, (N, S, S, 3) uint8.

    Sources: a handcrafted-generator profile (``hard``, ``mixed``, ...: its programs are
    rendered and thrown away, only the pictures are used; the generator bars the test sets) or
    ``shift`` (:func:`img2prog.data.domain_shift.domain_shift_pool`: glyphs of characters the
    domain-shift test set never draws and silhouettes from other seeds). Every round and source
    gets its own seed, so no round sees another's pictures.
    """
    from img2prog.data.domain_shift import domain_shift_pool
    from img2prog.data.handcrafted import generate

    parts = []
    for j, (name, n) in enumerate((parse_pool(spec) if isinstance(spec, str) else spec).items()):
        s = 1_000_003 * (seed + 1) + 101 * round_ + j
        if name == "shift":
            parts.append(domain_shift_pool(n, seed=s, size=size))
        else:
            res = generate(n, seed=s, profile=name, bar=bar, workers=workers, image_size=size)
            parts.append(np.repeat(np.stack([x.image for x in res.samples])[..., None], 3, axis=-1))
    return np.concatenate(parts)


def self_train(cfg: SelfTrainConfig, images: np.ndarray | Callable[[int], np.ndarray], out: str | Path, *,
               model: NativeModel | None = None, proposer_factory=None, bar: BarSet | None = None,
               device: str = "cpu", eval_sets: dict[str, np.ndarray] | None = None, workers: int | None = None,
               time_budget: float | None = None, echo=print) -> list[dict]:
    """Run ``cfg.rounds`` rounds on ``images`` ((N, S, S[, 3]) uint8, labels unused) into ``out``.

    ``images`` may also be a function of the round number (1, 2, ...) returning that round's
    targets — a fresh unlabeled pool each round. ``bar`` defaults to the standard test sets.
    ``proposer_factory(model)`` builds the search proposer (default: the native model; plain
    ``best-of-n`` without a time limit then takes the batched path, :func:`best_of_n_sampled`,
    with ``workers`` render processes). ``eval_sets`` (name → images) are scored greedily
    before the first round and after every round (reported as ``eval``; they are never trained
    on). ``time_budget`` (seconds) skips the remaining rounds once another round of the
    longest length so far would overrun it. Writes ``rounds.jsonl`` and the model after each
    round (``round-K``), and ``model`` at the end.
    """
    t_start = time.perf_counter()
    from img2prog.models.proposer import NativeProposer

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if bar is None:
        from img2prog.data.testsets import standard_bar

        bar = standard_bar()
    model = (model if model is not None else NativeModel.from_pretrained(cfg.model)).to(device).eval()
    batched = proposer_factory is None and cfg.strategy == "best-of-n" and cfg.time_limit is None
    proposer_factory = proposer_factory or (lambda m: NativeProposer(m, device=device))
    fixed = not callable(images)
    images_for = images if callable(images) else (lambda _k, _a=np.asarray(images): _a)
    eval_sets = eval_sets or {}
    (out / "self_train_config.json").write_text(json.dumps(asdict(cfg), indent=1) + "\n")
    reports = []
    evals = {name: greedy_report(model, ims) for name, ims in eval_sets.items()}
    if evals:
        echo("before: " + ", ".join(f"{n} F1 {r['f1']:.4f}" for n, r in evals.items()))
    longest = 0.0
    after: dict[str, float] | None = None
    for k in range(1, cfg.rounds + 1):
        t0 = time.perf_counter()
        if time_budget is not None and k > 1 and (t0 - t_start) + longest > time_budget:
            echo(f"time budget {time_budget:.0f} s: stopping after round {k - 1}")
            break
        images = np.asarray(images_for(k))
        timings = {"targets": time.perf_counter() - t0}
        # Fixed targets: the last round's "after" is this round's "before" (same model, same images).
        before = after if fixed and after is not None else greedy_report(model, images)
        timings["greedy_before"] = time.perf_counter() - t0 - timings["targets"]
        if batched:
            results = best_of_n_sampled(model, images, cfg.samples, chunk=cfg.search_batch * 8,
                                        seed=cfg.seed * 7919 + k, workers=workers, timings=timings)
        else:
            results = search_targets(images, proposer_factory(model), cfg, k)
        kept, counts = select_verified(images, results, cfg.threshold, bar, cfg.pair_with)
        t_search = time.perf_counter() - t0
        size = model.config.image_size
        t1 = time.perf_counter()
        syn = synthetic_data(cfg, size, bar, k, workers=workers or 1) if kept else None
        timings["synthetic"] = time.perf_counter() - t1
        t1 = time.perf_counter()
        losses = finetune(model, np.stack([v.image for v in kept]) if kept else images[:0],
                          [v.program for v in kept], cfg, syn, k)
        timings["finetune"] = time.perf_counter() - t1
        after = greedy_report(model, images)
        evals_after = {name: greedy_report(model, ims) for name, ims in eval_sets.items()}
        rep: dict[str, Any] = {
            "round": k, **counts, "search_iou": float(np.mean([r.iou or 0.0 for r in results])),
            "search_perfect": float(np.mean([r.perfect for r in results])),
            "greedy_before": before, "greedy_after": after,
            **({"eval_before": evals, "eval": evals_after} if eval_sets else {}),
            "loss_first": losses[0] if losses else None, "loss_last": losses[-1] if losses else None,
            "search_seconds": round(t_search, 2), "seconds": round(time.perf_counter() - t0, 2),
            "timings": {k2: round(v, 2) for k2, v in timings.items()},
        }
        reports.append(rep)
        longest = max(longest, time.perf_counter() - t0)
        with (out / "rounds.jsonl").open("a") as f:
            f.write(json.dumps(rep) + "\n")
        model.save_pretrained(out / f"round-{k}", extra={"recipe": {"self_train": asdict(cfg), "round": k}})
        echo(f"round {k}: kept {counts['kept']}/{counts['searched']} (perfect {counts['perfect']}, "
             f"≥{cfg.threshold} {counts['above_threshold']}, barred {counts['barred_program'] + counts['barred_target']}); "
             f"greedy F1 {before['f1']:.4f} → {after['f1']:.4f}, IoU {before['iou']:.4f} → {after['iou']:.4f}"
             + "".join(f"; {n} F1 {evals[n]['f1']:.4f} → {r['f1']:.4f}" for n, r in evals_after.items())
             + f" ({rep['seconds']:.0f} s)")
        evals = evals_after
    model.save_pretrained(out / "model", extra={"recipe": {"self_train": asdict(cfg)}})
    return reports
