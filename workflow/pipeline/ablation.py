"""The prior experiments' analysis and page (workflow/rules/ablation.smk): the full-data
ablation of one dataset's runs, and the report page "Does the prior matter?", which also shows
the low-data experiment (pipeline.lowdata). The numbers and figures come from ann.ablation,
ann.lowdata and ann.statistics; this module reads and writes the files and owns the page."""

import json
import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ann import ablation, lowdata
from ann.errors import TrainingError
from ann.prior_modes import weights_from_state

from .fields import DATASETS, Table
from .files import save_csv, save_figure

if TYPE_CHECKING:
    from .report import Report  # the report calls this module's page functions

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
    return {layer: weights_from_state(state, layer).float().numpy() for layer in layers}


def initial_k(
    prior_file: str | Path | None, prior: str, learned: Mapping[str, np.ndarray], run_dir: str
) -> dict[str, np.ndarray]:
    """The K a run started from: its prior file scaled as the run's data calibration scaled it
    (metrics.json, prior_calibration), or zeros for a run without one (zero)."""
    if prior_file is None:
        if prior != ablation.REFERENCE:
            raise TrainingError(f"no prior file for the '{prior}' run: its initial K is unknown.")
        return {layer: np.zeros_like(k) for layer, k in learned.items()}
    import torch

    weights = torch.load(prior_file, map_location="cpu", weights_only=True)["weights"]
    metrics = json.loads((Path(run_dir) / "metrics.json").read_text())
    scales = {r["layer"]: r["scale"] for r in metrics.get("prior_calibration") or []}
    return {layer: weights[layer].float().numpy() * scales.get(layer, 1.0) for layer in learned}


def declared_contrasts(
    runs: pd.DataFrame, priors: Sequence[str], metrics: Sequence[str], statistics: Mapping
) -> pd.DataFrame:
    """Every prior experiment's contrasts of `priors` on `metrics`, as `statistics` (the
    config's experiments.statistics) declares them: endpoint, margin, alpha and power."""
    from ann.statistics import contrast_table

    return contrast_table(
        runs,
        ablation.contrasts(priors),
        metrics,
        statistics["endpoint"],
        margin=statistics["margin_pp"] / 100,
        alpha=statistics["alpha"],
        power=statistics["power"],
        dataset_titles=DATASETS,
        metric_labels=ablation.METRIC_LABELS,
    )


def analyse(
    runs: Sequence[Mapping],
    sample_epochs: Sequence[int],
    priors: Sequence[str],
    statistics: Mapping,
    outputs: Mapping[str, str | Path],
) -> None:
    """One dataset's full-data ablation. `runs`: per run its metrics.json ("metrics") and, for a
    Dit run with a prior file, that file ("prior_file"); `statistics`: the declared analysis
    (experiments.statistics). Writes the runs, the per-prior summary, the contrasts
    (ann.statistics), the learned-K tables and two figures."""
    metrics = ablation.metrics_of(sample_epochs)
    table = pd.DataFrame([ablation.read_run(run["metrics"], sample_epochs) for run in runs])
    prior_files = {str(Path(run["metrics"]).parent): run.get("prior_file") for run in runs}
    summary = ablation.prior_summary(table, metrics)
    dit = table[table.prior != "none"]
    contrasts = declared_contrasts(dit, priors, metrics, statistics)
    save_csv(table, outputs["runs"])
    save_csv(summary, outputs["summary"])
    save_csv(contrasts, outputs["statistics"])
    figure = ablation.plot_contrasts(contrasts, statistics["endpoint"], statistics["alpha"])
    save_figure(figure, outputs["differences"])

    layers_rows, spectra_rows = [], []
    for model, group in dit.groupby("model", sort=False):
        names = quadratic_layer_names(model)
        learned = {
            (row.prior, row.mode, row.seed): learned_k(row.run_dir, names)
            for row in group.itertuples()
        }
        for row in group.itertuples():
            final = learned[(row.prior, row.mode, row.seed)]
            start = initial_k(prior_files.get(row.run_dir), row.prior, final, row.run_dir)
            zero = learned.get((ablation.REFERENCE, row.mode, row.seed))
            layers, spectra = ablation.compare_k(
                final, start, zero if row.prior != ablation.REFERENCE else None
            )
            key = {"model": model, "prior": row.prior, "mode": row.mode, "seed": row.seed}
            layers_rows.append(layers.assign(**key))
            spectra_rows.append(spectra.assign(**key))
    columns = ["model", "prior", "mode", "seed", "layer", "layer_index", "channels"]
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
    for sentence in contrasts[contrasts.role == "primary"].sentence if len(contrasts) else []:
        log.info("%s", sentence)


# ------------------------------------------------------------------------- the page
def _pp(value: float, signed: bool = True) -> str:
    if pd.isna(value):
        return "–"
    return (f"{100 * value:+.2f}" if signed else f"{100 * value:.2f}").replace("-", "−")


