"""Test-time scaling study: how selection rules turn more samples into better programs.

For every target, ``max(ns)`` programs are sampled **once**; the study for a smaller n looks at
the first n of them (prefixes), so the curves are nested and differences between n are not
sampling noise. For each n it scores, with the reference metrics
(:func:`img2prog.eval.metrics.compute_metrics`), the program each selector picks:

- ``best-of-n`` — the highest exact IoU with the target (the verifier; ties to shorter);
- ``majority`` — the most frequent rendered image (self-consistency; ties by likelihood);
- ``likelihood`` — the highest model log-likelihood (best-of-n without looking at the target);
- ``oracle`` — the sample with the best pixel accuracy: the ceiling for any selector; its
  pixel-perfect share is pass@n (is any of the n samples pixel-perfect?).

The selectors are the functions search uses (:mod:`img2prog.search.select`), so the study
measures what ``img2prog infer --search best-of-n|majority`` does. When no sample of a target
renders, a selector answers the empty program, as search does.

Failure analysis: for each selector and n, the targets where a pixel-perfect sample existed
but another was chosen, and where a sample with better pixel accuracy than the chosen one
existed ("best possible"), together with the number of distinct outputs (rendered images and
program texts) among the n samples.

Outputs in the study folder: ``samples.jsonl`` (every sample with its scores, enough to redo
the analysis), ``metrics.json``, ``failures.jsonl``, ``report.md``, ``metric_vs_n.png`` and
``distinct_outputs.png``.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from img2prog.lang.csg2d import rendering
from img2prog.lang.csg2d.ast import num_nodes
from img2prog.lang.csg2d.parser import parse
from img2prog.lang.errors import ProgramError
from img2prog.search.base import Candidate, Proposer
from img2prog.search.select import mask_key, select_best, select_majority
from img2prog.search.verify import black_mask

SELECTORS = ("best-of-n", "majority", "likelihood", "oracle")
DEFAULT_NS = (1, 2, 4, 8, 16, 32, 64)


@dataclass
class ScalingConfig:
    ns: tuple[int, ...] = DEFAULT_NS
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int = 0
    batch_size: int = 16  # target images per proposer call
    workers: int | None = None  # rendering processes (None: decided by job size)

    def __post_init__(self) -> None:
        if not self.ns or any(n < 1 for n in self.ns):
            raise ValueError(f"n values must be positive integers, got {self.ns}")
        self.ns = tuple(sorted(set(self.ns)))


@dataclass
class SampleTable:
    """Every sample of every target with its exact scores; [target][sample] everywhere."""

    programs: list[list[str]]
    logprobs: list[list[float | None]]
    ok: np.ndarray  # (T, N) bool: renders
    iou: np.ndarray  # (T, N) float, -1 where it does not render
    accuracy: np.ndarray  # (T, N) float: SPEC pixel accuracy, 0 where it does not render
    perfect: np.ndarray  # (T, N) bool
    sizes: np.ndarray  # (T, N) int: num_nodes, 0 where it does not render
    keys: list[list[bytes | None]]  # rendered-image digests (None where it does not render)

    @property
    def num_targets(self) -> int:
        return len(self.programs)

    @property
    def num_samples(self) -> int:
        return min((len(p) for p in self.programs), default=0)


def draw_samples(
    proposer: Proposer, images: np.ndarray, n: int, config: ScalingConfig, progress: Callable[[int], None] | None = None
) -> list[list[Candidate]]:
    """``n`` samples per image, ``config.batch_size`` images per proposer call, seeded."""
    out: list[list[Candidate]] = []
    for b0 in range(0, len(images), config.batch_size):
        chunk = images[b0 : b0 + config.batch_size]
        got = proposer.propose(
            chunk, n, method="sample", temperature=config.temperature, top_p=config.top_p,
            seed=(config.seed * 1_000_003 + b0) % (2**31),
        )
        if len(got) != len(chunk) or any(len(c) != n for c in got):
            raise RuntimeError(f"proposer returned {[len(c) for c in got]} samples for {len(chunk)} images, {n} each")
        out.extend(list(c) for c in got)
        if progress:
            progress(len(chunk))
    return out


def score_samples(
    programs: Sequence[Sequence[str]],
    logprobs: Sequence[Sequence[float | None]] | None,
    images: np.ndarray,
    workers: int | None = None,
) -> SampleTable:
    """Render every sample (once per distinct program per target) and score it exactly."""
    T = len(programs)
    N = min(len(p) for p in programs) if T else 0
    if any(len(p) != N for p in programs):
        raise ValueError("every target needs the same number of samples")
    if len(images) != T:
        raise ValueError(f"{T} sample lists but {len(images)} target images")
    lps = [[None] * N for _ in range(T)] if logprobs is None else [list(x) for x in logprobs]
    ok = np.zeros((T, N), bool)
    iou = np.full((T, N), -1.0)
    acc = np.zeros((T, N))
    perfect = np.zeros((T, N), bool)
    sizes = np.zeros((T, N), int)
    keys: list[list[bytes | None]] = [[None] * N for _ in range(T)]
    block = max(1, 1024 // max(N, 1))  # targets per render batch (~1k programs: processes pay off)
    for t0 in range(0, T, block):
        todo: list[tuple[int, str]] = []  # (target, canonical text) of distinct parsable programs
        where: dict[tuple[int, str], list[int]] = {}
        for t in range(t0, min(T, t0 + block)):
            for j, text in enumerate(programs[t]):
                try:
                    ast = parse(text)
                except ProgramError:
                    continue
                canon = str(ast)
                sizes[t, j] = num_nodes(ast)
                if (t, canon) not in where:
                    where[(t, canon)] = []
                    todo.append((t, canon))
                where[(t, canon)].append(j)
        if not todo:
            continue
        size = images.shape[1]
        gray, errors = rendering.render_batch([c for _, c in todo], size, workers=workers)
        for (t, canon), g, err in zip(todo, gray, errors):
            js = where[(t, canon)]
            if err is not None:
                sizes[t, js] = 0
                continue
            m = g == 0
            tm = black_mask(images[t])
            inter = np.count_nonzero(m & tm)
            union = np.count_nonzero(m | tm)
            agree = 1.0 - np.count_nonzero(m ^ tm) / m.size
            k = mask_key(m)
            for j in js:
                ok[t, j] = True
                iou[t, j] = 1.0 if union == 0 else inter / union
                acc[t, j] = agree
                perfect[t, j] = union == inter
                keys[t][j] = k
    return SampleTable([list(p) for p in programs], lps, ok, iou, acc, perfect, sizes, keys)


def choose(table: SampleTable, n: int) -> dict[str, list[int | None]]:
    """Index of the sample each selector picks among the first n, per target (None: nothing
    renders, so the answer is the empty program)."""
    out: dict[str, list[int | None]] = {s: [] for s in SELECTORS}
    for t in range(table.num_targets):
        ok = table.ok[t, :n]
        lp = table.logprobs[t][:n]
        sz = table.sizes[t, :n]
        if not ok.any():
            for s in SELECTORS:
                out[s].append(None)
            continue
        out["best-of-n"].append(select_best(table.iou[t, :n], sz, lp))
        out["majority"].append(select_majority(table.keys[t][:n], sz, lp))
        lps = [(-np.inf if (x is None or not ok[j]) else x) for j, x in enumerate(lp)]
        # Only rendering samples compete on likelihood; a failed one ranks below all of them.
        out["likelihood"].append(select_best(lps, np.where(ok, sz, 10**9), lp))
        acc = np.where(ok, table.accuracy[t, :n], -1.0)
        out["oracle"].append(select_best(acc, sz, lp))
    return out


@dataclass
class FailureStats:
    missed_perfect: int  # a pixel-perfect sample existed, the selector chose a non-perfect one
    missed_best: int  # a sample with higher pixel accuracy than the chosen one existed
    targets_with_perfect: int  # pass@n numerator


def failure_analysis(table: SampleTable, n: int, chosen: dict[str, list[int | None]]) -> tuple[dict[str, FailureStats], list[dict]]:
    """Per-selector failure counts at n, and one row per (target, selector) failure."""
    stats: dict[str, FailureStats] = {}
    rows: list[dict] = []
    with_perfect = [bool(table.perfect[t, :n].any()) for t in range(table.num_targets)]
    distinct_img, distinct_txt = distinct_outputs(table, n)
    for sel in SELECTORS:
        if sel == "oracle":
            continue
        mp = mb = 0
        for t in range(table.num_targets):
            j = chosen[sel][t]
            acc_chosen = table.accuracy[t, j] if j is not None else None
            best_acc = table.accuracy[t, :n][table.ok[t, :n]].max() if table.ok[t, :n].any() else None
            miss_perfect = with_perfect[t] and (j is None or not table.perfect[t, j])
            miss_best = best_acc is not None and (acc_chosen is None or acc_chosen < best_acc - 1e-12)
            mp += miss_perfect
            mb += miss_best
            if miss_perfect or miss_best:
                jb = select_best(np.where(table.ok[t, :n], table.accuracy[t, :n], -1.0), table.sizes[t, :n], table.logprobs[t][:n])
                rows.append({
                    "target": t, "n": n, "selector": sel,
                    "missed_perfect": bool(miss_perfect), "missed_best": bool(miss_best),
                    "chosen": table.programs[t][j] if j is not None else "",
                    "chosen_accuracy": float(acc_chosen) if acc_chosen is not None else None,
                    "best": table.programs[t][jb], "best_accuracy": float(best_acc),
                    "distinct_images": int(distinct_img[t]), "distinct_programs": int(distinct_txt[t]),
                })
        stats[sel] = FailureStats(int(mp), int(mb), int(sum(with_perfect)))
    return stats, rows


def distinct_outputs(table: SampleTable, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Per target: distinct rendered images (failures not counted) and distinct program texts
    among the first n samples."""
    imgs = np.array([len({k for k in table.keys[t][:n] if k is not None}) for t in range(table.num_targets)])
    txts = np.array([len(set(table.programs[t][:n])) for t in range(table.num_targets)])
    return imgs, txts


