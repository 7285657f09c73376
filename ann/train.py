"""Train and evaluate one (dataset, model, prior, seed) run.

    python -m ann.train --config config.yaml --dataset fashion_mnist --model dit_resnet20 \\
        --prior bio --kappa results/dendrite/pyramidal/kappa.nc --seed 0 --out results/train/x
    torchrun --nproc-per-node 4 -m ann.train ...      # DistributedDataParallel, one GPU each

On CUDA: bf16 autocast, channels_last and torch.compile (`train.compile: auto`), with CUDA
graphs for the device-resident datasets (fixed batch shapes: the last partial training batch
is dropped, evaluation batches are padded); on the CPU: float32 with --threads threads, eager
unless `train.compile: true`. Fashion-MNIST and CIFAR live on the device as uint8 and are cropped,
flipped and normalised there; every rank draws the same global batch and augmentation and
keeps its own rows, so N ranks compute what one process computes with N micro-batches.
ImageNet streams through timm's loaders (or, with `data_pipeline: gpu`, is decoded and
augmented on the device by ann.imagenet_gpu), with timm's RandAugment, random erasing, mixup
and cutmix, drop path, model EMA, AdamW and cosine schedule with warm-up.

In --out: metrics.csv (one row per epoch), checkpoint.pt (after every epoch) and, at the
end, metrics.json; all written atomically. Started again, a run resumes from its
checkpoint and ends with the metrics of an uninterrupted run.
"""

import argparse
import contextlib
import copy
import hashlib
import json
import logging
import math
import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.distributed as dist
import torch.nn.functional as F
import yaml
from torch import nn

from .data import (
    GpuAugment,
    ImageNetAugment,
    imagenet_loader,
    iterate_batches,
    load_dataset,
    load_imagenet,
)
from .engine import parameter_groups
from .errors import (
    AnnError,
    ConfigError,
    DatasetError,
    LockError,
    PriorError,
    RecipeError,
    TrainingError,
)
from .flops import count_macs
from .io import git_commit, save_csv, save_json, save_torch
from .lock import RunLock
from .models import create_model, dit_parameters, quadratic_layers
from .priors import apply_prior, load_kappa, prior_weights
from .recipes import (
    Recipe,
    parse_overrides,
    recipe_name,
    resolve_recipe,
)

log = logging.getLogger(__name__)

SMALL_DATASETS = ("fashion_mnist", "cifar10", "cifar100")
DATA_PIPELINES = ("timm", "gpu")  # recipe key data_pipeline: where ImageNet batches are made
CHECKPOINT = "checkpoint.pt"


@dataclass
class Run:
    """One training run: what to train, with which recipe, where to write."""

    dataset: str
    model: str
    prior: str
    seed: int
    out: Path
    recipe: Recipe
    root: str | None = None
    download: bool = False
    device: str = "auto"
    compile: bool | str = "auto"  # auto: on CUDA, off on the CPU
    threads: int | None = None
    micro_batches: int = 1
    prior_file: Path | None = None
    kappa: Path | None = None
    prior_options: dict = field(default_factory=dict)

    def identity(self) -> dict:
        return {
            "dataset": self.dataset,
            "model": self.model,
            "prior": self.prior,
            "seed": self.seed,
        }


@dataclass
class Context:
    """Where this process runs: its rank among world_size processes and its device."""

    rank: int
    world_size: int
    device: torch.device

    @property
    def main(self) -> bool:
        return self.rank == 0


def device_type(device: str) -> str:
    """'cuda' or 'cpu' for train.device (auto: CUDA when present)."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def distributed_context(device: str) -> Context:
    """Rank, world size and device from torchrun's environment (one process otherwise)."""
    world_size, rank = int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("RANK", 0))
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    device = device_type(device)
    if device == "cuda":
        if not torch.cuda.is_available():
            raise TrainingError("train.device is 'cuda' but no CUDA device is available.")
        torch.cuda.set_device(local_rank)
        where = torch.device("cuda", local_rank)
    else:
        where = torch.device(device)
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if where.type == "cuda" else "gloo")
    return Context(rank, world_size, where)


