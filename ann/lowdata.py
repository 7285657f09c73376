"""The prior ablation on little data: does a kappa prior help a Dit-CNN when training images are
scarce, where a prior should matter most?

Protocol (every knob in `LowDataConfig`, the config section experiments.prior_lowdata).
- Data. Per seed, a class-balanced draw of `shots` Fashion-MNIST training images per class and,
  disjoint from it, `validation_per_class` more per class as the validation split (both from
  the training split, in the seed's random order: ann.theory.fewshot.class_balanced_draw).
  The endpoint is measured on the whole test split (10000 images), once, after training.
- Model. `dit_cnn` of ann.models.fewshot: three conv-BN-ReLU blocks (8, 16, 16 channels) whose
  third computes (BN(conv h) + Q(LN h)) / 2, the Dit-ResNet block, with a DitQuadratic(16, 16) at
  8 x 8 pixels; the prior is built for that layer exactly as for a Dit-ResNet's
  (ann.priors.prior_weights), calibrated on `calibration_images` images of the draw
  (ann.prior_modes.calibrate) and put in its mode (ann.prior_modes.apply_mode).
- Training. The paper's CIFAR recipe scaled down: SGD with momentum, weight decay on every
  parameter (K's replaced by `anchor_strength` toward the prior in anchor mode), the quadratic
  parameters (Q and its LN) at `quadratic_lr_mult` times the learning rate, a cosine schedule
  over `epochs` epochs of batches of `batch_size`, random shifts of up to `crop_padding` pixels
  and horizontal flips. Before evaluation the batch norms are re-estimated on one augmented
  pass over the draw (precise BN, as the Fashion-MNIST recipes of ann.train do).
- Pairing. Every arm (prior x mode) of a seed sees the same draw, the same initial parameters
  but K, and the same batches and augmentation; the calibration leaves every random number
  generator as it found it. So arms differ only in how K starts and acts.
- Choices on validation only. The learning rate is the best of `lr_grid` for the paper's model
  (zero prior, init mode) by mean validation accuracy over `choice_seeds` (seeds that are not
  evaluation seeds; ties: the smaller). Then the anchor-strength sweep (`anchor_strengths`)
  trains zero+anchor and bio+anchor at that rate on the same draws; the anchor arms of the
  experiment use the strength of best mean bio+anchor validation accuracy (ties: the larger).
  The sweep also reports how much of the prior the learned K keeps at each strength: the
  survival question, answered on validation.

Per run: final test top-1 (the endpoint), validation top-1, train top-1, the Pearson
correlation of the learned K with its prior and the relative change |K_T - K_0| / |K_0|, the
calibrated response, the time. The statistics are ann.statistics' (contrast_table).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ann.data import DeviceDataset, augment_batch, normalize
from ann.engine import parameter_groups, retain_freed_memory
from ann.engine.distributed import Context
from ann.engine.evaluate import recalibrate_batch_norms
from ann.models.fewshot import build_model, quadratic_parameters
from ann.prior_modes import apply_mode, calibrate, effective_weights
from ann.priors import KappaTables, apply_prior, prior_weights
from ann.settings import LowDataConfig, PriorSettings
from ann.statistics import pearson
from ann.theory.fewshot import batch_indices, few_shot_subset

MODEL = "dit_cnn"
EVAL_BATCH = 500
STATISTICS_SEED = 1_000_003
CPU = Context(0, 1, torch.device("cpu"))


def arms(config: LowDataConfig) -> list[tuple[str, str]]:
    """(prior, mode) of every arm, in a fixed order."""
    return [(prior, mode) for mode in config.modes for prior in config.priors]


# ----------------------------------------------------------------------------- data


@dataclass(frozen=True)
class Draw:
    """The training draw and the validation split of one seed, and the test images."""

    train: DeviceDataset
    validation: tuple[Tensor, Tensor]  # normalised images, labels
    test: tuple[Tensor, Tensor]


def make_draw(train: DeviceDataset, test: DeviceDataset, config: LowDataConfig, seed: int) -> Draw:
    drawn = few_shot_subset(train, config.shots, seed)
    held = few_shot_subset(train, config.validation_per_class, seed, skip=config.shots)
    return Draw(
        drawn,
        (normalize(held.images, held.mean, held.std), held.labels),
        (normalize(test.images, test.mean, test.std), test.labels),
    )


def batches(draw: Draw, config: LowDataConfig, seed: int) -> Iterator[tuple[Tensor, Tensor]]:
    """The training batches of a seed: the same for every arm."""
    generator = torch.Generator().manual_seed(seed)
    size = min(config.batch_size, len(draw.train))
    steps = config.epochs * math.ceil(len(draw.train) / size)
    for picked in batch_indices(len(draw.train), size, steps, generator):
        images = augmented(draw, config, picked, generator)
        yield images.contiguous(memory_format=torch.channels_last), draw.train.labels[picked]


def augmented(
    draw: Draw, config: LowDataConfig, picked: Tensor, generator: torch.Generator
) -> Tensor:
    """The training images `picked` of the draw, augmented as the experiment trains."""
    return augment_batch(
        draw.train.images[picked],
        crop_padding=config.crop_padding,
        flip=config.flip,
        mean=draw.train.mean,
        std=draw.train.std,
        generator=generator,
    )


def statistics_batches(draw: Draw, config: LowDataConfig, seed: int) -> Iterator[Tensor]:
    """One augmented pass over the draw from a generator of its own: the images that
    re-estimate the batch norms before evaluation (ann.engine.recalibrate_batch_norms)."""
    generator = torch.Generator().manual_seed(STATISTICS_SEED + seed)
    order = torch.randperm(len(draw.train), generator=generator)
    for start in range(0, len(order), EVAL_BATCH):
        picked = order[start : start + EVAL_BATCH]
        yield augmented(draw, config, picked, generator)


def steps_of(draw: Draw, config: LowDataConfig) -> int:
    return config.epochs * math.ceil(len(draw.train) / min(config.batch_size, len(draw.train)))


# ----------------------------------------------------------------------------- one run


@dataclass(frozen=True)
class Arm:
    """What differs between the runs of a seed: the prior, its mode and the anchor strength."""

    prior: str
    mode: str = "init"
    anchor_strength: float | None = None  # None: priors.anchor_strength


def build(
    arm: Arm,
    draw: Draw,
    seed: int,
    settings: PriorSettings,
    kappas: Mapping[str, KappaTables],
) -> tuple[nn.Module, dict[nn.Parameter, float], list[dict], dict[str, Tensor]]:
    """The seed's model with the arm's prior, calibrated and in its mode; the decay of the mode's
    parameters, the calibration records and the initial K."""
    spec = settings.spec(arm.prior if arm.mode == "init" else f"{arm.prior}+{arm.mode}")
    torch.manual_seed(seed)
    model = build_model(MODEL, rank=1).to(memory_format=torch.channels_last)
    kappa = kappas.get(spec.cell) if spec.cell else None
    apply_prior(model, prior_weights(model, spec.kind, kappa, seed=seed, **settings.options()))
    records = []
    if spec.kind != "zero" and settings.calibration == "data":
        picked = torch.randperm(len(draw.train), generator=torch.Generator().manual_seed(seed))
        images = draw.train.images[picked[: settings.calibration_images]]
        images = normalize(images, draw.train.mean, draw.train.std)
        records = calibrate(model, images, settings.init_ratio)
    initial = effective_weights(model)
    strength = settings.anchor_strength if arm.anchor_strength is None else arm.anchor_strength
    decay_of = apply_mode(model, spec.mode, strength)
    return model, decay_of, records, initial


def train(
    model: nn.Module,
    decay_of: Mapping[nn.Parameter, float],
    draw: Draw,
    config: LowDataConfig,
    seed: int,
    lr: float,
) -> None:
    optimizer = torch.optim.SGD(
        parameter_groups(
            model,
            quadratic_parameters(model),
            weight_decay=config.weight_decay,
            quadratic_lr_mult=config.quadratic_lr_mult,
            decay_vectors=True,
            lr=lr,
            decay_of=decay_of,
        ),
        lr=lr,
        momentum=config.momentum,
    )
    steps = steps_of(draw, config)
    retain_freed_memory()
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * step / steps))
    )
    model.train()
    for images, labels in batches(draw, config, seed):
        loss = F.cross_entropy(model(images), labels)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"the loss became {float(loss)} (seed {seed}, lr {lr})")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()


@torch.inference_mode()
def top1(model: nn.Module, images: Tensor, labels: Tensor) -> float:
    model.eval()
    images = images.contiguous(memory_format=torch.channels_last)
    correct = sum(
        int((model(images[i : i + EVAL_BATCH]).argmax(1) == labels[i : i + EVAL_BATCH]).sum())
        for i in range(0, len(images), EVAL_BATCH)
    )
    return correct / len(images)


def one_run(
    arm: Arm,
    draw: Draw,
    seed: int,
    config: LowDataConfig,
    settings: PriorSettings,
    kappas: Mapping[str, KappaTables],
    lr: float,
    test: bool = True,
) -> dict:
    """Train one arm on a seed's draw; its row (test top-1 only with `test`)."""
    start = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        model, decay_of, records, initial = build(arm, draw, seed, settings, kappas)
        train(model, decay_of, draw, config, seed, lr)
        recalibrate_batch_norms(model, statistics_batches(draw, config, seed), CPU)
    learned = effective_weights(model)
    prior = np.concatenate([k.double().numpy().ravel() for k in initial.values()])
    final = np.concatenate([k.double().numpy().ravel() for k in learned.values()])
    prior_norm = float(np.linalg.norm(prior))
    return {
        "dataset": config.dataset,
        "model": MODEL,
        "prior": arm.prior,
        "mode": arm.mode,
        "anchor_strength": arm.anchor_strength,
        "seed": seed,
        "lr": lr,
        "final_test_top1": top1(model, *draw.test) if test else math.nan,
        "validation_top1": top1(model, *draw.validation),
        "train_top1": top1(
            model, normalize(draw.train.images, draw.train.mean, draw.train.std), draw.train.labels
        ),
        "corr_with_prior": pearson(final, prior) if prior_norm > 0 else math.nan,
        "relative_change": (
            float(np.linalg.norm(final - prior)) / prior_norm if prior_norm > 0 else math.nan
        ),
        "final_k_norm": float(np.linalg.norm(final)),
        "calibrated_response": records[0]["data_rms_after"] if records else math.nan,
        "gaussian_response": records[0]["gaussian_rms_before"] if records else math.nan,
        "response_before_calibration": records[0]["data_rms_before"] if records else math.nan,
        "seconds": time.perf_counter() - start,
    }


