"""Figures of the Gaussian experiment; each function returns its matplotlib figure (the
workflow saves it)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from ann.engine import torch_threads

from .bayes import bayes_predict
from .gaussian import GaussianConfig, summarise_sweep, train_both
from .problems import talk_example


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_decision_boundaries(config: GaussianConfig, seed: int = 0) -> Any:
    """Quadratic neuron | MLP | Bayes decision regions over the talk's example's training set."""
    cfg = config
    classes = talk_example()
    with torch_threads(cfg.torch_threads):
        X, y, quad, mlp = train_both(classes, cfg.n_train, seed, cfg)
    predictors: dict[str, Callable[[np.ndarray], np.ndarray]] = {
        "quadratic neuron": quad.predict,
        f"MLP ({cfg.mlp_hidden} ReLU)": mlp.predict,
        "Bayes": lambda P: bayes_predict(classes, P),
    }
    lo, hi = X.min(axis=0) - 0.5, X.max(axis=0) + 0.5
    g1, g2 = np.meshgrid(np.linspace(lo[0], hi[0], 400), np.linspace(lo[1], hi[1], 400))
    grid = np.column_stack([g1.ravel(), g2.ravel()])
    plt = _pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(13, 4.3), sharex=True, sharey=True)
    for ax, (title, predict) in zip(axes, predictors.items(), strict=True):
        regions = predict(grid).reshape(g1.shape)
        ax.contourf(g1, g2, regions, levels=[-0.5, 0.5, 1.5], colors=["#cfe0f5", "#f7d6c8"])
        ax.contour(g1, g2, regions, levels=[0.5], colors="k", linewidths=1.2)
        for label, colour in ((0, "#1f5fa8"), (1, "#c0392b")):
            ax.scatter(*X[y == label].T, s=5, c=colour, alpha=0.6, label=f"class {label + 1}")
        ax.set_title(title)
        ax.set_xlabel("$x_1$")
    axes[0].set_ylabel("$x_2$")
    axes[0].legend(loc="upper left", markerscale=3, fontsize=8)
    fig.suptitle(f"Decision boundaries, {cfg.n_train} training samples (seed {seed})")
    return fig


def plot_accuracy_vs_samples(sweep: pd.DataFrame) -> Any:
    """Mean +- std test accuracy versus n_train per model with the Bayes level, per problem."""
    summary = summarise_sweep(sweep)
    names = list(dict.fromkeys(sweep["problem"]))
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(names), figsize=(5.5 * len(names), 4.2), squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        part = summary[summary.problem == name]
        for model, marker in (("quadratic", "o"), ("mlp", "s")):
            rows = part[part.model == model].sort_values("n_train")
            ax.errorbar(
                rows.n_train,
                rows.test_acc_mean,
                yerr=rows.test_acc_std.fillna(0.0),
                marker=marker,
                capsize=3,
                label=model,
            )
        ax.axhline(float(part.bayes_acc.iloc[0]), color="k", linestyle="--", label="Bayes")
        ax.set_xscale("log")
        ax.set_xlabel("training samples")
        ax.set_ylabel("test accuracy")
        ax.set_title(name)
        ax.legend()
    return fig


def plot_similarity(similarity: pd.DataFrame) -> Any:
    """Raw and class-centred cosine of learned A_j with -1/2 Sigma_j^{-1}, per seed x class."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    labels = [f"s{s} c{c + 1}" for s, c in zip(similarity.seed, similarity["class"], strict=True)]
    positions = np.arange(len(labels))
    ax.bar(positions - 0.2, similarity.cosine, width=0.4, label="cosine(A_j, A_j*)")
    ax.bar(
        positions + 0.2,
        similarity.cosine_difference,
        width=0.4,
        label="cosine, class-centred (identifiable)",
    )
    ax.axhline(0.0, color="k", linewidth=0.8)
    ax.set_xticks(positions, labels)
    ax.set_ylim(-1.05, 1.05)
    ax.set_ylabel("Frobenius cosine")
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, 1.16), ncol=2)
    return fig
