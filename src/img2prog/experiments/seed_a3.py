"""The seed experiment (SPEC §4), end to end and resumable stage by stage.

One command runs what the seed assignment asks a student to do by hand:

1. ``targets``   — the held-out test set (``csg2d-test``) and the four qualitative programs;
2. ``baseline``  — the empty program, scored on both (the reference figure to beat);
3. ``zero-shot`` — the base model prompted zero-shot, one sampled reply per image, the
   program extracted by :mod:`img2prog.models.hf.extract`;
4. per data *variant* — ``data-V`` (make N training samples), ``sft-V`` (LoRA/QLoRA, one
   epoch, loss on the reply only) and ``eval-V`` (the fine-tuned model, prompted as trained).
   Variants: ``evolved`` (the base model as mutator, validity filter only — the seed's Part 2),
   ``handcrafted`` (the quality-guaranteed generator — Part 3), ``fitness`` (evolution steered
   by novelty fitness), ``hybrid`` (K handcrafted seeds, the rest evolved) and
   ``hybrid-fitness`` (both) — the Part 4 extensions;
5. ``analysis``  — data-quality analysis of every variant's data, side by side;
6. ``report``    — ``report.md`` with every stage's reference metrics side by side, plots and
   galleries of the qualitative programs.

Every stage writes ``stages/NAME.json`` when it completes; running the command again skips
completed stages and resumes the one that was interrupted (evolution and SFT resume inside
the stage from their own checkpoints). Rows from other tools (e.g. the native model, or
native model + search) are added to the report from ``extra_rows/*.json`` files with the same
fields as a stage's ``metrics`` (see :func:`write_report`).
"""

from __future__ import annotations

import gc
import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

VARIANTS: tuple[str, ...] = ("evolved", "handcrafted", "fitness", "hybrid", "hybrid-fitness")
METRIC_KEYS = ("pixel_accuracy", "parse_rate", "precision", "recall", "f1_score", "iou", "perfect")


class ExperimentError(RuntimeError):
    """The experiment cannot run as configured (message says what and where)."""


@dataclass
class SeedA3Config:
    model: str  # hub name or folder of the base VLM
    out: str = "out/seed-a3"
    n: int = 500  # training samples per variant
    variants: tuple[str, ...] = VARIANTS
    test_set: str = "csg2d-test"
    qualitative_set: str = "csg2d-qualitative"
    test_limit: int | None = None  # only the first K test programs (smoke runs)
    image_size: int = 256
    quantize: str = "auto"  # auto: 4-bit with CUDA + bitsandbytes
    seed: int = 0
    # generation (seed defaults)
    max_new_tokens: int = 256
    generation_batch: int = 16
    # evolution
    mutator: str = "model"  # "model" (the seed protocol) or "symbolic"
    fitness: str = "novelty"  # used by the fitness variants
    hybrid_handcrafted: int = 100  # K handcrafted samples in the hybrid variants
    evolve_filter: str = "valid"  # the seed protocol keeps every renderable program
    # fine-tuning (see img2prog.train.sft for defaults and their sources)
    epochs: float = 1.0
    max_steps: int = -1
    batch_size: int = 4
    grad_accum: int = 4
    lora_r: int = 16
    lora_alpha: int = 16

    def __post_init__(self) -> None:
        self.variants = tuple(self.variants)
        unknown = [v for v in self.variants if v not in VARIANTS]
        if unknown:
            raise ExperimentError(f"unknown variant(s) {', '.join(unknown)}; choose from {', '.join(VARIANTS)}")
        if self.mutator not in ("model", "symbolic"):
            raise ExperimentError(f"mutator must be 'model' or 'symbolic', got {self.mutator!r}")
        if self.n < 1:
            raise ExperimentError(f"n must be >= 1, got {self.n}")