def _autocast(ctx: Context) -> torch.autocast:
    return torch.autocast(ctx.device.type, dtype=torch.bfloat16, enabled=ctx.device.type == "cuda")


def compile_mode(run: Run, device: torch.device) -> str | None:
    """torch.compile's mode for this run, None for eager: train.compile auto compiles on CUDA
    only; on CUDA the device-resident datasets (fixed shapes) also get CUDA graphs."""
    enabled = device.type == "cuda" if run.compile == "auto" else bool(run.compile)
    if not enabled:
        return None
    if device.type == "cuda" and run.dataset in SMALL_DATASETS:
        return "reduce-overhead"
    return "default"


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# ---------------------------------------------------------------- model and optimiser
def build_model(
    run: Run, num_classes: int, in_chans: int, img_size: int
) -> tuple[nn.Module, str | None]:
    """The model with its prior applied; also the sha256 of the kappa file behind the prior."""
    kwargs = {"in_chans": in_chans}
    if run.model.startswith(("dit_convnext", "convnext")):
        kwargs["drop_path_rate"] = run.recipe.drop_path
    else:
        kwargs["img_size"] = img_size
    try:
        model = create_model(run.model, num_classes=num_classes, **kwargs)
    except ValueError as err:
        raise TrainingError(str(err)) from None
    has_dit = bool(quadratic_layers(model))
    if not has_dit:
        if run.prior != "none":
            raise PriorError(f"{run.model} has no quadratic layers; its prior must be 'none'.")
        return model, None
    if run.prior == "none":
        raise PriorError(f"{run.model} has quadratic layers: choose a prior (zero, bio, shuffled).")
    if run.prior_file:
        saved = torch.load(run.prior_file, weights_only=True)
        if saved.get("prior") != run.prior or saved.get("seed") != run.seed:
            raise PriorError(
                f"prior file '{run.prior_file}' holds prior {saved.get('prior')} "
                f"seed {saved.get('seed')}, not {run.prior} seed {run.seed}."
            )
        apply_prior(model, saved["weights"])
        return model, saved.get("kappa_sha256")
    kappa = load_kappa(run.kappa) if run.kappa and run.prior != "zero" else None
    apply_prior(model, prior_weights(model, run.prior, kappa, seed=run.seed, **run.prior_options))
    return model, file_sha256(run.kappa) if kappa is not None else None


def build_optimizer(model: nn.Module, recipe: Recipe) -> torch.optim.Optimizer:
    """timm's optimizer over `parameter_groups`; on CUDA torch's fused implementation (one kernel
    per step instead of several per parameter)."""
    from timm.optim import create_optimizer_v2

    if recipe.optimizer not in ("sgd", "adamw"):
        raise RecipeError(f"optimizer '{recipe.optimizer}' is not one of sgd, adamw.")
    extra = {"momentum": recipe.momentum, "nesterov": False} if recipe.optimizer == "sgd" else {}
    if next(model.parameters()).is_cuda:
        extra["fused"] = True
    return create_optimizer_v2(
        parameter_groups(
            model,
            dit_parameters(model),
            weight_decay=recipe.weight_decay,
            quadratic_lr_mult=recipe.dit_lr_mult,
            decay_vectors=recipe.optimizer != "adamw",
        ),
        opt=recipe.optimizer,
        lr=recipe.peak_lr(),
        weight_decay=recipe.weight_decay,
        **extra,
    )


