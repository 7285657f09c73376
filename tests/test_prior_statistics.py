"""Named priors and their statistics: sign structure and spectrum on hand-computed examples,
the named priors built like bio, the statistics step, the plan-time checks of the names."""

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr
from conftest import run_snakemake
from test_bad_input import _set
from test_priors import N_SITES, planted_tables

from ann.layers import DitQuadratic
from ann.models import create_model
from ann.prior_statistics import (
    effective_rank,
    k_decomposition,
    layer_priors,
    mean_spectrum,
    prior_statistics,
    sign_structure,
    structure_table,
    summary_tables,
)
from ann.priors import load_kappa, prior_weights
from ann.settings import CONTROLS
from pipeline.report import Report, priors_page
from pipeline.training import build_prior
from pipeline.training import prior_statistics as statistics_step

TEMPLATES = Path(__file__).resolve().parents[1] / "workflow/report/templates"


def test_two_by_two_sign_structure_and_spectrum():
    # unit 0: K = [[2, 0], [0, -1]], S has eigenvalues 2, -1;
    # unit 1: K = [[0, 3], [-1, 0]], S = [[0, 1], [1, 0]] has eigenvalues 1, -1.
    k = torch.tensor([[[2.0, 0.0], [0.0, -1.0]], [[0.0, 3.0], [-1.0, 0.0]]]).reshape(2, 4)
    signs = sign_structure(k, ["E", "I"]).set_index("block")
    assert signs.loc["EI"].tolist() == [4, 0.25, 0.25, 0.5]  # entries, +, -, 0
    assert signs.loc["diagonal"].tolist() == [4, 0.25, 0.25, 0.5]
    assert signs.loc["EE", "entries"] == 0 and math.isnan(signs.loc["EE", "positive"])
    np.testing.assert_allclose(mean_spectrum(k, 2), [1.5, -1.0])  # (2 + 1)/2, (-1 - 1)/2


def test_three_channels_by_block():
    # E, E, I: the EE pair is negative, EI pairs positive, no II pair off the diagonal.
    k = np.array([[0.0, -1.0, 2.0], [-1.0, 0.0, 4.0], [2.0, 4.0, 0.0]])
    table = prior_statistics(k[None], ["E", "E", "I"])
    value = table.set_index(["statistic", "block"]).value
    assert value["negative", "EE"] == 1.0 and value["positive", "EE"] == 0.0
    assert value["positive", "EI"] == 1.0
    assert value["zero", "diagonal"] == 1.0
    assert math.isnan(value["positive", "II"])
    np.testing.assert_allclose(
        table[table.statistic == "eigenvalue"].value, np.linalg.eigvalsh(k)[::-1]
    )
    assert list(table[table.statistic == "eigenvalue"].block) == ["1", "2", "3"]


def test_k_decomposition_by_hand():
    # channels E, E, I; unit 0 has sites (0, 0, 1), unit 1 sites (0, 1, 1).
    receptor, sites = ["E", "E", "I"], np.array([[0, 0, 1], [0, 1, 1]])
    # K_0: EE pair -1, EI pairs 2 and 4; K_1: EE pair -3, EI pairs 2 and 4. Block means: EE -2,
    # EI 3, diagonal 0; the rest: EE +1 (unit 0, same site), -1 (unit 1, different sites),
    # EI -1 and +1 on both units: unit 0's (0, 2), (1, 2) are at different sites, unit 1's
    # (1, 2) at the same site, (0, 2) not.
    k0 = np.array([[0.0, -1.0, 2.0], [-1.0, 0.0, 4.0], [2.0, 4.0, 0.0]])
    k1 = np.array([[0.0, -3.0, 2.0], [-3.0, 0.0, 4.0], [2.0, 4.0, 0.0]])
    k = np.stack([k0, k1])
    total = (k**2).sum()  # 2 (1 + 4 + 16) * 1 + 2 (9 + 4 + 16) = 42 + 58 = 100
    parts = k_decomposition(k.reshape(2, 9), receptor, sites)
    block = 2 * (2 * 4 + 4 * 9)  # per unit: two EE entries of -2, four EI entries of 3
    same = 2 * 1 + 2 * 1  # unit 0's EE pair; unit 1's (1, 2) pair
    assert parts["block_share"] == pytest.approx(block / total)
    assert parts["same_site_share"] == pytest.approx(same / total)
    assert parts["distance_share"] == pytest.approx((total - block - same) / total)
    assert parts["same_site_pairs"] == pytest.approx(4 / 12)
    assert parts["effective_rank"] == pytest.approx(
        np.mean([(e**2).sum() ** 2 / (e**4).sum() for e in np.linalg.eigvalsh(k)])
    )


