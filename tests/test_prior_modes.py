"""How a prior acts (ann.prior_modes): anchor is weight decay toward the prior (L2-SP), fixed
trains one gain per unit, the data calibration sets the real-input response exactly and leaves
the run's random streams and buffers alone; the controls of ann.priors; precise BN."""

import copy

import numpy as np
import pytest
import torch
from test_priors import OPTIONS, planted_tables
from torch import nn

from ann.engine import parameter_groups
from ann.engine.distributed import Context
from ann.engine.evaluate import recalibrate_batch_norms
from ann.layers import DitQuadratic
from ann.models import create_model, dit_parameters
from ann.prior_modes import apply_mode, calibrate, effective_weights, weights_from_state
from ann.priors import (
    PriorError,
    apply_prior,
    bio_prior,
    block_mean,
    layer_prior,
    prior_weights,
    quadratic_rms,
    spectrum_matched,
)
from ann.settings import CONTROLS, PriorSettings

SETTINGS = {"cell": "pyramidal", "fraction_inhibitory": 0.2, "init_ratio": 0.1}


def _layer(prior: torch.Tensor) -> DitQuadratic:
    layer = DitQuadratic(3, 2)
    with torch.no_grad():
        layer.weight.copy_(prior)
    return layer


def _sgd_step(layer: nn.Module, decay_of: dict, lr: float, weight_decay: float) -> None:
    """One SGD step with a zero loss gradient: only weight decay moves the parameters."""
    groups = parameter_groups(
        layer, list(layer.parameters()), weight_decay=weight_decay, quadratic_lr_mult=1.0,
        decay_vectors=True, lr=lr, decay_of=decay_of,
    )  # fmt: skip
    optimizer = torch.optim.SGD(groups, lr=lr)
    (0.0 * sum(p.sum() for p in layer.parameters())).backward()
    optimizer.step()


def test_anchor_decays_toward_the_prior_and_init_toward_zero():
    prior = torch.randn(2, 9)
    lr, strength = 0.1, 0.5
    anchored = _layer(prior)
    decay = apply_mode(anchored, "anchor", strength)
    with torch.no_grad():
        anchored.parametrizations.weight.original.add_(1.0)  # K = prior + 1
    _sgd_step(anchored, decay, lr, weight_decay=123.0)  # the recipe's decay is not used on D
    # D <- D - lr * strength * D: K - prior = 1 - 0.05 everywhere
    assert torch.allclose(anchored.weight - prior, torch.full_like(prior, 1 - lr * strength))
    free = _layer(prior)
    _sgd_step(free, apply_mode(free, "init", strength), lr, weight_decay=strength)
    assert torch.allclose(free.weight, prior * (1 - lr * strength))  # toward 0


def test_zero_anchor_is_plain_weight_decay_on_k():
    start = torch.randn(2, 9)
    zero = _layer(torch.zeros(2, 9))
    decay = apply_mode(zero, "anchor", 0.3)
    with torch.no_grad():
        zero.parametrizations.weight.original.copy_(start)
    plain = _layer(start)
    _sgd_step(zero, decay, 0.1, weight_decay=0.0)
    _sgd_step(plain, {}, 0.1, weight_decay=0.3)
    assert torch.allclose(zero.weight, plain.weight)


def test_fixed_trains_one_gain_per_unit_and_keeps_the_pattern():
    prior = torch.randn(2, 9)
    layer = _layer(prior)
    decay = apply_mode(layer, "fixed", 0.5)
    (gain,) = decay
    assert gain.shape == (2,) and decay[gain] == 0.0 and torch.equal(gain, torch.ones(2))
    assert [p.shape for p in layer.parameters()] == [torch.Size([2])]
    x = torch.randn(5, 3)
    loss = layer(x).pow(2).sum()
    loss.backward()
    torch.optim.SGD(layer.parameters(), lr=0.01).step()
    k = layer.weight.detach()
    for unit in range(2):  # the pattern is kept: K_o is a multiple of the prior's row
        ratio = k[unit] / prior[unit]
        assert torch.allclose(ratio, ratio[0].expand_as(ratio))
        assert not torch.isclose(ratio[0], torch.tensor(1.0))


