"""The batches of a run: its training batches per epoch and its evaluation, whatever the
dataset. Fashion-MNIST and CIFAR live on the device as uint8 and are cropped, flipped and
normalised there; every rank draws the same global batch and augmentation (identically seeded
Generators) and keeps its own rows, so N ranks compute what one process computes with N
micro-batches. ImageNet streams through timm's prefetching loaders (or, with `data_pipeline:
gpu`, is decoded and augmented on the device by ann.imagenet_gpu), each rank reading its own
shard in loader batches of the recipe's mixup_chunk images (the official per-GPU batch: one
mixup draw each, mixed before it is erased when mix_then_erase), joined into the rank's batch."""

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import nn

from ann.data import (
    GpuAugment,
    ImageNetAugment,
    imagenet_loader,
    iterate_batches,
    load_dataset,
    load_imagenet,
    update_batches,
)
from ann.errors import DatasetError, RecipeError
from ann.recipes import Recipe

from .distributed import Context
from .evaluate import evaluate
from .run import Run

__all__ = ["DATA_PIPELINES", "SMALL_DATASETS", "Data", "Generators", "load_data", "mixup_function"]

SMALL_DATASETS = ("fashion_mnist", "cifar10", "cifar100")
DATA_PIPELINES = ("timm", "gpu")  # recipe key data_pipeline: where ImageNet batches are made

Batches = Iterator[tuple[torch.Tensor, torch.Tensor]]


@dataclass(frozen=True)
class Generators:
    """The CPU generators behind the order of the training batches and their augmentation,
    seeded from the run's seed (a checkpoint saves and restores their states)."""

    data: torch.Generator
    augment: torch.Generator

    @classmethod
    def seeded(cls, seed: int) -> "Generators":
        return cls(
            torch.Generator().manual_seed(seed * 2), torch.Generator().manual_seed(seed * 2 + 1)
        )


@dataclass(frozen=True)
class Data:
    """The training and evaluation batches of an epoch, whatever the dataset.

    train_batches(generators, epoch) yields this rank's (images, labels) of every training
    batch of the epoch; evaluate(model, final, fixed) returns the test columns of a metrics
    row (final: on the whole test set; fixed: fixed batch shapes for a compiled model);
    calibration_batch(n, seed) gives n training images drawn with `seed`, normalised as for
    evaluation (no augmentation), for the prior's calibration (ann.prior_modes);
    statistics_batches(epoch) yields the augmented training images that re-estimate the batch
    norms before the epoch's evaluation (recipe key bn_recalibration_images; none for 0);
    mixed: the batches come mixed (soft targets), else the training loop mixes if the recipe
    does."""

    train_batches: Callable[[Generators, int], Batches]
    evaluate: Callable[[nn.Module, bool, bool], dict[str, float]]
    num_classes: int
    in_chans: int
    img_size: int
    train_images: int
    updates_per_epoch: int
    calibration_batch: Callable[[int, int], torch.Tensor] | None = None
    statistics_batches: Callable[[int], Iterator[torch.Tensor]] = lambda epoch: iter(())
    mixed: bool = False


STATISTICS_SEED = 1_000_003  # the generator of the batch-norm re-estimation: seed + epoch


