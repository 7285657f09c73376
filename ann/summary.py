"""Per-dataset summaries of the training runs: tables and figures for the report."""

import json
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from .io import write_atomic  # noqa: E402
from .paper import published  # noqa: E402


def load_runs(metrics_paths: Sequence[str | Path]) -> pd.DataFrame:
    """One row per run from its metrics.json (and the folder holding its metrics.csv)."""
    rows = []
    for path in metrics_paths:
        m = json.loads(Path(path).read_text())
        rows.append(
            {
                "dataset": m["dataset"],
                "model": m["model"],
                "prior": m["prior"],
                "seed": m["seed"],
                "test_top1": m["final"]["test_top1"],
                "test_top5": m["final"]["test_top5"],
                "best_top1": m["best"]["test_top1"],
                "epochs": m["epochs"],
                "parameters": m["parameters"],
                "macs_per_image": m["macs_per_image"],
                "images_per_s": m["images_per_s"],
                "wall_time_s": m["wall_time_s"],
                "device": m["device"],
                "kappa_sha256": m.get("kappa_sha256"),
                "commit": m.get("commit", "unknown"),
                "run_dir": str(Path(path).parent),
            }
        )
    return pd.DataFrame(rows)


def summarise(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean and std over seeds per (model, prior), with the seed's published numbers."""
    grouped = runs.groupby(["dataset", "model", "prior"], sort=False)
    table = grouped.agg(
        seeds=("seed", "count"),
        top1_mean=("test_top1", "mean"),
        top1_std=("test_top1", "std"),
        top5_mean=("test_top5", "mean"),
        parameters=("parameters", "first"),
        macs_per_image=("macs_per_image", "first"),
        images_per_s=("images_per_s", "median"),
        epochs=("epochs", "first"),
    ).reset_index()
    paper = [published(d, m) or {} for d, m in zip(table.dataset, table.model, strict=True)]
    table["paper_params_M"] = [p.get("params_M") for p in paper]
    table["paper_top1"] = [p.get("top1") for p in paper]
    table["paper_flops_G"] = [p.get("flops_G") for p in paper]
    return table


def _save(fig: plt.Figure, path: str | Path) -> None:
    write_atomic(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight"))
    plt.close(fig)


def _label(model: str, prior: str) -> str:
    return model if prior == "none" else f"{model} ({prior})"


def plot_training_curves(runs: pd.DataFrame, path: str | Path) -> None:
    """Training loss and test top-1 per epoch, one line per run."""
    fig, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(11, 4))
    for run in runs.itertuples():
        curve = pd.read_csv(Path(run.run_dir) / "metrics.csv")
        label = f"{_label(run.model, run.prior)} s{run.seed}"
        loss_ax.plot(curve.epoch, curve.train_loss, marker=".", label=label)
        acc_ax.plot(curve.epoch, curve.test_top1, marker=".", label=label)
    loss_ax.set(xlabel="epoch", ylabel="training loss", yscale="log")
    for ax in (loss_ax, acc_ax):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    acc_ax.set(xlabel="epoch", ylabel="test top-1")
    acc_ax.legend(fontsize=7, ncol=2)
    _save(fig, path)


def plot_prior_ablation(summary: pd.DataFrame, path: str | Path) -> None:
    """Test top-1 (mean +- std over seeds) of every (model, prior)."""
    fig, ax = plt.subplots(figsize=(max(5, 1.2 * len(summary)), 4))
    x = np.arange(len(summary))
    ax.bar(x, summary.top1_mean, yerr=summary.top1_std.fillna(0), capsize=4, color="#6a8caf")
    ax.set_xticks(
        x,
        [_label(m, p) for m, p in zip(summary.model, summary.prior, strict=True)],
        rotation=30,
        ha="right",
    )
    low = float((summary.top1_mean - summary.top1_std.fillna(0)).min())
    ax.set_ylim(max(0.0, low - 0.05), min(1.0, float(summary.top1_mean.max()) + 0.05))
    ax.set(ylabel="test top-1 (mean ± std over seeds)", title="Models and quadratic priors")
    _save(fig, path)
