"""The training engine: optimiser parameter groups, thread control (the loop, checkpoints,
distributed setup and command line join it as the engine is split out of ann.train)."""

from .optim import parameter_groups
from .threads import torch_threads

__all__ = ["parameter_groups", "torch_threads"]
