"""The theory experiments (ann.theory): their tables as CSV and their figures.

The names of the files are here, for the rules (workflow/rules/theory.smk imports them when
the workflow is read, so ann, and torch, are imported only when a step runs)."""

import logging
from collections.abc import Mapping
from pathlib import Path

from .files import save_csv, save_figure

log = logging.getLogger(__name__)

# The tables of the Gaussian experiment written as gaussian_<name>.csv, and its figures:
# output name -> file name (figures/<file name>.png).
GAUSSIAN_TABLES = ("bayes", "accuracy", "similarity", "sweep", "sweep_summary")
GAUSSIAN_FIGURES = {
    "boundaries_png": "decision_boundaries",
    "sweep_png": "accuracy_vs_samples",
    "similarity_png": "quadratic_similarity",
}
FEWSHOT_TABLES = ("runs", "summary", "sweep")


def theory_gaussian(config: Mapping, outputs: Mapping[str, str | Path]) -> None:
    """Quadratic neuron vs MLP on Gaussian classes: the tables as CSV and three figures."""
    from ann.theory import figures, gaussian

    section = gaussian.GaussianConfig.from_mapping(config)
    tables = gaussian.gaussian_experiment(section)
    for name in GAUSSIAN_TABLES:
        save_csv(tables[name], outputs[name])
    boundaries = figures.plot_decision_boundaries(section, seed=section.seeds[0])
    save_figure(boundaries, outputs["boundaries_png"])
    save_figure(figures.plot_accuracy_vs_samples(tables["sweep"]), outputs["sweep_png"])
    save_figure(figures.plot_similarity(tables["similarity"]), outputs["similarity_png"])
    log.info("Gaussian theory: %s", tables["timing"].to_dict("records"))


def theory_fewshot(config: Mapping, root: str | None, outputs: Mapping[str, str | Path]) -> None:
    """Few-shot Fashion-MNIST: plain against quadratic models as the training set shrinks."""
    from ann.theory import fewshot

    tables = fewshot.fewshot_experiment(fewshot.FewShotConfig.from_mapping(config), root=root)
    for name in FEWSHOT_TABLES:
        save_csv(tables[name], outputs[name])
    save_figure(fewshot.plot_fewshot(tables["summary"]), outputs["figure"])
    log.info("few-shot summary:\n%s", tables["summary"].to_string(index=False))
