"""kappa priors: the bio mapping reproduces a planted kappa, determinism, the controls."""

import numpy as np
import pytest
import torch
import xarray as xr
from torch import nn

from ann.layers import DitQuadratic
from ann.priors import (
    KappaTables,
    PriorError,
    apply_prior,
    bio_prior,
    load_kappa,
    prior_weights,
    quadratic_rms,
    shuffled,
)

N_SITES = 5
OPTIONS = {"fraction_inhibitory": 0.2, "init_ratio": 0.1, "diagonal": "zero"}


def options(**changed):
    return {**OPTIONS, **changed}


def planted_tables() -> KappaTables:
    a, b = np.meshgrid(np.arange(N_SITES), np.arange(N_SITES), indexing="ij")
    return KappaTables(
        EE=-(1.0 + a + b) / 100,  # symmetric
        EI=(10.0 + 3 * a + b) / 100,  # not symmetric: rows are E sites
        II=(50.0 + a * b) / 100,
        psp_scale_mV=2.0,
    )


def expected_kappa(tables: KappaTables, receptor, sites, o, i, j) -> float:
    ti, tj, si, sj = receptor[i], receptor[j], sites[o, i], sites[o, j]
    if ti == tj == "E":
        return tables.EE[si, sj]
    if ti == tj == "I":
        return tables.II[si, sj]
    return tables.EI[si, sj] if ti == "E" else tables.EI[sj, si]


@pytest.mark.parametrize("diagonal", ["zero", "same_site"])
def test_bio_prior_reproduces_the_planted_structure(diagonal):
    tables = planted_tables()
    prior = bio_prior(
        tables, 6, 4, fraction_inhibitory=0.5, init_ratio=10.0, diagonal=diagonal, seed=3
    )
    assert prior.weight.shape == (4, 36)
    assert (prior.receptor == "I").sum() == 3
    k = prior.weight.reshape(4, 6, 6).numpy() * prior.divisor * 2 / tables.psp_scale_mV
    for o in range(4):
        for i in range(6):
            for j in range(6):
                if i == j and diagonal == "zero":
                    assert k[o, i, j] == 0
                    continue
                assert k[o, i, j] == pytest.approx(
                    expected_kappa(tables, prior.receptor, prior.sites, o, i, j)
                )
        np.testing.assert_array_equal(k[o], k[o].T)
    with pytest.raises(PriorError, match="priors.diagonal"):
        bio_prior(tables, 6, 4, **options(diagonal="self"))


def test_bio_prior_is_deterministic_and_seeded():
    tables = planted_tables()
    one = bio_prior(tables, 8, 8, **OPTIONS, seed=1).weight
    assert torch.equal(one, bio_prior(tables, 8, 8, **OPTIONS, seed=1).weight)
    assert not torch.equal(one, bio_prior(tables, 8, 8, **OPTIONS, seed=2).weight)


def test_bio_prior_starts_small():
    prior = bio_prior(planted_tables(), 16, 8, **options(init_ratio=0.1), seed=0)
    assert prior.divisor > 1
    assert quadratic_rms(prior.weight, 16) == pytest.approx(0.1)


def test_quadratic_rms_matches_monte_carlo():
    weight = torch.randn(3, 25, dtype=torch.float64)
    x = torch.randn(200_000, 5, dtype=torch.float64)
    y = torch.einsum("pi,oij,pj->po", x, weight.reshape(3, 5, 5), x)
    mc = float((y**2).mean().sqrt())
    assert quadratic_rms(weight, 5) == pytest.approx(mc, rel=0.03)


def upper_pairs(weight: torch.Tensor, channels: int) -> torch.Tensor:
    k = weight.double().reshape(-1, channels, channels)
    first, second = torch.triu_indices(channels, channels, offset=1)
    return ((k + k.transpose(1, 2)) / 2)[:, first, second].flatten()


def monte_carlo_rms(weight: torch.Tensor, channels: int, x: torch.Tensor) -> float:
    y = torch.einsum("pi,oij,pj->po", x, weight.double().reshape(-1, channels, channels), x)
    return float((y**2).mean().sqrt())