def test_the_state_dict_gives_the_effective_k_in_every_mode():
    prior = torch.randn(2, 9)
    for mode in ("init", "anchor", "fixed"):
        model = nn.Sequential(_layer(prior))
        apply_mode(model, mode, 0.1)
        with torch.no_grad():
            for p in model.parameters():
                p.mul_(1.5)
        (k,) = effective_weights(model).values()
        assert torch.equal(weights_from_state(model.state_dict(), "0"), k), mode


def test_an_unknown_mode_is_refused():
    with pytest.raises(PriorError, match="prior mode 'free'"):
        apply_mode(_layer(torch.zeros(2, 9)), "free", 0.1)


# ------------------------------------------------------------------ calibration on real inputs
def _model_with(kind: str) -> nn.Module:
    torch.manual_seed(0)
    model = create_model("dit_resnet20", in_chans=1)
    weights = prior_weights(model, kind, planted_tables(), seed=0, **OPTIONS)
    apply_prior(model, weights)
    return model


def _skewed_images(n: int = 16) -> torch.Tensor:
    """Images like Fashion-MNIST's normalised pixels: mostly background, a skewed foreground."""
    generator = torch.Generator().manual_seed(5)
    mask = torch.rand(n, 1, 32, 32, generator=generator) < 0.4
    return torch.where(mask, torch.rand(n, 1, 32, 32, generator=generator) * 3, -0.8)


@pytest.mark.parametrize("kind", ["bio", *CONTROLS])
def test_calibration_sets_the_real_input_response_for_every_prior(kind):
    model, images = _model_with(kind), _skewed_images()
    before = copy.deepcopy(model.state_dict())
    state = torch.get_rng_state()
    (record,) = calibrate(model, images, 0.1)
    assert torch.equal(torch.get_rng_state(), state)  # the run's streams are untouched
    for key, value in model.state_dict().items():  # batch norms' running statistics too
        if not key.endswith("quadratic.weight"):
            assert torch.equal(value, before[key]), key
    assert record["data_rms_after"] == pytest.approx(0.1, rel=0.02)
    # independently: the layer's response measured with a hook on a fresh forward pass
    seen = {}
    layer = next(m for m in model.modules() if isinstance(m, DitQuadratic))
    layer.register_forward_hook(lambda m, a, out: seen.update(z=a[0], q=out))
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    model.eval()
    for norm in norms:
        norm.train()
        norm.momentum = 0.0
    with torch.no_grad():
        model(images)
    rms = seen["q"].pow(2).mean().sqrt() / seen["z"].pow(2).mean().sqrt()
    assert float(rms) == pytest.approx(0.1, rel=0.02)
    # the Gaussian size was not the real one: the calibration changed it
    assert record["gaussian_rms_before"] == pytest.approx(0.1, rel=1e-6)
    assert abs(record["data_rms_before"] - 0.1) > 0.005


def test_calibration_skips_zero_and_leaves_the_model_as_it_was():
    model = _model_with("zero")
    before = copy.deepcopy(model.state_dict())
    assert calibrate(model, _skewed_images(8), 0.1) == []
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


# ------------------------------------------------------------------ controls
def test_block_mean_is_constant_on_each_block_with_bio_rms():
    bio = bio_prior(planted_tables(), 10, 4, **OPTIONS, seed=2)
    control = block_mean(bio.weight, bio.receptor).reshape(4, 10, 10)
    is_e = torch.from_numpy(bio.receptor == "E")
    off = ~torch.eye(10, dtype=torch.bool)
    blocks = (is_e[:, None] & is_e, is_e[:, None] != is_e, ~is_e[:, None] & ~is_e)
    for mask in blocks:
        values = control[:, mask & off]
        assert torch.allclose(values, values.flatten()[0].expand_as(values))
    assert torch.equal(control[:, ~off], torch.zeros_like(control[:, ~off]))  # diagonal zero
    assert quadratic_rms(control, 10) == pytest.approx(quadratic_rms(bio.weight, 10))