def _write_json(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(obj, indent=2, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)


@dataclass
class Targets:
    name: str
    programs: list[str]
    images: np.ndarray  # (N, S, S, 3) uint8


class SeedA3:
    """The experiment runner. ``run()`` executes the plan, skipping completed stages."""

    def __init__(self, config: SeedA3Config, log: Callable[[str], None] = print):
        self.config = config
        self.out = Path(config.out)
        self.log = log
        self._base = None  # the loaded base model, shared by the zero-shot and mutator stages
        self._targets: dict[str, Targets] = {}

    # --- plan ----------------------------------------------------------------------------
    def plan(self) -> list[tuple[str, Callable[[], dict]]]:
        stages: list[tuple[str, Callable[[], dict]]] = [
            ("targets", self.stage_targets),
            ("baseline", self.stage_baseline),
            ("zero-shot", self.stage_zero_shot),
        ]
        for v in self.config.variants:
            stages += [
                (f"data-{v}", lambda v=v: self.stage_data(v)),
                (f"sft-{v}", lambda v=v: self.stage_sft(v)),
                (f"eval-{v}", lambda v=v: self.stage_eval(v)),
            ]
        stages += [("analysis", self.stage_analysis), ("report", self.stage_report)]
        return stages

    def marker(self, stage: str) -> Path:
        return self.out / "stages" / f"{stage}.json"

    def result(self, stage: str) -> dict | None:
        path = self.marker(stage)
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None

    def run(self, only: list[str] | None = None) -> dict[str, dict]:
        self.out.mkdir(parents=True, exist_ok=True)
        _write_json(self.out / "config.json", asdict(self.config))
        _write_json(self.out / "environment.json", _environment())
        results: dict[str, dict] = {}
        for name, fn in self.plan():
            if only and name not in only:
                continue
            done = self.result(name)
            if done is not None and name != "report":
                self.log(f"[{name}] done earlier, skipped")
                results[name] = done
                continue
            self.log(f"[{name}] running")
            started = time.time()
            res = fn()
            res["seconds"] = round(time.time() - started, 3)
            _write_json(self.marker(name), res)
            results[name] = res
            self.log(f"[{name}] done in {res['seconds']:.1f} s")
        return results

    # --- helpers -------------------------------------------------------------------------
    def base_model(self):
        if self._base is None:
            from img2prog.models.hf.backend import load
            from img2prog.train.sft import SFTSettings, _resolve_quantize

            quantize = _resolve_quantize(SFTSettings(model="", data="", out="", quantize=self.config.quantize))
            self._base = load(self.config.model, quantize=quantize)
        return self._base

    def release_base(self) -> None:
        self._base = None
        gc.collect()
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except ImportError:
            pass

    def targets(self, which: str) -> Targets:
        if which not in self._targets:
            from img2prog.lang import get_language

            rows = [json.loads(line) for line in (self.out / "targets" / f"{which}.jsonl").read_text().splitlines()]
            programs = [r["program"] for r in rows]
            images, errors = get_language().render_batch(programs, self.config.image_size)
            if any(e is not None for e in errors):
                raise ExperimentError(f"targets/{which}.jsonl: a target program does not render")
            self._targets[which] = Targets(which, programs, images)
        return self._targets[which]

    def generation_settings(self):
        from img2prog.models.hf.backend import GenerationSettings

        return GenerationSettings(max_new_tokens=self.config.max_new_tokens, batch_size=self.config.generation_batch)

    def evaluate(self, hfm, name: str) -> dict:
        """Prompt ``hfm`` (in its own prompt style) on both target sets; score and save."""
        from img2prog.eval.metrics import compute_metrics
        from img2prog.models.hf.extract import extract

        out: dict[str, Any] = {"prompt_style": hfm.prompt_style}
        for which in ("test", "qualitative"):
            t = self.targets(which)
            replies = hfm.generate(t.images, 1, settings=self.generation_settings(), seed=self.config.seed,
                                   progress=True)
            ext = [extract(r[0], hfm.language) for r in replies]
            report = compute_metrics([e.program for e in ext], t.images)
            rows = [
                {"target": tp, "reply": r[0], "program": e.program, "in_code_block": e.in_code_block,
                 "repaired": e.repaired, "fixes": list(e.fixes), "pixel_accuracy": row["pixel_accuracy"],
                 "iou": row["iou"], "perfect": row["perfect"]}
                for tp, r, e, row in zip(t.programs, replies, ext, report.rows)
            ]
            path = self.out / "predictions" / name / f"{which}.jsonl"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
            out[which] = report.to_dict()
            out[which + "_extraction"] = {
                "no_program": sum(e.program is None for e in ext) / len(ext),
                "repaired": sum(e.repaired for e in ext) / len(ext),
                "in_code_block": sum(e.in_code_block for e in ext) / len(ext),
            }
        return out

    # --- stages --------------------------------------------------------------------------
    def stage_targets(self) -> dict:
        from img2prog.data.testsets import testset_programs

        res = {}
        for which, name in (("test", self.config.test_set), ("qualitative", self.config.qualitative_set)):
            try:
                programs = testset_programs(name)
            except KeyError as e:
                raise ExperimentError(f"unknown test set {name!r}: {e}") from None
            if which == "test" and self.config.test_limit:
                programs = programs[: self.config.test_limit]
            path = self.out / "targets" / f"{which}.jsonl"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("".join(json.dumps({"program": p}) + "\n" for p in programs), encoding="utf-8")
            res[which] = {"name": name, "n": len(programs)}
        return res

    def stage_baseline(self) -> dict:
        from img2prog.eval.metrics import compute_metrics

        return {w: compute_metrics([""] * len(self.targets(w).programs), self.targets(w).images).to_dict()
                for w in ("test", "qualitative")}

    def stage_zero_shot(self) -> dict:
        hfm = self.base_model()
        hfm.prompt_style = "zero-shot"
        return self.evaluate(hfm, "zero-shot")

    def data_dir(self, variant: str) -> Path:
        return self.out / "data" / variant

    def stage_data(self, variant: str) -> dict:
        from img2prog.data.evolve import EvolveConfig, evolve

        out = self.data_dir(variant)
        c = self.config
        if variant == "handcrafted":
            from img2prog.data.handcrafted import generate
            from img2prog.data.io import programs_to_dataset, save_dataset
            from img2prog.data.testsets import standard_bar

            result = generate(c.n, seed=c.seed, bar=standard_bar())
            save_dataset(programs_to_dataset([s.program for s in result.samples], size=256), out)
            return {"variant": variant, "n": len(result.samples), "generator": "handcrafted"}
        fitness = c.fitness if variant in ("fitness", "hybrid-fitness") else "none"
        handcrafted = min(c.hybrid_handcrafted, c.n) if variant.startswith("hybrid") else 0
        config = EvolveConfig(n=c.n, seed=c.seed, mutator=c.mutator, fitness=fitness, handcrafted=handcrafted,
                              filter=c.evolve_filter)
        mutator = None
        if c.mutator == "model":
            from img2prog.data.mutators import ModelMutator
            from img2prog.models.hf.mutator import HFProgramModel

            base = self.base_model()
            mutator = ModelMutator(HFProgramModel(base), with_images=base.is_vision)
        samples = evolve(config, out=out, mutator=mutator)
        return {"variant": variant, "n": len(samples), "mutator": c.mutator, "fitness": fitness,
                "handcrafted": handcrafted, "filter": c.evolve_filter}

    def stage_sft(self, variant: str) -> dict:
        from img2prog.models.hf.lora import LoraSettings
        from img2prog.train.sft import SFTSettings, train_sft

        self.release_base()  # the trainer loads its own copy
        c = self.config
        settings = SFTSettings(
            model=c.model, data=str(self.data_dir(variant)), out=str(self.out / "sft" / variant), epochs=c.epochs,
            max_steps=c.max_steps, batch_size=c.batch_size, grad_accum=c.grad_accum, seed=c.seed,
            lora=LoraSettings(r=c.lora_r, alpha=c.lora_alpha), quantize=c.quantize,  # type: ignore[arg-type]
            image_size=c.image_size, progress=True,
        )
        result = train_sft(settings)
        gc.collect()
        return {"adapter": str(result.adapter), "steps": result.steps, "train_loss": result.train_loss,
                "n_train": result.n_train}

    def stage_eval(self, variant: str) -> dict:
        from img2prog.models.hf.backend import load
        from img2prog.train.sft import SFTSettings, _resolve_quantize

        self.release_base()
        quantize = _resolve_quantize(SFTSettings(model="", data="", out="", quantize=self.config.quantize))
        hfm = load(self.config.model, adapter=str(self.out / "sft" / variant / "adapter"), quantize=quantize)
        res = self.evaluate(hfm, variant)
        del hfm
        gc.collect()
        return res

    def stage_analysis(self) -> dict:
        from img2prog.data.analysis import analyze, load_for_analysis, write_report

        reports = []
        for v in self.config.variants:
            programs, images, _ = load_for_analysis(self.data_dir(v))
            reports.append(analyze(programs, images, name=v))
        write_report(reports, self.out / "analysis")
        return {"variants": list(self.config.variants), "report": str(self.out / "analysis" / "report.md")}

    def stage_report(self) -> dict:
        path = write_report(self)
        return {"report": str(path)}


# ----------------------------------------------------------------------------------------
# report
# ----------------------------------------------------------------------------------------

def _rows(exp: SeedA3) -> list[dict]:
    """One row per evaluated system: name, test and qualitative metrics, extraction stats."""
    rows = []
    base = exp.result("baseline")
    if base:
        rows.append({"name": "empty program", **base})
    zs = exp.result("zero-shot")
    if zs:
        rows.append({"name": "zero-shot", **zs})
    for v in exp.config.variants:
        r = exp.result(f"eval-{v}")
        if r:
            sft = exp.result(f"sft-{v}") or {}
            rows.append({"name": f"fine-tuned on {v}", "train_loss": sft.get("train_loss"), **r})
    extra = exp.out / "extra_rows"
    if extra.is_dir():
        for path in sorted(extra.glob("*.json")):
            rows.append(json.loads(path.read_text(encoding="utf-8")))
    return rows


def _environment() -> dict:
    """Where the (latest) run happened: versions and device, for the report."""
    import importlib.metadata as md
    import platform

    env: dict[str, Any] = {"python": platform.python_version(), "cpus": os.cpu_count()}
    for pkg in ("torch", "transformers", "peft", "trl", "bitsandbytes"):
        try:
            env[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    try:
        import torch

        env["device"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    except ImportError:
        env["device"] = "cpu"
    return env


def _fmt(x: Any) -> str:
    return "—" if x is None else (f"{x:.4f}" if isinstance(x, float) else str(x))


def write_report(exp: SeedA3) -> Path:
    """``report.md`` + ``metrics.png`` + ``qualitative.png`` + HTML galleries under ``out``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = exp.out
    rows = _rows(exp)
    c = exp.config
    lines = [
        f"# Seed experiment A3 — {c.model}",
        "",
        f"Test set `{c.test_set}`" + (f" (first {c.test_limit})" if c.test_limit else "")
        + f", qualitative set `{c.qualitative_set}`; {c.n} training samples per variant; "
        f"one sampled reply per image (temperature 1.0, top-p 0.95, top-k 64, ≤ {c.max_new_tokens} new tokens). "
        "Reference metrics (SPEC §2) first, then ours (IoU, pixel-perfect share).",
        "",
        "## Test set",
        "",
        "| system | " + " | ".join(METRIC_KEYS) + " | no program | repaired |",
        "|---|" + "---|" * (len(METRIC_KEYS) + 2),
    ]
    for r in rows:
        t = r.get("test", {})
        e = r.get("test_extraction", {})
        lines.append(f"| {r['name']} | " + " | ".join(_fmt(t.get(k)) for k in METRIC_KEYS)
                     + f" | {_fmt(e.get('no_program'))} | {_fmt(e.get('repaired'))} |")
    lines += ["", "## Qualitative programs", "", "| system | " + " | ".join(METRIC_KEYS) + " |",
              "|---|" + "---|" * len(METRIC_KEYS)]
    for r in rows:
        q = r.get("qualitative", {})
        lines.append(f"| {r['name']} | " + " | ".join(_fmt(q.get(k)) for k in METRIC_KEYS) + " |")
    lines += ["", "## Training data", "", "| variant | samples | how | SFT steps | mean train loss |", "|---|---|---|---|---|"]
    for v in c.variants:
        d, s = exp.result(f"data-{v}") or {}, exp.result(f"sft-{v}") or {}
        how = d.get("generator") or f"evolution ({d.get('mutator')} mutator, fitness {d.get('fitness')}, " \
            f"{d.get('handcrafted', 0)} handcrafted seeds, filter {d.get('filter')})"
        lines.append(f"| {v} | {_fmt(d.get('n'))} | {how} | {_fmt(s.get('steps'))} | {_fmt(s.get('train_loss'))} |")
    if (out / "analysis" / "report.md").is_file():
        lines += ["", "Data-quality analysis of every variant: [analysis/report.md](analysis/report.md)."]

    # plot: pixel accuracy and F1 per system
    if rows:
        fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(rows)), 3.5))
        x = np.arange(len(rows))
        for i, key in enumerate(("pixel_accuracy", "f1_score", "iou")):
            ax.bar(x + (i - 1) * 0.27, [r.get("test", {}).get(key) or 0 for r in rows], 0.27, label=key)
        ax.set_xticks(x, [r["name"] for r in rows], rotation=20, ha="right", fontsize=8)
        ax.set_ylim(0, 1)
        ax.legend(fontsize=8)
        ax.set_title("test set")
        fig.tight_layout()
        fig.savefig(out / "metrics.png", dpi=110)
        plt.close(fig)
        lines += ["", "![metrics](metrics.png)"]

    # qualitative gallery: targets and every model's prediction
    systems = ["zero-shot"] + [v for v in c.variants if exp.result(f"eval-{v}")]
    preds = {}
    for s in systems:
        path = out / "predictions" / s / "qualitative.jsonl"
        if path.is_file():
            preds[s] = [json.loads(line) for line in path.read_text().splitlines()]
    if preds and (out / "targets" / "qualitative.jsonl").is_file():
        _qualitative_figure(exp, preds, out / "qualitative.png")
        _galleries(exp, preds)
        lines += ["", "## Qualitative predictions", "", "![qualitative](qualitative.png)", "",
                  "Galleries: " + ", ".join(f"[{s}](galleries/{s}.html)" for s in preds)]
    # run: where and how long each stage took
    env_path = out / "environment.json"
    env = json.loads(env_path.read_text(encoding="utf-8")) if env_path.is_file() else {}
    times = [(name, (exp.result(name) or {}).get("seconds")) for name, _ in exp.plan() if name != "report"]
    lines += ["", "## Run", "",
              "Device: " + (", ".join(f"{k} {v}" for k, v in env.items()) or "not recorded")
              + f"; quantization `{c.quantize}`, mutator `{c.mutator}`, seed {c.seed}.", "",
              "| stage | seconds |", "|---|---|"]
    lines += [f"| {name} | {sec:.1f} |" for name, sec in times if sec is not None]
    total = sum(sec for _, sec in times if sec is not None)
    lines += [f"| total | {total:.1f} |"]
    lines += ["", "Stage results (JSON): `stages/`; per-image replies and extractions: `predictions/`."]
    path = out / "report.md"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _render_or_none(program: str | None, size: int):
    from img2prog.lang import ProgramError, get_language

    if program is None:
        return None
    try:
        return get_language().render(program, size)
    except ProgramError:
        return None


def _qualitative_figure(exp: SeedA3, preds: dict[str, list[dict]], path: Path) -> None:
    import matplotlib.pyplot as plt

    t = exp.targets("qualitative")
    cols = 1 + len(preds)
    fig, axes = plt.subplots(len(t.programs), cols, figsize=(1.6 * cols, 1.6 * len(t.programs)), squeeze=False)
    for i in range(len(t.programs)):
        axes[i][0].imshow(t.images[i])
        axes[i][0].set_title("target" if i == 0 else "", fontsize=8)
        for j, (name, rows) in enumerate(preds.items(), start=1):
            img = _render_or_none(rows[i]["program"], 128)
            axes[i][j].imshow(img if img is not None else np.full((128, 128, 3), 200, np.uint8))
            axes[i][j].set_title(name if i == 0 else "", fontsize=8)
            if img is None:
                axes[i][j].text(64, 64, "no program", ha="center", va="center", fontsize=7)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _galleries(exp: SeedA3, preds: dict[str, list[dict]]) -> None:
    from img2prog.eval.gallery import GalleryItem, write_gallery

    t = exp.targets("qualitative")
    for name, rows in preds.items():
        items = [
            GalleryItem(name=f"#{i}", target=t.images[i], program=r["program"],
                        prediction=_render_or_none(r["program"], t.images.shape[1]), target_program=r["target"],
                        info={"iou": r["iou"], "perfect": r["perfect"], "reply": r["reply"][:200]})
            for i, r in enumerate(rows)
        ]
        write_gallery(exp.out / "galleries" / f"{name}.html", items, title=f"seed-a3 {name}: qualitative programs")


def run_seed_a3(config: SeedA3Config, only: list[str] | None = None, log: Callable[[str], None] = print) -> Path:
    """Run (or resume) the experiment; returns the report path."""
    SeedA3(config, log).run(only)
    return Path(config.out) / "report.md"
