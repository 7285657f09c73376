"""How the report shows numbers: every number and column a page shows goes through FIELDS
(label with unit, format); tables are `Table`s built by `table()` and drawn by the templates'
`table` macro (escaped by Jinja2's autoescape, inside a horizontally scrollable box)."""

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

DATASETS = {
    "fashion_mnist": "Fashion-MNIST",
    "cifar10": "CIFAR-10",
    "cifar100": "CIFAR-100",
    "imagenet": "ImageNet-1K",
}

# ------------------------------------------------------------------ numbers as they are read
# Accuracies in the CSVs are fractions and are shown in per cent; published numbers are per
# cent already.


def _percent(v: float) -> str:
    return f"{100 * float(v):.2f}"


def _percent_points(v: float) -> str:  # a difference of two fractions, in percentage points
    return f"{100 * float(v):+.2f}"


def _per_cent(v: float) -> str:  # a number already in per cent
    return f"{float(v):.2f}"


def _signed(v: float) -> str:
    return f"{float(v):+.2f}"


def sig3(v: float) -> str:
    return f"{float(v):.3g}"


def _r2(v: float) -> str:
    return f"{float(v):.3f}"


def _integer(v: float) -> str:
    return f"{int(v)}"


def _millions(v: float) -> str:
    return f"{float(v) / 1e6:.3g}"


def _count(v: float) -> str:
    """A large count with its unit: 812 k, 40.5 M, 4.47 G."""
    v = float(v)
    for scale, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(v) >= scale:
            return f"{v / scale:.3g} {unit}"
    return f"{v:.3g}"


def _rate(v: float) -> str:
    return f"{float(v):,.0f}"


def duration(seconds: float) -> str:
    """Seconds as a reader counts them: 8.1 s, 3.5 min, 2.25 h."""
    seconds = float(seconds)
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.2f} h"


def _microns(v: float) -> str:
    return f"{float(v):.0f}"


def _learning_rate(v: float) -> str:
    return f"{float(v):g}"


def _short_hash(v: object) -> str:
    return f"{str(v)[:12]}…"


def _text(v: object) -> str:
    return str(v)


@dataclass(frozen=True)
class Field:
    """How one named value is shown: its label (with its unit), its format, and for a mean
    the column of its standard deviation (shown as "mean ± std")."""

    label: str
    fmt: Callable[[Any], str] = _text
    std: str | None = None

    @property
    def numeric(self) -> bool:
        return self.fmt not in (_text, _short_hash)


