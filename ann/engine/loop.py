"""The training loop's step: one epoch of updates (micro-batches, mixup, gradient clipping,
EMA, per-update schedule) under the recipe's precision, with torch.compile (CUDA graphs for
fixed batch shapes) and a guard that stops on a non-finite loss."""

import logging
import math
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist
from timm.scheduler.scheduler import Scheduler
from torch import nn

from ann.errors import TrainingError
from ann.recipes import Recipe

from .batches import SMALL_DATASETS, Data, Generators
from .checkpoint import CHECKPOINT
from .distributed import Context
from .evaluate import autocast, mark_graph_step
from .run import Run

__all__ = [
    "Step",
    "compile_mode",
    "loss_function",
    "mix_in_chunks",
    "train_epoch",
]

log = logging.getLogger(__name__)


def compile_mode(run: Run, device: torch.device) -> str | None:
    """torch.compile's mode for this run, None for eager: train.compile auto compiles on CUDA
    only; on CUDA the device-resident datasets (fixed shapes) also get CUDA graphs."""
    enabled = device.type == "cuda" if run.compile == "auto" else bool(run.compile)
    if not enabled:
        return None
    if device.type == "cuda" and run.dataset in SMALL_DATASETS:
        return "reduce-overhead"
    return "default"


def loss_function(recipe: Recipe) -> nn.Module:
    """Cross-entropy on the soft targets of mixup/cutmix (smoothing inside them), else with
    the recipe's label smoothing: timm train.py's choice."""
    if recipe.mixes():
        from timm.loss import SoftTargetCrossEntropy

        return SoftTargetCrossEntropy()
    return nn.CrossEntropyLoss(label_smoothing=recipe.label_smoothing)


def mix_in_chunks(
    mixup: object, images: torch.Tensor, labels: torch.Tensor, chunk: int | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """timm's Mixup applied to each run of `chunk` images (one draw per chunk, as timm's
    training loop draws once per loader batch); None: one draw for the whole batch."""
    if chunk is None or chunk >= len(images):
        return mixup(images, labels)
    mixed = [mixup(x, y) for x, y in zip(images.split(chunk), labels.split(chunk), strict=True)]
    return torch.cat([x for x, _ in mixed]), torch.cat([t for _, t in mixed])


def _progress(batches: Iterator, total: int, epoch: int, ctx: Context) -> Iterator:
    if ctx.main and sys.stderr.isatty():
        from tqdm import tqdm

        return iter(tqdm(batches, total=total, desc=f"epoch {epoch + 1}", leave=False))
    return batches


def _synchronize(ctx: Context) -> None:
    if ctx.device.type == "cuda":
        torch.cuda.synchronize(ctx.device)


@dataclass
class Step:
    """What a training step uses besides the model and the batch."""

    optimizer: torch.optim.Optimizer
    scheduler: Scheduler  # step(epoch), step_update(num_updates)
    loss_fn: nn.Module
    mixup: object | None  # timm Mixup, when the batches come unmixed and the recipe mixes
    ema: object | None  # timm ModelEmaV3
    compile_mode: str | None
    first_step_s: float | None = None  # the first step of this process (compilation included)


def train_epoch(
    model: nn.Module,
    data: Data,
    epoch: int,
    step_parts: Step,
    generators: Generators,
    run: Run,
    ctx: Context,
) -> dict[str, float]:
    """One pass over the training data: the training columns of the epoch's metrics row.
    Raises TrainingError on a non-finite loss."""
    optimizer, scheduler = step_parts.optimizer, step_parts.scheduler
    loss_fn, mixup = step_parts.loss_fn, step_parts.mixup
    recipe = run.recipe
    soft = False  # mixed (soft) targets: no training top-1
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
            images, targets = mix_in_chunks(mixup, images, labels, recipe.mixup_chunk)
        soft = targets.ndim > 1
        optimizer.zero_grad(set_to_none=True)
        for part in range(run.micro_batches):
            x, t = images[part :: run.micro_batches], targets[part :: run.micro_batches]
            if step_parts.compile_mode == "reduce-overhead":
                mark_graph_step()
            with autocast(ctx, recipe.precision):
                logits = model(x)
                loss = loss_fn(logits.float(), t) / run.micro_batches
            loss.backward()
            sums[0] += loss.detach().double() * len(x) * run.micro_batches
            if not soft:
                sums[1] += (logits.argmax(1) == t).sum()
            sums[2] += len(x)
            bad_step = torch.where((bad_step < 0) & ~torch.isfinite(loss.detach()), step, bad_step)
        if recipe.clip_grad_norm is not None:
            nn.utils.clip_grad_norm_(model.parameters(), recipe.clip_grad_norm)
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
        "train_top1": math.nan if soft else correct / count,
        "lr": optimizer.param_groups[0]["lr"] / optimizer.param_groups[0].get("lr_scale", 1.0),
        "seconds": seconds,
        "images_per_s": count / seconds,
    }
