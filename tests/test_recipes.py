"""The published recipes: the official CIFAR warm-up of the deep Dit-ResNets, epoch by epoch,
the ImageNet recipe against the official command and timm's train.py, and the recipe keys
that reach the loaders and the training loop (loader batches, mixup per chunk, gradient
clipping, precision, SyncBatchNorm). tests/test_replication.py compares every recipe with
the official values."""

import copy
import math

import numpy as np
import pandas as pd
import pytest
import torch
from fixtures import write_cifar10, write_imagenet

import ann.engine.batches as engine
from ann.engine import Context, build_optimizer, build_scheduler, run_from_config, train
from ann.errors import RecipeError
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
IMAGENET_MODELS = ["dit_convnext_tiny", "dit_convnext_small", "dit_convnext_base"]


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
    # -b 64 with --resplit: FastCollateMixup per 64 images, mixed before erasing, half erased
    assert (recipe.mixup_chunk, recipe.mix_then_erase, recipe.re_num_splits) == (64, True, 2)
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
    overrides = {"input_size": 32, "workers": 0, "batch_size": 128}
    run = run_from_config(config, "imagenet", "dit_convnext_tiny", "zero", 0, tmp_path, overrides)
    seen = {}
    original = engine.imagenet_loader

    def record(dataset, augment, *, is_training, **options):
        loader = original(dataset, augment, is_training=is_training, **options)
        seen["train" if is_training else "val"] = loader
        return loader

    monkeypatch.setattr(engine, "imagenet_loader", record)
    data = engine.load_data(run, Context(0, 1, torch.device("cpu")))
    train_loader, val_loader = seen["train"], seen["val"]
    erasing = train_loader.random_erasing  # timm's prefetcher erases each loader batch
    assert (erasing.mode, erasing.probability, erasing.num_splits) == ("pixel", 0.25, 2)
    assert train_loader.loader.batch_size == 64  # the official per-GPU batch
    mixup = train_loader.loader.collate_fn  # mixed while collated, before the prefetcher erases
    assert type(mixup).__name__ == "FastCollateMixup" and data.mixed
    assert (mixup.mixup_alpha, mixup.cutmix_alpha, mixup.label_smoothing) == (0.8, 1.0, 0.1)
    steps = {type(t).__name__: t for t in train_loader.dataset.transform.transforms}
    assert "RandomErasing" not in steps
    crop = steps["RandomResizedCropAndInterpolation"]
    assert isinstance(crop.interpolation, tuple | list) and len(crop.interpolation) == 2  # random
    resize = val_loader.dataset.transform.transforms[0]
    assert "bicubic" in str(resize.interpolation).lower()
    assert val_loader.loader.batch_size == 256  # the recipe's eval_batch_size


def test_convnext_loaders_erase_each_image_and_leave_mixing_to_the_loop(
    default_config, tmp_path, monkeypatch
):
    import ann.imagenet_gpu

    made = []

    class Recorded(ann.imagenet_gpu.GpuTrainLoader):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setattr(ann.imagenet_gpu, "GpuTrainLoader", Recorded)
    write_imagenet(tmp_path / "data", {"n01": 2, "n02": 2}, {"n01": 1, "n02": 1})
    config = copy.deepcopy(default_config)
    config["datasets"]["imagenet"]["root"] = str(tmp_path / "data")
    overrides = {"input_size": 32, "workers": 0, "batch_size": 256}
    run = run_from_config(config, "imagenet", "convnext_small", "none", 0, tmp_path, overrides)
    assert run.recipe_name == "convnext" and run.recipe.drop_path == 0.4
    data = engine.load_data(run, Context(0, 1, torch.device("cpu")))
    assert not data.mixed  # the training loop mixes, per mixup_chunk of 128
    (loader,) = made  # data_pipeline: gpu
    assert loader.chunk == 128 and loader.per_batch == 2
    assert loader.augmenter.erasing.mode == "pixel" and loader.augmenter.erasing.num_splits == 0
    assert loader.loader.collate_fn.mixup is None


def test_a_loader_batch_that_does_not_divide_the_process_batch_is_refused(default_config, tmp_path):
    write_imagenet(tmp_path / "data", {"n01": 1, "n02": 1}, {"n01": 1})
    config = copy.deepcopy(default_config)
    config["datasets"]["imagenet"]["root"] = str(tmp_path / "data")
    for overrides in ({"batch_size": 96}, {"batch_size": 128, "mixup_chunk": 65}):
        run = run_from_config(
            config, "imagenet", "dit_convnext_tiny", "zero", 0, tmp_path, overrides
        )
        with pytest.raises(RecipeError, match="mixup_chunk"):
            engine.load_data(run, Context(0, 1, torch.device("cpu")))


def test_the_timm_pipeline_refuses_inc1_policies_under_pillow_13(default_config, tmp_path):
    import PIL

    from ann.data import ImageNetAugment, check_timm_augmentation

    check_timm_augmentation(ImageNetAugment(auto_augment="rand-m9-mstd0.5"))
    inc = ImageNetAugment(auto_augment="rand-m9-mstd0.5-inc1")
    if int(PIL.__version__.split(".")[0]) >= 13:
        with pytest.raises(RecipeError, match="data_pipeline: gpu"):
            check_timm_augmentation(inc)
    else:
        check_timm_augmentation(inc)
    with pytest.raises(RecipeError, match="re_num_splits 3"):
        check_timm_augmentation(ImageNetAugment(re_num_splits=3))


