"""The report people read: numbers with units and sensible rounding (pipeline.fields.FIELDS),
tables without raw column names, the index's key figures, and figures at a readable size
written by one saver at one resolution."""

import json
import re
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import xarray as xr
from PIL import Image

from dendrite_sim import figures
from pipeline import fields, files, report

ROOT = Path(__file__).resolve().parents[1]
TEMPLATES = ROOT / "workflow" / "report" / "templates"


@pytest.mark.parametrize(
    "name, value, std, shown",
    [
        ("top1_mean", 0.92345678901234, 0.0123456, "92.35 ± 1.23"),
        ("top1_mean", 0.9, float("nan"), "90.00"),  # one seed: no std
        ("paper_top1", 68.66, 0.34, "68.66 ± 0.34"),  # published: per cent already
        ("difference_pp", 1.0912345, None, "+1.09"),
        ("parameters", 274106, None, "0.274"),
        ("macs_per_image", 40520192, None, "40.5 M"),
        ("macs_per_image", 4.47e9, None, "4.47 G"),
        ("wall_time_s", 8.081977, None, "8.1 s"),
        ("wall_time_s", 210.0, None, "3.5 min"),
        ("wall_time_s", 9000.0, None, "2.50 h"),
        ("images_per_s", 12345.678, None, "12,346"),
        ("median_cv_EI", 0.0123456789, None, "0.0123"),  # 3 significant digits
        ("median_r2_EI", 0.99712345, None, "0.997"),
        ("gap", -0.0014642759, None, "-0.15"),  # a difference of fractions, in pp
        ("top1_mean", None, None, "–"),
        ("an_unknown_column", 0.123456789, None, "0.1235"),
    ],
)
def test_numbers_are_shown_rounded_with_their_unit(name, value, std, shown):
    assert fields.show(name, value, std) == shown


def test_every_field_has_a_label_and_a_working_format():
    for name, field in fields.FIELDS.items():
        assert field.label and not re.fullmatch(r"\w+_\w+", field.label), name  # not raw
        assert fields.show(name, 1.0 if field.numeric else "x")  # no exception
        if field.std:
            assert field.std not in fields.FIELDS, name  # shown with its mean, not alone


def test_table_labels_formats_and_leaves_out_empty_and_std_columns():
    frame = pd.DataFrame(
        {
            "model": ["resnet20", "dit_resnet20"],
            "top1_mean": [0.71875, 0.8958333333333334],
            "top1_std": [np.nan, 0.0123],
            "top5_mean": [np.nan, np.nan],
            "parameters": [274106, 307386],
        }
    )
    table = fields.table(frame)
    assert table.columns == ["model", "final top-1 (%)", "parameters (M)"]
    assert table.numeric == [False, True, True]
    assert table.rows == [["resnet20", "71.88", "0.274"], ["dit_resnet20", "89.58 ± 1.23", "0.307"]]
    assert not fields.table(frame.iloc[:0])  # an empty table is falsy: the page leaves it out


def test_table_macro_escapes_and_scrolls(tmp_path):
    pages = report.Report(tmp_path, TEMPLATES, {"dendrite": {"cells": {}}})
    frame = pd.DataFrame({"model": ["<script>x</script>"], "test_acc": [0.5]})
    macro = pages.env.get_template("macros.html.j2").module.table
    html = str(macro(fields.table(frame)))
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert html.startswith('<div class="scroll">')
    css = (TEMPLATES / "base.html.j2").read_text()
    assert re.search(r"\.scroll \{[^}]*overflow-x: auto", css)


# ------------------------------------------------------------------------- the index
def write_kappa(path: Path, n_sites: int = 3) -> Path:
    """A kappa.nc with what the report reads: κ for E-I, E-E, I-I, sites and headline attrs."""
    rng = np.random.default_rng(0)
    site = np.arange(n_sites)
    ds = xr.Dataset(
        {
            "kappa_EI": (("e_site", "i_site"), rng.uniform(-0.5, 0.02, (n_sites, n_sites))),
            "kappa_EE": (("site_a", "site_b"), rng.uniform(-0.1, 0.1, (n_sites, n_sites))),
            "kappa_II": (("site_a", "site_b"), rng.uniform(0, 0.5, (n_sites, n_sites))),
            "site_branch": ("site", [f"dend[{s}]" for s in site]),
            "site_distance": ("site", 40.0 * (site + 1)),
            "site_compartment": ("site", site + 3),
        },
        coords={"site": site, "e_site": site, "i_site": site, "site_a": site, "site_b": site},
        attrs={
            "median_r2_EI": 0.998765,
            "median_r2_EE": 0.97,
            "median_r2_II": 0.99,
            "bilinear_over_linear_response": 0.4123456,
        },
    )
    ds.kappa_EI[0, 0] = np.nan  # a pair not simulated
    ds.to_netcdf(path, engine="h5netcdf")
    return path