def recalibration_batches(recipe: Recipe) -> int:
    """Training batches that re-estimate the batch norms before an evaluation."""
    return -(-recipe.bn_recalibration_images // recipe.batch_size)


def _drawn(count: int, n: int, seed: int) -> torch.Tensor:
    """n of `count` indices in a random order of its own `seed` (no run generator is used)."""
    return torch.randperm(count, generator=torch.Generator().manual_seed(seed))[:n]


def mixup_function(recipe: Recipe, num_classes: int, *, collate: bool = False) -> object | None:
    """timm's Mixup for the recipe (timm train.py's defaults: prob 1, switch prob 0.5, one draw
    per batch), or its FastCollateMixup that mixes uint8 images while a loader collates them;
    None when the recipe does not mix."""
    if not recipe.mixes():
        return None
    from timm.data import FastCollateMixup, Mixup

    return (FastCollateMixup if collate else Mixup)(
        mixup_alpha=recipe.mixup,
        cutmix_alpha=recipe.cutmix,
        label_smoothing=recipe.label_smoothing,
        num_classes=num_classes,
    )


def small_data(run: Run, ctx: Context) -> Data:
    recipe = run.recipe
    train = load_dataset(run.dataset, run.root, "train", run.download)
    test = load_dataset(run.dataset, run.root, "test", run.download)
    if recipe.train_subset:
        train = train.subset(min(recipe.train_subset, len(train)), seed=recipe.subset_seed)
    train, test = train.to(ctx.device), test.to(ctx.device)
    augment = GpuAugment(
        recipe.mean or train.mean,
        recipe.std or train.std,
        crop_padding=recipe.crop_padding,
        flip=recipe.flip,
    )
    if recipe.batch_size % (ctx.world_size * run.micro_batches):
        raise RecipeError(
            f"batch_size {recipe.batch_size} is not divisible by "
            f"{ctx.world_size} ranks x {run.micro_batches} micro-batches."
        )

    def train_batches(generators: Generators, epoch: int) -> Batches:
        for images, labels in iterate_batches(
            train, recipe.batch_size, shuffle=True, generator=generators.data, drop_last=True
        ):
            x = augment(images, generators.augment)
            yield x[ctx.rank :: ctx.world_size], labels[ctx.rank :: ctx.world_size]

    test_subset = (
        test.subset(min(recipe.eval_subset, len(test)), seed=0) if recipe.eval_subset else test
    )

    def evaluate_on(model: nn.Module, final: bool, fixed: bool) -> dict[str, float]:
        images = test if final else test_subset
        batches = (
            (augment.evaluate(x), y)
            for x, y in iterate_batches(images, recipe.eval_batch_size, shuffle=False)
        )
        return evaluate(
            model,
            batches,
            ctx,
            reduce=False,
            num_classes=train.num_classes,
            precision=recipe.precision,
            fixed_batch=recipe.eval_batch_size if fixed else None,
        )

    def calibration_batch(n: int, seed: int) -> torch.Tensor:
        picked = _drawn(len(train), n, seed).to(train.images.device)
        return augment.evaluate(train.images[picked])

    def statistics_batches(epoch: int) -> Iterator[torch.Tensor]:
        """Whole training batches (every rank the same) from a generator of their own."""
        generator = torch.Generator().manual_seed(STATISTICS_SEED + epoch)
        batches = iterate_batches(train, recipe.batch_size, shuffle=True, generator=generator)
        for _, (images, _) in zip(range(recalibration_batches(recipe)), batches, strict=False):
            yield augment(images, generator)

    return Data(
        train_batches,
        evaluate_on,
        train.num_classes,
        train.images.shape[1],
        train.images.shape[2],
        len(train) // recipe.batch_size * recipe.batch_size,
        len(train) // recipe.batch_size,
        calibration_batch,
        statistics_batches,
    )


def imagenet_data(run: Run, ctx: Context) -> Data:
    recipe = run.recipe
    if not run.root:
        raise DatasetError(
            "ImageNet needs datasets.imagenet.root: a folder with train/<wnid>/ "
            "and val/<wnid>/ class folders of JPEG images."
        )
    if recipe.data_pipeline not in DATA_PIPELINES:
        raise RecipeError(
            f"data_pipeline '{recipe.data_pipeline}' is not one of {', '.join(DATA_PIPELINES)}."
        )
    per_rank, chunk = _imagenet_batches(recipe, ctx)
    data = load_imagenet(run.root)
    augment = ImageNetAugment(
        input_size=recipe.input_size,
        crop_pct=recipe.crop_pct,
        auto_augment=recipe.auto_augment,
        re_prob=recipe.re_prob,
        re_mode=recipe.re_mode,
        re_num_splits=recipe.re_num_splits,
        train_interpolation=recipe.train_interpolation,
    )
    collate_mixup = (
        mixup_function(recipe, data.num_classes, collate=True) if recipe.mix_then_erase else None
    )
    common = dict(num_workers=recipe.workers, distributed=ctx.world_size > 1, device=ctx.device)
    if recipe.data_pipeline == "gpu":
        from ann.imagenet_gpu import GpuTrainLoader

        train = GpuTrainLoader(
            data.train, augment, batch_size=per_rank, chunk=chunk, mixup=collate_mixup, **common
        )
        updates = len(train)
    else:
        train = imagenet_loader(
            data.train,
            augment,
            is_training=True,
            batch_size=chunk,
            collate_mixup=collate_mixup,
            **common,
        )
        updates = len(train) // (per_rank // chunk)
    val = imagenet_loader(
        data.val, augment, is_training=False, batch_size=recipe.eval_batch_size, **common
    )

    def train_batches(generators: Generators, epoch: int) -> Batches:
        if hasattr(train.sampler, "set_epoch"):
            train.sampler.set_epoch(epoch)
        batches = (
            train if recipe.data_pipeline == "gpu" else update_batches(train, per_rank // chunk)
        )
        for images, targets in batches:
            yield (
                images.to(ctx.device, non_blocking=True),
                targets.to(ctx.device, non_blocking=True),
            )

    def evaluate_on(model: nn.Module, final: bool, fixed: bool) -> dict[str, float]:
        batches = ((x.to(ctx.device), y.to(ctx.device)) for x, y in val)
        return evaluate(
            model,
            batches,
            ctx,
            reduce=ctx.world_size > 1,
            num_classes=data.num_classes,
            precision=recipe.precision,
            fixed_batch=recipe.eval_batch_size if fixed else None,
        )

    def calibration_batch(n: int, seed: int) -> torch.Tensor:
        import copy

        from timm.data import create_transform

        images = copy.copy(data.train)  # the same files, with the evaluation transform
        images.transform = create_transform(
            recipe.input_size,
            is_training=False,
            crop_pct=recipe.crop_pct,
            interpolation=augment.interpolation,
            mean=augment.mean,
            std=augment.std,
        )
        return torch.stack([images[int(i)][0] for i in _drawn(len(images), n, seed)])

    return Data(
        train_batches,
        evaluate_on,
        data.num_classes,
        3,
        recipe.input_size,
        updates * recipe.batch_size,
        updates,
        calibration_batch,
        mixed=collate_mixup is not None,
    )


def _imagenet_batches(recipe: Recipe, ctx: Context) -> tuple[int, int]:
    """This rank's share of the global batch and the loader batch (mixup_chunk: one mixup
    draw, and the batch re_num_splits splits), checked to divide it."""
    if recipe.batch_size % ctx.world_size:
        raise RecipeError(
            f"batch_size {recipe.batch_size} is not divisible by {ctx.world_size} processes."
        )
    per_rank = recipe.batch_size // ctx.world_size
    chunk = recipe.mixup_chunk or per_rank
    if per_rank % chunk or (recipe.mixes() and chunk % 2):
        raise RecipeError(
            f"mixup_chunk {chunk} must be even and divide each process's batch of {per_rank} "
            f"(batch_size {recipe.batch_size} over {ctx.world_size} processes)."
        )
    return per_rank, chunk


def load_data(run: Run, ctx: Context) -> Data:
    if run.dataset in SMALL_DATASETS:
        return small_data(run, ctx)
    if run.dataset == "imagenet":
        return imagenet_data(run, ctx)
    raise DatasetError(
        f"unknown dataset '{run.dataset}'; choose one of {SMALL_DATASETS + ('imagenet',)}."
    )
