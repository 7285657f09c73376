"""Per-dataset summaries of the training runs: tables and figures for the report.

Two accuracies per run: `test_top1`, the final epoch's, and `best_top1`, the best over the
epochs evaluated on the whole test set, which selects on the test set (what the official
scripts and timm's checkpoint saver report). The summary gives mean and std over seeds of
both, the published number with its protocol (pipeline.paper.protocol), and ours under that
protocol beside it.
"""

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from .files import MAX_WIDTH_IN, save_csv, save_figure  # noqa: E402
from .paper import protocol, published  # noqa: E402

log = logging.getLogger(__name__)


def _number(value: float | None) -> float:
    """A metric from metrics.json: null there (undefined, e.g. top-5 of ten classes) is NaN."""
    return np.nan if value is None else value


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
                "recipe": m.get("recipe_name"),
                "seed": m["seed"],
                "test_top1": _number(m["final"]["test_top1"]),
                "test_top5": _number(m["final"]["test_top5"]),
                "best_top1": _number(m["best"]["test_top1"]),
                "best_epoch": m["best"]["epoch"],
                "epochs": m["epochs"],
                "parameters": m["parameters"],
                "macs_per_image": m["macs_per_image"],
                "images_per_s": _number(m["images_per_s"]),
                "wall_time_s": _number(m["wall_time_s"]),
                "device": m["device"],
                "kappa_sha256": m.get("kappa_sha256"),
                "commit": m.get("commit", "unknown"),
                "run_dir": str(Path(path).parent),
            }
        )
    return pd.DataFrame(rows)


LAG_LIMIT = 0.10  # a prior run this far behind zero's at any epoch is reported


def lag_behind_zero(runs: pd.DataFrame) -> pd.DataFrame:
    """Per Dit run with a nonzero prior: the largest amount by which its test top-1 falls
    behind the zero run of the same model, mode and seed at any epoch both evaluated on the same
    test images (a fraction; negative when always ahead), and that epoch."""
    curves = {
        (row.model, row.prior, row.seed): pd.read_csv(Path(row.run_dir) / "metrics.csv")
        for row in runs.itertuples()
    }
    lags = []
    for row in runs.itertuples():
        name, _, mode = row.prior.partition("+")
        reference = curves.get((row.model, "zero" + (f"+{mode}" if mode else ""), row.seed))
        if name in ("none", "zero") or reference is None:
            lags.append((np.nan, np.nan))
            continue
        both = curves[(row.model, row.prior, row.seed)].merge(
            reference, on=["epoch", "test_images"], suffixes=("", "_zero")
        )
        gap = both.test_top1_zero - both.test_top1
        worst = int(gap.to_numpy().argmax()) if len(gap) else None
        lags.append(
            (float(gap.max()), int(both.epoch.iloc[worst])) if len(gap) else (np.nan, np.nan)
        )
    return pd.DataFrame(lags, columns=["lag_behind_zero", "lag_epoch"], index=runs.index)