@dataclass
class ScalingReport:
    ns: tuple[int, ...]
    metrics: dict[str, dict[int, dict[str, Any]]]  # selector -> n -> MetricsReport.to_dict()
    pass_at: dict[int, float]  # n -> share of targets with a pixel-perfect sample among the first n
    failures: dict[str, dict[int, FailureStats]]
    distinct_images: dict[int, list[int]]  # n -> per-target counts
    failure_rows: list[dict] = field(default_factory=list)
    seconds_sampling: float = 0.0
    num_targets: int = 0

    def to_json(self) -> dict:
        return {
            "ns": list(self.ns),
            "num_targets": self.num_targets,
            "seconds_sampling": self.seconds_sampling,
            "metrics": {s: {str(n): m for n, m in d.items()} for s, d in self.metrics.items()},
            "pass_at": {str(n): v for n, v in self.pass_at.items()},
            "failures": {s: {str(n): vars(f) for n, f in d.items()} for s, d in self.failures.items()},
            "distinct_images_mean": {str(n): float(np.mean(v)) if v else 0.0 for n, v in self.distinct_images.items()},
        }


def analyse(table: SampleTable, images: np.ndarray, ns: Sequence[int], workers: int | None = None) -> ScalingReport:
    """Metrics, pass@n and failure analysis for every n (prefixes of the drawn samples)."""
    from img2prog.eval.metrics import compute_metrics

    if table.num_samples < max(ns):
        raise ValueError(f"asked for n up to {max(ns)} but only {table.num_samples} samples per target were drawn")
    metrics: dict[str, dict[int, dict]] = {s: {} for s in SELECTORS}
    failures: dict[str, dict[int, FailureStats]] = {s: {} for s in SELECTORS if s != "oracle"}
    pass_at: dict[int, float] = {}
    distinct: dict[int, list[int]] = {}
    rows: list[dict] = []
    for n in ns:
        chosen = choose(table, n)
        for sel in SELECTORS:
            progs = [table.programs[t][j] if j is not None else "" for t, j in enumerate(chosen[sel])]
            metrics[sel][n] = compute_metrics(progs, images, workers=workers).to_dict()
        stats, frows = failure_analysis(table, n, chosen)
        for sel, st in stats.items():
            failures[sel][n] = st
        rows.extend(frows)
        pass_at[n] = float(table.perfect[:, :n].any(axis=1).mean()) if table.num_targets else 0.0
        distinct[n] = distinct_outputs(table, n)[0].tolist()
    return ScalingReport(tuple(ns), metrics, pass_at, failures, distinct, rows, num_targets=table.num_targets)


