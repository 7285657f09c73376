"""Evaluation: loss, top-1 and top-5 over batches, under the training's autocast, with fixed
batch shapes for compiled models (CUDA graphs)."""

import math
from collections.abc import Iterable

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from .distributed import Context

__all__ = ["autocast", "evaluate", "mark_graph_step", "recalibrate_batch_norms"]


def autocast(ctx: Context, precision: str) -> torch.autocast:
    """The recipe's `precision` on CUDA: bf16 autocast, or none (fp32). The CPU always
    computes in fp32 (bf16 there is slower and no recipe is meant for it)."""
    enabled = precision == "bf16" and ctx.device.type == "cuda"
    return torch.autocast(ctx.device.type, dtype=torch.bfloat16, enabled=enabled)


def mark_graph_step() -> None:
    """Tell CUDA graph trees that a new step begins (the previous outputs may be overwritten)."""
    if torch.cuda.is_available():
        torch.compiler.cudagraph_mark_step_begin()


def _padded(images: torch.Tensor, size: int | None) -> torch.Tensor:
    """images with zero images appended up to `size` (a compiled model sees one shape)."""
    if size is None or len(images) >= size:
        return images
    return torch.cat((images, images.new_zeros(size - len(images), *images.shape[1:])))


@torch.no_grad()
def evaluate(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    ctx: Context,
    *,
    reduce: bool,
    num_classes: int,
    precision: str = "fp32",
    fixed_batch: int | None = None,
) -> dict[str, float]:
    """Loss, top-1 and top-5 over the batches (one metrics.csv row's test columns), under the
    training's `precision`; with fixed_batch, every batch is padded to that size and the
    padding's outputs are dropped; with reduce, the sums of all ranks are added."""
    model.eval()
    totals = torch.zeros(4, dtype=torch.float64, device=ctx.device)  # loss, top1, top5, count
    for images, labels in batches:
        images = _padded(images, fixed_batch)
        if ctx.device.type == "cuda":
            images = images.contiguous(memory_format=torch.channels_last)
        mark_graph_step()
        with autocast(ctx, precision):
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


@torch.no_grad()
def recalibrate_batch_norms(
    model: nn.Module, batches: Iterable[torch.Tensor], ctx: Context, precision: str = "fp32"
) -> int:
    """Re-estimate every batch norm's running mean and variance as the plain average over
    `batches` of training images for the current weights ("precise BN": Wu & Johnson,
    "Rethinking 'Batch' in BatchNorm", 2021), instead of the exponential average collected
    while the weights moved; return how many batch norms were re-estimated. The rest of the
    model is in eval mode meanwhile (no dropout, no drop path); nothing else changes."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return 0
    training = {m: m.training for m in model.modules()}
    momenta = {m: m.momentum for m in norms}
    model.eval()
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # a cumulative average over the batches
        norm.train()
    try:
        for images in batches:
            if ctx.device.type == "cuda":
                images = images.contiguous(memory_format=torch.channels_last)
            with autocast(ctx, precision):
                model(images)
    finally:
        for module, mode in training.items():
            module.training = mode
        for norm, momentum in momenta.items():
            norm.momentum = momentum
    return len(norms)