# ----------------------------------------------------------------------------- the experiment


def lr_sweep(
    train: DeviceDataset,
    test: DeviceDataset,
    config: LowDataConfig,
    settings: PriorSettings,
) -> pd.DataFrame:
    """Validation top-1 of the paper's model (zero, init) at every lr of `lr_grid` on every
    choice seed."""
    rows = []
    for seed in config.choice_seeds:
        draw = make_draw(train, test, config, seed)
        for lr in config.lr_grid:
            rows.append(one_run(Arm("zero"), draw, seed, config, settings, {}, lr, test=False))
    return pd.DataFrame(rows)


def chosen_lr(lr_runs: pd.DataFrame) -> float:
    """The lr of best mean validation top-1 (ties: the smaller)."""
    means = lr_runs.groupby("lr").validation_top1.mean().reset_index()
    return float(means.sort_values(["validation_top1", "lr"], ascending=[False, True]).lr.iloc[0])


def chosen_strength(sweep: pd.DataFrame) -> float:
    """The anchor strength of best mean bio+anchor validation top-1 (ties: the larger)."""
    bio = sweep[(sweep.prior == "bio") & (sweep["mode"] == "anchor")]
    means = bio.groupby("anchor_strength").validation_top1.mean().reset_index()
    best = means.sort_values(["validation_top1", "anchor_strength"], ascending=[False, False])
    return float(best.anchor_strength.iloc[0])