# The raw name (a CSV column, a kappa.nc or psp.nc attribute, a column the report derives)
# -> how it is shown. The one place for labels, units and rounding.
FIELDS: dict[str, Field] = {
    # training runs (metrics.json, runs.csv) and their summary (pipeline.summary)
    "dataset": Field("dataset"),
    "model": Field("model"),
    "prior": Field("quadratic prior"),
    "recipe": Field("recipe"),
    "seed": Field("seed", _integer),
    "seeds": Field("seeds", _integer),
    "epochs": Field("epochs", _integer),
    "top1_mean": Field("final top-1 (%)", _percent, std="top1_std"),
    "best_top1_mean": Field("best-of-epochs top-1 (%)", _percent, std="best_top1_std"),
    "top5_mean": Field("final top-5 (%)", _percent),
    "test_top1": Field("final top-1 (%)", _percent),
    "test_top5": Field("final top-5 (%)", _percent),
    "best_top1": Field("best-of-epochs top-1 (%)", _percent),
    "best_epoch": Field("best epoch", _integer),
    "lag_behind_zero": Field("most behind zero at an epoch (pp)", _percent_points),
    "lag_epoch": Field("at epoch", _integer),
    "paper_top1": Field("published top-1 (%)", _per_cent, std="paper_top1_std"),
    "paper_selection": Field("published: selection"),
    "compare_with": Field("compared with our"),
    "ours_as_published": Field("ours, same selection (%)", _percent),
    "difference_pp": Field("ours − published (pp)", _signed),
    "paper_source": Field("where the published number comes from"),
    "parameters": Field("parameters (M)", _millions),
    "paper_params_M": Field("published parameters (M)", sig3),
    "macs_per_image": Field("MACs per image", _count),
    "paper_flops_G": Field("published FLOPs (G)", sig3),
    "images_per_s": Field("training images/s", _rate),
    "wall_time_s": Field("wall time", duration),
    "device": Field("device"),
    "kappa_sha256": Field("kappa.nc sha256", _short_hash),
    "commit": Field("commit"),
    # hardware and time of the training runs (metrics.json)
    "runs": Field("runs", _integer),
    "processes": Field("processes per run"),
    "torch_version": Field("PyTorch"),
    "total_time_s": Field("training time, all runs", duration),
    "longest_s": Field("longest run", duration),
    # kappa.nc: its attributes (dendrite_sim.kappa.summary) and the index's cell table
    "cell": Field("cell"),
    "sites": Field("sites", _integer),
    "kappa_EI_range": Field("κ_EI range (1/mV)"),
    "median_r2_EI": Field("median R², E-I fits", _r2),
    "median_cv_EI": Field("median CV of κ_EI across strengths", sig3),
    "median_r2_EE": Field("median R², E-E fits", _r2),
    "median_r2_II": Field("median R², I-I fits", _r2),
    "mean_rmse_linear_response": Field("multi-input RMSE, linear sum (mV, response)", sig3),
    "mean_rmse_bilinear_response": Field("multi-input RMSE, bilinear rule (mV, response)", sig3),
    "bilinear_over_linear_response": Field("multi-input RMSE, bilinear / linear", sig3),
    "mean_rmse_linear": Field("multi-input RMSE, linear sum (mV, whole trial)", sig3),
    "mean_rmse_bilinear": Field("multi-input RMSE, bilinear rule (mV, whole trial)", sig3),
    # psp.nc: the cell and its sites
    "morphology": Field("morphology"),
    "soma": Field("soma"),
    "n_compartments": Field("compartments", _integer),
    "n_sections": Field("sections", _integer),
    "segmentation": Field("segmentation"),
    "total_dendritic_length_um": Field("total dendritic length (µm)", _microns),
    "soma_input_resistance_MOhm": Field("soma input resistance (MΩ)", sig3),
    "swc_points": Field("points in the SWC file", _integer),
    "merged_zero_length_segments": Field("zero-length segments merged", _integer),
    "site": Field("site", _integer),
    "branch": Field("branch"),
    "distance_um": Field("path distance from the soma (µm)", _microns),
    "compartment": Field("compartment", _integer),
    # theory (ann.theory, ann.theory.fewshot)
    "problem": Field("problem"),
    "method": Field("method"),
    "accuracy": Field("Bayes accuracy (%)", _percent),
    "error": Field("standard error (pp)", _percent),
    "n_samples": Field("samples", _integer),
    "n_train": Field("training samples", _integer),
    "test_acc": Field("test accuracy (%)", _percent),
    "bayes_acc": Field("Bayes accuracy (%)", _percent),
    "gap": Field("Bayes − test (pp)", _percent_points),
    "bayes_test_acc": Field("Bayes rule on the test set (%)", _percent),
    "test_acc_mean": Field("test accuracy (%)", _percent, std="test_acc_std"),
    "gap_mean": Field("Bayes − test (pp)", _percent_points),
    "n_seeds": Field("seeds", _integer),
    "class": Field("class", _integer),
    "cosine": Field("cosine of A with A*", sig3),
    "cosine_difference": Field("cosine, class-centred", sig3),
    "relative_error_difference": Field("relative error, class-centred", sig3),
    "shots": Field("training images per class", _integer),
    "mean": Field("test accuracy (%)", _percent, std="std"),
    "lr": Field("learning rate", _learning_rate),
    "val_acc": Field("validation accuracy (%)", _percent),
}
KAPPA_HEADLINES = [
    "median_r2_EI",
    "median_cv_EI",
    "median_r2_EE",
    "median_r2_II",
    "mean_rmse_linear_response",
    "mean_rmse_bilinear_response",
    "bilinear_over_linear_response",
    "mean_rmse_linear",
    "mean_rmse_bilinear",
]
CELL_PROPERTIES = [
    "morphology",
    "soma",
    "n_compartments",
    "n_sections",
    "segmentation",
    "total_dendritic_length_um",
    "soma_input_resistance_MOhm",
    "swc_points",
    "merged_zero_length_segments",
]
ACCURACY = [
    "model",
    "prior",
    "recipe",
    "seeds",
    "epochs",
    "top1_mean",
    "best_top1_mean",
    "top5_mean",
    "paper_top1",
    "compare_with",
    "ours_as_published",
    "difference_pp",
]
SIZE_AND_SPEED = [
    "model",
    "prior",
    "parameters",
    "paper_params_M",
    "macs_per_image",
    "paper_flops_G",
    "images_per_s",
]
PUBLISHED = ["model", "prior", "paper_top1", "paper_selection", "compare_with", "paper_source"]
RUNS = [
    "model",
    "prior",
    "recipe",
    "seed",
    "epochs",
    "test_top1",
    "best_top1",
    "best_epoch",
    "lag_behind_zero",
    "lag_epoch",
    "test_top5",
    "wall_time_s",
    "images_per_s",
    "device",
    "kappa_sha256",
    "commit",
]
KEY_ACCURACY = ["model", "prior", "seeds", "top1_mean", "best_top1_mean", "paper_top1"]


