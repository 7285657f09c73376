"""The Gaussian experiment (Theorem 5 of Liu et al. 2024): Bayes accuracy, both models
trained on the talk's example and on a random k x d problem, accuracy against the number
of training samples. Every table is tidy; docs/theory.md explains what they show."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ann.engine import torch_threads
from ann.sections import checked_keys

from .bayes import bayes_accuracy, bayes_predict, best_bayes_estimate
from .fit import MLPClassifier, quadratic_similarity, train_mlp, train_quadratic_neuron
from .problems import (
    TALK_EXAMPLE_NAME,
    TEST_STREAM,
    TRAIN_STREAM,
    GaussianClasses,
    QuadraticParams,
    random_gaussian_classes,
    sample_gaussian_classes,
    stream_rng,
    talk_example,
)


@dataclass(frozen=True)
class GaussianConfig:
    """The `theory.gaussian` section. The defaults are the schema's (tests/test_config_sections.py
    checks that they agree); the random sweep problem is `random_gaussian_classes(sweep_classes,
    sweep_dims, sweep_problem_seed, sweep_spread, sweep_eig_range)`, the seeds vary the training
    sample and the MLP's initialisation, the test set (n_test points) is shared by all seeds and
    sizes, and `sweep_talk_example` adds the talk's example to the sweep."""

    n_train: int = 1000
    n_test: int = 100_000
    seeds: tuple[int, ...] = (0, 1, 2)
    mlp_hidden: int = 64
    mlp_steps: int = 2000
    mlp_lr: float = 0.01
    mlp_batch_size: int = 256
    quad_steps: int = 500
    sweep_sizes: tuple[int, ...] = (10, 30, 100, 300, 1000, 3000, 10000)
    sweep_classes: int = 3
    sweep_dims: int = 4
    sweep_seeds: tuple[int, ...] = (0, 1, 2)
    sweep_problem_seed: int = 0
    sweep_spread: float = 1.0
    sweep_eig_range: tuple[float, float] = (0.2, 2.0)
    sweep_talk_example: bool = True
    monte_carlo_samples: int = 1_000_000
    monte_carlo_seed: int = 12345
    torch_threads: int | None = 1

    @classmethod
    def from_mapping(cls, values: Mapping | None, where: str = "theory.gaussian") -> GaussianConfig:
        """The section from the config (missing keys take their defaults); an unknown key is a
        ConfigError that names it."""
        values = dict(values or {})
        checked_keys(cls, values, where)
        for key, value in values.items():
            if isinstance(value, list):
                values[key] = tuple(value)
        return cls(**values)


def resolve_config(config: Mapping | GaussianConfig | None) -> GaussianConfig:
    """`config` as a GaussianConfig (a mapping goes through from_mapping)."""
    if isinstance(config, GaussianConfig):
        return config
    return GaussianConfig.from_mapping(config)


def sweep_problem(config: Mapping | GaussianConfig | None = None) -> GaussianClasses:
    cfg = resolve_config(config)
    return random_gaussian_classes(
        cfg.sweep_classes,
        cfg.sweep_dims,
        cfg.sweep_problem_seed,
        cfg.sweep_spread,
        cfg.sweep_eig_range,
    )


def train_both(
    classes: GaussianClasses, n_train: int, seed: int, cfg: GaussianConfig
) -> tuple[np.ndarray, np.ndarray, QuadraticParams, MLPClassifier]:
    X, y = sample_gaussian_classes(classes, n_train, stream_rng(seed, TRAIN_STREAM, n_train))
    quad = train_quadratic_neuron(X, y, classes.k, cfg.quad_steps)
    mlp = train_mlp(
        X,
        y,
        classes.k,
        seed,
        cfg.mlp_hidden,
        cfg.mlp_steps,
        cfg.mlp_lr,
        cfg.mlp_batch_size,
    )
    return X, y, quad, mlp


def _accuracy_rows(
    classes: GaussianClasses,
    sizes: Sequence[int],
    seeds: Sequence[int],
    cfg: GaussianConfig,
    bayes_acc: float,
    problem: str,
) -> tuple[list[dict[str, Any]], dict[tuple[int, int], QuadraticParams]]:
    X_test, y_test = sample_gaussian_classes(classes, cfg.n_test, stream_rng(0, TEST_STREAM))
    bayes_test_acc = float(np.mean(bayes_predict(classes, X_test) == y_test))
    rows, quads = [], {}
    for n_train in sizes:
        for seed in seeds:
            _, _, quad, mlp = train_both(classes, int(n_train), int(seed), cfg)
            quads[int(n_train), int(seed)] = quad
            for model, predictor in (("quadratic", quad), ("mlp", mlp)):
                acc = float(np.mean(predictor.predict(X_test) == y_test))
                rows.append(
                    {
                        "problem": problem,
                        "model": model,
                        "seed": int(seed),
                        "n_train": int(n_train),
                        "test_acc": acc,
                        "bayes_acc": bayes_acc,
                        "gap": bayes_acc - acc,
                        "bayes_test_acc": bayes_test_acc,
                    }
                )
    return rows, quads


