"""Checkpoints: what a run saves after every epoch (checkpoint.pt in its folder), and what a
run started again does with the folder it finds: resume a run of its own identity
(ann.engine.identity), and refuse, or set aside, a run of another."""

import json
import logging
import os
import time
from dataclasses import dataclass, field, fields
from pathlib import Path

import torch
from torch import nn

from ann.errors import TrainingError
from ann.io import fsync_path, save_torch

from .batches import Generators
from .identity import identity_differences

__all__ = [
    "CHECKPOINT",
    "EXISTING_RUN",
    "RUN_FILES",
    "SET_ASIDE",
    "Checkpoint",
    "load_checkpoint",
    "prepare_folder",
    "save_checkpoint",
]

log = logging.getLogger(__name__)

CHECKPOINT = "checkpoint.pt"
RUN_FILES = (CHECKPOINT, "metrics.csv", "metrics.json")  # what a run writes in its folder
SET_ASIDE = "set_aside"  # <out>/set_aside/<time>/: runs of another identity, moved here
# What a run does with a folder that holds a run: resume it if it is of the same identity,
# else "refuse" (python -m ann.train) or "set_aside" (the workflow, which reruns a job only
# when its settings changed); "restart" sets aside whatever is there (ann.train --restart).
EXISTING_RUN = ("refuse", "set_aside", "restart")


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
    the run's identity beside it)."""

    epoch: int = 0
    model: dict = field(default_factory=dict)
    optimizer: dict = field(default_factory=dict)
    ema: dict | None = None
    rng: dict = field(default_factory=dict)
    history: list[dict] = field(default_factory=list)
    wall_time: float = 0.0


def save_checkpoint(path: Path, identity: dict, checkpoint: Checkpoint) -> None:
    state = {f.name: getattr(checkpoint, f.name) for f in fields(checkpoint)}  # no copies
    save_torch({"identity": identity, **state}, path)


def _read(path: Path, mmap: bool = False) -> dict:
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as err:
        raise TrainingError(
            f"checkpoint '{path}' cannot be read: damaged, or not written by ann.train "
            f"({type(err).__name__})."
        ) from None


def load_checkpoint(path: Path) -> Checkpoint | None:
    """The state saved in `path`, None if there is none. (prepare_folder has checked that it
    belongs to the run.)"""
    if not path.exists():
        return None
    state = _read(path)
    return Checkpoint(**{f.name: state[f.name] for f in fields(Checkpoint)})


def _saved_identity(folder: Path) -> tuple[dict | None, str]:
    """The identity recorded in the folder's checkpoint, or else its metrics.json; with a
    reason when there is none."""
    if (folder / CHECKPOINT).exists():
        try:
            return _read(folder / CHECKPOINT, mmap=True).get("identity"), ""
        except TrainingError as err:
            return None, str(err)
    try:
        saved = json.loads((folder / "metrics.json").read_text())
    except (OSError, ValueError):
        return None, "its files record no identity"
    return (saved.get("identity"), "") if isinstance(saved, dict) else (None, "")


def _set_aside(folder: Path, present: list[str], why: str) -> None:
    target = folder / SET_ASIDE / time.strftime("%Y%m%dT%H%M%S")
    while target.exists():  # two in one second
        target = target.with_name(target.name + "_")
    target.mkdir(parents=True)
    for name in present:
        os.replace(folder / name, target / name)
    fsync_path(target)
    fsync_path(folder)
    log.warning(
        "set aside the run in '%s' (%s) in '%s'; starting over. Delete that folder when you "
        "no longer need it.",
        folder,
        why,
        target,
    )


def prepare_folder(folder: Path, identity: dict, existing: str) -> bool:
    """Make the run folder ready for a run of `identity`: True when it holds a checkpoint
    of that identity to resume. A run of another identity (or one whose identity cannot be
    read) is refused with a TrainingError that names the differences and leaves it untouched
    (`existing` "refuse"), or moved to <folder>/set_aside/<time>/ ("set_aside"); "restart"
    moves any run there."""
    if existing not in EXISTING_RUN:
        raise ValueError(f"existing must be one of {EXISTING_RUN}, got {existing!r}")
    present = [name for name in RUN_FILES if (folder / name).exists()]
    if not present:
        return False
    saved, unreadable = _saved_identity(folder)
    differences = unreadable or identity_differences(saved, identity)
    if existing == "restart":
        _set_aside(folder, present, "--restart")
        return False
    if not differences:
        return (folder / CHECKPOINT).exists()
    if existing == "set_aside":
        _set_aside(folder, present, f"another identity: {differences}")
        return False
    raise TrainingError(
        f"output folder '{folder}' holds a run of another identity ({differences}); it is "
        f"left untouched. Choose another --out, or add --restart to move that run to "
        f"'{folder / SET_ASIDE}' and start over."
    )


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
