"""The training engine: one run from config to metrics.json.

- run: Run, TrainSettings (config key `train:`), run_from_config, read_config
- distributed: rank, world size and device (torchrun), the output folder's lock
- batches: the training batches and evaluation of each dataset
- build: the model with its prior, timm's optimizer and scheduler
- loop: one epoch of updates (compile, CUDA graphs, micro-batches, mixup, clipping, EMA)
  under the recipe's precision
- evaluate: loss and top-1/top-5 over batches
- checkpoint: save after every epoch, resume
- trainer: train(run), the whole run
- cli: `python -m ann.train`
- optim, threads: parameter groups and thread counts, shared with few-shot and theory
- memory: freed memory kept in the process (no fresh page faults every CPU step)
"""

from .build import build_model, build_optimizer, build_scheduler, file_sha256
from .distributed import Context
from .memory import retain_freed_memory
from .optim import parameter_groups
from .run import Run, TrainSettings, read_config, run_from_config
from .threads import torch_threads
from .trainer import train

__all__ = [
    "Context",
    "Run",
    "TrainSettings",
    "build_model",
    "build_optimizer",
    "build_scheduler",
    "file_sha256",
    "parameter_groups",
    "read_config",
    "retain_freed_memory",
    "run_from_config",
    "torch_threads",
    "train",
]
