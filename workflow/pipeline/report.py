"""The static HTML report: one page per stage and dataset, figures beside the pages.

Pages are rendered from the Jinja2 templates in workflow/report/templates; every figure is
copied under <report>/figures so the folder reads offline, and data files (kappa.nc, the
config) are linked relative to the report folder.

Every number and column a page shows goes through pipeline.fields. Figures are shown at
their size, 96 CSS px per inch of the figure (pipeline.files.DPI, MAX_WIDTH_IN), so the
text in them reads at its point size. The index opens with the run's key figures: κ and
the quality of the rule per cell, the accuracy table per trained dataset, hardware and time.
"""

import datetime
import json
import logging
import math
import os
import shutil
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path

import jinja2
import numpy as np
import pandas as pd
import xarray as xr
import yaml

from ann.data import HOW_TO_GET
from ann.io import git_commit
from ann.prior_statistics import SIGNS, summary_tables

from .fields import (
    ACCURACY,
    CELL_PROPERTIES,
    DATASETS,
    KAPPA_HEADLINES,
    KEY_ACCURACY,
    PUBLISHED,
    RUNS,
    SIZE_AND_SPEED,
    Table,
    pairs,
    sig3,
    table,
)
from .files import recover_folder, replace_folder, save_json, save_text
from .paper import CIFAR, DEVIATIONS, IMAGENET, protocol, published

log = logging.getLogger(__name__)

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
        save_text(text, self.out / "config.yaml")

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
        save_text(html, path)
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
        readout_ms=attrs.get("readout_ms", "?"),
        premise=attrs.get("premise", ""),
        premise_holds=bool(attrs.get("premise_holds", 1)),
        crowd=attrs.get("crowd", ""),
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
        "how_to_enable": HOW_TO_GET[dataset],
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
    concern the models and recipes of this dataset's page (None for Fashion-MNIST)."""
    rows = [row for row in DEVIATIONS if dataset in row["datasets"]]
    if not rows:
        return None
    columns = ["scope", "difference", "why", "switch"]
    return table(pd.DataFrame(rows)[columns], wrap=True)


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
                row["kappa_EI_range"] = f"{sig3(kappa.min())} to {sig3(kappa.max())}"
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


def priors_page(
    report: Report, table_path: str | Path, structure_path: str | Path, figure_path: str | Path
) -> Path:
    """The report's priors page (priors.html): the figure, the tables of summary_tables and
    where each prior's |K|^2 sits (ann.prior_statistics.structure_table)."""
    signs, spectrum = summary_tables(pd.read_csv(table_path))
    structure = pd.read_csv(structure_path)
    layer = pd.read_csv(table_path, nrows=1).layer.iloc[0]
    signs = signs.rename(
        columns={"block": "channel pairs"} | {sign: f"{sign} K (fraction)" for sign in SIGNS}
    )
    spectrum = spectrum.rename(
        columns={
            "largest": "largest eigenvalue",
            "smallest": "smallest eigenvalue",
            "positive_share": "positive eigenvalues (fraction)",
        }
    )
    return report.page(
        "priors.html",
        "priors.html.j2",
        layer=layer,
        signs=table(signs),
        spectrum=table(spectrum),
        structure=structure_table(structure),
        statistics_figure=report.figure("priors", figure_path),
    )


def structure_table(structure: pd.DataFrame) -> Table:
    """Per prior: the shares of |K|^2, the effective rank and the response sizes."""
    columns = {
        "prior": "prior",
        "block_share": "E/I block pattern (share of ‖K‖²)",
        "same_site_share": "same-site pairs, beyond the pattern",
        "distance_share": "different sites, beyond the pattern",
        "same_site_pairs": "pairs at one site (share)",
        "effective_rank": "effective rank",
        "gaussian_response": "response on N(0, I)",
        "real_input_response": "response on real inputs (before calibration)",
    }
    rows = [
        [str(row["prior"]), *(sig3(row[c]) if pd.notna(row[c]) else "–" for c in list(columns)[1:])]
        for row in structure.to_dict("records")
    ]
    return Table(list(columns.values()), [False] + [True] * (len(columns) - 1), rows)


def build_report(
    config: Mapping,
    out_dir: str | Path,
    templates: str | Path,
    cells: Mapping,
    datasets: Mapping,
    theory: Mapping,
    priors: Mapping | None = None,
    ablation: Mapping | None = None,
) -> None:
    """The linked HTML pages of the whole run, built in a folder beside out_dir that replaces
    it only when complete; manifest.json lists the pages. `priors` (table, figure of the
    prior_statistics step) adds the priors page; `ablation`: the prior ablation's page inputs
    (pipeline.ablation.ablation_page), None when it is off."""
    from .ablation import ablation_answers, ablation_page

    out_dir = Path(out_dir)
    recover_folder(out_dir)  # the report a swap cut off by a crash left aside, back in place
    staged = out_dir.with_name(f".{out_dir.name}.building")
    shutil.rmtree(staged, ignore_errors=True)
    try:
        report = Report(staged, templates, config)
        report.common["priors_page"] = bool(priors)  # the navigation links the page
        if ablation is not None:  # the navigation links the page, the index gives its answer
            report.common |= {"ablation_page": True, "ablation_answers": ablation_answers(ablation)}
        _write_pages(report, config, cells, datasets, theory)
        if priors:
            priors_page(report, priors["table"], priors["structure"], priors["figure"])
        if ablation is not None:
            ablation_page(report, ablation)
        written = sorted(path.relative_to(staged).as_posix() for path in staged.rglob("*.html"))
        save_json({"pages": written}, staged / "manifest.json")
        replace_folder(staged, out_dir)
    finally:
        shutil.rmtree(staged, ignore_errors=True)
    log.info("report written to %s", out_dir / "index.html")


def _write_pages(
    report: Report, config: Mapping, cells: Mapping, datasets: Mapping, theory: Mapping
) -> None:
    for cell, inputs in cells.items():
        dendrite_page(report, cell, inputs["kappa"], inputs["figures"], psp_path=inputs.get("psp"))
    kappa = cells[config["priors"]["cell"]]["kappa"]
    for dataset in DATASETS:
        inputs = datasets.get(dataset)
        dataset_page(
            report,
            dataset,
            config["datasets"][dataset],
            inputs["summary"] if inputs else None,
            inputs["runs"] if inputs else None,
            inputs["figures"] if inputs else {},
            kappa,
        )
    theory_page(report, theory["tables"], theory["figures"])
    trained = {name: datasets[name] for name in DATASETS if datasets.get(name)}
    index_page(report, {cell: inputs["kappa"] for cell, inputs in cells.items()}, trained)
