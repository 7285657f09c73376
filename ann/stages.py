"""The workflow's ann steps as plain functions of paths and config sections.

Each step reads its inputs, does one thing and writes its outputs atomically; the
Snakemake scripts in workflow/scripts call these and nothing else.
"""

import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from .engine import file_sha256, run_from_config, train
from .errors import TrainingError
from .io import replace_folder, save_csv, save_json, save_torch
from .models import create_model
from .priors import load_kappa, prior_weights

if TYPE_CHECKING:
    from .report import Report

log = logging.getLogger(__name__)


def build_prior(
    model: str, prior: str, seed: int, kappa_path: str | Path, priors: Mapping, out: str | Path
) -> None:
    """Initial quadratic coefficients of `model` for (prior, seed) from a kappa.nc: shuffled,
    or bio and every other named biological prior (built like bio from its own cell's kappa;
    the same seed draws the same channel types and sites for each)."""
    network = create_model(model)
    weights = prior_weights(
        network,
        prior if prior in ("zero", "shuffled") else "bio",
        load_kappa(kappa_path),
        seed=seed,
        fraction_inhibitory=priors["fraction_inhibitory"],
        init_ratio=priors["init_ratio"],
        diagonal=priors.get("diagonal", "zero"),
    )
    save_torch(
        {
            "model": model,
            "prior": prior,
            "seed": seed,
            "weights": weights,
            "kappa_sha256": file_sha256(kappa_path),
            "kappa_path": str(kappa_path),
        },
        out,
    )
    sizes = {name: tuple(w.shape) for name, w in weights.items()}
    log.info("%s prior for %s seed %d: layers %s", prior, model, seed, sizes)


def prior_statistics(
    model: str,
    kappa_paths: Mapping[str, str | Path],
    cells: Mapping[str, str],
    priors: Mapping,
    outputs: Mapping[str, str | Path],
) -> None:
    """What each named prior looks like on the first Dit layer of `model` (seed 0): the kappa
    of its cell beside its K's sign structure and eigen-spectrum (ann.prior_statistics), as a
    table (CSV) and a figure."""
    from . import prior_statistics as stats
    from .layers import DitQuadratic

    layer = next(m for m in create_model(model).modules() if isinstance(m, DitQuadratic))
    c_out, c_in = layer.weight.shape[0], round(layer.weight.shape[1] ** 0.5)
    kappas = {name: load_kappa(path) for name, path in kappa_paths.items()}
    built = stats.layer_priors(kappas, c_in, c_out, priors)
    table = stats.statistics_table(built, cells)
    table.insert(0, "layer", f"{model} first Dit layer ({c_in} -> {c_out} channels)")
    save_csv(table, outputs["table"])
    stats.statistics_figure(built, kappas, cells, outputs["figure"])
    signs, spectrum = stats.summary_tables(table)
    log.info("K of %s:\n%s\n%s", model, signs.to_string(index=False), spectrum.to_string())


def train_run(
    config: Mapping,
    dataset: str,
    model: str,
    prior: str,
    seed: int,
    out_dir: str | Path,
    prior_file: str | Path | None,
    threads: int,
    processes: int = 1,
) -> None:
    """Train one run of the experiment grid into out_dir (resuming from its checkpoint).

    With processes > 1 the run goes through torchrun on this node (DistributedDataParallel:
    one process per GPU, or CPU processes with the gloo backend).
    """
    out_dir = Path(out_dir)
    if processes > 1:
        _train_with_torchrun(
            config, dataset, model, prior, seed, out_dir, prior_file, threads, processes
        )
        return
    run = run_from_config(
        config,
        dataset,
        model,
        prior,
        seed,
        out_dir,
        prior_file=Path(prior_file) if prior_file else None,
        threads=threads,
    )
    summary = train(run)
    log.info(
        "%s %s %s seed %d: test top-1 %.4f",
        dataset,
        model,
        prior,
        seed,
        summary["final"]["test_top1"],
    )


