"""The published recipes: the official CIFAR warm-up of the deep Dit-ResNets, epoch by epoch,
and the ImageNet recipe against the official command and timm's train.py."""

import copy
import math

import pandas as pd
import pytest
import torch
from fixtures import write_cifar10, write_imagenet

import ann.engine.batches as engine
from ann.engine import Context, build_optimizer, build_scheduler, run_from_config, train
from ann.models import create_model, dit_parameters
from ann.recipes import resolve_recipe

UPDATES = 7  # updates per epoch in the schedule tests
WARMED_UP = ["dit_resnet56", "dit_resnet110", "dit_resnet56_transposed", "dit_resnet110_transposed"]


def epoch_learning_rates(model, recipe, epochs=None):
    """Each parameter group's lr in every epoch, with the scheduler driven as ann.train drives
    it (step(epoch) before the epoch, step_update after every update); asserts that the lr
    stays constant within an epoch (a per-epoch schedule)."""
    optimizer = build_optimizer(model, recipe)
    scheduler = build_scheduler(optimizer, recipe, UPDATES)
    rates = []
    for epoch in range(epochs or recipe.epochs):
        scheduler.step(epoch)
        start = [group["lr"] for group in optimizer.param_groups]
        for step in range(UPDATES):
            assert [group["lr"] for group in optimizer.param_groups] == start, (epoch, step)
            scheduler.step_update(num_updates=epoch * UPDATES + step + 1)
        rates.append(start)
    return optimizer, rates


def official_cifar_rates(epochs, lrs, warm_up):
    """Direct port of the lr handling of official: CIFAR/cifar10.py, with the commented block
    for dit-resnet-56/110 switched on when warm_up: the lr of each group at every epoch."""
    lrs, out = list(lrs), []
    for epoch in range(epochs):
        if warm_up and epoch == 0:
            lrs = [lr * 0.1 for lr in lrs]
        if warm_up and epoch == 1:
            lrs = [lr * 10 for lr in lrs]
        if epoch == 80:
            lrs = [lr * 0.1 for lr in lrs]
        elif epoch == 120:
            lrs = [lr * 0.1 for lr in lrs]
        out.append(lrs)
    return out


@pytest.mark.parametrize("dataset", ["cifar10", "cifar100"])
@pytest.mark.parametrize("model_name", [*WARMED_UP, "dit_resnet20", "dit_resnet32", "resnet56"])
def test_cifar_schedule_per_epoch_matches_the_official_script(default_config, dataset, model_name):
    recipe = resolve_recipe(default_config, dataset, model_name)
    model = create_model(model_name, num_classes=10)
    optimizer, rates = epoch_learning_rates(model, recipe)
    dit = {id(p) for p in dit_parameters(model)}
    is_dit = [any(id(p) in dit for p in group["params"]) for group in optimizer.param_groups]
    assert any(is_dit) == model_name.startswith("dit_")
    official = official_cifar_rates(
        recipe.epochs, [1.0 if d else 0.1 for d in is_dit], warm_up=model_name in WARMED_UP
    )
    for epoch, (ours, theirs) in enumerate(zip(rates, official, strict=True)):
        assert ours == pytest.approx(theirs, rel=1e-9), epoch
    first = dict(zip(is_dit, rates[0], strict=True))
    warm = model_name in WARMED_UP
    assert first[False] == pytest.approx(0.01 if warm else 0.1)
    if any(is_dit):
        assert first[True] == pytest.approx(0.1 if warm else 1.0)


@pytest.mark.parametrize("dataset", ["cifar10", "cifar100"])
def test_he_et_al_warm_up_resnet110_only(default_config, dataset):
    for name, warm in (("resnet110", True), ("resnet20", False), ("qresnet110", False)):
        recipe = resolve_recipe(default_config, dataset, name)
        _, rates = epoch_learning_rates(create_model(name), recipe, epochs=3)
        assert [r[0] for r in rates] == pytest.approx([0.01 if warm else 0.1, 0.1, 0.1])


@pytest.mark.slow
def test_warm_up_reaches_the_training_loop(default_config, tmp_path):
    write_cifar10(tmp_path / "data")
    config = copy.deepcopy(default_config)
    config["datasets"]["cifar10"]["root"] = str(tmp_path / "data")
    overrides = {"epochs": 2, "batch_size": 5, "eval_batch_size": 4}
    run = run_from_config(config, "cifar10", "dit_resnet56", "zero", 0, tmp_path / "run", overrides)
    run.threads = 1
    train(run)
    curve = pd.read_csv(tmp_path / "run" / "metrics.csv")
    assert list(curve.lr) == pytest.approx([0.01, 0.1])


# ---------------------------------------------------------------- ImageNet
IMAGENET_MODELS = ["convnext_tiny", "dit_convnext_tiny", "convnext_small", "dit_convnext_base"]