def build_scheduler(optimizer: torch.optim.Optimizer, recipe: Recipe, updates_per_epoch: int):  # noqa: ANN201
    from timm.scheduler import create_scheduler_v2

    if recipe.schedule not in ("multistep", "cosine"):
        raise RecipeError(f"schedule '{recipe.schedule}' is not one of multistep, cosine.")
    scheduler, _ = create_scheduler_v2(
        optimizer,
        sched=recipe.schedule,
        num_epochs=recipe.epochs,
        # timm applies milestone m from epoch m - 1; ours (as torch's MultiStepLR) from epoch m
        decay_milestones=[m + 1 for m in recipe.milestones],
        decay_rate=recipe.gamma,
        warmup_epochs=recipe.warmup_epochs,
        warmup_lr=recipe.warmup_lr,
        min_lr=recipe.min_lr,
        # timm's train.py steps per epoch unless --sched-on-updates; milestones are epochs
        step_on_epochs=recipe.schedule == "multistep" or not recipe.sched_on_updates,
        updates_per_epoch=updates_per_epoch,
    )
    return scheduler


# ---------------------------------------------------------------- data
@dataclass
class Data:
    """The training and evaluation batches of an epoch, whatever the dataset."""

    train_batches: Callable[[dict, int], Iterator[tuple[torch.Tensor, torch.Tensor]]]
    evaluate: Callable[[nn.Module, bool, bool], dict]  # (model, final, fixed batch shape)
    num_classes: int
    in_chans: int
    img_size: int
    train_images: int
    updates_per_epoch: int