def test_effective_rank_of_rank_one_and_random_symmetric():
    v = np.arange(1.0, 9.0)
    assert effective_rank(np.outer(v, v)[None], 8) == pytest.approx(1.0)
    a = np.random.default_rng(0).standard_normal((100, 64, 64))
    assert effective_rank(a + a.transpose(0, 2, 1), 64) == pytest.approx(32, rel=0.05)  # C / 2


def test_layer_priors_are_the_training_priors_of_layer_zero():
    tables = planted_tables()
    settings = {"fraction_inhibitory": 0.25, "init_ratio": 0.1, "diagonal": "zero"}
    kinds = {"bio": "bio", "bio_two": "bio", **{c: c for c in CONTROLS}}
    built = layer_priors({name: (kind, tables) for name, kind in kinds.items()}, 8, 6, settings)
    model = torch.nn.Sequential(DitQuadratic(8, 6))
    for name in ("bio", *CONTROLS):
        expected = prior_weights(model, name, tables, seed=0, **settings)["0"]
        torch.testing.assert_close(built[name].weight.float(), expected, rtol=0, atol=0)
    torch.testing.assert_close(built["bio_two"].weight, built["bio"].weight)  # same draws
    signs, spectrum = summary_tables(
        pd.concat(
            [prior_statistics(p.weight, p.receptor).assign(prior=n) for n, p in built.items()]
        )
    )
    assert set(signs.prior) == set(kinds) and len(signs) == len(kinds) * 4
    ee = signs[signs.block == "EE"].set_index("prior")
    assert ee.negative["bio"] == ee.negative["bio_two"] == 1.0  # planted kappa_EE < 0
    assert 0 < ee.negative["shuffled"] < 1  # the control mixes the blocks
    assert list(spectrum.prior) == list(kinds)
    structure = structure_table(built).set_index("prior")
    assert structure.block_share["block_mean"] == pytest.approx(1.0)
    assert structure.block_share["bio"] < 1 and structure.block_share["spectrum_matched"] < 0.2
    parts = structure[["block_share", "same_site_share", "distance_share"]].sum(axis=1)
    np.testing.assert_allclose(parts, 1.0)
    np.testing.assert_allclose(structure.gaussian_response, 0.1)  # every prior the same size


def write_kappa(path, scale: float = 1.0):
    tables = planted_tables()
    xr.Dataset(
        {
            "kappa_EI": (("e_site", "i_site"), tables.EI * scale),
            "kappa_EE": (("site_a", "site_b"), tables.EE * scale),
            "kappa_II": (("site_a", "site_b"), tables.II * scale),
            "psp_peak": (("receptor", "psp_site"), np.full((2, N_SITES), 2.0)),
        }
    ).to_netcdf(path)
    return path


def test_a_named_prior_is_built_like_bio_from_its_own_kappa(tmp_path):
    kappa, other = write_kappa(tmp_path / "a.nc"), write_kappa(tmp_path / "b.nc", scale=-1.0)
    settings = {"fraction_inhibitory": 0.2, "init_ratio": 0.1, "diagonal": "zero"}
    kinds = {"bio": "bio", "shuffled": "shuffled", "bio_a": "bio", "bio_b": "bio"}
    for prior, path in (("bio", kappa), ("shuffled", kappa), ("bio_a", kappa), ("bio_b", other)):
        build_prior(
            "dit_resnet20", prior, kinds[prior], 1, path, settings, tmp_path / f"{prior}.pt"
        )
    saved = {p: torch.load(tmp_path / f"{p}.pt") for p in ("bio", "shuffled", "bio_a", "bio_b")}
    network = create_model("dit_resnet20")
    for prior in ("bio", "shuffled"):  # bio and shuffled: exactly ann.priors' tensors
        expected = prior_weights(network, prior, load_kappa(kappa), seed=1, **settings)
        for name, weight in expected.items():
            assert torch.equal(saved[prior]["weights"][name], weight)
    assert saved["bio_a"]["prior"] == "bio_a"
    for name, weight in saved["bio"]["weights"].items():
        assert torch.equal(saved["bio_a"]["weights"][name], weight)
        torch.testing.assert_close(saved["bio_b"]["weights"][name], -weight)  # kappa negated


