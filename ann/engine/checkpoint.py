"""Checkpoints: what a run saves after every epoch (checkpoint.pt in its folder) and how a
run started again resumes from it, ending with the metrics of an uninterrupted run."""

import json
import logging
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch
from torch import nn

from ann.errors import TrainingError
from ann.io import save_torch

from .batches import Generators
from .run import Run

__all__ = ["CHECKPOINT", "Checkpoint", "checkpoint_setup", "load_checkpoint", "save_checkpoint"]

log = logging.getLogger(__name__)

CHECKPOINT = "checkpoint.pt"


def checkpoint_setup(run: Run, kappa_sha: str | None) -> dict:
    """What a checkpoint must share with the run to be resumed (the epoch count may grow, and
    the ImageNet input pipeline may change: both make the same batches)."""
    recipe = {k: v for k, v in asdict(run.recipe).items() if k not in ("epochs", "data_pipeline")}
    return {"recipe": json.loads(json.dumps(recipe)), "kappa_sha256": kappa_sha}


def rng_state(generators: Generators) -> dict:
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "data": generators.data.get_state(),
        "augment": generators.augment.get_state(),
    }


def restore_rng(state: dict, generators: Generators) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    generators.data.set_state(state["data"])
    generators.augment.set_state(state["augment"])


@dataclass
class Checkpoint:
    """The saved state of a run after `epoch` epochs (the file holds it as a mapping, with
    the run's identity and setup beside it)."""

    epoch: int = 0
    model: dict = field(default_factory=dict)
    optimizer: dict = field(default_factory=dict)
    ema: dict | None = None
    rng: dict = field(default_factory=dict)
    history: list[dict] = field(default_factory=list)
    wall_time: float = 0.0


def save_checkpoint(path: Path, run: Run, setup: dict, checkpoint: Checkpoint) -> None:
    state = {f.name: getattr(checkpoint, f.name) for f in fields(checkpoint)}  # no copies
    save_torch({"run": run.identity(), "setup": setup, **state}, path)


def load_checkpoint(path: Path, run: Run, setup: dict) -> Checkpoint | None:
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
    return Checkpoint(**{f.name: state[f.name] for f in fields(Checkpoint)})


def restore(
    checkpoint: Checkpoint,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    ema: nn.Module | None,
    generators: Generators,
) -> None:
    """Load a checkpoint's states into the run's model, optimizer, EMA and generators."""
    model.load_state_dict(checkpoint.model)
    optimizer.load_state_dict(checkpoint.optimizer)
    if ema is not None and checkpoint.ema:
        ema.module.load_state_dict(checkpoint.ema)
    restore_rng(checkpoint.rng, generators)
