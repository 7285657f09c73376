"""Few-shot Fashion-MNIST: do quadratic terms need less data than linear ones?

The talk's second claim is that quadratic neurons capture correlations in the data and so learn
from fewer examples. This module tests it on real images: N = 1, 5, 10, 50, 100 training images
per class, four models trained with one fixed recipe, test accuracy as mean +- std over seeds.

Data. `load_dataset("fashion_mnist")` gives 1 x 32 x 32 images (28 x 28, zero-padded by 2 px).
For every seed, one random permutation of the 60k training images is drawn with a
`torch.Generator`; the first N images of each class in that order form the training set, so the
draw has exactly N per class, changes with the seed, is the same for every model and is nested
in N (the 5-shot set of a seed holds its 1-shot set). The test set is the full 10k test split,
or, with `test_subset` = n, a class-stratified subset of n images fixed by `test_seed`.

Models (`MODEL_NAMES`).
- "linear": softmax regression on the 1024 normalised pixels, scores = W x + b.
- "linear_quadratic": the same plus a low-rank quadratic term per class o,
  q_o(x) = sum_{r<R} (u_or . x)(v_or . x) = x^T (sum_r u_or v_or^T) x,
  i.e. a rank-R (not symmetrised) coefficient matrix per class: 2 R 1024 parameters per class
  instead of 1024^2. U starts N(0, 1/1024) (so u . x is O(1) for normalised x) and V at zero,
  so the quadratic term starts at exactly zero against the linear one, yet V gets gradients.
- "cnn": three conv3x3-BN-ReLU blocks, 1 -> 8 -> 16 -> 16 channels: the first with stride 2
  (32 -> 16 px), the other two each followed by a 2 x 2 max-pool (-> 8 px, -> 4 px); the
  16 x 4 x 4 map is flattened into a linear head (256 -> 10). 6,178 parameters.
- "dit_cnn": the same CNN whose third block, as the Dit-ResNet block, computes
  out = (BN(conv(h)) + Q(LN(h))) / 2 before its ReLU and pool, LN normalising each channel over
  its 8 x 8 map (elementwise affine) and Q = `DitQuadratic(16, 16)` (zero-initialised, so the
  Dit CNN starts as the CNN with that block's output halved). 10,402 parameters.
- "dit_cnn_sum": the same without the halving, out = BN(conv(h)) + Q(LN(h)): at initialisation
  exactly the CNN (identity-preserving), so any difference comes from the quadratic term.

Recipe (the same for every N; knobs in `FewShotConfig`). AdamW, `weight_decay` 1e-2 on matrices and
kernels (none on biases and norms), cosine decay of the learning rate to zero, no warm-up. The
quadratic parameters (U, V; Q and its LN) learn `quadratic_lr_mult` (10) times faster, as in the
paper's recipe. Mini-batches of min(`batch_size` = 32, 10 N) images, cut from a stream of random
permutations of the draw (epochs without replacement). Steps:
max(`min_steps` = 100, ceil(`epochs` = 20 x 10 N / batch)), capped at `max_steps` = 500
(100, 100, 100, 313, 500 steps for N = 1, 5, 10, 50, 100). The CNNs see every image randomly
shifted by up to `crop_padding_cnn` = 2 pixels (random crop of the zero-padded image; the 28 x 28
content stays in frame); the pixel classifiers see none (`crop_padding_linear` = 0): shifts blur
their pixel templates and cost them several points at N = 100. Batches and shifts, and the
initial weights the CNNs share, depend only on (seed, N), so every model of a family sees the
same images in the same order.

Learning rate, chosen per model on a validation split (never the test set). Every model is
trained once per learning rate of `lr_grid` (1e-3, 3e-3, 1e-2) on the sweep draw: N =
`sweep_shots` (10) images per class in the order of `sweep_seed` (1000, not an evaluation seed);
the next `validation_per_class` (100) images per class of that order, disjoint from the draw
and from the test split, are the validation set. The model's learning rate is the one with the
best mean validation accuracy over `sweep_shots` (ties: the smaller), used for every N and seed.
An empty or one-value `lr_grid` skips the sweep: then `lr_linear` / `lr_cnn` (3e-3) are used.

Evaluation. Test accuracy on the test images above (BN in eval mode), train accuracy on the
un-augmented training draw; `fewshot_experiment` reports one row per model x N x seed and the
mean and sample std (ddof = 1; 0 for a single seed) over seeds per (model, N).

One module of about 400 lines: the draw, the schedule, the learning-rate choice and the
evaluation above are one protocol and are read together; the models are in ann.models.fewshot.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ann.data import DeviceDataset, augment_batch, load_dataset, normalize
from ann.engine import parameter_groups, retain_freed_memory, torch_threads
from ann.errors import ConfigError
from ann.models import count_parameters
from ann.models.fewshot import (
    MODEL_NAMES,
    NUM_CLASSES,
    build_model,
    is_cnn,
    quadratic_parameters,
)
from ann.sections import checked_keys

DATASET = "fashion_mnist"
EVAL_BATCH = 1000
SWEEP_COLUMNS = ["model", "shots", "lr", "val_acc"]


@dataclass(frozen=True)
class FewShotConfig:
    """The `theory.fewshot` section; the defaults are the schema's (tests/test_config_sections.py
    checks that they agree)."""

    models: tuple[str, ...] = MODEL_NAMES
    shots: tuple[int, ...] = (1, 5, 10, 50, 100)
    seeds: tuple[int, ...] = (0, 1, 2)
    rank: int = 8
    batch_size: int = 32
    epochs: int = 20
    min_steps: int = 100
    max_steps: int = 500
    lr_linear: float = 3e-3
    lr_cnn: float = 3e-3
    lr_grid: tuple[float, ...] = (1e-3, 3e-3, 1e-2)
    sweep_shots: tuple[int, ...] = (10,)
    sweep_seed: int = 1000
    validation_per_class: int = 100
    weight_decay: float = 1e-2
    quadratic_lr_mult: float = 10.0
    crop_padding_linear: int = 0
    crop_padding_cnn: int = 2
    test_subset: int | None = None
    test_seed: int = 0
    threads: int = 1

    @classmethod
    def from_mapping(cls, values: Mapping | None, where: str = "theory.fewshot") -> FewShotConfig:
        """The section from the config (missing keys take their defaults); a ConfigError names
        the first key at fault."""
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in (values or {}).items()}
        checked_keys(cls, values, where)
        config = cls(**values)
        bad_models = sorted(set(config.models) - set(MODEL_NAMES))
        if bad_models:
            raise ConfigError(
                f"config key {where}.models: unknown models {bad_models}; choose from {MODEL_NAMES}."
            )
        for key in ("shots", "sweep_shots"):
            if any(int(shots) < 1 for shots in getattr(config, key)):
                raise ConfigError(f"config key {where}.{key}: shots must be positive.")
        if config.sweep_seed in config.seeds and len(config.lr_grid) > 1:
            raise ConfigError(
                f"config key {where}.sweep_seed: {config.sweep_seed} must differ from the "
                f"evaluation seeds ({where}.seeds)."
            )
        return config


def resolve_config(config: Mapping | FewShotConfig | None) -> FewShotConfig:
    """`config` as a FewShotConfig (a mapping goes through from_mapping)."""
    return config if isinstance(config, FewShotConfig) else FewShotConfig.from_mapping(config)


# ----------------------------------------------------------------------------- data


def class_orders(labels: Tensor, seed: int, num_classes: int = NUM_CLASSES) -> list[Tensor]:
    """The images of every class in one seeded random order of the whole set."""
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    shuffled = labels[order]
    return [order[shuffled == label] for label in range(num_classes)]


def class_balanced_draw(
    labels: Tensor, shots: int, seed: int, num_classes: int = NUM_CLASSES, skip: int = 0
) -> Tensor:
    """Sorted indices of the first `shots` images of every class in a seeded random order
    (after the first `skip` of each class)."""
    picks = []
    for label, members in enumerate(class_orders(labels, seed, num_classes)):
        if len(members) < skip + shots:
            raise ValueError(f"class {label} has {len(members)} images, fewer than {skip + shots}")
        picks.append(members[skip : skip + shots])
    return torch.cat(picks).sort().values


def training_steps(shots: int, config: FewShotConfig) -> int:
    images = NUM_CLASSES * shots
    epoch_steps = math.ceil(config.epochs * images / batch_size(shots, config))
    return min(config.max_steps, max(config.min_steps, epoch_steps))


def batch_size(shots: int, config: FewShotConfig) -> int:
    return min(config.batch_size, NUM_CLASSES * shots)


def batch_indices(
    count: int, size: int, steps: int, generator: torch.Generator
) -> Iterator[Tensor]:
    """`steps` batches of `size` indices below `count`, epoch by epoch without replacement."""
    pending = torch.empty(0, dtype=torch.int64)
    for _ in range(steps):
        if len(pending) < size:
            pending = torch.cat((pending, torch.randperm(count, generator=generator)))
        yield pending[:size]
        pending = pending[size:]


# ----------------------------------------------------------------------------- training


def model_lr(name: str, config: FewShotConfig) -> float:
    return config.lr_cnn if is_cnn(name) else config.lr_linear


def crop_padding(name: str, config: FewShotConfig) -> int:
    return config.crop_padding_cnn if is_cnn(name) else config.crop_padding_linear


def train_model(
    model: nn.Module,
    name: str,
    train: DeviceDataset,
    shots: int,
    seed: int,
    config: FewShotConfig,
    lr: float | None = None,
) -> nn.Module:
    """Train in place with the module's recipe (at `lr`, default the configured one); batches
    and shifts depend on (seed, N) only."""
    steps, size = training_steps(shots, config), batch_size(shots, config)
    lr = model_lr(name, config) if lr is None else lr
    optimizer = torch.optim.AdamW(
        parameter_groups(
            model,
            quadratic_parameters(model),
            weight_decay=config.weight_decay,
            quadratic_lr_mult=config.quadratic_lr_mult,
            decay_vectors=False,
            decay_norms=False,
            lr=lr,
        )
    )
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * step / steps))
    )
    generator = torch.Generator().manual_seed(run_seed(seed, shots))
    model.train()
    for batch in batch_indices(len(train), size, steps, generator):
        images = augment_batch(
            train.images[batch],
            crop_padding=crop_padding(name, config),
            flip=False,
            mean=train.mean,
            std=train.std,
            generator=generator,
        )
        loss = F.cross_entropy(model(images), train.labels[batch])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
    return model


@torch.inference_mode()
def accuracy(model: nn.Module, images: Tensor, labels: Tensor) -> float:
    """Fraction correct on normalised images, in eval mode, in batches of EVAL_BATCH."""
    model.eval()
    correct = sum(
        int(
            (
                model(images[start : start + EVAL_BATCH]).argmax(1)
                == labels[start : start + EVAL_BATCH]
            ).sum()
        )
        for start in range(0, len(images), EVAL_BATCH)
    )
    return correct / len(images)


def run_seed(seed: int, shots: int) -> int:
    return 1_000_003 * seed + shots


# ----------------------------------------------------------------------------- experiment


def test_images(test: DeviceDataset, config: FewShotConfig) -> tuple[Tensor, Tensor]:
    if config.test_subset is not None:
        test = test.subset(int(config.test_subset), seed=config.test_seed)
    return normalize(test.images, test.mean, test.std), test.labels


def one_run(
    name: str,
    train: DeviceDataset,
    shots: int,
    seed: int,
    test: tuple[Tensor, Tensor],
    config: FewShotConfig,
    lr: float | None = None,
) -> dict[str, Any]:
    """Train `name` on the draw `train` and score it on `test` (images, labels)."""
    start = time.perf_counter()
    lr = model_lr(name, config) if lr is None else lr
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(run_seed(seed, shots))
        model = build_model(name, config.rank)
        train_model(model, name, train, shots, seed, config, lr=lr)
    train_images = normalize(train.images, train.mean, train.std)
    return {
        "model": name,
        "shots": shots,
        "seed": seed,
        "test_acc": accuracy(model, *test),
        "train_acc": accuracy(model, train_images, train.labels),
        "parameters": count_parameters(model),
        "steps": training_steps(shots, config),
        "lr": lr,
        "seconds": time.perf_counter() - start,
    }


def few_shot_subset(train: DeviceDataset, shots: int, seed: int, skip: int = 0) -> DeviceDataset:
    keep = class_balanced_draw(train.labels, shots, seed, train.num_classes, skip=skip)
    return DeviceDataset(
        train.images[keep], train.labels[keep], train.num_classes, train.mean, train.std, train.name
    )


def lr_sweep(train: DeviceDataset, config: FewShotConfig) -> pd.DataFrame:
    """Validation accuracy of every model at every learning rate of `lr_grid`, trained on the
    sweep draw (`sweep_shots` per class, `sweep_seed`) and scored on the next
    `validation_per_class` images per class of the same order (training split only)."""
    rows = []
    seed, per_class = int(config.sweep_seed), int(config.validation_per_class)
    for shots in config.sweep_shots:
        draw = few_shot_subset(train, int(shots), seed)
        held_out = few_shot_subset(train, per_class, seed, skip=int(shots))
        validation = normalize(held_out.images, held_out.mean, held_out.std), held_out.labels
        for name in config.models:
            for lr in config.lr_grid:
                run = one_run(name, draw, int(shots), seed, validation, config, lr=float(lr))
                rows.append(
                    {
                        "model": name,
                        "shots": int(shots),
                        "lr": float(lr),
                        "val_acc": run["test_acc"],
                    }
                )
    return pd.DataFrame(rows, columns=SWEEP_COLUMNS)


def chosen_lrs(sweep: pd.DataFrame, config: FewShotConfig) -> dict[str, float]:
    """Per model, the learning rate of best mean validation accuracy (ties: the smaller); the
    configured lr_linear / lr_cnn where there was no sweep."""
    chosen = {name: model_lr(name, config) for name in config.models}
    if len(sweep):
        means = sweep.groupby(["model", "lr"])["val_acc"].mean().reset_index()
        for name, rows in means.groupby("model"):
            best = rows.sort_values(["val_acc", "lr"], ascending=[False, True]).iloc[0]
            chosen[str(name)] = float(best.lr)
    return chosen


def summarise(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean and sample std (ddof = 1; 0 for one seed) of test accuracy per (model, N), and the
    learning rate the runs used."""
    grouped = runs.groupby(["model", "shots"], sort=False)
    summary = grouped["test_acc"].agg(mean="mean", std="std", n_seeds="count").reset_index()
    summary["std"] = summary["std"].fillna(0.0)
    if "lr" in runs:
        summary["lr"] = grouped["lr"].first().to_numpy()
    return summary


