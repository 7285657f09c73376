"""Does the quadratic prior matter? The runs of the prior experiments as one table, what the
network does to the prior it starts from, and the figures.

Runs. Every run is a row: dataset, model, prior (its name), mode (init, anchor, fixed), seed and
its metrics: the declared endpoint, the final test top-1 on the whole test set, and exploratory
ones (the top-1 after the sample epochs of the full-data ablation, measured on the recipe's
`eval_subset` before the last epoch; validation and train top-1 and the learned-K measures of
the low-data experiment). Best-of-epochs is not a metric here: it selects on the test set.
The statistics are ann.statistics' (paired over seeds, Holm, TOST, verdicts, power).

Learned K. Per quadratic layer of a Dit run: the Pearson correlation of the learned entries with
the initial ones (the prior) and with the learned K of the `zero` run of the same seed and mode,
the relative change ||K_final - K_init|| / ||K_init|| (Frobenius; undefined for K_init = 0, where
||K_final|| is given), and the eigen-spectrum of each unit's symmetrised K,
S_o = (K_o + K_o^T) / 2, sorted from largest to smallest and averaged over the output units.

Everything here works on tables and arrays; pipeline.ablation (the workflow glue) reads and
writes the files.
"""

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from matplotlib.figure import Figure

REFERENCE = "zero"
FINAL = "final_test_top1"
EXPLORATORY_LOWDATA = ("validation_top1", "train_top1")
METRIC_LABELS = {
    FINAL: "final test top-1",
    "validation_top1": "validation top-1",
    "train_top1": "train top-1",
}


def epoch_metric(epoch: int) -> str:
    return f"epoch{epoch}_top1"


def metric_label(metric: str) -> str:
    if metric in METRIC_LABELS:
        return METRIC_LABELS[metric]
    return f"test top-1 after epoch {int(metric.removeprefix('epoch').removesuffix('_top1'))}"


def split_prior(spec: str) -> tuple[str, str]:
    """A run's prior as it names it, `<prior>[+<mode>]`, as (prior, mode)."""
    name, _, mode = spec.partition("+")
    return name, mode or "init"


# ------------------------------------------------------------------------- runs
def read_run(metrics_path: str | Path, sample_epochs: Sequence[int]) -> dict:
    """One run's identity, final top-1, and top-1 after each sample epoch it has (NaN after the
    epochs it ran), from its metrics.json and metrics.csv."""
    path = Path(metrics_path)
    m = json.loads(path.read_text())
    prior, mode = split_prior(m["prior"])
    row = {
        "dataset": m["dataset"],
        "model": m["model"],
        "prior": prior,
        "mode": mode,
        "seed": int(m["seed"]),
        "epochs": int(m["epochs"]),
        FINAL: m["final"]["test_top1"],
        "run_dir": str(path.parent),
    }
    curve = pd.read_csv(path.with_name("metrics.csv")).set_index("epoch")
    for epoch in sample_epochs:
        row[epoch_metric(epoch)] = (
            float(curve.test_top1.loc[epoch]) if epoch in curve.index else math.nan
        )
    return row


def metrics_of(sample_epochs: Sequence[int]) -> list[str]:
    return [FINAL] + [epoch_metric(e) for e in sample_epochs]


def prior_summary(runs: pd.DataFrame, metrics: Sequence[str]) -> pd.DataFrame:
    """Mean and std over seeds of every metric per (dataset, model, mode, prior)."""
    rows = []
    keys = ["dataset", "model", "mode", "prior"]
    for key, group in runs.groupby(keys, sort=False):
        for metric in metrics:
            values = group[metric].dropna()
            rows.append(
                dict(zip(keys, key, strict=True))
                | {
                    "metric": metric,
                    "n": len(values),
                    "mean": float(values.mean()) if len(values) else math.nan,
                    "std": float(values.std(ddof=1)) if len(values) > 1 else math.nan,
                }
            )
    return pd.DataFrame(rows)


def contrasts(priors: Sequence[str]) -> list:
    """The primary contrasts among `priors`: each prior - zero, and bio - each control (the
    priors that are neither zero nor bio)."""
    from ann.statistics import Contrast

    others = [p for p in priors if p != REFERENCE]
    controls = [p for p in others if p != "bio"] if "bio" in priors else []
    return [Contrast(p, REFERENCE) for p in others] + [Contrast("bio", c) for c in controls]


