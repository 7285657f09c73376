"""The whole workflow on fixtures: a tiny end-to-end run, its report in a real browser,
single-stage reruns, change detection, and the DAG of the paper's full grid."""

import json
import re
import subprocess
from pathlib import Path

import pytest
from browser import CHROMIUM
from conftest import run_snakemake
from fixtures import (
    write_cifar10,
    write_cifar100,
    write_imagenet,
)

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]


def snakemake(workdir: Path, config: dict, *args: str) -> subprocess.CompletedProcess:
    return run_snakemake(workdir, config, *args)


def planned_jobs(output: str) -> dict[str, int]:
    """The 'Job stats' table of a dry run."""
    table = output.split("Job stats:", 1)[1].split("\n\n", 1)[0]
    return {
        m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M) if m[1] != "total"
    }


@pytest.fixture(scope="module")
def tiny_run(tiny_workflow):
    return tiny_workflow


def test_tiny_run_produces_every_stage(tiny_run):
    workdir, _ = tiny_run
    results = workdir / "results"
    for path in (
        "dendrite/pyramidal/psp.nc",
        "dendrite/pyramidal/kappa.nc",
        "dendrite/pyramidal/figures/kappa_heatmaps.png",
        "dendrite/pyramidal/figures/morphology.png",
        "priors/dit_resnet20/bio/seed0.pt",
        "priors/statistics.csv",
        "dendrite/pyramidal_nmda/kappa.nc",
        "report/priors.html",
        "train/fashion_mnist/resnet20/none/seed0/metrics.json",
        "train/fashion_mnist/dit_resnet20/zero/seed0/metrics.json",
        "train/fashion_mnist/dit_resnet20/bio/seed0/metrics.json",
        "train/fashion_mnist/summary.csv",
        "theory/gaussian_accuracy.csv",
        "theory/fewshot_summary.csv",
        "report/index.html",
        "report/cifar10.html",
        "dendrite/sweeps/nmda_g_ratio.nc",
        "dendrite/sweeps/E_GABA_mV.nc",
        "dendrite/sweeps/figures/nmda_g_ratio.png",
        "dendrite/sweeps/figures/E_GABA_mV.png",
    ):
        assert (results / path).is_file(), path
    assert not list((results / "dendrite/pyramidal").glob("chunks/*.nc"))  # temporary
    bio = json.loads(
        (results / "train/fashion_mnist/dit_resnet20/bio/seed0/metrics.json").read_text()
    )
    assert bio["kappa_sha256"] and bio["epochs"] == 3 and bio["world_size"] == 2
    page = (results / "report/cifar10.html").read_text()
    assert "not found" in page and "datasets.cifar10.root" in page
    assert "dit_resnet*_transposed" in page and "He et al." in page  # provenance, deviations
    import pandas as pd

    summary = pd.read_csv(results / "train/fashion_mnist/summary.csv")
    for column in ("top1_mean", "top1_std", "best_top1_mean", "best_top1_std"):
        assert summary[column].notna().all() or column.endswith("std"), column
    assert (summary.best_top1_mean >= summary.top1_mean).all()
    assert (results / "theory/fewshot_lr_sweep.csv").is_file()
    cell = (results / "report/dendrite_pyramidal.html").read_text()
    assert "morphology.png" in cell and "soma input resistance" in cell
    assert "nmda_g_ratio.png" in cell and "E_GABA_mV.png" in cell  # the sweeps, on their cell
    assert "premise" in cell and "readout_choice.png" in cell


needs_chromium = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="Debian's chromium is not installed (make test installs it)"
)


@pytest.fixture(scope="module")
def report_views(tiny_run, tmp_path_factory):
    """Every page of the tiny run's report read in chromium at 1280 px, with screenshots."""
    from browser import read_report

    index = tiny_run[0] / "results" / "report" / "index.html"
    return read_report(index, tmp_path_factory.mktemp("screenshots"))


@pytest.mark.browser
@needs_chromium
def test_report_links_resolve_and_images_load_in_chromium(report_views):
    assert len(report_views) == 10  # index, two cells, four datasets, theory, priors, ablation
    problems = [f"{v.path.name}: {p}" for v in report_views for p in v.broken + v.missing_images()]
    assert not problems, problems
    assert sum(len(v.images) for v in report_views) >= 12


