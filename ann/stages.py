"""The workflow's ann steps as plain functions of paths and config sections.

Each step reads its inputs, does one thing and writes its outputs atomically; the
Snakemake scripts in workflow/scripts call these and nothing else.
"""

import logging
from collections.abc import Mapping
from pathlib import Path

from .io import save_csv, save_torch
from .models import create_model
from .priors import load_kappa, prior_weights
from .train import file_sha256, run_from_config, train

log = logging.getLogger(__name__)


def build_prior(model: str, prior: str, seed: int, kappa_path: str | Path, priors: Mapping,
                out: str | Path) -> None:
    """Initial quadratic coefficients of `model` for (prior, seed) from a kappa.nc."""
    network = create_model(model)
    weights = prior_weights(network, prior, load_kappa(kappa_path), seed=seed,
                            fraction_inhibitory=priors["fraction_inhibitory"],
                            init_ratio=priors["init_ratio"])
    save_torch({"model": model, "prior": prior, "seed": seed, "weights": weights,
                "kappa_sha256": file_sha256(kappa_path), "kappa_path": str(kappa_path)}, out)
    sizes = {name: tuple(w.shape) for name, w in weights.items()}
    log.info("%s prior for %s seed %d: layers %s", prior, model, seed, sizes)


def train_run(config: Mapping, dataset: str, model: str, prior: str, seed: int, out_dir: str | Path,
              prior_file: str | Path | None, threads: int) -> None:
    """Train one run of the experiment grid into out_dir (resuming from its checkpoint)."""
    run = run_from_config(config, dataset, model, prior, seed, Path(out_dir),
                          prior_file=Path(prior_file) if prior_file else None, threads=threads)
    summary = train(run)
    log.info("%s %s %s seed %d: test top-1 %.4f", dataset, model, prior, seed,
             summary["final"]["test_top1"])


def theory_gaussian(gaussian: Mapping, outputs: Mapping[str, str | Path]) -> None:
    """Quadratic neuron vs MLP on Gaussian classes: the tables as CSV and three figures."""
    from . import theory

    tables = theory.gaussian_experiment(dict(gaussian))
    for name in ("bayes", "accuracy", "similarity", "sweep", "sweep_summary"):
        save_csv(tables[name], outputs[name])
    theory.plot_decision_boundaries(outputs["boundaries_png"], dict(gaussian), seed=gaussian["seeds"][0])
    theory.plot_accuracy_vs_samples(tables["sweep"], outputs["sweep_png"])
    theory.plot_similarity(tables["similarity"], outputs["similarity_png"])
    log.info("Gaussian theory: %s", tables["timing"].to_dict("records"))


def summarise_dataset(metrics: list[str | Path], outputs: Mapping[str, str | Path]) -> None:
    """The runs of one dataset: a table per run, mean/std per model and prior, two figures."""
    from . import summary

    runs = summary.load_runs(metrics)
    table = summary.summarise(runs)
    save_csv(runs, outputs["runs"])
    save_csv(table, outputs["summary"])
    summary.plot_training_curves(runs, outputs["curves"])
    summary.plot_prior_ablation(table, outputs["ablation"])
    log.info("%s: %d runs\n%s", runs.dataset.iloc[0], len(runs),
             table[["model", "prior", "seeds", "top1_mean", "top1_std"]].to_string(index=False))


def build_report(config: Mapping, out_dir: str | Path, templates: str | Path, cells: Mapping,
                 datasets: Mapping, theory: Mapping) -> None:
    """The linked HTML pages of the whole run (see ann.report)."""
    from . import report as pages

    report = pages.Report(out_dir, templates, config)
    for cell, inputs in cells.items():
        pages.dendrite_page(report, cell, inputs["kappa"], inputs["figures"])
    kappa = cells[config["priors"]["cell"]]["kappa"]
    trained = {}
    for dataset in pages.DATASETS:
        inputs = datasets.get(dataset)
        if inputs:
            trained[dataset] = len(inputs["metrics"])
        pages.dataset_page(report, dataset, config["datasets"][dataset],
                           inputs["summary"] if inputs else None, inputs["runs"] if inputs else None,
                           inputs["figures"] if inputs else {}, kappa)
    pages.theory_page(report, theory["tables"], theory["figures"])
    pages.index_page(report, trained)
    log.info("report written to %s", Path(out_dir) / "index.html")
