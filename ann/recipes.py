"""Training recipes: every knob of a run in one dataclass, and its learning-rate schedule.

A recipe is named in config.yaml (`recipes:`) and chosen per dataset
(`datasets.<name>.recipe`), or per model of a dataset (`datasets.<name>.model_recipes`: a
model name or glob pattern -> recipe, e.g. `convnext_*: convnext`), either as one name or one
per device type; it is then overridden per dataset and model
(`recipe_overrides.<dataset>.<model>`) or on the command line (`python -m ann.train ... --set
epochs=3`). docs/replication.md says where each value of the published recipes comes from.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from fnmatch import fnmatchcase

import yaml

from .errors import RecipeError
from .sections import checked_choice, checked_keys

PRECISIONS = ("fp32", "bf16")


@dataclass(frozen=True)
class Recipe:
    """Optimisation, schedule and augmentation of one training run (a `recipes.<name>` entry
    of the config). The defaults below are the only ones of these keys: the schema has none
    (recipe_overrides shares the keys, and Snakemake's validate would write schema defaults
    into every override; tests/test_config_sections_ann.py checks both)."""

    epochs: int
    batch_size: int  # global: split over ranks when several processes train
    optimizer: str = "sgd"  # sgd | adamw
    lr: float = 0.1
    lr_base_batch: int | None = None  # lr is given for this batch size and scaled linearly
    momentum: float = 0.9
    weight_decay: float = 1e-4
    schedule: str = "multistep"  # multistep | cosine
    milestones: tuple[int, ...] = ()  # multistep: lr *= gamma from each of these epochs (0-based)
    gamma: float = 0.1
    warmup_epochs: int = 0
    warmup_lr: float = (
        1e-5  # the first warm-up step's lr (timm's --warmup-lr), x each group's scale
    )
    min_lr: float = 0.0  # timm's --min-lr
    sched_on_updates: bool = False  # cosine: step every update, not every epoch (timm's flag)
    dit_lr_mult: float = 10.0  # the quadratic layers and their LN learn this much faster
    # Fan et al.'s g and b branches (qresnet*) learn at lr x this (their --lr_gb / --lr)
    fan_gb_lr_mult: float = 1.0
    warmup_prefix: bool = False  # timm's --warmup-prefix: the cosine runs after the warm-up
    clip_grad_norm: float | None = None  # clip the gradient's global norm (timm's --clip-grad)
    train_subset: int | None = None  # a class-stratified subset of the training set
    subset_seed: int = 0
    crop_padding: int = 4
    flip: bool = True
    mean: tuple[float, ...] | None = None  # input normalisation; None: the dataset's statistics
    std: tuple[float, ...] | None = None
    eval_batch_size: int = 1000
    # autocast on CUDA: bf16, or none (fp32); the CPU always computes in fp32
    precision: str = "fp32"
    # several processes normalise BatchNorm over the whole global batch (SyncBatchNorm, CUDA)
    sync_bn: bool = False
    eval_subset: int | None = None  # before the last epoch, evaluate on this many test images
    # before every evaluation, re-estimate the batch norms' statistics on this many training
    # images for the current weights (precise BN; 0: keep the running averages, as published)
    bn_recalibration_images: int = 0
    input_size: int = 224  # the ImageNet keys below follow timm's names
    crop_pct: float = 0.875
    auto_augment: str | None = None
    re_prob: float = 0.0
    re_mode: str = "pixel"  # timm's --remode
    train_interpolation: str = "random"  # timm's --train-interpolation
    re_num_splits: int = 0  # 2: erase only the second half of each chunk (timm's --resplit)
    mixup: float = 0.0
    cutmix: float = 0.0
    # images per mixup/cutmix draw (the official per-GPU loader batch); None: the rank's batch.
    # On ImageNet it is also the batch that re_num_splits splits.
    mixup_chunk: int | None = None
    # mix, then erase the mixed images (timm's train.py with its prefetcher); false: erase
    # each image, then mix (ConvNeXt's code, timm's --no-prefetcher)
    mix_then_erase: bool = True
    label_smoothing: float = 0.0
    drop_path: float = 0.0
    model_ema: bool = False
    ema_decay: float = 0.9998  # timm's --model-ema-decay
    workers: int = 8
    # ImageNet training batches: "timm" (timm's loader: decode and augment in CPU workers) or
    # "gpu" (workers read bytes; decode and augment on the training device: ann.imagenet_gpu)
    data_pipeline: str = "timm"

    @classmethod
    def from_mapping(cls, values: Mapping, where: str = "recipe") -> "Recipe":
        values = checked_keys(cls, values, where, RecipeError)
        for key in ("milestones", "mean", "std"):
            if values.get(key) is not None:
                values[key] = tuple(values[key])
        checked_choice(
            values.get("precision", "fp32"), PRECISIONS, f"{where}.precision", RecipeError
        )
        return cls(**values)

    def mixes(self) -> bool:
        """Whether mixup or cutmix is on (the targets are then soft)."""
        return self.mixup > 0 or self.cutmix > 0

    def peak_lr(self) -> float:
        """The learning rate after warm-up, scaled to this recipe's batch size."""
        if self.lr_base_batch:
            return self.lr * self.batch_size / self.lr_base_batch
        return self.lr


