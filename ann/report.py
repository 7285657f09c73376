"""The static HTML report: one page per stage and dataset, figures beside the pages.

Pages are rendered from the Jinja2 templates in workflow/report/templates; every figure is
copied under <report>/figures so the folder reads offline, and data files (kappa.nc, the
config) are linked relative to the report folder.

Every number and column a page shows goes through FIELDS (label with unit, format): tables
are `Table`s built by `table()` and drawn by the templates' `table` macro (escaped by
Jinja2's autoescape, inside a horizontally scrollable box). Figures are shown at their
size, 96 CSS px per inch of the figure (dendrite_sim.figures.DPI, MAX_WIDTH_IN), so the
text in them reads at its point size. The index opens with the run's key figures: κ and
the quality of the rule per cell, the accuracy table per trained dataset, hardware and time.
"""

import datetime
import json
import math
import os
import shutil
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
import numpy as np
import pandas as pd
import xarray as xr
import yaml

from .io import git_commit, write_atomic
from .paper import CIFAR, DEVIATIONS, IMAGENET, protocol, published

DATASETS = {
    "fashion_mnist": "Fashion-MNIST",
    "cifar10": "CIFAR-10",
    "cifar100": "CIFAR-100",
    "imagenet": "ImageNet-1K",
}
HOW_TO_ENABLE = {
    "fashion_mnist": "install Debian's dataset-fashion-mnist (files in /usr/share/datasets/fashion-mnist) "
    "or set datasets.fashion_mnist.download: true",
    "cifar10": "download the CIFAR-10 python version from https://www.cs.toronto.edu/~kriz/cifar.html, "
    "unpack it and set datasets.cifar10.root to the folder holding cifar-10-batches-py/",
    "cifar100": "download the CIFAR-100 python version from https://www.cs.toronto.edu/~kriz/cifar.html, "
    "unpack it and set datasets.cifar100.root to the folder holding cifar-100-python/",
    "imagenet": "set datasets.imagenet.root to a folder holding train/<wnid>/*.JPEG and val/<wnid>/*.JPEG",
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


def _sig3(v: float) -> str:
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
    # training runs (metrics.json, runs.csv) and their summary (ann.summary)
    "dataset": Field("dataset"),
    "model": Field("model"),
    "prior": Field("quadratic prior"),
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
    "paper_top1": Field("published top-1 (%)", _per_cent, std="paper_top1_std"),
    "paper_selection": Field("published: selection"),
    "compare_with": Field("compared with our"),
    "ours_as_published": Field("ours, same selection (%)", _percent),
    "difference_pp": Field("ours − published (pp)", _signed),
    "paper_source": Field("where the published number comes from"),
    "parameters": Field("parameters (M)", _millions),
    "paper_params_M": Field("published parameters (M)", _sig3),
    "macs_per_image": Field("MACs per image", _count),
    "paper_flops_G": Field("published FLOPs (G)", _sig3),
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
    "median_cv_EI": Field("median CV of κ_EI across strengths", _sig3),
    "median_r2_EE": Field("median R², E-E fits", _r2),
    "median_r2_II": Field("median R², I-I fits", _r2),
    "mean_rmse_linear_response": Field("multi-input RMSE, linear sum (mV, response)", _sig3),
    "mean_rmse_bilinear_response": Field("multi-input RMSE, bilinear rule (mV, response)", _sig3),
    "bilinear_over_linear_response": Field("multi-input RMSE, bilinear / linear", _sig3),
    "mean_rmse_linear": Field("multi-input RMSE, linear sum (mV, whole trial)", _sig3),
    "mean_rmse_bilinear": Field("multi-input RMSE, bilinear rule (mV, whole trial)", _sig3),
    # psp.nc: the cell and its sites
    "morphology": Field("morphology"),
    "soma": Field("soma"),
    "n_compartments": Field("compartments", _integer),
    "n_sections": Field("sections", _integer),
    "segmentation": Field("segmentation"),
    "total_dendritic_length_um": Field("total dendritic length (µm)", _microns),
    "soma_input_resistance_MOhm": Field("soma input resistance (MΩ)", _sig3),
    "swc_points": Field("points in the SWC file", _integer),
    "merged_zero_length_segments": Field("zero-length segments merged", _integer),
    "site": Field("site", _integer),
    "branch": Field("branch"),
    "distance_um": Field("path distance from the soma (µm)", _microns),
    "compartment": Field("compartment", _integer),
    # theory (ann.theory, ann.fewshot)
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
    "cosine": Field("cosine of A with A*", _sig3),
    "cosine_difference": Field("cosine, class-centred", _sig3),
    "relative_error_difference": Field("relative error, class-centred", _sig3),
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
    "seed",
    "epochs",
    "test_top1",
    "best_top1",
    "best_epoch",
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


# ------------------------------------------------------------------------------- pages
CSS_PX_PER_INCH = 96


class Report:
    """Renders pages into `out_dir`, copying the figures they show into out_dir/figures."""

    def __init__(self, out_dir: str | Path, templates: str | Path, config: Mapping):
        self.out = Path(out_dir)
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(str(templates)),
            autoescape=jinja2.select_autoescape(["html", "j2"]),
        )
        self.common = {
            "generated": datetime.datetime.now().isoformat(timespec="seconds"),
            "commit": git_commit(Path(__file__).parent),
            "datasets": DATASETS,
            "cells": list(config["dendrite"]["cells"]),
        }
        self.out.mkdir(parents=True, exist_ok=True)
        text = yaml.safe_dump(dict(config), sort_keys=False)
        write_atomic(self.out / "config.yaml", lambda tmp: Path(tmp).write_text(text))

    def link(self, path: str | Path) -> str:
        return os.path.relpath(Path(path).resolve(), self.out.resolve())

    def figure(self, section: str, path: str | Path) -> dict[str, object]:
        """Copy the figure into the report; its address and its size in CSS px (its size in
        inches at 96 px per inch, from the PNG's resolution)."""
        from PIL import Image

        target = self.out / "figures" / section / Path(path).name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
        with Image.open(target) as image:
            (width, height), dpi = image.size, image.info.get("dpi", (CSS_PX_PER_INCH,))[0]
        scale = CSS_PX_PER_INCH / float(dpi or CSS_PX_PER_INCH)
        return {
            "src": target.relative_to(self.out).as_posix(),
            "width": round(width * scale),
            "height": round(height * scale),
        }

    def page(self, name: str, template: str, **context: object) -> Path:
        html = self.env.get_template(template).render(**self.common, page=name, **context)
        path = self.out / name
        write_atomic(path, lambda tmp: Path(tmp).write_text(html))
        return path