def _small_data(run: Run, ctx: Context) -> Data:
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

    def train_batches(generators: dict, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for images, labels in iterate_batches(
            train, recipe.batch_size, shuffle=True, generator=generators["data"], drop_last=True
        ):
            x = augment(images, generators["augment"])
            yield x[ctx.rank :: ctx.world_size], labels[ctx.rank :: ctx.world_size]

    test_subset = (
        test.subset(min(recipe.eval_subset, len(test)), seed=0) if recipe.eval_subset else test
    )

    def evaluate(model: nn.Module, final: bool, fixed: bool) -> dict:
        images = test if final else test_subset
        batches = (
            (augment.evaluate(x), y)
            for x, y in iterate_batches(images, recipe.eval_batch_size, shuffle=False)
        )
        return _evaluate(
            model,
            batches,
            ctx,
            reduce=False,
            num_classes=train.num_classes,
            fixed_batch=recipe.eval_batch_size if fixed else None,
        )

    return Data(
        train_batches,
        evaluate,
        train.num_classes,
        train.images.shape[1],
        train.images.shape[2],
        len(train) // recipe.batch_size * recipe.batch_size,
        len(train) // recipe.batch_size,
    )


def _imagenet_data(run: Run, ctx: Context) -> Data:
    recipe = run.recipe
    if not run.root:
        raise DatasetError(
            "ImageNet needs datasets.imagenet.root: a folder with train/<wnid>/ "
            "and val/<wnid>/ class folders of JPEG images."
        )
    data = load_imagenet(run.root)
    augment = ImageNetAugment(
        input_size=recipe.input_size,
        crop_pct=recipe.crop_pct,
        auto_augment=recipe.auto_augment,
        re_prob=recipe.re_prob,
        re_mode=recipe.re_mode,
        train_interpolation=recipe.train_interpolation,
    )
    if recipe.data_pipeline not in DATA_PIPELINES:
        raise RecipeError(
            f"data_pipeline '{recipe.data_pipeline}' is not one of {', '.join(DATA_PIPELINES)}."
        )
    per_rank = recipe.batch_size // ctx.world_size
    common = dict(
        batch_size=per_rank,
        num_workers=recipe.workers,
        distributed=ctx.world_size > 1,
        device=ctx.device,
    )
    if recipe.data_pipeline == "gpu":
        from .imagenet_gpu import GpuTrainLoader

        train = GpuTrainLoader(data.train, augment, **common)
    else:
        train = imagenet_loader(data.train, augment, is_training=True, **common)
    val = imagenet_loader(data.val, augment, is_training=False, **common)

    def train_batches(generators: dict, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if hasattr(train.sampler, "set_epoch"):
            train.sampler.set_epoch(epoch)
        for images, labels in train:
            yield images.to(ctx.device, non_blocking=True), labels.to(ctx.device, non_blocking=True)

    def evaluate(model: nn.Module, final: bool, fixed: bool) -> dict:
        batches = ((x.to(ctx.device), y.to(ctx.device)) for x, y in val)
        return _evaluate(
            model,
            batches,
            ctx,
            reduce=ctx.world_size > 1,
            num_classes=data.num_classes,
            fixed_batch=val.batch_size if fixed else None,
        )

    return Data(
        train_batches,
        evaluate,
        data.num_classes,
        3,
        recipe.input_size,
        len(train) * recipe.batch_size,
        len(train),
    )


def load_data(run: Run, ctx: Context) -> Data:
    if run.dataset in SMALL_DATASETS:
        return _small_data(run, ctx)
    if run.dataset == "imagenet":
        return _imagenet_data(run, ctx)
    raise DatasetError(
        f"unknown dataset '{run.dataset}'; choose one of {SMALL_DATASETS + ('imagenet',)}."
    )


# ---------------------------------------------------------------- evaluation
def _padded(images: torch.Tensor, size: int | None) -> torch.Tensor:
    """images with zero images appended up to `size` (a compiled model sees one shape)."""
    if size is None or len(images) >= size:
        return images
    return torch.cat((images, images.new_zeros(size - len(images), *images.shape[1:])))


@torch.no_grad()
def _evaluate(
    model: nn.Module,
    batches: Iterator,
    ctx: Context,
    *,
    reduce: bool,
    num_classes: int,
    fixed_batch: int | None = None,
) -> dict:
    """Loss, top-1 and top-5 over the batches; with fixed_batch, every batch is padded to that
    size and the padding's outputs are dropped."""
    model.eval()
    totals = torch.zeros(4, dtype=torch.float64, device=ctx.device)  # loss, top1, top5, count
    for images, labels in batches:
        images = _padded(images, fixed_batch)
        if ctx.device.type == "cuda":
            images = images.contiguous(memory_format=torch.channels_last)
        _mark_graph_step()
        with _autocast(ctx):
            logits = model(images)[: len(labels)].float()
        top = logits.topk(min(5, num_classes), dim=1).indices
        hits = top == labels[:, None]
        totals += torch.stack(
            [
                F.cross_entropy(logits, labels, reduction="sum").double(),
                hits[:, 0].sum().double(),
                hits.any(1).sum().double(),
                torch.tensor(float(len(labels)), dtype=torch.float64, device=ctx.device),
            ]
        )
    if reduce:
        dist.all_reduce(totals)
    loss, top1, top5, n = totals.tolist()
    return {
        "test_loss": loss / n,
        "test_top1": top1 / n,
        "test_top5": top5 / n if num_classes > 10 else math.nan,
        "test_images": int(n),
    }


# ---------------------------------------------------------------- checkpoints
def _rng_state(generators: dict) -> dict:
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "data": generators["data"].get_state(),
        "augment": generators["augment"].get_state(),
    }


def _restore_rng(state: dict, generators: dict) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    generators["data"].set_state(state["data"])
    generators["augment"].set_state(state["augment"])


def _setup(run: Run, kappa_sha: str | None) -> dict:
    """What a checkpoint must share with the run to be resumed (the epoch count may grow, and
    the ImageNet input pipeline may change: both make the same batches)."""
    recipe = {k: v for k, v in asdict(run.recipe).items() if k not in ("epochs", "data_pipeline")}
    return {"recipe": json.loads(json.dumps(recipe)), "kappa_sha256": kappa_sha}


def load_checkpoint(path: Path, run: Run, setup: dict) -> dict | None:
    """The saved state of this run, None if there is none (or it was made with another
    recipe or prior: then training starts over), or a TrainingError."""
    if not path.exists():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise TrainingError(
            f"checkpoint '{path}' cannot be read: damaged, or not written by "
            f"ann.train ({type(err).__name__}); delete it to start over."
        ) from None
    if state.get("run") != run.identity():
        raise TrainingError(
            f"checkpoint '{path}' belongs to run {state.get('run')}, not "
            f"{run.identity()}; move it away or delete it."
        )
    if state.get("setup") != setup:
        log.warning("checkpoint %s was made with another recipe or prior; starting over", path)
        return None
    return state


# ---------------------------------------------------------------- the loop
def _loss_fn(recipe: Recipe, mixup: object | None) -> nn.Module:
    if mixup is not None:
        from timm.loss import SoftTargetCrossEntropy

        return SoftTargetCrossEntropy()
    return nn.CrossEntropyLoss(label_smoothing=recipe.label_smoothing)


def _mixup(recipe: Recipe, num_classes: int) -> object | None:
    if recipe.mixup <= 0 and recipe.cutmix <= 0:
        return None
    from timm.data import Mixup

    return Mixup(
        mixup_alpha=recipe.mixup,
        cutmix_alpha=recipe.cutmix,
        label_smoothing=recipe.label_smoothing,
        num_classes=num_classes,
    )


def _progress(batches: Iterator, total: int, epoch: int, ctx: Context) -> Iterator:
    if ctx.main and sys.stderr.isatty():
        from tqdm import tqdm

        return iter(tqdm(batches, total=total, desc=f"epoch {epoch + 1}", leave=False))
    return batches


def _mark_graph_step() -> None:
    """Tell CUDA graph trees that a new step begins (the previous outputs may be overwritten)."""
    if torch.cuda.is_available():
        torch.compiler.cudagraph_mark_step_begin()


def _synchronize(ctx: Context) -> None:
    if ctx.device.type == "cuda":
        torch.cuda.synchronize(ctx.device)


@dataclass
class Step:
    """What a training step uses besides the model and the batch."""

    optimizer: torch.optim.Optimizer
    scheduler: object  # timm scheduler: step(epoch), step_update(num_updates)
    loss_fn: nn.Module
    mixup: object | None  # timm Mixup
    ema: object | None  # timm ModelEmaV3
    compile_mode: str | None
    first_step_s: float | None = None  # the first step of this process (compilation included)


def train_epoch(
    model: nn.Module,
    data: Data,
    epoch: int,
    step_parts: Step,
    generators: dict,
    run: Run,
    ctx: Context,
) -> dict:
    """One pass over the training data; raises TrainingError on a non-finite loss."""
    optimizer, scheduler = step_parts.optimizer, step_parts.scheduler
    loss_fn, mixup = step_parts.loss_fn, step_parts.mixup
    model.train()
    sums = torch.zeros(3, dtype=torch.float64, device=ctx.device)  # loss, correct, count
    check_every = 1 if ctx.device.type == "cpu" else 25
    bad_step = torch.full((), -1, dtype=torch.long, device=ctx.device)
    start, step = time.perf_counter(), 0
    for step, (images, labels) in enumerate(
        _progress(data.train_batches(generators, epoch), data.updates_per_epoch, epoch, ctx)
    ):
        step_start = time.perf_counter()
        if ctx.device.type == "cuda":
            images = images.contiguous(memory_format=torch.channels_last)
        targets = labels
        if mixup is not None:
            images, targets = mixup(images, labels)
        optimizer.zero_grad(set_to_none=True)
        for part in range(run.micro_batches):
            x, t = images[part :: run.micro_batches], targets[part :: run.micro_batches]
            if step_parts.compile_mode == "reduce-overhead":
                _mark_graph_step()
            with _autocast(ctx):
                logits = model(x)
                loss = loss_fn(logits.float(), t) / run.micro_batches
            loss.backward()
            sums[0] += loss.detach().double() * len(x) * run.micro_batches
            if mixup is None:
                sums[1] += (logits.argmax(1) == t).sum()
            sums[2] += len(x)
            bad_step = torch.where((bad_step < 0) & ~torch.isfinite(loss.detach()), step, bad_step)
        optimizer.step()
        if step_parts.ema is not None:
            step_parts.ema.update(model)
        scheduler.step_update(num_updates=epoch * data.updates_per_epoch + step + 1)
        if step_parts.compile_mode and step_parts.first_step_s is None:
            _synchronize(ctx)
            step_parts.first_step_s = time.perf_counter() - step_start
            log.info(
                "first training step, torch.compile (mode %s) included: %.1f s",
                step_parts.compile_mode,
                step_parts.first_step_s,
            )
        if (step + 1) % check_every == 0 and bad_step.item() >= 0:
            break
    if bad_step.item() >= 0:
        checkpoint = run.out / CHECKPOINT
        kept = (
            f"the last good checkpoint is kept in '{checkpoint}'"
            if checkpoint.exists()
            else "there is no checkpoint yet"
        )
        raise TrainingError(
            f"the loss became non-finite in epoch {epoch + 1}, step {bad_step.item() + 1}; "
            f"{kept}. Lower the learning rate or check the data."
        )
    if ctx.world_size > 1:
        dist.all_reduce(sums)
    seconds = time.perf_counter() - start
    loss, correct, count = sums.tolist()
    return {
        "train_loss": loss / count,
        "train_top1": correct / count if mixup is None else math.nan,
        "lr": optimizer.param_groups[0]["lr"] / optimizer.param_groups[0].get("lr_scale", 1.0),
        "seconds": seconds,
        "images_per_s": count / seconds,
    }


def train(run: Run) -> dict:
    """Train the run to its last epoch (resuming if a checkpoint exists); return metrics.json.
    The run holds the lock of its output folder (ann.lock) throughout: a second run on the
    same folder stops with a TrainingError that names the first."""
    ctx = distributed_context(run.device)
    with _output_lock(run, ctx):
        return _train(run, ctx)


@contextlib.contextmanager
def _output_lock(run: Run, ctx: Context) -> Iterator[None]:
    """Rank 0 holds run.out's lock; under torchrun the other ranks learn whether it got it."""
    lock, error = RunLock(run.out) if ctx.main else None, None
    if lock is not None:
        try:
            lock.acquire()
        except LockError as err:
            error = str(err)
    if ctx.world_size > 1:
        shared = [error]
        dist.broadcast_object_list(shared, src=0)
        error = shared[0]
    if error is not None:
        raise TrainingError(error)
    try:
        yield
    finally:
        if lock is not None:
            lock.release()


def _train(run: Run, ctx: Context) -> dict:
    if ctx.device.type == "cpu" and run.threads:
        torch.set_num_threads(run.threads)  # for the whole process: a training job trains one run
    torch.manual_seed(run.seed)
    np.random.seed(run.seed)
    generators = {
        name: torch.Generator().manual_seed(run.seed * 2 + k)
        for k, name in enumerate(("data", "augment"))
    }
    data = load_data(run, ctx)
    model, kappa_sha = build_model(run, data.num_classes, data.in_chans, data.img_size)
    n_params = sum(p.numel() for p in model.parameters())
    macs = count_macs(model, (data.in_chans, data.img_size, data.img_size))
    model.to(ctx.device)
    if ctx.device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    raw = model
    optimizer = build_optimizer(raw, run.recipe)
    scheduler = build_scheduler(optimizer, run.recipe, data.updates_per_epoch)
    ema = None
    if run.recipe.model_ema:
        from timm.utils import ModelEmaV3

        ema = ModelEmaV3(raw, decay=run.recipe.ema_decay)
    checkpoint_path = run.out / CHECKPOINT
    setup = _setup(run, kappa_sha)
    state = load_checkpoint(checkpoint_path, run, setup)
    history, first_epoch, wall = [], 0, 0.0
    if state is not None:
        raw.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if ema is not None and state.get("ema"):
            ema.module.load_state_dict(state["ema"])
        _restore_rng(state["rng"], generators)
        history, first_epoch, wall = state["history"], state["epoch"], state["wall_time"]
        log.info("resuming %s from epoch %d", checkpoint_path, first_epoch)
    if ctx.world_size > 1:
        model = nn.parallel.DistributedDataParallel(
            model, device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None
        )
    mode = compile_mode(run, ctx.device)
    if mode is not None:
        model = torch.compile(model, mode=mode, dynamic=False)
    mixup = _mixup(run.recipe, data.num_classes)
    step_parts = Step(optimizer, scheduler, _loss_fn(run.recipe, mixup), mixup, ema, mode)
    for epoch in range(first_epoch, run.recipe.epochs):
        scheduler.step(epoch)
        started = time.perf_counter()
        row = {
            "epoch": epoch + 1,
            **train_epoch(model, data, epoch, step_parts, generators, run, ctx),
        }
        final = epoch + 1 == run.recipe.epochs
        evaluated = ema.module if ema is not None else model
        row |= data.evaluate(evaluated, final, evaluated is model and mode is not None)
        wall += time.perf_counter() - started
        history.append(row)
        log.info(
            "%s/%s/%s seed %d epoch %d/%d: loss %.4f, test top-1 %.4f, %.0f images/s",
            run.dataset,
            run.model,
            run.prior,
            run.seed,
            epoch + 1,
            run.recipe.epochs,
            row["train_loss"],
            row["test_top1"],
            row["images_per_s"],
        )
        if ctx.main:
            save_csv(pd.DataFrame(history), run.out / "metrics.csv")
            save_torch(
                {
                    "run": run.identity(),
                    "setup": setup,
                    "epoch": epoch + 1,
                    "model": raw.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "ema": ema.module.state_dict() if ema is not None else None,
                    "rng": _rng_state(generators),
                    "history": history,
                    "wall_time": wall,
                },
                checkpoint_path,
            )
    summary = _summary(run, history, n_params, macs, ctx, wall, kappa_sha)
    summary["compile_mode"] = mode
    summary["first_step_s"] = step_parts.first_step_s
    if ctx.main:
        save_csv(pd.DataFrame(history), run.out / "metrics.csv")
        save_json(summary, run.out / "metrics.json")
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
    return summary


def _summary(
    run: Run,
    history: list,
    n_params: int,
    macs: int,
    ctx: Context,
    wall: float,
    kappa_sha: str | None,
) -> dict:
    last = history[-1]
    whole_test_set = [row for row in history if row["test_images"] == last["test_images"]]
    best = max(whole_test_set, key=lambda row: row["test_top1"])
    device_name = torch.cuda.get_device_name(ctx.device) if ctx.device.type == "cuda" else "cpu"
    return {
        **run.identity(),
        "final": {k: last[k] for k in ("test_top1", "test_top5", "test_loss", "train_loss")},
        "best": {
            "epoch": best["epoch"],
            "test_top1": best["test_top1"],
            "test_top5": best["test_top5"],
        },
        "epochs": len(history),
        "parameters": n_params,
        "macs_per_image": macs,
        "device": device_name,
        "world_size": ctx.world_size,
        "threads": torch.get_num_threads() if ctx.device.type == "cpu" else None,
        "wall_time_s": wall,
        "images_per_s": float(np.median([row["images_per_s"] for row in history])),
        "recipe": asdict(run.recipe),
        "kappa_sha256": kappa_sha,
        "torch_version": torch.__version__,
        "commit": git_commit(Path(__file__).parent),
    }


# ---------------------------------------------------------------- command line
def run_from_config(
    config: Mapping,
    dataset: str,
    model: str,
    prior: str,
    seed: int,
    out: Path,
    overrides: Mapping | None = None,
    **options: object,
) -> Run:
    """A Run for (dataset, model, prior, seed) from the pipeline's config.yaml contents; the
    options `device` and `compile`, when given and not None, replace train.device and
    train.compile. The recipe is the dataset's recipe for the device the run trains on."""
    if dataset not in config["datasets"]:
        raise DatasetError(f"no dataset '{dataset}' under datasets in the config.")
    source = config["datasets"][dataset]
    train_cfg = config.get("train", {})
    priors = config.get("priors", {})
    device = options.pop("device", None) or train_cfg.get("device", "auto")
    compile_setting = options.pop("compile", None)
    if compile_setting is None:
        compile_setting = train_cfg.get("compile", "auto")
    return Run(
        dataset=dataset,
        model=model,
        prior=prior,
        seed=seed,
        out=Path(out),
        recipe=resolve_recipe(config, dataset, model, overrides, device_type(device)),
        root=source.get("root"),
        download=source.get("download", False),
        device=device,
        compile=compile_setting,
        prior_options={
            k: priors[k] for k in ("fraction_inhibitory", "init_ratio", "diagonal") if k in priors
        },
        **options,
    )


SCHEMA = Path(__file__).resolve().parents[1] / "workflow" / "schemas" / "config.schema.yaml"


def read_config(path: str | Path, dataset: str, overrides: Mapping, device: str) -> dict:
    """config.yaml, checked against the workflow's schema (the one Snakemake validates with)
    with the --set overrides applied to the recipe the run uses."""
    import jsonschema

    try:
        config = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as err:
        raise ConfigError(f"config file '{path}' cannot be read: {err}") from None
    if not isinstance(config, dict):
        raise ConfigError(f"config file '{path}' does not hold a mapping of config keys.")
    checked = copy.deepcopy(config)
    if overrides and dataset in checked.get("datasets", {}):
        name = recipe_name(checked, dataset, device_type(device))
        checked["recipes"][name] = {**checked["recipes"][name], **overrides}
    schema = yaml.safe_load(SCHEMA.read_text())
    error = jsonschema.exceptions.best_match(
        jsonschema.Draft202012Validator(schema).iter_errors(checked)
    )
    if error is not None:
        key = ".".join(str(part) for part in error.absolute_path) or "(top level)"
        from_cli = key.startswith("recipes.") and key.split(".")[-1] in overrides
        where = f"--set {key.split('.')[-1]}" if from_cli else f"{path}: config key {key}"
        raise ConfigError(f"{where}: {error.message}")
    return config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ann.train", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--config", default="config.yaml", help="the pipeline's config.yaml")
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument(
        "--prior", default="none", help="none (plain models), zero, bio or shuffled"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True, type=Path, help="output folder of this run")
    parser.add_argument("--kappa", type=Path, help="kappa.nc for the bio and shuffled priors")
    parser.add_argument("--prior-file", type=Path, help="prior weights from the build_prior rule")
    parser.add_argument("--device", help="auto, cpu or cuda (default: train.device)")
    parser.add_argument("--threads", type=int, help="CPU threads")
    parser.add_argument("--micro-batches", type=int, default=1, help="gradient accumulation steps")
    parser.add_argument(
        "--compile",
        choices=("auto", "true", "false"),
        help="torch.compile the model: auto (on CUDA only), true, false (default: train.compile)",
    )
    parser.add_argument(
        "--set", nargs="*", default=[], metavar="KEY=VALUE", help="recipe overrides"
    )
    args = parser.parse_args(argv)
    main_process = int(os.environ.get("RANK", 0)) == 0
    logging.basicConfig(
        level=logging.INFO if main_process else logging.WARNING, format="%(asctime)s %(message)s"
    )
    try:
        overrides = parse_overrides(args.set)
        config = read_config(args.config, args.dataset, overrides, args.device or "auto")
        run = run_from_config(
            config,
            args.dataset,
            args.model,
            args.prior,
            args.seed,
            args.out,
            overrides,
            kappa=args.kappa,
            prior_file=args.prior_file,
            threads=args.threads,
            micro_batches=args.micro_batches,
            device=args.device,
            compile={"auto": "auto", "true": True, "false": False, None: None}[args.compile],
        )
        summary = train(run)
    except (AnnError, FileNotFoundError) as err:
        log.error("error: %s", err)
        return 1
    log.info(
        "final test top-1 %.4f (best %.4f at epoch %d)",
        summary["final"]["test_top1"],
        summary["best"]["test_top1"],
        summary["best"]["epoch"],
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