def test_mixup_is_drawn_once_per_chunk(default_config):
    """mix_in_chunks: each chunk mixed within itself with its own draw, exactly what timm's
    Mixup does to that chunk alone (numpy's generator in the same state)."""
    from timm.data import Mixup

    from ann.engine.loop import mix_in_chunks

    mixup = Mixup(mixup_alpha=0.8, cutmix_alpha=1.0, label_smoothing=0.1, num_classes=8)
    images = torch.randn(8, 3, 6, 6)
    labels = torch.arange(8)
    np.random.seed(3)
    mixed, targets = mix_in_chunks(mixup, images.clone(), labels, chunk=4)
    np.random.seed(3)
    parts = [mixup(images[i : i + 4].clone(), labels[i : i + 4]) for i in (0, 4)]
    torch.testing.assert_close(mixed, torch.cat([x for x, _ in parts]), rtol=0, atol=0)
    torch.testing.assert_close(targets, torch.cat([t for _, t in parts]), rtol=0, atol=0)
    off = torch.full((4, 4), 0.1 / 8)  # smoothing only: no label from the other chunk
    torch.testing.assert_close(targets[:4, 4:], off) and torch.testing.assert_close(
        targets[4:, :4], off
    )
    np.random.seed(3)
    _, whole = mix_in_chunks(mixup, images.clone(), labels, chunk=None)  # one draw for all 8
    assert (whole[:4, 4:] > 0.1 / 8 + 1e-3).any()


def one_update(default_config, tmp_path, **recipe):
    """A linear model's parameters before and after one step of train_epoch on a fixed batch
    (plain SGD at lr 0.5), and the gradient of that batch's loss at the start."""
    from dataclasses import replace

    from ann.engine.batches import Data, Generators
    from ann.engine.loop import Step, loss_function, train_epoch

    run = run_from_config(default_config, "fashion_mnist", "resnet20", "none", 0, tmp_path)
    settings = {"lr": 0.5, "momentum": 0.0, "weight_decay": 0.0, "warmup_epochs": 0, **recipe}
    run = replace(run, recipe=replace(run.recipe, milestones=(), schedule="multistep", **settings))
    torch.manual_seed(0)
    model = torch.nn.Linear(5, 3)
    start = [p.detach().clone().requires_grad_(True) for p in model.parameters()]
    x, y = 10 * torch.randn(4, 5), torch.tensor([0, 1, 2, 0])
    loss = torch.nn.functional.cross_entropy(torch.nn.functional.linear(x, *start), y)
    grads = torch.autograd.grad(loss, start)
    data = Data(lambda generators, epoch: iter([(x, y)]), None, 3, 1, 5, 4, 1)
    optimizer = build_optimizer(model, run.recipe)
    scheduler = build_scheduler(optimizer, run.recipe, 1)
    step = Step(optimizer, scheduler, loss_function(run.recipe), None, None, None)
    train_epoch(model, data, 0, step, Generators.seeded(0), run, Context(0, 1, torch.device("cpu")))
    return [p.detach() for p in model.parameters()], [p.detach() for p in start], grads


def test_the_loop_clips_the_gradient_norm(default_config, tmp_path):
    after, start, grads = one_update(default_config, tmp_path, clip_grad_norm=0.01)
    norm = torch.sqrt(sum(g.square().sum() for g in grads))
    assert norm > 0.1  # far above the clip
    for p, p0, g in zip(after, start, grads, strict=True):
        torch.testing.assert_close(p, p0 - 0.5 * g * 0.01 / norm, rtol=1e-5, atol=1e-7)
    unclipped, start, grads = one_update(default_config, tmp_path)
    for p, p0, g in zip(unclipped, start, grads, strict=True):
        torch.testing.assert_close(p, p0 - 0.5 * g, rtol=1e-5, atol=1e-6)


def test_precision_leaves_the_cpu_in_fp32():
    from ann.engine.evaluate import autocast

    cpu = Context(0, 1, torch.device("cpu"))
    for precision in ("fp32", "bf16"):
        with autocast(cpu, precision):
            assert not torch.is_autocast_enabled("cpu")
            assert torch.nn.Linear(2, 2)(torch.ones(1, 2)).dtype == torch.float32
    recipes = {"r": {"epochs": 1, "batch_size": 2, "precision": "fp16"}}
    with pytest.raises(RecipeError, match="precision"):
        resolve_recipe({"datasets": {"x": {"recipe": "r"}}, "recipes": recipes}, "x", "m")


@pytest.mark.gpu
def test_precision_sets_autocast_on_cuda():
    from ann.engine.evaluate import autocast

    cuda = Context(0, 1, torch.device("cuda"))
    layer = torch.nn.Linear(8, 8).cuda()
    x = torch.ones(2, 8, device="cuda")
    with autocast(cuda, "bf16"):
        assert layer(x).dtype == torch.bfloat16
    with autocast(cuda, "fp32"):
        assert layer(x).dtype == torch.float32


def test_sync_bn_needs_cuda_and_several_processes(default_config, tmp_path):
    from dataclasses import replace

    from ann.engine.trainer import _synchronised_batch_norms
    from ann.errors import TrainingError

    run = run_from_config(default_config, "cifar10", "resnet20", "none", 0, tmp_path)
    assert run.recipe.sync_bn and run.recipe_name == "cifar"
    model = create_model("resnet20")
    assert _synchronised_batch_norms(model, run, Context(0, 1, torch.device("cpu"))) is model
    with pytest.raises(TrainingError, match="SyncBatchNorm does on CUDA only"):
        _synchronised_batch_norms(model, run, Context(0, 2, torch.device("cpu")))
    per_process = replace(run, recipe=replace(run.recipe, sync_bn=False))
    assert (
        _synchronised_batch_norms(model, per_process, Context(0, 2, torch.device("cpu"))) is model
    )


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
