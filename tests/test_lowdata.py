"""The low-data prior experiment (ann.lowdata): its arms are paired (same draw, initial
parameters but K, batches), its choices are made on validation draws only, and its config
refuses what would break the design."""

import math

import pandas as pd
import pytest
import torch
from fixtures import write_fashion_mnist
from test_priors import planted_tables

from ann import lowdata
from ann.data import load_dataset
from ann.errors import ConfigError
from ann.prior_modes import effective_weights
from ann.settings import LowDataConfig, PriorSettings

SETTINGS = PriorSettings.from_mapping(
    {"cell": "c", "fraction_inhibitory": 0.2, "init_ratio": 0.1, "calibration_images": 16}
)
KAPPAS = {"c": planted_tables()}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("fmnist")
    write_fashion_mnist(root, n_train=300, n_test=40, seed=3, learnable=True)
    return load_dataset("fashion_mnist", root, "train"), load_dataset("fashion_mnist", root, "test")


CONFIG = LowDataConfig(
    shots=6, validation_per_class=3, seeds=(0, 1, 2), priors=("zero", "bio", "sites_permuted"),
    epochs=1, batch_size=20, lr_grid=(0.01, 0.02), anchor_strengths=(0.1, 10.0),
    choice_seeds=(1000,),
)  # fmt: skip


def test_the_arms_of_a_seed_differ_in_k_only(data):
    train, test = data
    draw = lowdata.make_draw(train, test, CONFIG, seed=1)
    assert len(draw.train) == 60 and len(draw.validation[1]) == 30
    built = {
        (prior, mode): lowdata.build(lowdata.Arm(prior, mode, 1.0), draw, 1, SETTINGS, KAPPAS)
        for prior in CONFIG.priors
        for mode in ("init", "anchor")
    }
    plain = {
        arm: {k: v for k, v in model.state_dict().items() if "quadratic" not in k}
        for arm, (model, *_) in built.items()
    }
    reference = plain[("zero", "init")]
    for arm, state in plain.items():
        assert state.keys() == reference.keys()
        assert all(torch.equal(state[k], reference[k]) for k in state), arm
    for (prior, mode), (model, decay, records, initial) in built.items():
        (k,) = effective_weights(model).values()
        assert torch.equal(k, next(iter(initial.values())))
        assert (k == 0).all() == (prior == "zero")
        assert bool(records) == (prior != "zero")
        assert bool(decay) == (mode == "anchor")
    first = list(lowdata.batches(draw, CONFIG, seed=1))
    again = list(lowdata.batches(draw, CONFIG, seed=1))
    assert len(first) == CONFIG.epochs * 3  # 60 images in batches of 20
    assert all(
        torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
        for a, b in zip(first, again, strict=True)
    )


def test_one_seed_of_every_arm_and_the_choices_on_validation(data):
    train, test = data
    lr_runs = lowdata.lr_sweep(train, test, CONFIG, SETTINGS)
    assert set(lr_runs.seed) == {1000} and lr_runs.final_test_top1.isna().all()  # no test set
    lr = lowdata.chosen_lr(lr_runs)
    assert lr in CONFIG.lr_grid
    sweep = lowdata.strength_sweep(train, test, CONFIG, SETTINGS, KAPPAS, lr)
    assert sweep.final_test_top1.isna().all()
    strength = lowdata.chosen_strength(sweep)
    bio = sweep[(sweep.prior == "bio") & (sweep["mode"] == "anchor")]
    assert (
        strength == bio.sort_values(["validation_top1", "anchor_strength"]).anchor_strength.iloc[-1]
    )
    # a stronger anchor keeps more of the prior: K changes less and correlates more with it
    strong = bio.set_index("anchor_strength").corr_with_prior
    change = bio.set_index("anchor_strength").relative_change
    assert strong[10.0] > strong[0.1] and change[10.0] < change[0.1]
    runs = lowdata.seed_runs(train, test, CONFIG, SETTINGS, KAPPAS, 0, lr, strength)
    assert len(runs) == len(CONFIG.priors) * len(CONFIG.modes)
    assert runs.final_test_top1.between(0, 1).all()
    assert set(runs[runs["mode"] == "anchor"].anchor_strength) == {strength}
    calibrated = runs[runs.prior != "zero"].calibrated_response
    assert calibrated.tolist() == pytest.approx([0.1] * len(calibrated), rel=0.02)
    survival = lowdata.survival(sweep, margin=0.003)
    assert list(survival.anchor_strength) == [0.1, 10.0]
    row = survival.set_index("anchor_strength").loc[10.0]
    assert row.bio_corr_with_prior == pytest.approx(strong[10.0])
    assert row.both == (row.bio_corr_with_prior >= 0.5 and abs(row.bio_minus_zero) <= 0.003)
    assert not math.isnan(row.bio_minus_zero)
    assert isinstance(runs, pd.DataFrame)


@pytest.mark.parametrize(
    "changed, message",
    [
        ({"priors": ["bio", "shuffled"]}, "'zero' must be one"),
        ({"priors": ["zero", "shuffled"]}, "'bio' must be one"),
        ({"choice_seeds": [0]}, "choice_seeds: [0] are also evaluation seeds"),
    ],
)
def test_the_config_refuses_what_breaks_the_design(changed, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        LowDataConfig.from_mapping(changed)