def _pct(mean: float, std: float = math.nan) -> str:
    if pd.isna(mean):
        return "–"
    return f"{100 * mean:.2f}" + ("" if pd.isna(std) else f" ± {100 * std:.2f}")


def _p(value: float) -> str:
    if pd.isna(value):
        return "–"
    return "< 0.001" if value < 0.001 else f"{value:.3g}"


def _number(value: float, digits: int = 3) -> str:
    return "–" if pd.isna(value) else f"{value:.{digits}g}"


def _table(rows: list[dict], numeric: Sequence[str] = ()) -> Table:
    columns = list(rows[0]) if rows else []
    return Table(columns, [c in numeric for c in columns], [list(r.values()) for r in rows])


def meaningful(row: Mapping) -> bool:
    """Whether an interval and p-values mean something: a test (three or more seeds, some
    spread) and an interval inside ±100 pp."""
    return not pd.isna(row["p_value"]) and -1 <= row["ci_low"] and row["ci_high"] <= 1


def contrasts_table(statistics: pd.DataFrame, role: str = "primary") -> Table:
    """One row per contrast of `role`: the paired difference, its interval and tests (only
    where they mean something), the verdict and what a design needs."""
    rows = []
    for row in statistics[statistics.role == role].to_dict("records"):
        shown = meaningful(row)
        primary = row["role"] == "primary"
        rows.append(
            {
                "model": row["model"],
                "mode": row.get("mode", "init"),
                "contrast": row["contrast"],
                "metric": ablation.metric_label(row["metric"]),
                "seeds": str(row["n"]),
                "mean difference (pp)": _pp(row["mean_difference"]),
                "95% CI (pp)": f"{_pp(row['ci_low'])} to {_pp(row['ci_high'])}" if shown else "–",
                "p (Holm)" if primary else "p": _p(row["p_holm"] if primary else row["p_value"])
                if shown
                else "–",
                "TOST p (Holm)" if primary else "TOST p": _p(
                    row["p_tost_holm"] if primary else row["p_tost"]
                )
                if shown
                else "–",
                "verdict": row["verdict"],
                "paired sd (pp)": _pp(row["sd_difference"], signed=False),
                "ρ": _number(row["rho"], 2),
                "seeds for ±margin": _number(row["seeds_needed"], 3),
                "note": row["note"] or "",
            }
        )
    numeric = ["seeds", "mean difference (pp)", "95% CI (pp)", "p (Holm)", "p", "TOST p (Holm)"]
    numeric += ["TOST p", "paired sd (pp)", "ρ", "seeds for ±margin"]
    return _table(rows, numeric)


def arms_table(runs: pd.DataFrame, metrics: Sequence[str]) -> Table:
    """Mean ± std over seeds of each (model, mode, prior), with the learned-K measures where
    the runs have them."""
    rows = []
    extra = [c for c in ("corr_with_prior", "relative_change", "calibrated_response") if c in runs]
    for (model, mode, prior), group in runs.groupby(["model", "mode", "prior"], sort=False):
        row = {"model": model, "mode": mode, "prior": prior, "seeds": str(group.seed.nunique())}
        for metric in metrics:
            if metric in group and group[metric].notna().any():
                values = group[metric].dropna()
                std = values.std(ddof=1) if len(values) > 1 else math.nan
                row[f"{ablation.metric_label(metric)} (%)"] = _pct(values.mean(), std)
        labels = {
            "corr_with_prior": "corr. of learned K with its prior",
            "relative_change": "‖K_T − K_0‖ / ‖K_0‖",
            "calibrated_response": "start response (data)",
        }
        for column in extra:
            row[labels[column]] = _number(group[column].mean())
        rows.append(row)
    return _table(
        rows, [k for k in (rows[0] if rows else {}) if k not in ("model", "mode", "prior")]
    )


def survival_table(survival: pd.DataFrame) -> Table:
    rows = [
        {
            "anchor strength": f"{row['anchor_strength']:g}",
            "corr. of bio's learned K with its prior": _number(row["bio_corr_with_prior"], 2),
            "bio+anchor validation top-1 (%)": _pct(row["bio_validation_top1"]),
            "zero+anchor validation top-1 (%)": _pct(row["zero_anchor_validation_top1"]),
            "zero validation top-1 (%)": _pct(row["zero_validation_top1"]),
            "bio+anchor − zero (pp)": _pp(row["bio_minus_zero"]),
            "both (corr. ≥ 0.5, within the margin)": "yes" if row["both"] else "no",
        }
        for row in survival.to_dict("records")
    ]
    return _table(rows, [k for k in (rows[0] if rows else {}) if not k.startswith("both")])