def parse_overrides(pairs: list[str]) -> dict:
    """ "key=value" strings to a dict, each value read as YAML (numbers, lists, null)."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise RecipeError(f"override '{pair}' is not of the form key=value.")
        out[key.strip()] = yaml.safe_load(value)
    return out


def recipe_choice(config: Mapping, dataset: str, model: str | None = None) -> tuple[object, str]:
    """What `datasets.<dataset>` chooses for `model`, and the config key that chooses it: the
    value of the one `model_recipes` pattern that matches the model's name, else `recipe` (a
    recipe name, or one per device type). Two matching patterns are an error."""
    entry = config["datasets"][dataset]
    patterns = (entry.get("model_recipes") or {}) if model is not None else {}
    matches = [pattern for pattern in patterns if fnmatchcase(model, pattern)]
    if len(matches) > 1:
        raise RecipeError(
            f"config key datasets.{dataset}.model_recipes: model '{model}' matches "
            f"{matches[0]!r} and {matches[1]!r}; make the patterns exclusive."
        )
    if matches:
        return patterns[matches[0]], f"datasets.{dataset}.model_recipes.{matches[0]}"
    return entry["recipe"], f"datasets.{dataset}.recipe"


def recipe_name(
    config: Mapping, dataset: str, device_type: str = "cpu", model: str | None = None
) -> str:
    """The name of the recipe that trains `model` (None: the dataset's own) on a device type."""
    chosen, key = recipe_choice(config, dataset, model)
    if isinstance(chosen, Mapping):
        if device_type not in chosen:
            raise RecipeError(
                f"{key} names no recipe for device '{device_type}'; it has {sorted(chosen)}."
            )
        chosen = chosen[device_type]
    if chosen not in config["recipes"]:
        raise RecipeError(f"{key}: no recipe named '{chosen}' under recipes.")
    return chosen


def resolve_recipe(
    config: Mapping,
    dataset: str,
    model: str,
    overrides: Mapping | None = None,
    device_type: str = "cpu",
) -> Recipe:
    """The recipe of (dataset, model) on a device type: the recipe chosen for the model (or
    the dataset), then the per-model overrides from the config, then `overrides`."""
    name = recipe_name(config, dataset, device_type, model)
    values = dict(config["recipes"][name])
    values |= config.get("recipe_overrides", {}).get(dataset, {}).get(model, {})
    values |= dict(overrides or {})
    return Recipe.from_mapping(values, f"recipe '{name}' for {dataset}/{model}")
