"""The prior ablation's workflow steps (workflow/rules/ablation.smk): the analysis of one
dataset's runs, and the report page "Does the prior matter?". The numbers and figures come
from ann.ablation; this module reads and writes the files."""

import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ann import ablation
from ann.errors import TrainingError

from .fields import Table
from .files import save_csv, save_figure

if TYPE_CHECKING:
    from .report import Report

log = logging.getLogger(__name__)
CHECKPOINT = "checkpoint.pt"  # what ann.train writes after every epoch, beside metrics.json


def quadratic_layer_names(model: str) -> list[str]:
    """The module names of the model's quadratic layers, in order."""
    from ann.layers import DitQuadratic
    from ann.models import create_model

    network = create_model(model)
    return [name for name, m in network.named_modules() if isinstance(m, DitQuadratic)]


def learned_k(run_dir: str | Path, layers: Sequence[str]) -> dict[str, np.ndarray]:
    """The quadratic coefficients of the run's last checkpoint, by layer."""
    import torch

    path = Path(run_dir) / CHECKPOINT
    if not path.is_file():
        raise TrainingError(
            f"'{path}' is missing: the learned-K analysis reads the run's last checkpoint. "
            f"Delete {Path(run_dir) / 'metrics.json'} and run the workflow again to retrain it."
        )
    state = torch.load(path, map_location="cpu", weights_only=True)["model"]
    return {layer: state[f"{layer}.weight"].float().numpy() for layer in layers}