@pytest.mark.parametrize("diagonal", ["zero", "same_site"])
def test_shuffled_control_is_symmetric_with_the_bio_pairs_and_rms(diagonal):
    channels = 16
    bio = bio_prior(planted_tables(), channels, 12, **options(diagonal=diagonal), seed=0).weight
    control = shuffled(bio, channels, seed=5)
    k = control.reshape(-1, channels, channels)
    assert control.shape == bio.shape and control.dtype == bio.dtype
    torch.testing.assert_close(k, k.transpose(1, 2), rtol=0, atol=0)  # symmetric, like bio
    assert quadratic_rms(control, channels) == pytest.approx(quadratic_rms(bio, channels))
    assert quadratic_rms(bio, channels) == pytest.approx(0.1)
    ours, theirs = upper_pairs(control, channels), upper_pairs(bio, channels)
    scale = float(ours.abs().sum() / theirs.abs().sum())  # one factor for all entries
    torch.testing.assert_close(ours.sort().values, scale * theirs.sort().values)
    if diagonal == "zero":
        assert scale == pytest.approx(1.0)  # no trace term: the permutation keeps the RMS
        assert not torch.diagonal(k, dim1=1, dim2=2).any()
    assert not torch.allclose(ours, scale * theirs)  # the structure is gone
    assert torch.equal(control, shuffled(bio, channels, seed=5))
    assert not torch.equal(control, shuffled(bio, channels, seed=6))


def test_bio_and_shuffled_have_the_same_response_rms_on_gaussian_inputs():
    """Monte Carlo on the reference inputs x ~ N(0, I), independent of quadratic_rms; a plain
    permutation of all entries (the old control) would not pass."""
    channels, generator = 16, torch.Generator().manual_seed(0)
    x = torch.randn(100_000, channels, generator=generator, dtype=torch.float64)
    for diagonal in ("zero", "same_site"):
        bio = bio_prior(planted_tables(), channels, 8, **options(diagonal=diagonal), seed=1).weight
        control = shuffled(bio, channels, seed=2)
        bio_rms, control_rms = (monte_carlo_rms(w, channels, x) for w in (bio, control))
        assert control_rms == pytest.approx(bio_rms, rel=0.02), diagonal
        assert bio_rms == pytest.approx(0.1, rel=0.02)
    order = torch.randperm(bio.numel(), generator=generator)
    plain = bio.flatten()[order].reshape(bio.shape)
    assert monte_carlo_rms(plain, channels, x) < 0.9 * bio_rms


def tiny_model() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 4, 1), DitQuadratic(4, 4), nn.ReLU(), DitQuadratic(4, 2))


def test_prior_weights_for_every_layer():
    model, tables = tiny_model(), planted_tables()
    zero = prior_weights(model, "zero")
    assert set(zero) == {"1", "3"} and all(w.abs().sum() == 0 for w in zero.values())
    bio = prior_weights(model, "bio", tables, **OPTIONS, seed=0)
    control = prior_weights(model, "shuffled", tables, **OPTIONS, seed=0)
    for name, channels in (("1", 4), ("3", 4)):
        assert quadratic_rms(control[name], channels) == pytest.approx(
            quadratic_rms(bio[name], channels), rel=1e-5
        )
        torch.testing.assert_close(
            upper_pairs(control[name], channels).sort().values,
            upper_pairs(bio[name], channels).sort().values,
        )
    same_site = prior_weights(model, "bio", tables, **options(diagonal="same_site"), seed=0)
    assert not torch.equal(same_site["1"], bio["1"])
    assert not torch.equal(bio["1"], bio["3"][:, :16].repeat(2, 1))  # layers differ
    apply_prior(model, bio)
    assert torch.equal(model[1].weight, bio["1"])


def test_prior_errors_are_clear(tmp_path):
    model = tiny_model()
    with pytest.raises(PriorError, match="unknown prior 'gaussian'"):
        prior_weights(model, "gaussian")
    with pytest.raises(PriorError, match="needs a kappa file"):
        prior_weights(model, "bio")
    with pytest.raises(PriorError, match="does not exist"):
        load_kappa(tmp_path / "kappa.nc")
    xr.Dataset({"kappa_EI": (("e", "i"), np.ones((2, 2)))}).to_netcdf(tmp_path / "kappa.nc")
    with pytest.raises(PriorError, match="lacks.*kappa_EE"):
        load_kappa(tmp_path / "kappa.nc")
    with pytest.raises(PriorError, match="does not fit this model"):
        apply_prior(model, {"1": torch.zeros(4, 9)})


def test_load_kappa_reads_the_fit_stage_layout(tmp_path):
    tables = planted_tables()
    ds = xr.Dataset(
        {
            "kappa_EI": (("e_site", "i_site"), tables.EI),
            "kappa_EE": (("site_a", "site_b"), tables.EE),
            "kappa_II": (("site_a", "site_b"), np.where(np.eye(N_SITES) > 0, np.nan, tables.II)),
            "psp_peak": (("receptor", "psp_site"), np.array([[1.0, 2.0], [-3.0, np.nan]])),
        }
    )
    ds.to_netcdf(tmp_path / "kappa.nc")
    loaded = load_kappa(tmp_path / "kappa.nc")
    np.testing.assert_array_equal(loaded.EI, tables.EI)
    assert loaded.psp_scale_mV == 2.0
    assert np.isfinite(loaded.II).all()  # gaps take the median of their kind
