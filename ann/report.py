"""The static HTML report: one page per stage and dataset, figures beside the pages.

Pages are rendered from the Jinja2 templates in workflow/report/templates with tables from
pandas; every figure is copied under <report>/figures so the folder reads offline, and
data files (kappa.nc, the config) are linked relative to the report folder.
"""

import datetime
import math
import os
import shutil
from collections.abc import Mapping
from pathlib import Path

import jinja2
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
KAPPA_HEADLINES = {
    "median_r2_EI": "median R² of the E-I fits",
    "median_cv_EI": "median CV of κ_EI across strengths",
    "median_r2_EE": "median R² of the E-E fits",
    "median_r2_II": "median R² of the I-I fits",
    "mean_rmse_linear_response": "multi-input RMSE, linear sum (response window, mV)",
    "mean_rmse_bilinear_response": "multi-input RMSE, bilinear rule (response window, mV)",
    "bilinear_over_linear_response": "bilinear / linear RMSE (response window)",
    "mean_rmse_linear": "multi-input RMSE, linear sum (whole trial, mV)",
    "mean_rmse_bilinear": "multi-input RMSE, bilinear rule (whole trial, mV)",
}


def _table(frame: pd.DataFrame, digits: int = 4, wrap: bool = False) -> str:
    """An HTML table; wrap=True lets long text cells wrap (left-aligned)."""
    return frame.to_html(
        index=False,
        na_rep="–",
        float_format=lambda v: f"{v:.{digits}g}",
        classes="table wrap" if wrap else "table",
        border=0,
    )


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

    def figure(self, section: str, path: str | Path) -> str:
        target = self.out / "figures" / section / Path(path).name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
        return target.relative_to(self.out).as_posix()

    def page(self, name: str, template: str, **context: object) -> Path:
        html = self.env.get_template(template).render(**self.common, page=name, **context)
        path = self.out / name
        write_atomic(path, lambda tmp: Path(tmp).write_text(html))
        return path


CELL_PROPERTIES = {
    "morphology": "morphology",
    "soma": "soma",
    "n_compartments": "compartments",
    "n_sections": "sections",
    "segmentation": "segmentation",
    "total_dendritic_length_um": "total dendritic length (µm)",
    "soma_input_resistance_MOhm": "soma input resistance (MΩ)",
    "swc_points": "points in the SWC file",
    "merged_zero_length_segments": "zero-length segments merged",
}


def _cell_properties(psp_path: str | Path | None) -> list[tuple[str, str]]:
    if psp_path is None or not Path(psp_path).is_file():
        return []
    with xr.open_dataset(psp_path) as ds:
        attrs = dict(ds.attrs)
    rows = []
    for key, label in CELL_PROPERTIES.items():
        swc_only = key in ("swc_points", "merged_zero_length_segments")
        if key not in attrs or (swc_only and not attrs.get("swc_points")):
            continue
        value = attrs[key]
        if isinstance(value, float) or hasattr(value, "dtype"):
            value = f"{float(value):.4g}"
        rows.append((label, str(value)))
    return rows


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
                "distance (µm)": ds.site_distance.values,
                "compartment": ds.site_compartment.values,
            }
        )
    headline = [(label, attrs[key]) for key, label in KAPPA_HEADLINES.items() if key in attrs]
    return report.page(
        f"dendrite_{cell}.html",
        "dendrite.html.j2",
        cell=cell,
        headline=headline,
        properties=_cell_properties(psp_path),
        kappa_link=report.link(kappa_path),
        psp_link=report.link(psp_path),
        provenance={k: attrs.get(k, "") for k in ("simulator", "brian2_version", "config_hash")},
        sites=_table(sites),
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
        shown = summary.assign(
            top1_final=_mean_std(summary.top1_mean, summary.top1_std),
            top1_best_of_epochs=_mean_std(summary.best_top1_mean, summary.best_top1_std),
            params_M=summary.parameters / 1e6,
            MMACs=summary.macs_per_image / 1e6,
        )[
            [
                "model",
                "prior",
                "seeds",
                "epochs",
                "top1_final",
                "top1_best_of_epochs",
                "top5_mean",
                "params_M",
                "MMACs",
                "images_per_s",
                "paper_params_M",
                "paper_flops_G",
            ]
        ]
        published = summary[summary.paper_top1.notna()][
            [
                "model",
                "prior",
                "paper_top1",
                "paper_top1_std",
                "paper_selection",
                "compare_with",
                "ours_as_published",
                "difference_pp",
                "paper_source",
            ]
        ]
        kappa_hashes = sorted({h for h in runs.kappa_sha256.dropna()})
        context |= {
            "summary": _table(shown),
            "published": _table(published, wrap=True) if len(published) else None,
            "runs": _table(runs.drop(columns=["run_dir", "dataset"])),
            "figures": {k: report.figure(dataset, p) for k, p in figures.items()},
            "kappa_link": report.link(kappa_path),
            "kappa_hashes": kappa_hashes,
            "commits": sorted(set(runs.commit)),
        }
    return report.page(f"{dataset}.html", "dataset.html.j2", **context)


def _mean_std(mean: pd.Series, std: pd.Series) -> pd.Series:
    return mean.map("{:.4f}".format) + " ± " + std.fillna(0).map("{:.4f}".format)


def provenance_table(dataset: str) -> str | None:
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
                "our row": name,
                "published top-1 (%)": number["top1"],
                "± (seeds)": number["top1_std"] if number["top1_std"] is not None else math.nan,
                "selection": how["selection"],
                "compare with our": how["compare_with"],
                "source": how["source"],
            }
        )
    return _table(pd.DataFrame(rows), wrap=True)


def deviations_table(dataset: str) -> str | None:
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
    return _table(pd.DataFrame(rows), wrap=True)


def theory_page(report: Report, tables: Mapping[str, str | Path], figures: Mapping) -> Path:
    rendered = {name: _table(pd.read_csv(path)) for name, path in tables.items()}
    return report.page(
        "theory.html",
        "theory.html.j2",
        tables=rendered,
        figures={k: report.figure("theory", p) for k, p in figures.items()},
    )


def index_page(report: Report, trained: Mapping[str, int]) -> Path:
    return report.page("index.html", "index.html.j2", trained=trained)