# ------------------------------------------------------------------------- learned K
def unit_matrices(weight: np.ndarray) -> np.ndarray:
    """A DitQuadratic weight (C_out, C_in^2) as (C_out, C_in, C_in)."""
    weight = np.asarray(weight, float)
    channels = round(math.sqrt(weight.shape[1]))
    return weight.reshape(weight.shape[0], channels, channels)


def spectrum(weight: np.ndarray) -> np.ndarray:
    """Eigenvalues of each unit's symmetrised K, largest first, averaged over the units."""
    k = unit_matrices(weight)
    s = (k + k.transpose(0, 2, 1)) / 2
    return np.linalg.eigvalsh(s)[:, ::-1].mean(0)


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of the entries (NaN when either is constant, e.g. K = 0)."""
    a, b = np.ravel(np.asarray(a, float)), np.ravel(np.asarray(b, float))
    if a.std() == 0 or b.std() == 0:
        return math.nan
    return float(np.corrcoef(a, b)[0, 1])


def compare_k(
    learned: Mapping[str, np.ndarray],
    initial: Mapping[str, np.ndarray],
    zero_learned: Mapping[str, np.ndarray] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per layer: correlations, norms and relative change (one row each); and the mean
    spectra of the initial and the learned K (one row per layer, stage and rank)."""
    rows, spectra = [], []
    for index, (layer, final) in enumerate(learned.items()):
        final = np.asarray(final, float)
        init = np.asarray(initial[layer], float)
        init_norm = float(np.linalg.norm(init))
        rows.append(
            {
                "layer": layer,
                "layer_index": index,
                "channels": unit_matrices(final).shape[1],
                "corr_with_prior": correlation(final, init),
                "corr_with_zero_learned": (
                    correlation(final, zero_learned[layer]) if zero_learned else math.nan
                ),
                "init_norm": init_norm,
                "final_norm": float(np.linalg.norm(final)),
                "relative_change": (
                    float(np.linalg.norm(final - init)) / init_norm if init_norm > 0 else math.nan
                ),
            }
        )
        for stage, weight in (("initial", init), ("learned", final)):
            for rank, value in enumerate(spectrum(weight)):
                spectra.append(
                    {"layer": layer, "layer_index": index, "stage": stage, "rank": rank,
                     "eigenvalue": float(value)}
                )  # fmt: skip
    return pd.DataFrame(rows), pd.DataFrame(spectra)


# ------------------------------------------------------------------------- figures
PRIOR_COLOURS = ("#1b6ca8", "#d1495b", "#66a182", "#edae49", "#8d6a9f", "#00798c")
KNOWN_COLOURS = {"zero": "#1b6ca8", "bio": "#d1495b", "shuffled": "#66a182"}


def prior_colour(prior: str, priors: Sequence[str]) -> str:
    """The same colour for a prior in every figure: fixed for zero, bio, shuffled; the others
    in the order of `priors`."""
    if prior in KNOWN_COLOURS:
        return KNOWN_COLOURS[prior]
    others = [p for p in priors if p not in KNOWN_COLOURS]
    return PRIOR_COLOURS[3 + others.index(prior) % (len(PRIOR_COLOURS) - 3)]