@pytest.mark.browser
@needs_chromium
def test_report_fits_a_1280px_window(report_views):
    """No page is wider than a 1280 px window: every table fits its column or scrolls in
    its own box; the screenshot of every page is the window's width."""
    from browser import WIDTH, png_size

    problems = [f"{v.path.name}: {p}" for v in report_views for p in v.overflows()]
    assert not problems, problems
    for view in report_views:
        assert view.viewport == WIDTH
        width, height = png_size(view.screenshot)
        assert width == WIDTH and height >= 400, (view.path.name, width, height)
    assert sum(len(v.tables) for v in report_views) >= 10


@pytest.mark.browser
@needs_chromium
def test_report_shows_figures_at_their_size(report_views):
    """No figure is shrunk to fit the page: each is at most as wide as the column at 96 px
    per inch, so the text in it reads at its point size (the κ heatmaps were at half)."""
    from pipeline.files import DPI

    problems = [f"{v.path.name}: {p}" for v in report_views for p in v.shrunk_images(DPI)]
    assert not problems, problems


def test_single_stage_reruns(tiny_run):
    workdir, config = tiny_run
    again = snakemake(workdir, config, f"{config['results_dir']}/dendrite/pyramidal/kappa.nc")
    assert again.returncode == 0 and "Nothing to be done" in again.stdout
    forced = snakemake(workdir, config, "--forcerun", "fit_kappa", "-n")
    jobs = planned_jobs(forced.stdout)
    assert {"fit_kappa", "kappa_figures", "build_prior", "report"} <= set(jobs)
    assert not {"simulate_psp", "plan_trials", "theory_gaussian", "theory_fewshot"} & set(jobs)
    assert jobs["train"] == 1  # only the run that uses the bio prior


def reversed_keys(value):
    """The config with the keys of every mapping in reverse order."""
    if isinstance(value, dict):
        return {key: reversed_keys(value[key]) for key in reversed(list(value))}
    if isinstance(value, list):
        return [reversed_keys(item) for item in value]
    return value


@pytest.mark.parametrize(
    "change", ["keys in reverse order", "dendrite.chunks", "train.threads", "train.compile"]
)
def test_settings_that_change_no_result_rerun_nothing(tiny_run, change):
    """The same config written in another key order, with another number of simulation
    processes or training threads, or torch.compile off where auto is off (the CPU), plans no
    job (params are compared with sorted keys and hold only what changes a result)."""
    workdir, config = tiny_run
    if change == "dendrite.chunks":
        edited = {**config, "dendrite": {**config["dendrite"], "chunks": 1}}
    elif change.startswith("train."):
        value = {"train.threads": 2, "train.compile": False}[change]
        edited = {**config, "train": {**config["train"], change.removeprefix("train."): value}}
    else:
        edited = reversed_keys(config)
        assert list(edited) != list(config)
    run = snakemake(workdir, edited, "-n")
    assert run.returncode == 0, run.stdout[-3000:]
    assert "Nothing to be done" in run.stdout, run.stdout[-3000:]


KAPPA_DEPENDENTS = {
    "fit_kappa",
    "kappa_figures",
    "build_prior",
    "train",
    "summarise_dataset",
    "prior_ablation",
    "prior_lowdata_lr",
    "prior_lowdata_anchor",
    "prior_lowdata_seed",
    "prior_lowdata",
}


@pytest.mark.parametrize(
    "path, value, expected",
    [
        (
            ("kappa", "window_ms"),
            [10.0, 40.0],
            KAPPA_DEPENDENTS | {"prior_statistics", "report", "all"},
        ),
        (("theory", "gaussian", "n_test"), 1000, {"theory_gaussian", "report", "all"}),
        (
            ("recipes", "fmnist_short", "lr"),
            0.01,
            {"train", "summarise_dataset", "prior_ablation", "report", "all"},
        ),
    ],
)
def test_editing_a_key_reruns_exactly_its_dependents(tiny_run, path, value, expected):
    workdir, config = tiny_run
    edited = json.loads(json.dumps(config))
    *parents, leaf = path
    section = edited
    for key in parents:
        section = section[key]
    section[leaf] = value
    jobs = planned_jobs(snakemake(workdir, edited, "-n").stdout)
    assert set(jobs) == expected


