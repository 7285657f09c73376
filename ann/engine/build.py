"""The model, optimiser and learning-rate scheduler of a run: the model with its prior
applied, calibrated and in its mode, timm's optimizer over `parameter_groups` and timm's
scheduler."""

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from timm.scheduler.scheduler import Scheduler
from torch import nn

from ann.errors import PriorError, RecipeError
from ann.layers import DitQuadratic
from ann.models import create_model, dit_parameters, fan_gb_parameters, quadratic_layers
from ann.prior_modes import apply_mode, calibrate
from ann.priors import apply_prior, load_kappa, prior_weights
from ann.recipes import Recipe
from ann.settings import PriorSpec

from .optim import parameter_groups
from .run import Run

__all__ = [
    "BuiltModel",
    "build_model",
    "build_optimizer",
    "build_scheduler",
    "check_prior_weights",
    "file_sha256",
    "model_kwargs",
    "read_prior_file",
    "scaled_parameters",
]


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def model_kwargs(run: Run, num_classes: int, in_chans: int, img_size: int) -> dict:
    """The keyword arguments of the run's model (part of the run's identity)."""
    kwargs = {"num_classes": num_classes, "in_chans": in_chans}
    if run.model.startswith(("dit_convnext", "convnext")):
        kwargs["drop_path_rate"] = run.recipe.drop_path
    else:
        kwargs["img_size"] = img_size
    return kwargs


@dataclass
class BuiltModel:
    """A run's model with its prior in place, and what the prior did: the sha256 of the kappa
    file behind it, the calibration of each Dit layer (ann.prior_modes.calibrate) and the weight
    decay of the parameters its mode created (ann.prior_modes.apply_mode)."""

    model: nn.Module
    kappa_sha256: str | None = None
    calibration: list[dict] = field(default_factory=list)
    decay_of: dict[nn.Parameter, float] = field(default_factory=dict)


def build_model(
    run: Run,
    num_classes: int,
    in_chans: int,
    img_size: int,
    calibration_batch: Callable[[int, int], torch.Tensor] | None = None,
    device: torch.device | str = "cpu",
) -> BuiltModel:
    """The model on `device` with its prior applied, calibrated on `calibration_batch(n, seed)`
    (training images; with priors.calibration: data) and acting in its mode
    (ann.prior_modes)."""
    kwargs = model_kwargs(run, num_classes, in_chans, img_size)
    model = create_model(run.model, **kwargs).to(device)
    has_dit = bool(quadratic_layers(model))
    if not has_dit:
        if run.prior != "none":
            raise PriorError(f"{run.model} has no quadratic layers; its prior must be 'none'.")
        return BuiltModel(model)
    if run.prior == "none":
        raise PriorError(f"{run.model} has quadratic layers: choose a prior (zero, bio, ...).")
    spec = run.priors.spec(run.prior)
    kappa_sha = _apply_prior_weights(model, run, spec)
    calibration = []
    if spec.kind != "zero" and run.priors.calibration == "data":
        if calibration_batch is None:
            raise PriorError("priors.calibration: data needs training images to calibrate on.")
        images = calibration_batch(run.priors.calibration_images, run.seed)
        images = images.to(device)
        calibration = calibrate(model, images, run.priors.init_ratio)
    decay_of = apply_mode(model, spec.mode, run.priors.anchor_strength)
    return BuiltModel(model, kappa_sha, calibration, decay_of)


def _apply_prior_weights(model: nn.Module, run: Run, spec: PriorSpec) -> str | None:
    """Copy the prior's K into the model (from the prior file, or built from the kappa file);
    return the sha256 of the kappa file behind it."""
    if run.prior_file:
        saved = read_prior_file(Path(run.prior_file), spec.name, run.seed)
        rebuild = (
            f"Delete it and run the workflow again (rm {run.prior_file}; snakemake --cores all)."
        )
        source = f"prior file '{run.prior_file}'"
        check_prior_weights(saved["weights"], model, spec.kind, source, rebuild)
        apply_prior(model, saved["weights"])
        return saved.get("kappa_sha256")
    kappa = load_kappa(run.kappa) if run.kappa and spec.kind != "zero" else None
    weights = prior_weights(model, spec.kind, kappa, seed=run.seed, **run.priors.options())
    source = f"the '{spec.name}' prior built from '{run.kappa}'"
    check_prior_weights(weights, model, spec.kind, source, "Check that kappa file.")
    apply_prior(model, weights)
    return file_sha256(run.kappa) if kappa is not None else None


def scaled_parameters(model: nn.Module, recipe: Recipe) -> tuple[list[nn.Parameter], float]:
    """The parameters that learn at a multiple of the recipe's lr, and the multiple: the Dit
    terms with their LN (dit_lr_mult), or Fan's g and b branches (fan_gb_lr_mult)."""
    fan = fan_gb_parameters(model)
    return (fan, recipe.fan_gb_lr_mult) if fan else (dit_parameters(model), recipe.dit_lr_mult)