def write_metrics(folder: Path, seed: int, device: str, wall: float) -> Path:
    folder.mkdir(parents=True)
    metrics = {
        "seed": seed,
        "device": device,
        "world_size": 2,
        "threads": None,
        "wall_time_s": wall,
        "torch_version": "2.99.0+cu999",
    }
    (folder / "metrics.json").write_text(json.dumps(metrics))
    return folder / "metrics.json"


def test_index_opens_with_the_key_figures_of_the_run(tmp_path):
    kappa = write_kappa(tmp_path / "kappa.nc")
    with xr.open_dataset(kappa) as ds:
        low, high = np.nanmin(ds.kappa_EI.values), np.nanmax(ds.kappa_EI.values)
    summary = pd.DataFrame(
        {
            "model": ["dit_resnet20"],
            "prior": ["zero"],
            "seeds": [2],
            "top1_mean": [0.93456],
            "top1_std": [0.001],
            "best_top1_mean": [0.94],
            "best_top1_std": [0.002],
            "paper_top1": [92.66],
            "paper_top1_std": [np.nan],
        }
    )
    summary.to_csv(tmp_path / "summary.csv", index=False)
    metrics = [
        write_metrics(tmp_path / f"seed{s}", s, "NVIDIA H200", wall)
        for s, wall in ((0, 100.0), (1, 110.0))
    ]
    pages = report.Report(tmp_path / "report", TEMPLATES, {"dendrite": {"cells": {"ca1": ""}}})
    html = report.index_page(
        pages,
        {"ca1": kappa},
        {"cifar10": {"summary": tmp_path / "summary.csv", "metrics": metrics}},
    ).read_text()
    key = html.split('<section class="key">', 1)[1].split("</section>", 1)[0]
    assert html.index('<section class="key">') < html.index("<h2>1–2.")  # before the links
    for text in (
        f"{low:.3g} to {high:.3g}",  # κ_EI range
        "0.999",  # median R² of the E-I fits
        "0.412",  # bilinear / linear RMSE
        "93.46 ± 0.10",  # final top-1
        "94.00 ± 0.20",  # best of epochs
        "92.66",  # published
        "NVIDIA H200",
        "2.99.0+cu999",
        "3.5 min",  # training time of both runs
        "110.0 s",  # the longest
        "CIFAR-10",
    ):
        assert text in key, text
    assert "top1_mean" not in html and "0.93456" not in html


# ------------------------------------------------------------------------- figures
def test_kappa_heatmaps_are_readable(tmp_path):
    """Eight sites: every panel within the report's column, every text at least 9 pt, the
    value in every simulated cell, a colour bar in 1/mV; the PNG at the one DPI."""
    kappa = write_kappa(tmp_path / "kappa.nc", n_sites=8)
    with xr.open_dataset(kappa) as ds:
        fig = figures.kappa_heatmaps(ds, max_width_in=files.MAX_WIDTH_IN)
    width, _ = fig.get_size_inches()
    assert width <= files.MAX_WIDTH_IN
    texts = [t for t in fig.findobj(plt.Text) if t.get_text() and t.get_visible()]
    assert min(t.get_fontsize() for t in texts) >= 9
    annotations = [t for ax in fig.axes for t in ax.texts]
    assert len(annotations) == 3 * 8 * 8 - 1  # one E-I pair not simulated
    assert {"κ_EI (1/mV)", "κ_EE (1/mV)", "κ_II (1/mV)"} <= {t.get_text() for t in texts}
    files.save_figure(fig, tmp_path / "heatmaps.png")
    with Image.open(tmp_path / "heatmaps.png") as image:
        assert round(image.info["dpi"][0]) == files.DPI
        assert image.size[0] <= files.MAX_WIDTH_IN * files.DPI


def test_one_figure_saver():
    """The libraries return their figures; the workflow writes every one of them through
    pipeline.files.save_figure, at one resolution."""
    calls = {
        str(path.relative_to(ROOT))
        for folder in ("ann", "dendrite_sim", "benchmarks", "workflow")
        for path in (ROOT / folder).rglob("*.py")
        if ".savefig(" in path.read_text()
    }
    assert calls == {"workflow/pipeline/files.py"}


def test_a_failed_report_build_keeps_the_previous_report(tmp_path, default_config):
    """The pages are built beside the report folder; a build that fails leaves the old report
    as it was and nothing half-written."""
    from pipeline.report import build_report

    report = tmp_path / "report"
    report.mkdir()
    (report / "index.html").write_text("the previous report")
    missing = {"kappa": tmp_path / "missing.nc", "figures": {}, "psp": None}
    with pytest.raises(Exception):  # noqa: B017 (any failure of the build)
        build_report(
            default_config,
            report,
            ROOT / "workflow/report/templates",
            {"pyramidal": missing},
            {},
            {"tables": {}, "figures": {}},
        )
    assert (report / "index.html").read_text() == "the previous report"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report"]
