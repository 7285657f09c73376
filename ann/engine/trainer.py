"""Train one run to its last epoch: set up (data, model with its prior, optimiser, schedule,
EMA, DDP, torch.compile), resume from the checkpoint if there is one, run the epochs, and
write metrics.csv, checkpoint.pt (after every epoch) and metrics.json, all atomically."""

import logging
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from ann.errors import TrainingError
from ann.flops import count_macs
from ann.io import git_commit, save_csv, save_json

from .batches import Generators, load_data, mixup_function
from .build import build_model, build_optimizer, build_scheduler, file_sha256, model_kwargs
from .checkpoint import (
    CHECKPOINT,
    Checkpoint,
    load_checkpoint,
    prepare_folder,
    restore,
    rng_state,
    save_checkpoint,
)
from .distributed import Context, distributed_context, finish, output_lock, shared_result
from .evaluate import recalibrate_batch_norms
from .identity import dataset_fingerprint, run_identity
from .loop import Step, compile_mode, loss_function, train_epoch
from .memory import retain_freed_memory
from .run import Run

__all__ = ["train"]

log = logging.getLogger(__name__)


def train(run: Run, existing: str = "refuse") -> dict:
    """Train the run to its last epoch; return metrics.json. A checkpoint of the run's
    identity (ann.engine.identity) in its folder is resumed; a run of another identity there
    is refused or set aside, as `existing` says (checkpoint.EXISTING_RUN). The run holds the
    lock of its output folder (ann.lock) throughout: a second run on the same folder stops
    with a TrainingError that names the first."""
    ctx = distributed_context(run.device)
    with output_lock(run.out, ctx):
        return _train(run, ctx, existing)


def _train(run: Run, ctx: Context, existing: str) -> dict:
    retain_freed_memory()
    if ctx.device.type == "cpu" and run.threads:
        torch.set_num_threads(run.threads)  # for the whole process: a training job trains one run
    torch.manual_seed(run.seed)
    np.random.seed(run.seed)
    generators = Generators.seeded(run.seed)
    data = load_data(run, ctx)
    built = build_model(
        run, data.num_classes, data.in_chans, data.img_size, data.calibration_batch, ctx.device
    )
    model, kappa_sha = built.model, built.kappa_sha256
    identity = None
    if ctx.main:
        identity = run_identity(
            run,
            ctx,
            model_kwargs(run, data.num_classes, data.in_chans, data.img_size),
            prior_sha=file_sha256(run.prior_file) if run.prior_file else None,
            kappa_sha=kappa_sha,
            data=dataset_fingerprint(run.dataset, run.root),
        )
    # rank 0 resumes, refuses or sets aside; the others follow its decision
    shared_result(ctx, lambda: prepare_folder(run.out, identity, existing))
    n_params = sum(p.numel() for p in model.parameters())
    macs = count_macs(model, (data.in_chans, data.img_size, data.img_size))
    if ctx.device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    model = _synchronised_batch_norms(model, run, ctx)
    raw = model
    optimizer = build_optimizer(raw, run.recipe, built.decay_of)
    scheduler = build_scheduler(optimizer, run.recipe, data.updates_per_epoch)
    ema = None
    if run.recipe.model_ema:
        from timm.utils import ModelEmaV3

        ema = ModelEmaV3(raw, decay=run.recipe.ema_decay)
    checkpoint_path = run.out / CHECKPOINT
    state = load_checkpoint(checkpoint_path) or Checkpoint()
    if state.epoch:
        restore(state, raw, optimizer, ema, generators)
        log.info("resuming %s from epoch %d", checkpoint_path, state.epoch)
    if ctx.world_size > 1:
        model = nn.parallel.DistributedDataParallel(
            model, device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None
        )
    mode = compile_mode(run, ctx.device)
    if mode is not None:
        model = torch.compile(model, mode=mode, dynamic=False)
    mixup = None if data.mixed else mixup_function(run.recipe, data.num_classes)
    step_parts = Step(optimizer, scheduler, loss_function(run.recipe), mixup, ema, mode)
    history, wall = state.history, state.wall_time
    for epoch in range(state.epoch, run.recipe.epochs):
        scheduler.step(epoch)
        started = time.perf_counter()
        row = {
            "epoch": epoch + 1,
            **train_epoch(model, data, epoch, step_parts, generators, run, ctx),
        }
        final = epoch + 1 == run.recipe.epochs
        evaluated = ema.module if ema is not None else model
        if run.recipe.bn_recalibration_images:
            recalibrate_batch_norms(ema.module if ema is not None else raw,
                                    data.statistics_batches(epoch), ctx, run.recipe.precision)  # fmt: skip
        row |= data.evaluate(evaluated, final, evaluated is model and mode is not None)
        wall += time.perf_counter() - started
        history.append(row)
        _log_epoch(run, epoch, row)
        if ctx.main:  # the checkpoint first: metrics.csv never runs ahead of it
            saved = Checkpoint(
                epoch=epoch + 1,
                model=raw.state_dict(),
                optimizer=optimizer.state_dict(),
                ema=ema.module.state_dict() if ema is not None else None,
                rng=rng_state(generators),
                history=history,
                wall_time=wall,
            )
            save_checkpoint(checkpoint_path, identity, saved)
            save_csv(pd.DataFrame(history), run.out / "metrics.csv")
    summary = _summary(run, history, n_params, macs, ctx, wall, kappa_sha)
    summary["prior_calibration"] = built.calibration
    summary["identity"] = identity
    summary["compile_mode"] = mode
    summary["first_step_s"] = step_parts.first_step_s
    if ctx.main:
        save_csv(pd.DataFrame(history), run.out / "metrics.csv")
        save_json(summary, run.out / "metrics.json")
    finish()
    return summary


def _synchronised_batch_norms(model: nn.Module, run: Run, ctx: Context) -> nn.Module:
    """With several processes and the recipe's sync_bn, BatchNorm normalises over the global
    batch (torch's SyncBatchNorm: the statistics one process would compute); it needs CUDA."""
    has_batch_norm = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    if ctx.world_size == 1 or not run.recipe.sync_bn or not has_batch_norm:
        return model
    if ctx.device.type != "cuda":
        raise TrainingError(
            f"{run.dataset}/{run.model}: the recipe's sync_bn normalises BatchNorm over all "
            f"{ctx.world_size} processes, which torch's SyncBatchNorm does on CUDA only; train "
            "on GPUs, or with train.processes: 1 (or set sync_bn: false for per-process "
            "statistics)."
        )
    return nn.SyncBatchNorm.convert_sync_batchnorm(model)


def _log_epoch(run: Run, epoch: int, row: dict[str, float]) -> None:
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


def _summary(
    run: Run,
    history: list[dict[str, float]],
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
        **run.labels(),
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
        "recipe_name": run.recipe_name,
        "recipe": asdict(run.recipe),
        "kappa_sha256": kappa_sha,
        "torch_version": torch.__version__,
        "commit": git_commit(Path(__file__).parent),
    }