def learned_k_table(layers: pd.DataFrame) -> Table:
    """Mean over seeds, per model, mode, prior and layer, of the learned-K comparisons."""
    rows = []
    if len(layers):
        keys = ["model", "mode", "prior", "layer_index", "layer"]
        for (model, mode, prior, _, layer), group in layers.groupby(keys, sort=False):
            rows.append(
                {
                    "model": model,
                    "mode": mode,
                    "prior": prior,
                    "layer": layer,
                    "seeds": str(len(group)),
                    "corr. with its prior": _number(group.corr_with_prior.mean()),
                    "corr. with zero's learned K": _number(group.corr_with_zero_learned.mean()),
                    "‖K_final − K_init‖ / ‖K_init‖": _number(group.relative_change.mean()),
                    "‖K_final‖": _number(group.final_norm.mean()),
                }
            )
    return _table(rows, ["seeds", "corr. with its prior", "corr. with zero's learned K",
                         "‖K_final − K_init‖ / ‖K_init‖", "‖K_final‖"])  # fmt: skip


def _statistics(path: str | Path) -> pd.DataFrame:
    statistics = pd.read_csv(path)
    statistics["note"] = statistics["note"].fillna("")
    return statistics


def ablation_answers(experiment: Mapping) -> list[str]:
    """The primary contrasts' sentences of both experiments, for the report's index."""
    files = ([experiment["lowdata"]] if experiment.get("lowdata") else []) + list(
        experiment["datasets"].values()
    )
    sentences = []
    for paths in files:
        statistics = _statistics(paths["statistics"])
        if len(statistics):
            sentences += list(statistics[statistics.role == "primary"].sentence)
    return sentences


def _lowdata_section(report: "Report", files: Mapping, margin: float) -> dict:
    statistics = _statistics(files["statistics"])
    survival = pd.read_csv(files["survival"])
    draws = pd.read_csv(files["anchor_sweep"]).seed.nunique()
    runs = pd.read_csv(files["runs"])
    lr_runs = pd.read_csv(files["lr_sweep"])
    chosen = lowdata.chosen_lr(lr_runs)
    lrs = lr_runs.groupby("lr").validation_top1.mean()
    metrics = [ablation.FINAL, *ablation.EXPLORATORY_LOWDATA]
    return {
        "sentences": list(statistics[statistics.role == "primary"].sentence),
        "primary": contrasts_table(statistics, "primary"),
        "exploratory": contrasts_table(statistics, "exploratory"),
        "arms": arms_table(runs, metrics),
        "survival": survival_table(survival),
        "survival_answer": lowdata.survival_answer(survival, margin, draws),
        "lr": chosen,
        "lr_table": _table(
            [{"lr": f"{lr:g}", "zero validation top-1 (%)": _pct(v)} for lr, v in lrs.items()],
            ["zero validation top-1 (%)"],
        ),
        "runs": len(runs),
        "seeds": runs.seed.nunique(),
        "cpu_s": float(runs.seconds.sum()),
        "figures": {
            key: report.figure("prior_lowdata", path) for key, path in files["figures"].items()
        },
    }


def ablation_page(report: "Report", experiment: Mapping) -> Path:
    """The page "Does the prior matter?": the answers, then the low-data experiment and the
    full-data ablation with their tables and figures. `experiment`: "lowdata" (its files or
    None), "datasets" (per analysed dataset its files), "skipped", "sample_epochs", "seeds",
    "device" and "statistics" (the declared analysis)."""
    sample = [ablation.epoch_metric(e) for e in experiment["sample_epochs"]]
    results = []
    for dataset, files in experiment["datasets"].items():
        statistics = _statistics(files["statistics"])
        runs = pd.read_csv(Path(files["statistics"]).with_name("runs.csv"))
        results.append(
            {
                "key": dataset,
                "title": DATASETS.get(dataset, dataset),
                "sentences": list(statistics[statistics.role == "primary"].sentence)
                if len(statistics)
                else [],
                "primary": contrasts_table(statistics, "primary") if len(statistics) else None,
                "exploratory": contrasts_table(statistics, "exploratory")
                if len(statistics)
                else None,
                "arms": arms_table(runs, [ablation.FINAL, *sample]),
                "learned_k": learned_k_table(pd.read_csv(files["learned_k"])),
                "figures": {
                    key: report.figure(f"ablation_{dataset}", path)
                    for key, path in files["figures"].items()
                },
            }
        )
    low = experiment.get("lowdata")
    return report.page(
        "prior_ablation.html",
        "ablation.html.j2",
        lowdata=_lowdata_section(report, low, experiment["statistics"]["margin_pp"] / 100)
        if low
        else None,
        lowdata_skipped=experiment.get("lowdata_skipped"),
        results=results,
        skipped=experiment.get("skipped", {}),
        seeds=experiment.get("seeds"),
        device=experiment.get("device"),
        statistics=experiment["statistics"],
    )
