"""Does the quadratic prior matter? Paired statistics of the prior ablation and what the
network does to the prior it starts from.

Statistics. Runs of the same (dataset, model, seed) share the data order, the augmentation and
the initialisation of every parameter but the quadratic coefficients K (ann.train seeds the
model's initialisation and two data generators with the seed; the prior only replaces K), so a
prior is compared with the reference (`zero`, the paper's K = 0) seed by seed: the paired
differences d_s = acc(prior, s) - acc(zero, s) over the n seeds both have. Reported: their mean,
the sample standard deviation (n - 1 in the denominator), the 95 % confidence interval
mean ± t_{0.975, n-1} · sd / sqrt(n) (Student's t with n - 1 degrees of freedom) and the
two-sided paired t-test's p-value, 2 P(T_{n-1} > |t|) with t = mean / (sd / sqrt(n)) (what
scipy.stats.ttest_rel computes). One seed gives no interval and no test (`note` says so);
differences that are all equal give a zero-width interval (and no p-value when they are all
zero). "No detectable effect" means the interval contains 0.

Metrics: the final test top-1 (last epoch, whole test set), the best-of-epochs top-1, and the
test top-1 after each of the sample-efficiency epochs (1, 2, 5 by default; what a run's
metrics.csv has: before the last epoch it is measured on the recipe's `eval_subset`).

Learned K. Per quadratic layer of a Dit run: the Pearson correlation of the learned entries with
the initial ones (the prior) and with the learned K of the `zero` run of the same seed, the
relative change ||K_final - K_init|| / ||K_init|| (Frobenius; undefined for K_init = 0, where
||K_final|| is given), and the eigen-spectrum of each unit's symmetrised K,
S_o = (K_o + K_o^T) / 2, sorted from largest to smallest and averaged over the output units.

Everything here works on tables and arrays; pipeline.ablation (the workflow glue) reads and writes the files.
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
CONFIDENCE = 0.95
TEST_NAME = "two-sided paired t-test over seeds (Student's t, n − 1 degrees of freedom)"
FINAL, BEST = "final_top1", "best_top1"


def epoch_metric(epoch: int) -> str:
    return f"epoch{epoch}_top1"


def metric_label(metric: str) -> str:
    if metric == FINAL:
        return "final test top-1"
    if metric == BEST:
        return "best-of-epochs test top-1"
    return f"test top-1 after epoch {int(metric.removeprefix('epoch').removesuffix('_top1'))}"


# ------------------------------------------------------------------------- runs
def read_run(metrics_path: str | Path, sample_epochs: Sequence[int]) -> dict:
    """One run's identity, final and best top-1, and top-1 after each sample epoch it has
    (NaN after the epochs it ran), from its metrics.json and metrics.csv."""
    path = Path(metrics_path)
    m = json.loads(path.read_text())
    row = {
        "dataset": m["dataset"],
        "model": m["model"],
        "prior": m["prior"],
        "seed": int(m["seed"]),
        "epochs": int(m["epochs"]),
        FINAL: m["final"]["test_top1"],
        BEST: m["best"]["test_top1"],
        "run_dir": str(path.parent),
    }
    curve = pd.read_csv(path.with_name("metrics.csv")).set_index("epoch")
    for epoch in sample_epochs:
        row[epoch_metric(epoch)] = (
            float(curve.test_top1.loc[epoch]) if epoch in curve.index else math.nan
        )
    return row


def metrics_of(sample_epochs: Sequence[int]) -> list[str]:
    return [epoch_metric(e) for e in sample_epochs] + [FINAL, BEST]


# ------------------------------------------------------------------------- statistics
def paired_difference(
    reference: Sequence[float], treated: Sequence[float], confidence: float = CONFIDENCE
) -> dict:
    """Statistics of the paired differences treated - reference (same index = same seed)."""
    from scipy import stats

    reference, treated = np.asarray(reference, float), np.asarray(treated, float)
    if reference.shape != treated.shape:
        raise ValueError("paired samples must have the same length")
    # accuracies are fractions of a test set: rounding off the last bits of the subtraction
    # keeps equal differences equal (else a tiny sd from rounding makes any shift "significant")
    d = np.round(treated - reference, 12)
    n = len(d)
    out = {
        "n": n,
        "mean_difference": float(d.mean()) if n else math.nan,
        "sd_difference": math.nan,
        "t_quantile": math.nan,
        "ci_low": math.nan,
        "ci_high": math.nan,
        "t_statistic": math.nan,
        "p_value": math.nan,
        "note": "",
    }
    if n == 0:
        out["note"] = "no seed has both runs"
        return out
    if n == 1:
        out["note"] = "one seed: no interval and no test (needs two or more seeds)"
        return out
    sd = float(d.std(ddof=1))
    quantile = float(stats.t.ppf(0.5 + confidence / 2, n - 1))
    half = quantile * sd / math.sqrt(n)
    out |= {
        "sd_difference": sd,
        "t_quantile": quantile,
        "ci_low": out["mean_difference"] - half,
        "ci_high": out["mean_difference"] + half,
    }
    if sd == 0:
        if out["mean_difference"] == 0:
            out["note"] = "identical on every seed: zero-width interval, no test"
        else:
            out |= {"t_statistic": math.copysign(math.inf, out["mean_difference"]), "p_value": 0.0}
            out["note"] = "the same difference on every seed: zero-width interval"
        return out
    t = out["mean_difference"] / (sd / math.sqrt(n))
    out |= {"t_statistic": t, "p_value": float(2 * stats.t.sf(abs(t), n - 1))}
    return out


def detectable(row: Mapping) -> bool | None:
    """Whether the interval excludes 0 (None without an interval)."""
    low, high = row["ci_low"], row["ci_high"]
    if pd.isna(low) or pd.isna(high):
        return None
    return not (low <= 0 <= high)


def prior_summary(runs: pd.DataFrame, metrics: Sequence[str]) -> pd.DataFrame:
    """Mean and std over seeds of every metric per (dataset, model, prior)."""
    rows = []
    for (dataset, model, prior), group in runs.groupby(["dataset", "model", "prior"], sort=False):
        for metric in metrics:
            values = group[metric].dropna()
            rows.append(
                {
                    "dataset": dataset,
                    "model": model,
                    "prior": prior,
                    "metric": metric,
                    "n": len(values),
                    "mean": float(values.mean()) if len(values) else math.nan,
                    "std": float(values.std(ddof=1)) if len(values) > 1 else math.nan,
                }
            )
    return pd.DataFrame(rows)


def paired_statistics(
    runs: pd.DataFrame, metrics: Sequence[str], reference: str = REFERENCE
) -> pd.DataFrame:
    """Every prior against the reference per (dataset, model) and metric, paired by seed.
    Models without a run of the reference prior (plain models) are left out."""
    rows = []
    for (dataset, model), group in runs.groupby(["dataset", "model"], sort=False):
        base = group[group.prior == reference].set_index("seed")
        if base.empty:
            continue
        for prior in [p for p in group.prior.unique() if p != reference]:
            other = group[group.prior == prior].set_index("seed")
            for metric in metrics:
                both = pd.concat(
                    [base[metric].rename("reference"), other[metric].rename("prior")],
                    axis=1,
                    join="inner",
                ).dropna()
                stats = paired_difference(both.reference.values, both.prior.values)
                rows.append(
                    {
                        "dataset": dataset,
                        "model": model,
                        "prior": prior,
                        "reference": reference,
                        "metric": metric,
                        **stats,
                        "seeds": " ".join(str(s) for s in sorted(both.index)),
                        "detectable": detectable(stats),
                    }
                )
    return pd.DataFrame(rows)


def _points(value: float) -> str:
    return f"{100 * value:+.2f}".replace("-", "−")


def _p(value: float) -> str:
    if pd.isna(value):
        return "no p-value"
    return "p < 0.001" if value < 0.001 else f"p = {value:.2g}"


def verdict(row: Mapping) -> str:
    found = detectable(row)
    if found is None:
        return "too few seeds to tell"
    if not found:
        return "no detectable effect"
    return "helps" if row["mean_difference"] > 0 else "hurts"


def answer(statistics: pd.DataFrame, title: str, metric: str = FINAL) -> list[str]:
    """One sentence per Dit model of a dataset, from the paired statistics of `metric`."""
    sentences = []
    chosen = statistics[statistics.metric == metric]
    for model, rows in chosen.groupby("model", sort=False):
        parts = []
        for row in rows.to_dict("records"):
            if pd.isna(row["ci_low"]):
                parts.append(
                    f"{row['prior']} changes {metric_label(metric)} by "
                    f"{_points(row['mean_difference'])} points ({row['note'] or 'no interval'}): "
                    f"{verdict(row)}"
                )
                continue
            parts.append(
                f"{row['prior']} changes {metric_label(metric)} by "
                f"{_points(row['mean_difference'])} points "
                f"({100 * CONFIDENCE:.0f}% CI {_points(row['ci_low'])} to "
                f"{_points(row['ci_high'])}, paired t-test over {row['n']} seeds, "
                f"{_p(row['p_value'])}): {verdict(row)}"
            )
        if parts:
            reference = rows.reference.iloc[0]
            sentences.append(
                f"On {title}, {model} against the {reference} prior: " + "; ".join(parts) + "."
            )
    return sentences


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


def _short(metric: str) -> str:
    return {FINAL: "final", BEST: "best of epochs"}.get(
        metric, metric_label(metric).removeprefix("test top-1 after ")
    )


def plot_differences(statistics: pd.DataFrame, metrics: Sequence[str]) -> "Figure":
    """Mean paired difference to the reference with its 95 % interval, per metric and prior;
    one panel per Dit model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    measured = set(statistics.metric[statistics.n > 0]) if len(statistics) else set()
    metrics = [m for m in metrics if m in measured] or list(metrics)
    models = list(dict.fromkeys(statistics.model)) or ["(no runs)"]
    fig, axes = plt.subplots(
        1, len(models), figsize=(min(10, 5 * len(models)), 3.6), squeeze=False, layout="constrained"
    )
    for ax, model in zip(axes[0], models, strict=True):
        rows = statistics[statistics.model == model]
        priors = list(dict.fromkeys(rows.prior))
        for k, prior in enumerate(priors):
            mine = rows[rows.prior == prior].set_index("metric").reindex(metrics)
            x = np.arange(len(metrics)) + (k - (len(priors) - 1) / 2) * 0.15
            mean = 100 * mine.mean_difference.to_numpy(float)
            low = 100 * mine.ci_low.to_numpy(float)
            high = 100 * mine.ci_high.to_numpy(float)
            err = np.vstack([mean - low, high - mean])
            ax.errorbar(
                x, mean, yerr=np.nan_to_num(err), fmt="o", capsize=3, label=prior,
                color=prior_colour(prior, priors),
            )  # fmt: skip
        ax.axhline(0, color="0.4", lw=0.8)
        ax.set_xticks(np.arange(len(metrics)), [_short(m) for m in metrics])
        reference = rows.reference.iloc[0] if len(rows) else REFERENCE
        ax.set(title=model, ylabel=f"top-1 − {reference} (pp, 95% CI)")
        if priors:
            ax.legend(fontsize=8)
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
