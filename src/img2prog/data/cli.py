"""`img2prog data ...`: generate, analyse and evolve datasets; build the standard test sets."""

from __future__ import annotations

import json
import time
from pathlib import Path

import typer

app = typer.Typer(help="Make and inspect datasets: generate, analyze, evolve, testset.", no_args_is_help=True)


def _fail(message: str, code: int = 2) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def _bar(files: list[Path] | None, standard: bool):
    """The bar set for a command: the standard test sets (unless disabled) plus ``--bar`` files."""
    from img2prog.data.barring import BarSet
    from img2prog.data.io import DataError, load_programs

    bar = BarSet()
    for f in files or []:
        try:
            bar.add(load_programs(f))
        except DataError as e:
            _fail(str(e))
    if standard:
        from img2prog.data.testsets import standard_bar

        bar = standard_bar().union(bar)
    return bar


def _progress(total: int, desc: str):
    from tqdm import tqdm

    # disable=None: a bar on terminals only, so logs and captured stderr stay clean.
    return tqdm(total=total, desc=desc, unit="sample", dynamic_ncols=True, leave=False, disable=None)


def _check_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        _fail(f"{out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / "dataset_info.json").is_file():
        _fail(f"{out}: folder is not empty and holds no dataset; choose a new --out folder")


@app.command()
def generate(
    n: int = typer.Option(..., "--n", min=0, help="Exactly this many samples."),
    out: Path = typer.Option(..., "--out", help="Dataset folder to write (columns program, image, profile)."),
    seed: int = typer.Option(0, "--seed", help="Random seed: the same seed gives the same dataset."),
    profile: str = typer.Option(
        "default", "--profile", help="Profile, mixture ('mixed') or weighted mix ('default=0.7,hard=0.3')."
    ),
    bar: list[Path] | None = typer.Option(
        None, "--bar", help="JSONL file (a 'program' per line) or dataset folder of programs to exclude; repeatable."
    ),
    no_standard_bar: bool = typer.Option(
        False, "--no-standard-bar", help="Do not bar the standard test sets (they are barred by default)."
    ),
    size: int = typer.Option(256, "--size", min=1, max=8192, help="Image size of the dataset."),
    workers: int = typer.Option(0, "--workers", min=0, help="Processes (0: one per CPU core)."),
) -> None:
    """Generate a handcrafted dataset with quality guarantees.

    Every sample renders, has canvas coverage within its profile's bounds, has no operand
    whose removal leaves the image unchanged, uses quad angles that are multiples of 45, is
    not barred (by spelling or by image), and no two samples share a canonical program or an
    image. Profiles: see `img2prog data profiles`.
    """
    from img2prog.data.handcrafted import GENERATOR_VERSION, GenerationStalled
    from img2prog.data.handcrafted import generate as run
    from img2prog.data.io import programs_to_dataset, save_dataset
    from img2prog.data.profiles import parse_mixture

    try:
        mixture = parse_mixture(profile)
    except (KeyError, ValueError) as e:
        _fail(str(e.args[0]))
    _check_out(out)
    barset = _bar(bar, not no_standard_bar)
    t0 = time.perf_counter()
    try:
        with _progress(n, "generate") as bar_ui:
            last = [0]

            def progress(done: int) -> None:
                bar_ui.update(done - last[0])
                last[0] = done

            result = run(n, seed, mixture, bar=barset, workers=workers or None, image_size=256, progress=progress)
    except GenerationStalled as e:
        _fail(str(e))
    seconds = time.perf_counter() - t0
    programs = [s.program for s in result.samples]
    ds = programs_to_dataset(programs, size=size, extra_columns={"profile": [s.profile for s in result.samples]})
    save_dataset(ds, out)
    recipe = {
        "generator": GENERATOR_VERSION,
        "n": n,
        "seed": seed,
        "profile": mixture.spec(),
        "block_size": 64,
        "image_size": size,
        "barred_programs": len(barset),
        "bar_files": [str(b) for b in bar or []],
        "standard_test_sets_barred": not no_standard_bar,
        "rejected": dict(result.rejected),
        "seconds": round(seconds, 2),
    }
    (out / "generation.json").write_text(json.dumps(recipe, indent=2) + "\n")
    typer.echo(f"wrote {len(programs)} samples to {out} ({seconds:.1f}s)")


@app.command()
def naive(
    n: int = typer.Option(..., "--n", min=0, help="Number of samples."),
    out: Path = typer.Option(..., "--out", help="Dataset folder to write."),
    seed: int = typer.Option(0, "--seed", help="Random seed."),
) -> None:
    """Baseline: a naive random generator WITHOUT quality guarantees (for comparisons only).

    Uniform random trees of 1-5 primitives with uniform parameters; only renderability is
    checked. Nothing is barred — do not train on its output.
    """
    from img2prog.data.io import programs_to_dataset, save_dataset
    from img2prog.data.naive import naive_programs

    _check_out(out)
    save_dataset(programs_to_dataset(naive_programs(n, seed)), out)
    typer.echo(f"wrote {n} naive samples to {out}")


@app.command()
def analyze(
    dataset: Path = typer.Argument(..., help="Dataset folder, JSONL file of programs, or a test-set name."),
    against: list[Path] | None = typer.Option(None, "--against", help="Other datasets to put side by side; repeatable."),
    out: Path | None = typer.Option(None, "--out", help="Report folder (default: DATASET-analysis next to it)."),
    name: list[str] | None = typer.Option(None, "--name", help="Display names, in order (default: folder names)."),
    workers: int = typer.Option(0, "--workers", min=0, help="Processes (0: automatic)."),
    no_plots: bool = typer.Option(False, "--no-plots", help="Skip the PNG plots (report.json and report.md only)."),
) -> None:
    """Analyse dataset quality: degenerate operations, duplicates, constructs, distributions.

    Writes report.json, report.md and PNG plots (quality, structure, parameters, coverage,
    heatmap, samples). With --against, the datasets are compared side by side.
    """
    from img2prog.data.analysis import analyze as run
    from img2prog.data.analysis import load_for_analysis, markdown_table, write_report
    from img2prog.data.io import DataError

    paths = [dataset] + list(against or [])
    if name and len(name) != len(paths):
        _fail(f"--name given {len(name)} times for {len(paths)} datasets")
    reports, samples = [], []
    for i, p in enumerate(paths):
        try:
            programs, images, label = load_for_analysis(p)
        except DataError as e:
            _fail(str(e))
        label = name[i] if name else label
        if label in [r["name"] for r in reports]:
            label = f"{label} ({i + 1})"
        reports.append(run(programs, images, name=label, workers=workers or None))
        samples.append(programs[:8])
    if out is None:
        base = dataset if dataset.exists() else Path(str(dataset))
        out = base.parent / f"{base.name}-analysis"
    write_report(reports, out, samples, plots=not no_plots)
    typer.echo(markdown_table(reports))
    typer.echo(f"\nreport: {out / 'report.md'}")


@app.command()
def evolve(
    n: int = typer.Option(500, "--n", min=0, help="Exactly this many samples (handcrafted ones included)."),
    out: Path = typer.Option(..., "--out", help="Run folder: the dataset, plus evolve/ with progress for resuming."),
    seeds: Path | None = typer.Option(
        None, "--seeds", help="JSONL or dataset folder of seed programs (default: the SPEC's five seeds)."
    ),
    bar: list[Path] | None = typer.Option(None, "--bar", help="JSONL file or dataset folder of programs to exclude; repeatable."),
    no_standard_bar: bool = typer.Option(False, "--no-standard-bar", help="Do not bar the standard test sets."),
    mutator: str = typer.Option("symbolic", "--mutator", help="symbolic or model."),
    model: str | None = typer.Option(None, "--model", help="Model backend for --mutator model."),
    model_option: list[str] | None = typer.Option(None, "--model-option", help="key=value passed to the model backend; repeatable."),
    fitness: str = typer.Option(
        "none", "--fitness", help="none, nondegenerate, novelty, complexity, or a weighted mix 'novelty=2,nondegenerate=1'."
    ),
    filter_: str = typer.Option(
        "strict", "--filter", help="strict: the handcrafted guarantees; valid: only renderable, new, unbarred (seed protocol)."
    ),
    population: int = typer.Option(100, "--population", min=1, help="Population size (most recent archive members)."),
    children: int = typer.Option(32, "--children", min=1, help="Proposals per generation."),
    tournament: int = typer.Option(4, "--tournament", min=1, help="Tournament size of fitness-biased selection."),
    coverage: str = typer.Option("0.05,0.75", "--coverage", help="Coverage bounds LO,HI of the strict filter."),
    handcrafted: int = typer.Option(0, "--handcrafted", min=0, help="Hybrid mode: the first K samples are handcrafted."),
    profile: str = typer.Option("default", "--profile", help="Profile of the handcrafted samples."),
    seed: int = typer.Option(0, "--seed", help="Random seed."),
) -> None:
    """Evolve a dataset: select parents by fitness, mutate, keep what passes the filters.

    Resumable: run the same command again to continue an interrupted run (or raise --n to
    extend a finished one). Every sample records its lineage (parent, generation, mutation).
    """
    from img2prog.data.evolve import SPEC_SEEDS, Evolution, EvolutionError, EvolveConfig, save_evolution
    from img2prog.data.io import DataError, load_programs
    from img2prog.data.mutators import NoModelError

    seed_programs = SPEC_SEEDS
    if seeds is not None:
        try:
            seed_programs = tuple(load_programs(seeds))
        except DataError as e:
            _fail(str(e))
    options = {}
    for kv in model_option or []:
        k, sep, v = kv.partition("=")
        if not sep:
            _fail(f"--model-option {kv!r}: expected key=value")
        options[k] = v
    try:
        lo, hi = (float(x) for x in coverage.split(","))
    except ValueError:
        _fail(f"--coverage {coverage!r}: expected LO,HI, e.g. 0.05,0.75")
    try:
        config = EvolveConfig(
            n=n, seed=seed, seeds=seed_programs, mutator=mutator, model=model, model_options=options,
            fitness=fitness, population=population, children=children, tournament=tournament,
            filter=filter_, coverage=(lo, hi), handcrafted=handcrafted, profile=profile,
            bar_standard=not no_standard_bar,
        )
    except (ValueError, KeyError) as e:
        _fail(str(e.args[0]))
    barset = _bar(bar, False)  # Evolution adds the standard sets itself
    try:
        evo = Evolution(config, barset, out)
        evo.start()  # seeds, resume checks: fail before any progress output
    except (NoModelError, EvolutionError) as e:
        _fail(str(e))
    with _progress(n, "evolve") as ui:
        def progress(done: int, total: int) -> None:
            ui.n = done
            ui.refresh()

        evo.progress = progress
        try:
            evo.run()
        except EvolutionError as e:
            ui.close()
            _fail(str(e))
    save_evolution(evo, out)
    s = evo.summary()
    typer.echo(
        f"wrote {s['samples']} samples to {out} ({s['generations']} generations, "
        f"{s['proposed']} proposals, acceptance {100 * s['acceptance']:.1f}%)"
    )


@app.command()
def testset(
    name: str | None = typer.Argument(None, help="Test set name (e.g. csg2d-test, csg2d-hard@1)."),
    out: Path | None = typer.Option(None, "--out", help="Dataset folder to write (with recipe.json)."),
    size: int = typer.Option(256, "--size", min=1, max=8192, help="Image size."),
    list_: bool = typer.Option(False, "--list", help="List the standard test sets."),
) -> None:
    """Write one of the project's standard held-out test sets (and its recipe)."""
    from img2prog.data.testsets import get_recipe, testset_names, write_testset

    if list_ or name is None:
        for t in testset_names():
            r = get_recipe(t)
            typer.echo(f"{r.key:22s} n={r.n:<4d} {r.description}")
        if name is None:
            return
    try:
        recipe = get_recipe(name)
    except KeyError as e:
        _fail(str(e.args[0]))
    if out is None:
        _fail("missing --out FOLDER")
    _check_out(out)
    write_testset(recipe.key, out, size)
    typer.echo(f"wrote {recipe.key} ({recipe.n} samples) to {out}")


@app.command()
def profiles() -> None:
    """List the generator profiles and mixtures."""
    from img2prog.data.profiles import MIXTURES, PROFILES

    for p in PROFILES.values():
        lo, hi = p.primitive_range
        typer.echo(
            f"{p.name:8s} primitives {lo}-{hi}, depth <= {p.max_depth}, coverage "
            f"{p.coverage[0]:.2f}-{p.coverage[1]:.2f}: {p.description}"
        )
    for name, parts in MIXTURES.items():
        typer.echo(f"{name:8s} mixture: " + ", ".join(f"{n} {w:g}" for n, w in parts))