def strength_sweep(
    train: DeviceDataset,
    test: DeviceDataset,
    config: LowDataConfig,
    settings: PriorSettings,
    kappas: Mapping[str, KappaTables],
    lr: float,
) -> pd.DataFrame:
    """zero+anchor and bio+anchor at every anchor strength on the choice seeds (validation)."""
    rows = []
    for seed in config.choice_seeds:
        draw = make_draw(train, test, config, seed)
        for strength in config.anchor_strengths:
            for prior in ("zero", "bio"):
                arm = Arm(prior, "anchor", float(strength))
                rows.append(one_run(arm, draw, seed, config, settings, kappas, lr, test=False))
        rows.append(one_run(Arm("zero"), draw, seed, config, settings, kappas, lr, test=False))
    return pd.DataFrame(rows)


def seed_runs(
    train: DeviceDataset,
    test: DeviceDataset,
    config: LowDataConfig,
    settings: PriorSettings,
    kappas: Mapping[str, KappaTables],
    seed: int,
    lr: float,
    anchor_strength: float,
) -> pd.DataFrame:
    """Every arm of one evaluation seed (anchor arms at `anchor_strength`)."""
    draw = make_draw(train, test, config, seed)
    return pd.DataFrame(
        [
            one_run(
                Arm(prior, mode, anchor_strength if mode == "anchor" else None),
                draw,
                seed,
                config,
                settings,
                kappas,
                lr,
            )
            for prior, mode in arms(config)
        ]
    )