def _missing(value: object) -> bool:
    if value is None:
        return True
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def show(name: str, value: object, std: object = None) -> str:
    """`value` of the field `name` as the report writes it ("–" when missing); names not in
    FIELDS: numbers to 4 significant digits, anything else as text."""
    if _missing(value):
        return "–"
    field = FIELDS.get(name)
    if field is None:
        if isinstance(value, float | np.floating):
            return f"{float(value):.4g}"
        return str(value)
    text = field.fmt(value)
    return text if _missing(std) else f"{text} ± {field.fmt(std)}"


def label(name: str) -> str:
    """The label (with unit) of `name`; names not in FIELDS stand for themselves."""
    return FIELDS[name].label if name in FIELDS else name


@dataclass
class Table:
    """A table as the templates' `table` macro draws it: column labels, which columns hold
    numbers (right-aligned), every cell as text. `wrap`: long text cells wrap."""

    columns: list[str]
    numeric: list[bool]
    rows: list[list[str]]
    wrap: bool = False

    def __bool__(self) -> bool:
        return bool(self.rows)


def table(frame: pd.DataFrame, columns: Sequence[str] | None = None, wrap: bool = False) -> Table:
    """`columns` of `frame` (default: all) labelled and formatted by FIELDS; a column with
    nothing in it is left out, and so is the std column of a mean (shown with the mean)."""
    partners = {FIELDS[c].std for c in frame.columns if c in FIELDS and FIELDS[c].std}
    names = [c for c in (columns or frame.columns) if c in frame.columns and c not in partners]
    names = [c for c in names if not frame[c].map(_missing).all()]
    rows = []
    for record in frame.to_dict("records"):
        row = []
        for name in names:
            partner = FIELDS[name].std if name in FIELDS else None
            row.append(show(name, record[name], record.get(partner) if partner else None))
        rows.append(row)
    numeric = [
        FIELDS[n].numeric if n in FIELDS else pd.api.types.is_numeric_dtype(frame[n]) for n in names
    ]
    return Table([label(n) for n in names], numeric, rows, wrap)


def pairs(values: Mapping[str, object], names: Sequence[str]) -> list[tuple[str, str]]:
    """(label, shown value) of each of `names` present in `values`: a two-column table."""
    return [(label(n), show(n, values[n])) for n in names if n in values]