def read_prior_file(path: Path, prior: str, seed: int) -> dict:
    """A prior file of the build_prior rule, checked to be readable and to hold `prior` at
    `seed`; a damaged one is named with how to rebuild it."""
    if not path.is_file():
        raise PriorError(f"prior file '{path}' does not exist; run build_prior.")
    rebuild = f"Delete it and run the workflow again (rm {path}; snakemake --cores all)."
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise PriorError(
            f"prior file '{path}' cannot be read ({type(err).__name__}): it is damaged or "
            f"truncated. {rebuild}"
        ) from None
    if not isinstance(saved, dict) or not isinstance(saved.get("weights"), dict):
        raise PriorError(f"prior file '{path}' holds no prior weights. {rebuild}")
    if saved.get("prior") != prior or saved.get("seed") != seed:
        raise PriorError(
            f"prior file '{path}' holds prior {saved.get('prior')} "
            f"seed {saved.get('seed')}, not {prior} seed {seed}."
        )
    return saved


def check_prior_weights(weights: dict, model: nn.Module, prior: str, source: str, fix: str) -> None:
    """Every quadratic layer of `model` gets finite prior weights, and a prior other than
    zero is not all zero (it would train as `zero` under another name). `source` names where
    the weights come from, `fix` what to do."""
    names = [name for name, m in model.named_modules() if isinstance(m, DitQuadratic)]
    missing = [name for name in names if name not in weights]
    if missing:
        raise PriorError(f"{source} has no weights for the quadratic layer(s) {missing}. {fix}")
    for name in names:
        if not torch.isfinite(weights[name]).all():
            raise PriorError(f"{source}: layer {name} holds NaN or infinite weights. {fix}")
    if prior != "zero" and all(not weights[name].any() for name in names):
        raise PriorError(
            f"{source}: the '{prior}' prior is zero in every layer, so the run would train as "
            f"the zero prior under another name. {fix}"
        )


def build_optimizer(
    model: nn.Module, recipe: Recipe, decay_of: Mapping[nn.Parameter, float] | None = None
) -> torch.optim.Optimizer:
    """timm's optimizer over `parameter_groups` (`decay_of`: parameters with a weight decay of
    their own); on CUDA torch's fused implementation (one kernel per step instead of several
    per parameter)."""
    from timm.optim import create_optimizer_v2

    if recipe.optimizer not in ("sgd", "adamw"):
        raise RecipeError(f"optimizer '{recipe.optimizer}' is not one of sgd, adamw.")
    extra = {"momentum": recipe.momentum, "nesterov": False} if recipe.optimizer == "sgd" else {}
    if next(model.parameters()).is_cuda:
        extra["fused"] = True
    scaled, multiple = scaled_parameters(model, recipe)
    return create_optimizer_v2(
        parameter_groups(
            model,
            scaled,
            weight_decay=recipe.weight_decay,
            quadratic_lr_mult=multiple,
            decay_vectors=recipe.optimizer != "adamw",
            decay_of=decay_of,
        ),
        opt=recipe.optimizer,
        lr=recipe.peak_lr(),
        weight_decay=recipe.weight_decay,
        **extra,
    )


def build_scheduler(
    optimizer: torch.optim.Optimizer, recipe: Recipe, updates_per_epoch: int
) -> Scheduler:
    """timm's scheduler (stepped per epoch, or per update for a cosine schedule with
    sched_on_updates), with the recipe's milestones, warm-up and floor; with warmup_prefix the
    cosine runs over the epochs after the warm-up (the recipe's epochs include the warm-up)."""
    from timm.scheduler import create_scheduler_v2

    if recipe.schedule not in ("multistep", "cosine"):
        raise RecipeError(f"schedule '{recipe.schedule}' is not one of multistep, cosine.")
    scheduler, _ = create_scheduler_v2(
        optimizer,
        sched=recipe.schedule,
        num_epochs=recipe.epochs - recipe.warmup_epochs * recipe.warmup_prefix,
        # timm applies milestone m from epoch m - 1; ours (as torch's MultiStepLR) from epoch m
        decay_milestones=[m + 1 for m in recipe.milestones],
        decay_rate=recipe.gamma,
        warmup_epochs=recipe.warmup_epochs,
        warmup_lr=recipe.warmup_lr,
        warmup_prefix=recipe.warmup_prefix,
        min_lr=recipe.min_lr,
        # timm's train.py steps per epoch unless --sched-on-updates; milestones are epochs
        step_on_epochs=recipe.schedule == "multistep" or not recipe.sched_on_updates,
        updates_per_epoch=updates_per_epoch,
    )
    return scheduler