def _train_with_torchrun(
    config: Mapping,
    dataset: str,
    model: str,
    prior: str,
    seed: int,
    out_dir: Path,
    prior_file: str | Path | None,
    threads: int,
    processes: int,
) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    config_file = out_dir / "run_config.yaml"
    config_file.write_text(yaml.safe_dump(dict(config), sort_keys=False))
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={processes}",
        "-m",
        "ann.train",
        "--config",
        str(config_file),
        "--dataset",
        dataset,
        "--model",
        model,
        "--prior",
        prior,
        "--seed",
        str(seed),
        "--out",
        str(out_dir),
        "--threads",
        str(max(1, threads // processes)),
    ]
    if prior_file:
        command += ["--prior-file", str(prior_file)]
    log.info("launching: %s", " ".join(command))
    env = {**os.environ, "OMP_NUM_THREADS": str(max(1, threads // processes))}
    result = subprocess.run(command, env=env)
    if result.returncode != 0:
        raise TrainingError(
            f"torchrun with {processes} processes failed (exit code "
            f"{result.returncode}); see the messages above."
        )


def theory_gaussian(gaussian: Mapping, outputs: Mapping[str, str | Path]) -> None:
    """Quadratic neuron vs MLP on Gaussian classes: the tables as CSV and three figures."""
    from . import theory

    tables = theory.gaussian_experiment(dict(gaussian))
    for name in ("bayes", "accuracy", "similarity", "sweep", "sweep_summary"):
        save_csv(tables[name], outputs[name])
    theory.plot_decision_boundaries(
        outputs["boundaries_png"], dict(gaussian), seed=gaussian["seeds"][0]
    )
    theory.plot_accuracy_vs_samples(tables["sweep"], outputs["sweep_png"])
    theory.plot_similarity(tables["similarity"], outputs["similarity_png"])
    log.info("Gaussian theory: %s", tables["timing"].to_dict("records"))


def theory_fewshot(fewshot: Mapping, root: str | None, outputs: Mapping[str, str | Path]) -> None:
    """Few-shot Fashion-MNIST: plain against quadratic models as the training set shrinks."""
    from . import fewshot as experiment

    tables = experiment.fewshot_experiment(dict(fewshot), root=root)
    save_csv(tables["runs"], outputs["runs"])
    save_csv(tables["summary"], outputs["summary"])
    save_csv(tables["sweep"], outputs["sweep"])
    experiment.plot_fewshot(tables["summary"], outputs["figure"])
    log.info("few-shot summary:\n%s", tables["summary"].to_string(index=False))


def summarise_dataset(metrics: list[str | Path], outputs: Mapping[str, str | Path]) -> None:
    """The runs of one dataset: a table per run, mean/std per model and prior, two figures."""
    from . import summary

    runs = summary.load_runs(metrics)
    table = summary.summarise(runs)
    save_csv(runs, outputs["runs"])
    save_csv(table, outputs["summary"])
    summary.plot_training_curves(runs, outputs["curves"])
    summary.plot_prior_ablation(table, outputs["ablation"])
    log.info(
        "%s: %d runs\n%s",
        runs.dataset.iloc[0],
        len(runs),
        table[["model", "prior", "seeds", "top1_mean", "top1_std"]].to_string(index=False),
    )


def build_report(
    config: Mapping,
    out_dir: str | Path,
    templates: str | Path,
    cells: Mapping,
    datasets: Mapping,
    theory: Mapping,
    priors: Mapping | None = None,
    ablation: Mapping | None = None,
) -> None:
    """The linked HTML pages of the whole run (see ann.report), built in a folder beside
    out_dir that replaces it only when complete; manifest.json lists the pages. `priors`
    (table, figure of the prior_statistics step) adds the priors page; `ablation`: the prior
    ablation's page inputs (ann.ablation_stages.ablation_page), None when it is off."""
    from .report import Report

    out_dir = Path(out_dir)
    staged = out_dir.with_name(f".{out_dir.name}.building")
    shutil.rmtree(staged, ignore_errors=True)
    try:
        report = Report(staged, templates, config)
        report.common["priors_page"] = bool(priors)  # the navigation links the page
        if ablation is not None:  # the navigation links the page, the index gives its answer
            from .ablation_stages import ablation_answers

            report.common |= {"ablation_page": True, "ablation_answers": ablation_answers(ablation)}
        _write_pages(report, config, cells, datasets, theory)
        if priors:
            from .prior_statistics import priors_page

            priors_page(report, priors["table"], priors["figure"])
        if ablation is not None:
            from .ablation_stages import ablation_page

            ablation_page(report, ablation)
        written = sorted(path.relative_to(staged).as_posix() for path in staged.rglob("*.html"))
        save_json({"pages": written}, staged / "manifest.json")
        replace_folder(staged, out_dir)
    finally:
        shutil.rmtree(staged, ignore_errors=True)
    log.info("report written to %s", out_dir / "index.html")


def _write_pages(
    report: "Report", config: Mapping, cells: Mapping, datasets: Mapping, theory: Mapping
) -> None:
    from . import report as pages

    for cell, inputs in cells.items():
        pages.dendrite_page(
            report, cell, inputs["kappa"], inputs["figures"], psp_path=inputs.get("psp")
        )
    kappa = cells[config["priors"]["cell"]]["kappa"]
    for dataset in pages.DATASETS:
        inputs = datasets.get(dataset)
        pages.dataset_page(
            report,
            dataset,
            config["datasets"][dataset],
            inputs["summary"] if inputs else None,
            inputs["runs"] if inputs else None,
            inputs["figures"] if inputs else {},
            kappa,
        )
    pages.theory_page(report, theory["tables"], theory["figures"])
    trained = {name: datasets[name] for name in pages.DATASETS if datasets.get(name)}
    pages.index_page(report, {cell: inputs["kappa"] for cell, inputs in cells.items()}, trained)