def initial_k(
    prior_file: str | Path | None, prior: str, learned: Mapping[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """The K a run started from: its prior file, or zeros for a run without one (zero)."""
    if prior_file is None:
        if prior != ablation.REFERENCE:
            raise TrainingError(f"no prior file for the '{prior}' run: its initial K is unknown.")
        return {layer: np.zeros_like(k) for layer, k in learned.items()}
    import torch

    weights = torch.load(prior_file, map_location="cpu", weights_only=True)["weights"]
    return {layer: weights[layer].float().numpy() for layer in learned}


def analyse(
    runs: Sequence[Mapping],
    sample_epochs: Sequence[int],
    outputs: Mapping[str, str | Path],
    reference: str = ablation.REFERENCE,
) -> None:
    """One dataset's ablation. `runs`: per run its metrics.json ("metrics") and, for a Dit run
    with a prior file, that file ("prior_file"). Writes the runs, the per-prior summary, the
    paired statistics, the learned-K tables and two figures."""
    metrics = ablation.metrics_of(sample_epochs)
    table = pd.DataFrame([ablation.read_run(run["metrics"], sample_epochs) for run in runs])
    prior_files = {str(Path(run["metrics"]).parent): run.get("prior_file") for run in runs}
    summary = ablation.prior_summary(table, metrics)
    statistics = ablation.paired_statistics(table, metrics, reference)
    save_csv(table, outputs["runs"])
    save_csv(summary, outputs["summary"])
    save_csv(statistics, outputs["statistics"])
    save_figure(ablation.plot_differences(statistics, metrics), outputs["differences"])

    layers_rows, spectra_rows = [], []
    dit = table[table.prior != "none"]
    for model, group in dit.groupby("model", sort=False):
        names = quadratic_layer_names(model)
        learned = {
            (row.prior, row.seed): learned_k(row.run_dir, names) for row in group.itertuples()
        }
        for row in group.itertuples():
            prior, seed = row.prior, row.seed
            final = learned[(prior, seed)]
            start = initial_k(prior_files.get(row.run_dir), prior, final)
            zero = learned.get((reference, seed)) if prior != reference else None
            layers, spectra = ablation.compare_k(final, start, zero)
            key = {"model": model, "prior": prior, "seed": seed}
            layers_rows.append(layers.assign(**key))
            spectra_rows.append(spectra.assign(**key))
    columns = ["model", "prior", "seed", "layer", "layer_index", "channels"]
    layers = (
        pd.concat(layers_rows, ignore_index=True) if layers_rows else pd.DataFrame(columns=columns)
    )
    spectra = (
        pd.concat(spectra_rows, ignore_index=True)
        if spectra_rows
        else pd.DataFrame(columns=columns)
    )
    save_csv(layers, outputs["learned_k"])
    save_csv(spectra, outputs["spectra"])
    save_figure(ablation.plot_learned_k(layers, spectra), outputs["learned_k_png"])
    for sentence in ablation.answer(statistics, table.dataset.iloc[0]):
        log.info("%s", sentence)


# ------------------------------------------------------------------------- the page
def _pp(value: float) -> str:
    return "–" if pd.isna(value) else f"{100 * value:+.2f}".replace("-", "−")


def _pct(mean: float, std: float) -> str:
    if pd.isna(mean):
        return "–"
    return f"{100 * mean:.2f}" + ("" if pd.isna(std) else f" ± {100 * std:.2f}")


def _ci(row: Mapping) -> str:
    if pd.isna(row["ci_low"]):
        return "–"
    return f"{_pp(row['ci_low'])} to {_pp(row['ci_high'])}"


def _p(value: float) -> str:
    if pd.isna(value):
        return "–"
    return "< 0.001" if value < 0.001 else f"{value:.3g}"


def _table(rows: list[dict], numeric: Sequence[str] = ()) -> Table:
    columns = list(rows[0]) if rows else []
    return Table(columns, [c in numeric for c in columns], [list(r.values()) for r in rows])


def statistics_table(
    statistics: pd.DataFrame, summary: pd.DataFrame, metrics: Sequence[str]
) -> Table:
    """Per model, prior and metric: mean ± std of the prior and the reference, the paired
    difference with its 95 % interval and p-value, and the verdict."""
    stats = summary.set_index(["model", "prior", "metric"])
    rows = []
    for row in statistics[statistics.metric.isin(metrics)].to_dict("records"):
        mine = stats.loc[(row["model"], row["prior"], row["metric"])]
        base = stats.loc[(row["model"], row["reference"], row["metric"])]
        rows.append(
            {
                "model": row["model"],
                "prior": row["prior"],
                "metric": ablation.metric_label(row["metric"]),
                "paired seeds": str(row["n"]),
                "prior: top-1 (%)": _pct(mine["mean"], mine["std"]),
                "reference: top-1 (%)": _pct(base["mean"], base["std"]),
                "mean difference (pp)": _pp(row["mean_difference"]),
                "sd of differences (pp)": "–"
                if pd.isna(row["sd_difference"])
                else f"{100 * row['sd_difference']:.2f}",
                "95% CI (pp)": _ci(row),
                "p-value": _p(row["p_value"]),
                "verdict": ablation.verdict(row) + (f" ({row['note']})" if row["note"] else ""),
            }
        )
    numeric = ["paired seeds", "prior: top-1 (%)", "reference: top-1 (%)"]
    numeric += ["mean difference (pp)", "sd of differences (pp)", "95% CI (pp)", "p-value"]
    return _table(rows, numeric)


def accuracy_table(summary: pd.DataFrame, metrics: Sequence[str]) -> Table:
    """Mean ± std over seeds of every (model, prior), the plain model included."""
    rows = []
    for (model, prior), group in summary.groupby(["model", "prior"], sort=False):
        by = group.set_index("metric")
        row = {"model": model, "prior": prior, "seeds": str(int(by.n.max()))}
        for metric in metrics:
            if metric in by.index:
                row[f"{ablation.metric_label(metric)} (%)"] = _pct(
                    by.loc[metric, "mean"], by.loc[metric, "std"]
                )
        rows.append(row)
    return _table(rows, [k for k in (rows[0] if rows else {}) if k not in ("model", "prior")])


def learned_k_table(layers: pd.DataFrame) -> Table:
    """Mean over seeds, per model, prior and layer, of the learned-K comparisons."""
    rows = []
    if len(layers):
        grouped = layers.groupby(["model", "prior", "layer_index", "layer"], sort=False)
        for (model, prior, _, layer), group in grouped:

            def mean(column: str, g: pd.DataFrame = group) -> str:
                value = g[column].mean()
                return "–" if pd.isna(value) else f"{value:.3g}"

            rows.append(
                {
                    "model": model,
                    "prior": prior,
                    "layer": layer,
                    "channels": str(int(group.channels.iloc[0])),
                    "seeds": str(len(group)),
                    "corr. with its prior": mean("corr_with_prior"),
                    "corr. with zero's learned K": mean("corr_with_zero_learned"),
                    "‖K_final − K_init‖ / ‖K_init‖": mean("relative_change"),
                    "‖K_init‖": mean("init_norm"),
                    "‖K_final‖": mean("final_norm"),
                }
            )
    numeric = ["channels", "seeds", "corr. with its prior", "corr. with zero's learned K"]
    numeric += ["‖K_final − K_init‖ / ‖K_init‖", "‖K_init‖", "‖K_final‖"]
    return _table(rows, numeric)


def _statistics(path: str | Path) -> pd.DataFrame:
    statistics = pd.read_csv(path)
    statistics["note"] = statistics["note"].fillna("")
    return statistics


def ablation_answers(experiment: Mapping) -> list[str]:
    """The page's sentences, every dataset's, for the report's index."""
    from .report import DATASETS  # the report imports this module's pages

    return [
        sentence
        for dataset, files in experiment["datasets"].items()
        for sentence in ablation.answer(
            _statistics(files["statistics"]), DATASETS.get(dataset, dataset)
        )
    ]


def ablation_page(report: "Report", experiment: Mapping) -> Path:
    """The page "Does the prior matter?": one sentence per dataset, the tables and figures.
    `experiment`: "datasets" (per analysed dataset its files), "skipped" (dataset -> why),
    "sample_epochs", "reference" and "seeds"."""
    from .report import DATASETS  # the report imports this module's pages

    sample = [ablation.epoch_metric(e) for e in experiment["sample_epochs"]]
    pages = []
    for dataset, files in experiment["datasets"].items():
        title = DATASETS.get(dataset, dataset)
        statistics = _statistics(files["statistics"])
        summary = pd.read_csv(files["summary"])
        layers = pd.read_csv(files["learned_k"])
        measured = [m for m in sample if summary[summary.metric == m].n.max() > 0]
        pages.append(
            {
                "key": dataset,
                "title": title,
                "sentences": ablation.answer(statistics, title),
                "final": statistics_table(statistics, summary, [ablation.FINAL, ablation.BEST]),
                "sample": statistics_table(statistics, summary, measured),
                "unmeasured": [
                    e
                    for e, m in zip(experiment["sample_epochs"], sample, strict=True)
                    if m not in measured
                ],
                "accuracy": accuracy_table(summary, [*measured, ablation.FINAL, ablation.BEST]),
                "learned_k": learned_k_table(layers),
                "figures": {
                    key: report.figure(f"ablation_{dataset}", path)
                    for key, path in files["figures"].items()
                },
            }
        )
    return report.page(
        "prior_ablation.html",
        "ablation.html.j2",
        results=pages,
        skipped=experiment.get("skipped", {}),
        reference=experiment.get("reference", ablation.REFERENCE),
        test_name=ablation.TEST_NAME,
        confidence=round(100 * ablation.CONFIDENCE),
        seeds=experiment.get("seeds"),
        nan=math.nan,
    )