def summarise_sweep(sweep: pd.DataFrame) -> pd.DataFrame:
    """Mean and std (ddof=1) of test accuracy over seeds per problem x model x n_train."""
    grouped = sweep.groupby(["problem", "model", "n_train"], as_index=False)
    return grouped.agg(
        test_acc_mean=("test_acc", "mean"),
        test_acc_std=("test_acc", "std"),
        gap_mean=("gap", "mean"),
        bayes_acc=("bayes_acc", "first"),
        n_seeds=("seed", "nunique"),
    )


def sample_size_sweep(
    classes: GaussianClasses,
    config: Mapping | GaussianConfig | None = None,
    problem: str = "random",
    bayes_acc: float | None = None,
) -> pd.DataFrame:
    """Tidy accuracy table over sweep_sizes x sweep_seeds for both models."""
    cfg = resolve_config(config)
    if bayes_acc is None:
        bayes_acc = best_bayes_estimate(
            bayes_accuracy(classes, cfg.monte_carlo_samples, cfg.monte_carlo_seed)
        )
    with torch_threads(cfg.torch_threads):
        rows, _ = _accuracy_rows(classes, cfg.sweep_sizes, cfg.sweep_seeds, cfg, bayes_acc, problem)
    return pd.DataFrame(rows)


def gaussian_experiment(config: Mapping | GaussianConfig | None = None) -> dict[str, pd.DataFrame]:
    """The full default experiment; every table is tidy.

    bayes: problem, method, accuracy, error, n_samples.
    accuracy: the talk's example at n_train, per model x seed (test_acc, bayes_acc, gap, ...).
    similarity: seed, class, cosine, cosine_difference, relative_error_difference.
    sweep / sweep_summary: accuracy versus n_train for the random k x d problem (and the
    talk's example when sweep_talk_example), per seed and aggregated over seeds.
    timing: stage, seconds.
    """
    cfg = resolve_config(config)
    with torch_threads(cfg.torch_threads):
        return _gaussian_experiment(cfg)


def _gaussian_experiment(cfg: GaussianConfig) -> dict[str, pd.DataFrame]:
    timing: list[dict[str, Any]] = []
    clock = time.perf_counter()

    def lap(stage: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timing.append({"stage": stage, "seconds": now - clock})
        clock = now

    example, random_classes = talk_example(), sweep_problem(cfg)
    random_name = f"random_k{random_classes.k}_d{random_classes.d}"
    problems = {TALK_EXAMPLE_NAME: example, random_name: random_classes}
    bayes_tables = []
    for name, classes in problems.items():
        table = bayes_accuracy(classes, cfg.monte_carlo_samples, cfg.monte_carlo_seed)
        bayes_tables.append(table.assign(problem=name))
    bayes = pd.concat(bayes_tables, ignore_index=True)[
        ["problem", "method", "accuracy", "error", "n_samples"]
    ]
    bayes_level = {name: best_bayes_estimate(bayes[bayes.problem == name]) for name in problems}
    lap("bayes")

    rows, quads = _accuracy_rows(
        example,
        [cfg.n_train],
        cfg.seeds,
        cfg,
        bayes_level[TALK_EXAMPLE_NAME],
        TALK_EXAMPLE_NAME,
    )
    accuracy = pd.DataFrame(rows)
    similarity = pd.concat(
        [quadratic_similarity(q, example).assign(seed=s) for (_, s), q in quads.items()],
        ignore_index=True,
    )[["seed", "class", "cosine", "cosine_difference", "relative_error_difference"]]
    lap(TALK_EXAMPLE_NAME)

    sweep_tables = []
    for name, classes in problems.items():
        if name == TALK_EXAMPLE_NAME and not cfg.sweep_talk_example:
            continue
        sweep_tables.append(sample_size_sweep(classes, cfg, name, bayes_level[name]))
        lap(f"sweep_{name}")
    sweep = pd.concat(sweep_tables, ignore_index=True)
    return {
        "bayes": bayes,
        "accuracy": accuracy,
        "similarity": similarity,
        "sweep": sweep,
        "sweep_summary": summarise_sweep(sweep),
        "timing": pd.DataFrame(timing),
    }