def test_a_models_own_recipe_reruns_that_model_alone(tiny_run):
    """Moving resnet20 to a recipe of its own (datasets.<name>.model_recipes) reruns its runs
    (one per seed of the grid and the ablation) and what reads them, not dit_resnet20's;
    then editing that recipe reruns the same runs, and editing the dataset's recipe the others."""
    workdir, config = tiny_run
    edited = json.loads(json.dumps(config))
    edited["recipes"]["fmnist_mine"] = dict(edited["recipes"]["fmnist_short"])
    edited["datasets"]["fashion_mnist"]["model_recipes"] = {"resnet20": "fmnist_mine"}
    downstream = {"summarise_dataset", "prior_ablation", "report", "all"}
    seeds = len(config["experiments"]["prior_ablation"]["seeds"])  # the grid's seed 0 among them
    jobs = planned_jobs(snakemake(workdir, edited, "-n").stdout)
    assert jobs["train"] == seeds and set(jobs) == {"train"} | downstream
    edited["recipes"]["fmnist_short"]["lr"] = 0.02  # now only dit_resnet20's recipe
    jobs = planned_jobs(snakemake(workdir, edited, "-n").stdout)
    assert jobs["train"] == seeds + seeds * 2  # dit_resnet20: zero, bio


def test_dry_run_of_the_papers_full_grid(tmp_path, default_config):
    config = json.loads(json.dumps(default_config))
    config["experiments"]["prior_ablation"]["enabled"] = False  # the grid alone (test_ablation)
    write_cifar10(tmp_path / "cifar10")
    write_cifar100(tmp_path / "cifar100")
    write_imagenet(tmp_path / "imagenet", {"n01": 1}, {"n01": 1})
    depths = (20, 32, 56, 110)
    cifar_models = [
        f"{family}{d}"
        for family in ("resnet", "dit_resnet", "qresnet", "quadraresnet")
        for d in depths
    ] + [f"dit_resnet{d}_transposed" for d in depths]  # the official layer, beside ours
    seeds = [0, 1, 2, 3, 4]
    config["train"]["experiments"] = {
        "cifar10": {"models": cifar_models, "priors": ["zero"], "seeds": seeds},
        "cifar100": {"models": cifar_models, "priors": ["zero"], "seeds": seeds},
        "imagenet": {
            "models": [f"{p}convnext_{s}" for p in ("", "dit_") for s in ("tiny", "small", "base")],
            "priors": ["zero"],
            "seeds": [0],
        },
    }
    for name in ("cifar10", "cifar100", "imagenet"):
        config["datasets"][name]["root"] = str(tmp_path / name)
    result = snakemake(tmp_path, config, "-n", "--quiet", "rules")
    assert result.returncode == 0, result.stdout[-3000:]
    jobs = planned_jobs(snakemake(tmp_path, config, "-n").stdout)
    fmnist = default_config["train"]["experiments"]["fashion_mnist"]  # merged in: it stays
    fmnist_runs = len(fmnist["seeds"]) * (1 + len(fmnist["priors"]))
    assert jobs["train"] == 2 * 20 * 5 + 6 + fmnist_runs
    assert jobs["summarise_dataset"] == 4
    quadratic_priors = [p for p in fmnist["priors"] if p != "zero"]  # only Fashion-MNIST's
    assert jobs["build_prior"] == len(quadratic_priors) * len(fmnist["seeds"])


def test_snakemake_provenance_report(tiny_run):
    import zipfile

    workdir, config = tiny_run
    target = workdir / "snakemake-report.zip"
    result = snakemake(workdir, config, "--report", str(target))
    assert result.returncode == 0, result.stdout[-3000:]
    names = zipfile.ZipFile(target).namelist()
    for figure in (
        "kappa_heatmaps.png",
        "prior_ablation.png",
        "decision_boundaries.png",
        "fewshot.png",
    ):
        assert any(name.endswith(figure) for name in names), figure
