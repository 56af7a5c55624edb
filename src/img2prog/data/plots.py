"""PNG plots for :mod:`img2prog.data.analysis` (matplotlib, headless).

Every plot takes one or more analysis reports and draws them side by side, so the same
code serves ``analyze DIR`` and ``analyze DIR --against DIR2 ...``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _bars(ax, labels: list[str], series: list[tuple[str, list[float]]], ylabel: str, pct: bool = True) -> None:
    k = len(series)
    width = 0.8 / k
    x = np.arange(len(labels))
    for i, (name, values) in enumerate(series):
        vals = np.asarray(values, dtype=float) * (100 if pct else 1)
        ax.bar(x + (i - (k - 1) / 2) * width, vals, width, label=name)
    ax.set_xticks(x)
    ax.set_xticklabels(labels, rotation=20, ha="right")
    ax.set_ylabel(ylabel)
    if k > 1:
        ax.legend(fontsize=8)


def _quality(reports, out: Path) -> Path:
    plt = _plt()
    labels = [
        "programs w/ degenerate op",
        "degenerate operands",
        "dup. canonical program",
        "dup. image",
        "near-dup. image",
        "redundant nesting",
        "coverage < 5%",
        "coverage > 75%",
    ]
    series = [
        (
            r["name"],
            [
                r["degenerate"]["programs_with_degenerate_operand"],
                r["degenerate"]["degenerate_operand_share"],
                r["duplicates"]["canonical_program"],
                r["duplicates"]["image"],
                r["duplicates"]["near_image"],
                r["constructs"]["redundant_nesting"],
                r["coverage"]["under_5pct"],
                r["coverage"]["over_75pct"],
            ],
        )
        for r in reports
    ]
    fig, ax = plt.subplots(figsize=(10, 4.5))
    _bars(ax, labels, series, "% of samples (operands for 'degenerate operands')")
    ax.set_title("Quality problems (lower is better)")
    fig.tight_layout()
    path = out / "quality.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _constructs(reports, out: Path) -> Path:
    plt = _plt()
    fig, axes = plt.subplots(1, 3, figsize=(13, 4))
    _bars(
        axes[0],
        ["circle", "quad", "union", "difference"],
        [(r["name"], [r["constructs"][k] for k in ("circle", "quad", "union", "difference")]) for r in reports],
        "% of primitives / of operations",
    )
    axes[0].set_title("Constructs")
    n_max = max([int(k) for r in reports for k in r["primitives"]] + [1])
    labels = [str(i) for i in range(1, n_max + 1)]
    _bars(
        axes[1],
        labels,
        [(r["name"], [r["primitives"].get(k, 0) / max(r["renderable"], 1) for k in labels]) for r in reports],
        "% of programs",
    )
    axes[1].set_title("Primitives per program")
    d_max = max([int(k) for r in reports for k in r["depth"]] + [0])
    labels = [str(i) for i in range(d_max + 1)]
    _bars(
        axes[2],
        labels,
        [(r["name"], [r["depth"].get(k, 0) / max(r["renderable"], 1) for k in labels]) for r in reports],
        "% of programs",
    )
    axes[2].set_title("Nesting depth")
    fig.tight_layout()
    path = out / "structure.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _parameters(reports, out: Path) -> Path:
    plt = _plt()
    names = ["circle.r", "circle.x", "circle.y", "quad.x", "quad.y", "quad.w", "quad.h"]
    fig, axes = plt.subplots(2, 4, figsize=(15, 6.5))
    for ax, name in zip(axes.flat, names):
        for r in reports:
            counts = np.asarray(r["parameters"][name], dtype=float)
            total = counts.sum()
            ax.step(np.arange(16), counts / total * 100 if total else counts, where="mid", label=r["name"])
        ax.set_title(name)
        ax.set_xticks(range(0, 16, 3))
    ax = axes.flat[7]
    angles = list(range(0, 360, 45))
    _bars(
        ax,
        [str(a) for a in angles],
        [
            (r["name"], [r["angles"].get(str(a), 0) / max(sum(r["angles"].values()), 1) for a in angles])
            for r in reports
        ],
        "% of quads",
    )
    ax.set_title("quad.angle")
    axes.flat[0].set_ylabel("% of values")
    axes.flat[4].set_ylabel("% of values")
    if len(reports) > 1:
        axes.flat[0].legend(fontsize=8)
    fig.tight_layout()
    path = out / "parameters.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _coverage(reports, out: Path) -> Path:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4))
    edges = np.linspace(0, 1, 21)
    centers = (edges[:-1] + edges[1:]) / 2
    for r in reports:
        h = np.asarray(r["coverage"]["histogram"], dtype=float)
        ax.step(centers * 100, h / max(h.sum(), 1) * 100, where="mid", label=f"{r['name']} (mean {100 * r['coverage']['mean']:.1f}%)")
    for t in (5, 75):
        ax.axvline(t, color="grey", linestyle=":")
    ax.set_xlabel("canvas coverage (% black pixels)")
    ax.set_ylabel("% of samples")
    ax.set_title("Canvas coverage")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = out / "coverage.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _heatmaps(reports, out: Path) -> Path:
    plt = _plt()
    k = len(reports)
    fig, axes = plt.subplots(1, k, figsize=(3.6 * k + 0.6, 3.6), squeeze=False)
    vmax = max(float(r["_heatmap"].max()) for r in reports) or 1.0
    for ax, r in zip(axes[0], reports):
        im = ax.imshow(r["_heatmap"], cmap="magma", vmin=0, vmax=vmax, extent=(0, 16, 0, 16))
        ax.set_title(r["name"], fontsize=9)
        ax.set_xticks([0, 4, 8, 12, 16])
        ax.set_yticks([0, 4, 8, 12, 16])
    fig.colorbar(im, ax=axes[0].tolist(), shrink=0.8, label="share of samples black here")
    fig.suptitle("Where shapes sit on the canvas", fontsize=10)
    path = out / "heatmap.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _samples(names: list[str], samples: Sequence[Sequence[str]], out: Path, per: int = 8) -> Path:
    from img2prog.lang.csg2d.rendering import render_gray
    from img2prog.lang.errors import ProgramError

    plt = _plt()
    k = len(samples)
    fig, axes = plt.subplots(k, per, figsize=(per * 1.3, k * 1.45), squeeze=False)
    for row, (name, progs) in enumerate(zip(names, samples)):
        for col in range(per):
            ax = axes[row][col]
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():  # a thin frame shows where the canvas ends
                spine.set_color("0.7")
            if col < len(progs):
                try:
                    ax.imshow(render_gray(progs[col], 64), cmap="gray", vmin=0, vmax=255)
                except ProgramError:
                    ax.text(0.5, 0.5, "does not\nrender", ha="center", va="center", fontsize=7, transform=ax.transAxes)
            if col == 0:
                ax.set_title(name, fontsize=8, loc="left")
    fig.tight_layout()
    path = out / "samples.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_all(reports: Sequence[dict], out: Path, samples: Sequence[Sequence[str]] | None = None) -> list[Path]:
    """Draw every plot into ``out``; returns the PNG paths."""
    paths = [_quality(reports, out), _constructs(reports, out), _parameters(reports, out), _coverage(reports, out), _heatmaps(reports, out)]
    if samples:
        paths.append(_samples([r["name"] for r in reports], samples, out))
    return paths