def test_sites_permuted_keeps_same_site_entries_and_permutes_the_others():
    tables = planted_tables()
    permuted = tables.with_site_pairs_permuted(np.random.default_rng(0))
    for kind in ("EE", "EI", "II"):
        before, after = getattr(tables, kind), getattr(permuted, kind)
        np.testing.assert_array_equal(np.diag(before), np.diag(after))
        off = ~np.eye(len(before), dtype=bool)
        assert sorted(before[off]) == pytest.approx(sorted(after[off]))
        assert not np.array_equal(before[off], after[off])
    np.testing.assert_array_equal(permuted.EE, permuted.EE.T)
    bio = layer_prior("bio", tables, 12, 4, seed=1, **OPTIONS)
    control = layer_prior("sites_permuted", tables, 12, 4, seed=1, **OPTIONS)
    assert (control.receptor == bio.receptor).all() and (control.sites == bio.sites).all()
    assert not torch.allclose(control.weight, bio.weight)
    assert quadratic_rms(control.weight, 12) == pytest.approx(quadratic_rms(bio.weight, 12))


def test_spectrum_matched_keeps_each_units_eigenvalues_on_another_basis():
    bio = bio_prior(planted_tables(), 8, 3, **OPTIONS, seed=4)
    control = spectrum_matched(bio.weight, 8, seed=4)
    k = bio.weight.double().reshape(3, 8, 8)
    c = control.double().reshape(3, 8, 8)
    assert torch.allclose(c, c.transpose(1, 2))
    s = (k + k.transpose(1, 2)) / 2
    assert torch.allclose(torch.linalg.eigvalsh(c), torch.linalg.eigvalsh(s), atol=1e-12)
    assert not torch.allclose(c, s, atol=1e-6)
    assert quadratic_rms(control, 8) == pytest.approx(quadratic_rms(bio.weight, 8))


def test_prior_names_specs_and_what_a_run_depends_on():
    settings = PriorSettings.from_mapping(SETTINGS | {"biological": {"bio_nmda": "nmda_cell"}})
    names = settings.names()
    assert names[:6] == ["zero", "bio", *CONTROLS]
    assert "bio_nmda" in names and "bio_nmda_shuffled" in names and "bio_nmda_block_mean" in names
    spec = settings.spec("bio_nmda_shuffled+anchor")
    assert (spec.name, spec.kind, spec.cell, spec.mode) == (
        "bio_nmda_shuffled", "shuffled", "nmda_cell", "anchor",
    )  # fmt: skip
    assert settings.spec("block_mean").cell == "pyramidal"
    assert settings.spec("zero+anchor").cell is None
    assert settings.used_by(settings.spec("zero")) == {}
    assert settings.used_by(settings.spec("zero+anchor")) == {"anchor_strength": 0.01}
    used = settings.used_by(settings.spec("bio_nmda"))
    assert used["cell"] == "nmda_cell" and "anchor_strength" not in used
    with pytest.raises(PriorError, match="no prior named 'bio_ca1'"):
        settings.spec("bio_ca1")
    with pytest.raises(PriorError, match="mode of prior 'bio\\+free'"):
        settings.spec("bio+free")
    with pytest.raises(PriorError, match="ends with a control's name"):
        PriorSettings.from_mapping(SETTINGS | {"biological": {"x_shuffled": "c"}})


# ------------------------------------------------------------------ precise BN
def test_recalibrated_batch_norms_hold_the_plain_batch_statistics():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 3, 3), nn.BatchNorm2d(3), nn.ReLU(), nn.Dropout(0.5))
    model.train()
    batches = [torch.randn(4, 1, 6, 6) for _ in range(3)]
    norm = model[1]
    norm.running_mean.fill_(9.0)  # stale statistics
    state = torch.get_rng_state()
    assert recalibrate_batch_norms(model, batches, Context(0, 1, torch.device("cpu"))) == 1
    assert torch.equal(torch.get_rng_state(), state)  # dropout stayed off
    with torch.no_grad():
        features = [model[0](x) for x in batches]
    means = torch.stack([f.mean((0, 2, 3)) for f in features])
    variances = torch.stack([f.var((0, 2, 3), unbiased=True) for f in features])
    assert torch.allclose(norm.running_mean, means.mean(0), atol=1e-6)
    assert torch.allclose(norm.running_var, variances.mean(0), atol=1e-6)
    assert model.training and norm.momentum == 0.1


def test_dit_parameters_of_a_mode_keep_the_quadratic_learning_rate():
    model = _model_with("bio")
    decay = apply_mode(model, "anchor", 0.2)
    (delta,) = decay
    assert any(p is delta for p in dit_parameters(model))