def summarise(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean and std over seeds per (model, prior) of the final and the best-of-epochs top-1
    (test-set selection), with the recipe that trained them, the talk's published numbers
    and the protocol behind them."""
    grouped = runs.groupby(["dataset", "model", "prior"], sort=False)
    table = grouped.agg(
        recipe=("recipe", "first"),
        seeds=("seed", "count"),
        top1_mean=("test_top1", "mean"),
        top1_std=("test_top1", "std"),
        best_top1_mean=("best_top1", "mean"),
        best_top1_std=("best_top1", "std"),
        top5_mean=("test_top5", "mean"),
        parameters=("parameters", "first"),
        macs_per_image=("macs_per_image", "first"),
        images_per_s=("images_per_s", "median"),
        epochs=("epochs", "first"),
    ).reset_index()
    rows = zip(table.dataset, table.model, strict=True)
    paper = [published(d, m.removesuffix("_transposed")) or {} for d, m in rows]
    how = [protocol(d, m) or {} for d, m in zip(table.dataset, table.model, strict=True)]
    table["paper_params_M"] = [p.get("params_M") for p in paper]
    table["paper_top1"] = [p.get("top1") for p in paper]
    table["paper_top1_std"] = [p.get("top1_std") for p in paper]
    table["paper_flops_G"] = [p.get("flops_G") for p in paper]
    table["paper_selection"] = [h.get("selection") for h in how]
    table["compare_with"] = [h.get("compare_with") for h in how]
    table["paper_source"] = [h.get("source") for h in how]
    matched = [
        {"best": best, "final": final}.get(which, np.nan)
        for which, best, final in zip(
            table.compare_with, table.best_top1_mean, table.top1_mean, strict=True
        )
    ]
    table["ours_as_published"] = matched
    table["difference_pp"] = 100 * table.ours_as_published - table.paper_top1.astype(float)
    return table


def _label(model: str, prior: str) -> str:
    return model if prior == "none" else f"{model} ({prior})"


def plot_training_curves(runs: pd.DataFrame) -> plt.Figure:
    """Training loss and test top-1 per epoch, one line per run."""
    fig, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(11, 4))
    for run in runs.itertuples():
        curve = pd.read_csv(Path(run.run_dir) / "metrics.csv")
        label = f"{_label(run.model, run.prior)} s{run.seed}"
        loss_ax.plot(curve.epoch, curve.train_loss, marker=".", label=label)
        acc_ax.plot(curve.epoch, 100 * curve.test_top1, marker=".", label=label)
    loss_ax.set(xlabel="epoch", ylabel="training loss", yscale="log")
    for ax in (loss_ax, acc_ax):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    acc_ax.set(xlabel="epoch", ylabel="test top-1 (%)")
    acc_ax.legend(fontsize=8, ncol=2)
    return fig


def plot_prior_ablation(summary: pd.DataFrame) -> plt.Figure:
    """Test top-1 (mean +- std over seeds) of every (model, prior)."""
    fig, ax = plt.subplots(figsize=(min(MAX_WIDTH_IN, max(5, 1.2 * len(summary))), 4))
    x = np.arange(len(summary))
    mean, std = 100 * summary.top1_mean, 100 * summary.top1_std.fillna(0)
    ax.bar(x, mean, yerr=std, capsize=4, color="#6a8caf")
    ax.set_xticks(
        x,
        [_label(m, p) for m, p in zip(summary.model, summary.prior, strict=True)],
        rotation=30,
        ha="right",
    )
    low = float((mean - std).min())
    ax.set_ylim(max(0.0, low - 5), min(100.0, float(mean.max()) + 5))
    ax.set(
        ylabel="final test top-1 (%, mean ± std over seeds)", title="Models and quadratic priors"
    )
    return fig


def summarise_dataset(metrics: list[str | Path], outputs: Mapping[str, str | Path]) -> None:
    """The runs of one dataset: a table per run, mean/std per model and prior, two figures."""
    runs = load_runs(metrics)
    runs = runs.join(lag_behind_zero(runs))
    for row in runs[runs.lag_behind_zero > LAG_LIMIT].itertuples():
        log.warning(
            "%s %s seed %d falls %.1f points behind zero at epoch %d",
            row.model, row.prior, row.seed, 100 * row.lag_behind_zero, row.lag_epoch,
        )  # fmt: skip
    table = summarise(runs)
    save_csv(runs, outputs["runs"])
    save_csv(table, outputs["summary"])
    save_figure(plot_training_curves(runs), outputs["curves"])
    save_figure(plot_prior_ablation(table), outputs["ablation"])
    log.info(
        "%s: %d runs\n%s",
        runs.dataset.iloc[0],
        len(runs),
        table[["model", "prior", "seeds", "top1_mean", "top1_std"]].to_string(index=False),
    )