def survival(sweep: pd.DataFrame, margin: float) -> pd.DataFrame:
    """Per anchor strength: mean validation top-1 of bio+anchor and of zero (init), their
    difference, bio's mean correlation of learned K with its prior, and whether both hold: the
    correlation >= 0.5 and the difference within the margin."""
    reference = sweep[(sweep.prior == "zero") & (sweep["mode"] == "init")]
    base = reference.set_index("seed").validation_top1
    rows = []
    for strength, group in sweep[sweep["mode"] == "anchor"].groupby("anchor_strength"):
        bio = group[group.prior == "bio"].set_index("seed")
        zero = group[group.prior == "zero"].set_index("seed")
        difference = float((bio.validation_top1 - base).mean())
        correlation = float(bio.corr_with_prior.mean())
        rows.append(
            {
                "anchor_strength": float(strength),
                "bio_validation_top1": float(bio.validation_top1.mean()),
                "zero_anchor_validation_top1": float(zero.validation_top1.mean()),
                "zero_validation_top1": float(base.mean()),
                "bio_minus_zero": difference,
                "bio_corr_with_prior": correlation,
                "both": bool(correlation >= 0.5 and abs(difference) <= margin),
            }
        )
    return pd.DataFrame(rows)


def survival_answer(survival: pd.DataFrame, margin: float, draws: int) -> str:
    """The survival question in one sentence: which anchor strengths keep the prior (learned K
    correlating >= 0.5 with it) at a validation top-1 within the margin of zero's, or that
    none does, with the numbers of the strengths that come closest."""
    if not len(survival):
        return "No anchor strength was tried."
    where = f"On {draws} validation draw{'s' if draws > 1 else ''}"
    both = survival[survival.both]
    if len(both):
        listed = ", ".join(f"{s:g}" for s in both.anchor_strength)
        return (f"{where}, anchor strength {listed} keeps the prior (correlation ≥ 0.5) at a "
                f"validation top-1 within ±{100 * margin:.2f} pp of zero's.")  # fmt: skip
    kept = survival[survival.bio_corr_with_prior >= 0.5]
    close = survival[survival.bio_minus_zero.abs() <= margin]
    parts = []
    if len(kept):
        row = kept.iloc[kept.bio_minus_zero.abs().argmin()]
        parts.append(f"where the prior survives (strength {row.anchor_strength:g}, correlation "
                     f"{row.bio_corr_with_prior:.2f}) bio+anchor is "
                     f"{100 * row.bio_minus_zero:+.2f} pp from zero")  # fmt: skip
    if len(close):
        row = close.iloc[close.bio_corr_with_prior.argmax()]
        parts.append(f"where it is within the margin (strength {row.anchor_strength:g}, "
                     f"{100 * row.bio_minus_zero:+.2f} pp) the correlation is "
                     f"{row.bio_corr_with_prior:.2f}")  # fmt: skip
    detail = "; ".join(parts) or "no strength keeps the prior or stays within the margin"
    return (f"{where}, no anchor strength keeps the prior (correlation ≥ 0.5) at a validation "
            f"top-1 within ±{100 * margin:.2f} pp of zero's: {detail}.").replace("-", "−")  # fmt: skip


def seeds_table(runs: Sequence[pd.DataFrame]) -> pd.DataFrame:
    return pd.concat(runs, ignore_index=True).sort_values(["mode", "prior", "seed"], kind="stable")