def plot_contrasts(
    statistics: pd.DataFrame, endpoint: str = FINAL, alpha: float = 0.05
) -> "Figure":
    """The endpoint's primary contrasts: mean paired difference with its interval (none below
    three seeds), the equivalence margin shaded; one panel per (model, mode)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = statistics[(statistics.metric == endpoint) & (statistics.role == "primary")]
    panels = list(dict.fromkeys(zip(rows.model, rows["mode"], strict=True))) or [("none", "")]
    fig, axes = plt.subplots(
        1, len(panels), figsize=(min(11, 4.2 * len(panels)), 3.8), squeeze=False,
        layout="constrained", sharey=True,
    )  # fmt: skip
    for ax, (model, mode) in zip(axes[0], panels, strict=True):
        mine = rows[(rows.model == model) & (rows["mode"] == mode)]
        y = np.arange(len(mine))[::-1]
        mean = 100 * mine.mean_difference.to_numpy(float)
        low, high = 100 * mine.ci_low.to_numpy(float), 100 * mine.ci_high.to_numpy(float)
        shown = np.isfinite(low) & np.isfinite(high)
        err = np.vstack([mean - low, high - mean])[:, shown]
        colours = [VERDICT_COLOURS.get(v, "0.3") for v in mine.verdict]
        ax.errorbar(mean[shown], y[shown], xerr=err, fmt="none", ecolor="0.4", capsize=3)
        ax.scatter(mean, y, c=colours, zorder=3)
        if len(mine):
            margin = 100 * float(mine.margin.iloc[0])
            ax.axvspan(-margin, margin, color="0.9", zorder=0, label=f"±{margin:.2f} pp margin")
        ax.axvline(0, color="0.4", lw=0.8)
        ax.set_yticks(y, [f"{c} ({v})" for c, v in zip(mine.contrast, mine.verdict, strict=True)])
        ax.set(xlabel=f"difference in {metric_label(endpoint)} (pp, {100 * (1 - alpha):.0f}% CI)",
               title=f"{model}, {mode} mode")  # fmt: skip
        ax.legend(fontsize=7, loc="lower right")
    return fig


VERDICT_COLOURS = {"helps": "#2a9d8f", "hurts": "#d1495b", "equivalent": "#1b6ca8"}


def plot_survival(survival: pd.DataFrame, margin: float) -> "Figure":
    """Against the anchor strength: how much of the prior bio's learned K keeps (correlation
    with its prior, target 0.5) and its validation top-1 against zero's (the margin shaded)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.4), layout="constrained")
    strength = survival.anchor_strength
    left.plot(strength, survival.bio_corr_with_prior, "o-", color=KNOWN_COLOURS["bio"])
    left.axhline(0.5, color="0.4", ls="--", lw=0.8, label="0.5")
    left.set(xscale="log", ylim=(-0.1, 1.05), xlabel="anchor strength",
             ylabel="corr(learned K, prior)", title="bio+anchor: prior kept")  # fmt: skip
    left.legend(fontsize=7)
    right.plot(strength, 100 * survival.bio_minus_zero, "o-", color=KNOWN_COLOURS["bio"])
    right.axhspan(-100 * margin, 100 * margin, color="0.9", zorder=0)
    right.axhline(0, color="0.4", lw=0.8)
    right.set(xscale="log", xlabel="anchor strength", ylabel="bio+anchor − zero (pp)",
              title="validation top-1 (choice seeds)")  # fmt: skip
    return fig


def plot_learned_k(layers: pd.DataFrame, spectra: pd.DataFrame) -> "Figure":
    """Per layer: correlation of the learned K with its prior and with zero's learned K (mean
    over seeds, per prior); the mean spectrum of the widest layer before and after training."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(11, 3.6), layout="constrained")
    priors = list(dict.fromkeys(layers.prior)) if len(layers) else []
    colour = {p: prior_colour(p, priors) for p in priors}
    for ax, column, title in (
        (axes[0], "corr_with_prior", "learned K vs its prior"),
        (axes[1], "corr_with_zero_learned", "learned K vs zero's learned K"),
    ):
        for prior in priors:
            mean = layers[layers.prior == prior].groupby("layer_index")[column].mean()
            if mean.notna().any():
                ax.plot(mean.index, mean.values, "o-", label=prior, color=colour[prior])
        ax.axhline(0, color="0.4", lw=0.8)
        ax.set(title=title, xlabel="quadratic layer", ylabel="correlation of entries", ylim=(-1, 1))
        n_layers = int(layers.layer_index.max()) + 1 if len(layers) else 1
        ax.set_xticks(range(n_layers))
        ax.set_xlim(-0.5, n_layers - 0.5)
    widest = int(layers.layer_index.iloc[layers.channels.to_numpy().argmax()]) if len(layers) else 0
    for prior in priors:
        mine = spectra[(spectra.prior == prior) & (spectra.layer_index == widest)]
        for stage, style in (("initial", "--"), ("learned", "-")):
            curve = mine[mine.stage == stage].groupby("rank").eigenvalue.mean()
            if len(curve) and (stage == "learned" or curve.abs().max() > 0):
                ax = axes[2]
                ax.plot(curve.index, curve.values, style, color=colour[prior],
                        label=f"{prior}, {stage}")  # fmt: skip
    axes[2].set(title=f"mean spectrum of S_o, layer {widest}", xlabel="rank", ylabel="eigenvalue")
    for ax in axes:
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    return fig