# --------------------------------------------------------------------------------------
# Writing the study.
# --------------------------------------------------------------------------------------

def write_samples(path: Path, table: SampleTable) -> None:
    with path.open("w", encoding="utf-8") as f:
        for t in range(table.num_targets):
            f.write(json.dumps({
                "target": t,
                "programs": table.programs[t],
                "logprobs": table.logprobs[t],
                "iou": [round(float(x), 6) for x in table.iou[t]],
                "accuracy": [round(float(x), 6) for x in table.accuracy[t]],
                "perfect": [bool(x) for x in table.perfect[t]],
            }) + "\n")


def read_samples(path: Path) -> tuple[list[list[str]], list[list[float | None]]]:
    """Programs and log-likelihoods from a ``samples.jsonl`` (to redo an analysis)."""
    programs, logprobs = [], []
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                programs.append([str(p) for p in row["programs"]])
                logprobs.append(list(row.get("logprobs") or [None] * len(row["programs"])))
            except (json.JSONDecodeError, KeyError, TypeError) as e:
                raise ValueError(f"{path}:{lineno}: not a samples row ({e})") from None
    return programs, logprobs


def plot(report: ScalingReport, out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ns = list(report.ns)
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    for ax, key, title in zip(axes, ("perfect", "f1_score", "pixel_accuracy"), ("pixel-perfect share", "F1", "pixel accuracy")):
        for sel in ("oracle", *(x for x in SELECTORS if x != "oracle")):
            label = "oracle (pass@n)" if sel == "oracle" and key == "perfect" else sel
            values = [report.metrics[sel][n][key] for n in ns]
            if sel == "oracle":  # drawn wide and pale underneath: best-of-n often lies on it
                ax.plot(ns, values, "-", color="grey", linewidth=6, alpha=0.35, label=label)
            else:
                ax.plot(ns, values, "-", marker="o", markersize=4, label=label)
        ax.set_xscale("log", base=2)
        ax.set_xticks(ns, [str(n) for n in ns])
        ax.set_xlabel("n (samples per target)")
        ax.set_title(title)
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.tight_layout()
    p1 = out / "metric_vs_n.png"
    fig.savefig(p1, dpi=120)
    plt.close(fig)

    nmax = max(ns)
    counts = report.distinct_images[nmax]
    fig, ax = plt.subplots(figsize=(6, 4))
    if counts:
        ax.hist(counts, bins=np.arange(0.5, max(counts) + 1.5, 1 if max(counts) <= 64 else max(counts) // 32))
    ax.set_xlabel(f"distinct rendered outputs among {nmax} samples")
    ax.set_ylabel("targets")
    ax.set_title("How many different images the model proposes per target")
    fig.tight_layout()
    p2 = out / "distinct_outputs.png"
    fig.savefig(p2, dpi=120)
    plt.close(fig)
    return [p1, p2]


def markdown(report: ScalingReport, meta: dict[str, Any]) -> str:
    ns = report.ns
    nmax = max(ns)
    lines = [
        "# Test-time scaling report",
        "",
        *(f"- {k}: {v}" for k, v in meta.items()),
        f"- targets: {report.num_targets}; samples drawn once per target ({nmax}); the rows for smaller n "
        "use the first n of them (prefixes), so the curves are nested.",
        "- selectors: best-of-n = highest exact IoU (ties to shorter programs); majority = most frequent "
        "rendered image (ties by likelihood); likelihood = highest model log-likelihood; oracle = best pixel "
        "accuracy (its pixel-perfect share is pass@n).",
        "",
        "## Reference metrics by n",
        "",
        "| n | selector | pixel_accuracy | parse_rate | precision | recall | f1_score | iou | perfect |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for n in ns:
        for sel in SELECTORS:
            m = report.metrics[sel][n]
            lines.append(
                f"| {n} | {sel} | {m['pixel_accuracy']:.4f} | {m['parse_rate']:.3f} | {m['precision']:.4f} | "
                f"{m['recall']:.4f} | {m['f1_score']:.4f} | {m['iou']:.4f} | {m['perfect']:.3f} |"
            )
    lines += ["", "## pass@n (a pixel-perfect sample exists among the first n)", "", "| n | pass@n |", "|---|---|"]
    lines += [f"| {n} | {report.pass_at[n]:.3f} |" for n in ns]
    lines += [
        "",
        "## Failure analysis",
        "",
        "Targets where a pixel-perfect sample existed but the selector chose another (missed perfect), and "
        "where a sample with higher pixel accuracy than the chosen one existed (missed best).",
        "",
        "| n | targets with a perfect sample | " + " | ".join(f"{s}: missed perfect / missed best" for s in report.failures) + " |",
        "|---|---|" + "---|" * len(report.failures),
    ]
    for n in ns:
        cells = [f"{report.failures[s][n].missed_perfect} / {report.failures[s][n].missed_best}" for s in report.failures]
        any_sel = next(iter(report.failures.values()))[n]
        lines.append(f"| {n} | {any_sel.targets_with_perfect} | " + " | ".join(cells) + " |")
    counts = np.array(report.distinct_images[nmax]) if report.distinct_images[nmax] else np.zeros(1)
    lines += [
        "",
        f"## Distinct outputs among {nmax} samples",
        "",
        f"Distinct rendered images per target: mean {counts.mean():.2f}, median {np.median(counts):.0f}, "
        f"max {counts.max():.0f}; {int((counts == 1).sum())} targets got a single image from all samples.",
        "",
        "| n | mean distinct images |",
        "|---|---|",
        *(f"| {n} | {np.mean(report.distinct_images[n]) if report.distinct_images[n] else 0:.2f} |" for n in ns),
        "",
        "![metric vs n](metric_vs_n.png)",
        "",
        "![distinct outputs](distinct_outputs.png)",
        "",
    ]
    return "\n".join(lines)


def run_scaling(
    proposer: Proposer | None,
    images: np.ndarray,
    out_dir: str | Path,
    config: ScalingConfig | None = None,
    meta: dict[str, Any] | None = None,
    samples: tuple[list[list[str]], list[list[float | None]]] | None = None,
    progress: Callable[[int], None] | None = None,
) -> ScalingReport:
    """Draw (or reuse ``samples``), score, analyse and write the study to ``out_dir``."""
    config = config or ScalingConfig()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    nmax = max(config.ns)
    t0 = time.perf_counter()
    if samples is None:
        if proposer is None:
            raise ValueError("need a proposer to draw samples (or previously drawn samples)")
        drawn = draw_samples(proposer, images, nmax, config, progress)
        programs = [[c.program for c in cs] for cs in drawn]
        logprobs = [[c.logprob for c in cs] for cs in drawn]
    else:
        programs, logprobs = samples
    seconds_sampling = time.perf_counter() - t0
    table = score_samples(programs, logprobs, images, config.workers)
    report = analyse(table, images, config.ns, config.workers)
    report.seconds_sampling = seconds_sampling
    write_samples(out / "samples.jsonl", table)
    (out / "metrics.json").write_text(json.dumps(report.to_json(), indent=2) + "\n")
    with (out / "failures.jsonl").open("w", encoding="utf-8") as f:
        for row in report.failure_rows:
            f.write(json.dumps(row) + "\n")
    plot(report, out)
    info = dict(meta or {})
    info.setdefault("temperature", config.temperature)
    info.setdefault("top_p", config.top_p)
    info.setdefault("seed", config.seed)
    info["sampling time"] = f"{seconds_sampling:.1f} s"
    (out / "report.md").write_text(markdown(report, info))
    return report