@pytest.mark.parametrize("model_name", IMAGENET_MODELS)
def test_imagenet_recipe_is_the_official_command_on_timm_defaults(default_config, model_name):
    recipe = resolve_recipe(default_config, "imagenet", model_name)
    # the command: -b 64 x 8 GPUs x --grad-accum-steps 8, --lr 0.006, --opt adamw, ...
    assert recipe.batch_size == 64 * 8 * 8 and recipe.peak_lr() == pytest.approx(0.006)
    assert (recipe.optimizer, recipe.weight_decay, recipe.epochs) == ("adamw", 0.08, 300)
    assert (recipe.schedule, recipe.warmup_epochs) == ("cosine", 20)
    assert (recipe.auto_augment, recipe.re_prob) == ("rand-m9-mstd0.5", 0.25)
    assert (recipe.mixup, recipe.cutmix, recipe.crop_pct) == (0.8, 1.0, 0.95)
    assert recipe.model_ema and recipe.dit_lr_mult == 1.0
    # timm train.py's defaults for what the command leaves out
    assert recipe.ema_decay == 0.9998
    assert (recipe.re_mode, recipe.train_interpolation) == ("pixel", "random")
    assert (recipe.min_lr, recipe.warmup_lr, recipe.label_smoothing) == (0.0, 1e-5, 0.1)
    assert recipe.sched_on_updates is False
    expected_drop_path = {"small": 0.4, "base": 0.5}.get(model_name.rsplit("_", 1)[1], 0.1)
    assert recipe.drop_path == expected_drop_path


def timm_train_cosine(epoch, peak=6e-3, warmup_lr=1e-5, warmup=20, epochs=300, min_lr=0.0):
    """timm's CosineLRScheduler per epoch with warmup_prefix off (train.py's default)."""
    if epoch < warmup:
        return warmup_lr + epoch * (peak - warmup_lr) / warmup
    return min_lr + 0.5 * (peak - min_lr) * (1 + math.cos(math.pi * epoch / epochs))


def test_imagenet_schedule_steps_per_epoch_as_timm_train(default_config):
    recipe = resolve_recipe(default_config, "imagenet", "dit_convnext_tiny")
    model = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.LayerNorm(3))
    _, rates = epoch_learning_rates(model, recipe)  # asserts constant lr within each epoch
    assert len(rates) == 300
    for epoch, groups in enumerate(rates):
        assert groups == pytest.approx([timm_train_cosine(epoch)] * len(groups), rel=1e-9)
    assert rates[0][0] == pytest.approx(1e-5) and rates[-1][0] < 1e-6


def test_imagenet_loaders_get_the_recipe_augmentation(default_config, tmp_path, monkeypatch):
    write_imagenet(tmp_path / "data", {"n01": 2, "n02": 2}, {"n01": 1, "n02": 1})
    config = copy.deepcopy(default_config)
    config["datasets"]["imagenet"]["root"] = str(tmp_path / "data")
    run = run_from_config(
        config, "imagenet", "convnext_tiny", "none", 0, tmp_path, {"input_size": 32, "workers": 0}
    )
    seen = {}
    original = engine.imagenet_loader

    def record(dataset, augment, *, is_training, **options):
        loader = original(dataset, augment, is_training=is_training, **options)
        seen["train" if is_training else "val"] = loader
        return loader

    monkeypatch.setattr(engine, "imagenet_loader", record)
    engine.load_data(run, Context(0, 1, torch.device("cpu")))
    train_loader, val_loader = seen["train"], seen["val"]
    steps = {type(t).__name__: t for t in train_loader.dataset.transform.transforms}
    assert steps["RandomErasing"].mode == "pixel" and steps["RandomErasing"].probability == 0.25
    crop = steps["RandomResizedCropAndInterpolation"]
    assert isinstance(crop.interpolation, tuple | list) and len(crop.interpolation) == 2  # random
    resize = val_loader.dataset.transform.transforms[0]
    assert "bicubic" in str(resize.interpolation).lower()


@pytest.mark.parametrize("dataset", ["cifar10", "cifar100"])
def test_cifar_inputs_are_normalised_as_in_the_official_scripts(
    default_config, dataset, tmp_path, monkeypatch
):
    recipe = resolve_recipe(default_config, dataset, "dit_resnet20")
    official = ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010))  # both scripts
    assert (recipe.mean, recipe.std) == official
    write_cifar10(tmp_path / "data")
    config = copy.deepcopy(default_config)
    config["datasets"]["cifar10"]["root"] = str(tmp_path / "data")
    seen = []
    original = engine.GpuAugment
    monkeypatch.setattr(engine, "GpuAugment", lambda *a, **k: seen.append(a) or original(*a, **k))
    run = run_from_config(config, "cifar10", "resnet20", "none", 0, tmp_path, {"batch_size": 5})
    engine.load_data(run, Context(0, 1, torch.device("cpu")))
    assert seen == [official]