def _cell_properties(psp_path: str | Path | None) -> list[tuple[str, str]]:
    if psp_path is None or not Path(psp_path).is_file():
        return []
    with xr.open_dataset(psp_path) as ds:
        attrs = dict(ds.attrs)
    if not attrs.get("swc_points"):
        attrs.pop("swc_points", None)
        attrs.pop("merged_zero_length_segments", None)
    return pairs(attrs, CELL_PROPERTIES)


def dendrite_page(
    report: Report,
    cell: str,
    kappa_path: str | Path,
    figures: Mapping,
    psp_path: str | Path | None = None,
) -> Path:
    """The page of one cell: its morphology, sites, the κ headline and figures."""
    psp_path = psp_path or Path(kappa_path).with_name("psp.nc")
    with xr.open_dataset(kappa_path) as ds:
        attrs = dict(ds.attrs)
        sites = pd.DataFrame(
            {
                "site": ds.site.values,
                "branch": ds.site_branch.values,
                "distance_um": ds.site_distance.values,
                "compartment": ds.site_compartment.values,
            }
        )
    return report.page(
        f"dendrite_{cell}.html",
        "dendrite.html.j2",
        cell=cell,
        headline=pairs(attrs, KAPPA_HEADLINES),
        properties=_cell_properties(psp_path),
        kappa_link=report.link(kappa_path),
        psp_link=report.link(psp_path),
        provenance={k: attrs.get(k, "") for k in ("simulator", "brian2_version", "config_hash")},
        sites=table(sites),
        figures={k: report.figure(f"dendrite_{cell}", p) for k, p in figures.items()},
    )


def dataset_page(
    report: Report,
    dataset: str,
    source: Mapping,
    summary_path: str | Path | None,
    runs_path: str | Path | None,
    figures: Mapping,
    kappa_path: str | Path,
) -> Path:
    """A dataset's page: accuracy over seeds beside the published numbers under their
    protocol, size and speed, figures and every run; or how to enable the dataset."""
    context = {
        "dataset": dataset,
        "title": DATASETS[dataset],
        "root": source.get("root"),
        "how_to_enable": HOW_TO_ENABLE[dataset],
        "trained": summary_path is not None,
        "deviations": deviations_table(dataset),
        "provenance": provenance_table(dataset),
    }
    if summary_path is not None:
        summary, runs = pd.read_csv(summary_path), pd.read_csv(runs_path)
        published = summary[summary.paper_top1.notna()]
        kappa_hashes = sorted({h for h in runs.kappa_sha256.dropna()})
        context |= {
            "accuracy": table(summary, ACCURACY),
            "any_published": len(published) > 0,
            "size": table(summary, SIZE_AND_SPEED),
            "published": table(published, PUBLISHED, wrap=True),
            "runs": table(runs, RUNS),
            "figures": {k: report.figure(dataset, p) for k, p in figures.items()},
            "kappa_link": report.link(kappa_path),
            "kappa_hashes": kappa_hashes,
            "commits": sorted(set(runs.commit)),
        }
    return report.page(f"{dataset}.html", "dataset.html.j2", **context)