def test_statistics_step_writes_the_tables_and_the_figure(tmp_path):
    from fixtures import write_fashion_mnist

    a, b = write_kappa(tmp_path / "a.nc"), write_kappa(tmp_path / "b.nc", -1)
    priors = {
        "bio": {"kind": "bio", "cell": "a", "kappa": str(a)},
        "shuffled": {"kind": "shuffled", "cell": "a", "kappa": str(a)},
        "block_mean": {"kind": "block_mean", "cell": "a", "kappa": str(a)},
        "bio_b": {"kind": "bio", "cell": "b", "kappa": str(b)},
    }
    outputs = {k: tmp_path / f"{k}.csv" for k in ("table", "structure")}
    outputs["figure"] = tmp_path / "figure.png"
    settings = {"fraction_inhibitory": 0.2, "init_ratio": 0.1, "diagonal": "zero"}
    write_fashion_mnist(tmp_path / "fmnist", n_train=64, n_test=16, seed=0, learnable=True)
    statistics_step("dit_resnet20", priors, settings, str(tmp_path / "fmnist"), outputs)
    table = pd.read_csv(outputs["table"])
    assert set(table.prior) == set(priors)
    assert set(table[table.prior == "shuffled"].cell) == {"a"}
    assert table.layer.iloc[0].startswith("dit_resnet20 first Dit layer (32 -> 32")
    value = table.set_index(["prior", "statistic", "block"]).value
    assert value["bio", "negative", "EE"] == 1.0 and value["bio_b", "positive", "EE"] == 1.0
    structure = pd.read_csv(outputs["structure"]).set_index("prior")
    assert structure.real_input_response.gt(0).all()  # measured on real (fixture) images
    assert outputs["figure"].stat().st_size > 10_000
    pages = Report(tmp_path / "report", TEMPLATES, {"dendrite": {"cells": {}}})
    page = priors_page(pages, outputs["table"], outputs["structure"], outputs["figure"])
    text = page.read_text()
    assert 'src="figures/priors/figure.png"' in text
    assert "bio_b" in text and "positive eigenvalues (fraction)" in text
    assert "effective rank" in text and "response on real inputs" in text


PLAN_TIME_ERRORS = [
    ("priors.biological", {"zero": "pyramidal"}, "priors.biological.zero: 'zero' is a built-in"),
    (
        "priors.biological",
        {"bio_shuffled": "pyramidal"},
        "priors.biological.bio_shuffled: 'bio_shuffled' is a built-in prior name, ends with",
    ),
    ("priors.biological", {"bio_x": "nowhere"}, "priors.biological.bio_x: cell 'nowhere'"),
    (
        "train.experiments.fashion_mnist.priors",
        ["zero", "bio_typo"],
        "train.experiments.fashion_mnist.priors: no prior named 'bio_typo'",
    ),
    (
        "experiments.prior_ablation.priors",
        ["zero", "bio_typo"],
        "experiments.prior_ablation.priors: no prior named 'bio_typo'",
    ),
    (
        "dendrite.cells.pyramidal_nmda",
        {"morphology": "builtin:pyramidal", "nmda": {"enabled": True, "tau_rise_ms": 90.0}},
        "cell pyramidal_nmda (dendrite.cells.pyramidal_nmda overrides): config keys dendrite.nmda",
    ),
]


@pytest.mark.parametrize("key, value, message", PLAN_TIME_ERRORS)
def test_plan_time_errors_name_the_prior_key(tmp_path, config, key, value, message):
    run = run_snakemake(tmp_path, _set(config, key, value), "-n")
    assert run.returncode != 0
    assert message in run.stdout, run.stdout[-2000:]
    assert "Job stats" not in run.stdout


def test_a_named_prior_plans_from_its_own_cell(tmp_path, config):
    config["train"]["experiments"] = {
        "fashion_mnist": {"models": ["dit_resnet20"], "priors": ["bio_nmda"], "seeds": [0]}
    }
    config["datasets"]["fashion_mnist"]["download"] = True
    run = run_snakemake(tmp_path, config, "-n", "-p", "--forceall")
    assert run.returncode == 0, run.stdout[-3000:]
    text = run.stdout
    assert "priors/dit_resnet20/bio_nmda/seed0.pt" in text
    assert "dendrite/pyramidal_nmda/kappa.nc" in text
    assert "priors/statistics.csv" in text