def fewshot_experiment(
    config: Mapping | FewShotConfig | None = None, root: str | os.PathLike[str] | None = None
) -> dict[str, pd.DataFrame]:
    """Choose every model's learning rate on the validation split (`lr_sweep`), then train
    every model for every N and seed: "runs" (one row each), "summary" and "sweep" tables."""
    cfg = resolve_config(config)
    rows = []
    retain_freed_memory()
    with torch_threads(int(cfg.threads)):
        train = load_dataset(DATASET, root, "train")
        test = test_images(load_dataset(DATASET, root, "test"), cfg)
        no_sweep = pd.DataFrame(columns=SWEEP_COLUMNS)
        sweep = lr_sweep(train, cfg) if len(cfg.lr_grid) > 1 else no_sweep
        lrs = chosen_lrs(sweep, cfg)
        for seed in cfg.seeds:
            for shots in cfg.shots:
                subset = few_shot_subset(train, int(shots), int(seed))
                rows += [
                    one_run(name, subset, int(shots), int(seed), test, cfg, lr=lrs[name])
                    for name in cfg.models
                ]
    runs = pd.DataFrame(rows).sort_values(["model", "shots", "seed"], kind="stable")
    runs = runs.reset_index(drop=True)
    return {"runs": runs, "summary": summarise(runs), "sweep": sweep}


# ----------------------------------------------------------------------------- figure


def plot_fewshot(summary: pd.DataFrame) -> Any:
    """Test accuracy against N (log x), mean +- std over seeds as line and band, per model."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(5.5, 4))
    axes = figure.subplots()
    for name, rows in summary.groupby("model", sort=False):
        rows = rows.sort_values("shots")
        shots, mean, std = rows["shots"], rows["mean"] * 100, rows["std"].fillna(0) * 100
        (line,) = axes.plot(shots, mean, marker="o", label=str(name))
        axes.fill_between(shots, mean - std, mean + std, color=line.get_color(), alpha=0.2)
    axes.set_xscale("log")
    axes.set_xticks(sorted(summary["shots"].unique()), labels=_tick_labels(summary["shots"]))
    axes.set_xlabel("training images per class (N)")
    axes.set_ylabel("test accuracy (%)")
    axes.set_title("Few-shot Fashion-MNIST (mean ± std over seeds)")
    axes.grid(alpha=0.3)
    axes.legend()
    return figure


def _tick_labels(shots: Sequence[int] | pd.Series) -> list[str]:
    return [str(value) for value in sorted(pd.unique(pd.Series(shots)))]