def provenance_table(dataset: str) -> Table | None:
    """Every published number of this dataset: its source, its selection rule and which of our
    rows and accuracies it is compared with (None for Fashion-MNIST)."""
    if dataset == "fashion_mnist":
        return None
    names = list(IMAGENET) if dataset == "imagenet" else list(CIFAR)
    if dataset != "imagenet":
        names += [f"dit_resnet{d}_transposed" for d in (20, 32, 56, 110)]
    rows = []
    for name in names:
        number, how = published(dataset, name.removesuffix("_transposed")), protocol(dataset, name)
        rows.append(
            {
                "model": name,
                "paper_top1": number["top1"],
                "paper_top1_std": number["top1_std"]
                if number["top1_std"] is not None
                else math.nan,
                "paper_selection": how["selection"],
                "compare_with": how["compare_with"],
                "paper_source": how["source"],
            }
        )
    return table(pd.DataFrame(rows), wrap=True)


def deviations_table(dataset: str) -> Table | None:
    """Our deliberate differences from the official code and the baselines' papers that
    concern the models and recipe of this dataset's page (None for Fashion-MNIST)."""
    if dataset == "fashion_mnist":
        return None
    imagenet = dataset == "imagenet"
    rows = [
        row
        for row in DEVIATIONS
        if ("imagenet" in row["scope"]) == imagenet
        and (imagenet or "recipe" not in row["scope"] or "cifar" in row["scope"])
    ]
    return table(pd.DataFrame(rows), wrap=True)


def theory_page(report: Report, tables: Mapping[str, str | Path], figures: Mapping) -> Path:
    rendered = {name: table(pd.read_csv(path)) for name, path in tables.items()}
    return report.page(
        "theory.html",
        "theory.html.j2",
        tables=rendered,
        figures={k: report.figure("theory", p) for k, p in figures.items()},
    )


# -------------------------------------------------------------------- the run's key figures
def cell_key_figures(kappa_paths: Mapping[str, str | Path]) -> Table:
    """Per cell: sites, the range of κ_EI over its site pairs, the median R² of the fits and
    how much better the bilinear rule predicts multi-input trials than the linear sum."""
    rows = []
    for cell, path in kappa_paths.items():
        with xr.open_dataset(path) as ds:
            kappa = ds.kappa_EI.values[np.isfinite(ds.kappa_EI.values)]
            row = {"cell": cell, "sites": ds.sizes.get("site")}
            if kappa.size:
                row["kappa_EI_range"] = f"{_sig3(kappa.min())} to {_sig3(kappa.max())}"
            for key in ("median_r2_EI", "median_r2_EE", "median_r2_II"):
                row[key] = ds.attrs.get(key)
            row["bilinear_over_linear_response"] = ds.attrs.get("bilinear_over_linear_response")
        rows.append(row)
    return table(pd.DataFrame(rows))


def _device(metrics: Mapping) -> str:
    threads = metrics.get("threads")
    if metrics.get("device") == "cpu" and threads:
        return f"cpu ({threads} thread{'s' if threads != 1 else ''} per process)"
    return str(metrics.get("device", "unknown"))


def hardware(datasets: Mapping[str, Sequence[str | Path]]) -> Table:
    """Per trained dataset, from the runs' metrics.json: the devices, processes per run,
    PyTorch, the training time of all runs together and of the longest."""
    rows = []
    for dataset, paths in datasets.items():
        runs = [json.loads(Path(p).read_text()) for p in paths]
        if not runs:
            continue
        devices = Counter(_device(m) for m in runs)
        rows.append(
            {
                "dataset": DATASETS.get(dataset, dataset),
                "runs": len(runs),
                "device": "; ".join(
                    d if len(devices) == 1 else f"{d}: {n} runs" for d, n in devices.items()
                ),
                "processes": ", ".join(
                    str(w) for w in sorted({m.get("world_size", 1) for m in runs})
                ),
                "torch_version": ", ".join(
                    sorted({str(m.get("torch_version") or "unknown") for m in runs})
                ),
                "total_time_s": sum(float(m["wall_time_s"]) for m in runs),
                "longest_s": max(float(m["wall_time_s"]) for m in runs),
            }
        )
    return table(pd.DataFrame(rows))


def index_page(
    report: Report,
    kappa_paths: Mapping[str, str | Path],
    datasets: Mapping[str, Mapping],
) -> Path:
    """The overview: the run's key figures (κ and fit quality per cell, the accuracy table
    of every trained dataset, hardware and time), then a link to every page. `datasets`:
    per trained dataset its "summary" (summary.csv) and "metrics" (the runs' metrics.json)."""
    accuracy = {
        name: table(pd.read_csv(inputs["summary"]), KEY_ACCURACY)
        for name, inputs in datasets.items()
    }
    return report.page(
        "index.html",
        "index.html.j2",
        trained={name: len(inputs["metrics"]) for name, inputs in datasets.items()},
        key_cells=cell_key_figures(kappa_paths),
        key_accuracy=accuracy,
        key_hardware=hardware({name: inputs["metrics"] for name, inputs in datasets.items()}),
    )
