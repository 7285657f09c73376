"""The low-data prior experiment's steps (workflow/rules/prior_lowdata.smk; ann.lowdata): the
learning-rate choice and the anchor-strength sweep on validation draws, the runs of one
evaluation seed, and the analysis of all of them."""

import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

from .files import save_csv, save_figure

log = logging.getLogger(__name__)


def _inputs(section: Mapping, priors: Mapping, kappa_paths: Mapping[str, str], root: str | None):
    from ann.data import load_dataset
    from ann.priors import load_kappa
    from ann.settings import LowDataConfig, PriorSettings

    config = LowDataConfig.from_mapping(section)
    settings = PriorSettings.from_mapping(priors)
    kappas = {cell: load_kappa(path) for cell, path in kappa_paths.items()}
    train = load_dataset("fashion_mnist", root, "train")
    test = load_dataset("fashion_mnist", root, "test")
    return config, settings, kappas, train, test


def _lr(lr_sweep: str | Path) -> float:
    from ann.lowdata import chosen_lr

    return chosen_lr(pd.read_csv(lr_sweep))


def choose_lr(
    section: Mapping, priors: Mapping, kappa_paths: Mapping[str, str], root: str | None,
    output: str | Path,
) -> None:  # fmt: skip
    """Validation top-1 of the paper's model (zero, init) at every lr of the grid."""
    from ann.engine import torch_threads
    from ann.lowdata import chosen_lr, lr_sweep

    config, settings, _, train, test = _inputs(section, priors, kappa_paths, root)
    with torch_threads(config.threads):
        runs = lr_sweep(train, test, config, settings)
    save_csv(runs, output)
    log.info("learning rate chosen on validation: %g\n%s", chosen_lr(runs),
             runs.groupby("lr").validation_top1.mean().to_string())  # fmt: skip


def anchor_sweep(
    section: Mapping, priors: Mapping, kappa_paths: Mapping[str, str], root: str | None,
    lr_sweep: str | Path, output: str | Path,
) -> None:  # fmt: skip
    """zero+anchor and bio+anchor at every anchor strength, on the validation draws."""
    from ann.engine import torch_threads
    from ann.lowdata import strength_sweep

    config, settings, kappas, train, test = _inputs(section, priors, kappa_paths, root)
    with torch_threads(config.threads):
        runs = strength_sweep(train, test, config, settings, kappas, _lr(lr_sweep))
    save_csv(runs, output)


def seed_runs(
    section: Mapping, priors: Mapping, kappa_paths: Mapping[str, str], root: str | None,
    lr_sweep: str | Path, anchor_sweep_file: str | Path, seed: int, output: str | Path,
) -> None:  # fmt: skip
    """Every arm of one evaluation seed, at the learning rate and anchor strength chosen on
    validation."""
    from ann.engine import torch_threads
    from ann.lowdata import chosen_strength
    from ann.lowdata import seed_runs as runs_of

    config, settings, kappas, train, test = _inputs(section, priors, kappa_paths, root)
    strength = chosen_strength(pd.read_csv(anchor_sweep_file))
    start = time.perf_counter()
    with torch_threads(config.threads):
        runs = runs_of(train, test, config, settings, kappas, int(seed), _lr(lr_sweep), strength)
    save_csv(runs, output)
    log.info("seed %d: %d runs in %.1f s\n%s", seed, len(runs), time.perf_counter() - start,
             runs[["prior", "mode", "final_test_top1", "corr_with_prior"]].to_string())  # fmt: skip


def analyse(
    section: Mapping,
    statistics: Mapping,
    run_files: Sequence[str | Path],
    lr_sweep: str | Path,
    anchor_sweep_file: str | Path,
    outputs: Mapping[str, str | Path],
) -> None:
    """The paired contrasts (ann.statistics), the survival table and the figures."""
    from ann import ablation, lowdata
    from ann.settings import LowDataConfig

    from .ablation import declared_contrasts

    config = LowDataConfig.from_mapping(section)
    runs = pd.concat([pd.read_csv(path) for path in run_files], ignore_index=True)
    runs["mode"] = runs["mode"].fillna("init")
    metrics = [statistics["endpoint"], *ablation.EXPLORATORY_LOWDATA]
    table = declared_contrasts(runs, config.priors, metrics, statistics)
    margin = statistics["margin_pp"] / 100
    survival = lowdata.survival(pd.read_csv(anchor_sweep_file), margin)
    save_csv(runs, outputs["runs"])
    save_csv(table, outputs["statistics"])
    save_csv(survival, outputs["survival"])
    figure = ablation.plot_contrasts(table, statistics["endpoint"], statistics["alpha"])
    save_figure(figure, outputs["differences"])
    save_figure(ablation.plot_survival(survival, margin), outputs["survival_png"])
    cpu = runs.seconds.sum() + pd.read_csv(lr_sweep).seconds.sum()
    cpu += pd.read_csv(anchor_sweep_file).seconds.sum()
    log.info("low-data experiment: %d evaluation runs, %.0f s of CPU time in all", len(runs), cpu)
    for sentence in table[table.role == "primary"].sentence:
        log.info("%s", sentence)
    draws = pd.read_csv(anchor_sweep_file).seed.nunique()
    log.info("%s", lowdata.survival_answer(survival, margin, draws))
