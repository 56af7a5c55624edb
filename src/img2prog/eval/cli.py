"""`img2prog eval ...`: evaluation studies beyond a single score."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

app = typer.Typer(help="Evaluation studies (e.g. test-time scaling).", no_args_is_help=True)


def _fail(message: str, code: int = 2) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def _parse_ns(text: str) -> tuple[int, ...]:
    try:
        ns = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        _fail(f"--n must be comma-separated positive integers, got {text!r}")
    if not ns or any(n < 1 for n in ns):
        _fail(f"--n must be comma-separated positive integers, got {text!r}")
    return ns


def load_proposer(model: str, device: str, programs: list | None = None):
    """A :class:`~img2prog.search.base.Proposer` for ``--model``.

    ``synthetic`` is a fake model for trying the pipeline without weights: it proposes perturbed
    copies of the targets' true programs (targets must carry programs). Anything else goes to
    the model package: ``img2prog.models.load_proposer(name_or_path, device=...)`` when it has
    one, else the native model (:class:`img2prog.models.proposer.NativeProposer`).
    """
    if model == "synthetic" or model.startswith("synthetic:"):
        from img2prog.search.synthetic import PerturbingProposer

        if not programs or any(not isinstance(p, str) for p in programs):
            _fail("--model synthetic needs targets with a 'program' for every image")
        edits = (0, 1, 2, 3)
        if ":" in model:
            try:
                edits = tuple(int(x) for x in model.split(":", 1)[1].split(","))
            except ValueError:
                _fail(f"--model synthetic:K1,K2,... takes edit counts, got {model!r}")
        return PerturbingProposer(programs, edits=edits)
    import img2prog.models as models

    try:
        loader = getattr(models, "load_proposer", None)
        if loader is not None:  # the model package's resolver knows every backend
            return loader(model, device=device)
        from img2prog.models.proposer import NativeProposer

        return NativeProposer(model, device=device)
    except (FileNotFoundError, ValueError, KeyError) as e:
        _fail(str(e.args[0]) if e.args else str(e))


@app.command()
def scaling(
    model: str = typer.Option("native-csg2d", "--model", help="Model name or folder (or 'synthetic' to try the pipeline)."),
    targets: str = typer.Option("csg2d-test", "--targets", help="Named test set, dataset folder, JSONL of programs or image folder."),
    n: str = typer.Option("1,2,4,8,16,32,64", "--n", help="Comma-separated sample counts; samples are drawn once for the largest."),
    out: Path = typer.Option(..., "--out", help="Folder for the report, plots, samples and metrics."),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="Use only the first N targets."),
    temperature: float = typer.Option(1.0, "--temperature", min=0.0),
    top_p: float = typer.Option(1.0, "--top-p", min=0.0, max=1.0),
    seed: int = typer.Option(0, "--seed"),
    batch_size: int = typer.Option(16, "--batch-size", min=1, help="Target images per model call."),
    device: str = typer.Option("cpu", "--device"),
    samples: Optional[Path] = typer.Option(None, "--samples", help="Reuse samples.jsonl from an earlier study instead of sampling."),
) -> None:
    """Test-time scaling: best-of-n, majority@n and the oracle pass@n for n = 1, 2, 4, ...

    Example: img2prog eval scaling --model native-csg2d --targets csg2d-test --out out/scaling
    """
    import numpy as np

    from img2prog.eval.metrics import target_array
    from img2prog.eval.scaling import ScalingConfig, read_samples, run_scaling

    ns = _parse_ns(n)
    if temperature <= 0:
        _fail("--temperature must be > 0 for sampling")
    try:
        from img2prog.data import DataError, load_targets

        ds = load_targets(targets)
    except DataError as e:
        _fail(str(e))
    if limit is not None and limit < len(ds):
        ds = ds.select(range(limit))
    if len(ds) == 0:
        _fail(f"{targets}: no targets")
    images = np.stack([target_array(x, i) for i, x in enumerate(ds["image"])])
    programs = ds["program"] if "program" in ds.column_names else None
    drawn = None
    proposer = None
    if samples is not None:
        try:
            drawn = read_samples(samples)
        except (OSError, ValueError) as e:
            _fail(str(e))
        if len(drawn[0]) != len(images):
            _fail(f"{samples}: {len(drawn[0])} targets, but --targets has {len(images)}")
    else:
        proposer = load_proposer(model, device, programs)
    config = ScalingConfig(ns=ns, temperature=temperature, top_p=top_p, seed=seed, batch_size=batch_size)
    meta = {"model": model if samples is None else f"samples from {samples}", "targets": targets}
    from tqdm import tqdm

    bar = tqdm(total=len(images), desc="sampling", unit="img", disable=samples is not None)

    def progress(k: int) -> None:
        bar.update(k)
        if bar.n >= bar.total:
            bar.close()

    try:
        report = run_scaling(proposer, images, out, config, meta, samples=drawn, progress=progress)
    except ValueError as e:
        _fail(str(e))
    finally:
        bar.close()
    nmax = max(report.ns)
    m = report.metrics
    typer.echo(
        f"n={nmax}: best-of-n perfect {m['best-of-n'][nmax]['perfect']:.3f}, majority perfect "
        f"{m['majority'][nmax]['perfect']:.3f}, pass@n {report.pass_at[nmax]:.3f}; report: {out / 'report.md'}"
    )
