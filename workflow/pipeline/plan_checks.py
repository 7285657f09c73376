"""What is checked before any simulation starts: the config beyond its schema, and the size of
the plan (trials, output size, memory, CPU time) against the machine.

The workflow calls these when it reads the config (at plan time), so that a setting that
would fail hours later, or leave the fit without its trials, stops the run in one line that
names the key.
"""

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from fnmatch import fnmatchcase

from dendrite_sim.config import DendriteConfig, KappaConfig, Nmda, ReceptorKinetics
from dendrite_sim.errors import InputError
from dendrite_sim.protocols import check_timing, trial_counts

# CPU time per compartment per integration step of the compiled simulator, from the
# measured figures (README: 5 ms per 100-ms trial of the 95-compartment cell at dt 0.05 ms,
# 21 ms for a 656-compartment reconstruction), with the C++ build of each process.
SECONDS_PER_COMPARTMENT_STEP = 2.6e-8
BUILD_SECONDS = 10.0
# A simulation process holds Brian2 and its compiled program besides the traces.
PROCESS_BYTES = 400 * 2**20
# Peak memory of the simulation job: the pieces' traces, their concatenation and the
# dataset being written, each a copy of the traces.
TRACE_COPIES = 3
MEMORY_SHARE = 0.8  # of the machine's memory a plan may take


def check_config(dendrite: Mapping, kappa: Mapping) -> None:
    """Settings the schema cannot judge alone; an InputError names the key and the fix.
    Takes the config's mappings and builds their sections (dendrite_sim.config) first."""
    config, window = DendriteConfig.from_mapping(dendrite), KappaConfig.from_mapping(kappa)
    for receptor in ("E", "I"):
        kinetics = getattr(config.synapses, receptor)
        _distinct_time_constants(f"dendrite.synapses.{receptor}", kinetics)
    if config.nmda.enabled:
        _distinct_time_constants("dendrite.nmda", config.nmda)
    protocol = config.protocol
    if protocol.dt_ms >= protocol.trial_ms:
        raise InputError(
            f"config key dendrite.protocol.dt_ms: {protocol.dt_ms:g} ms is not shorter than "
            f"the trial ({protocol.trial_ms:g} ms, dendrite.protocol.trial_ms)."
        )
    check_timing(protocol)
    for receptor in ("E", "I"):
        strengths = list(getattr(protocol.strengths_nS, receptor))
        if len(set(strengths)) < 2:
            raise InputError(
                f"config key dendrite.protocol.strengths_nS.{receptor}: kappa is fitted across "
                f"strengths, so it needs at least two different ones (got {strengths})."
            )
    kinds = list(protocol.kinds)
    missing = [kind for kind in ("single", "pairs") if kind not in kinds]
    if missing:
        raise InputError(
            f"config key dendrite.protocol.kinds: the kappa fit needs the {' and '.join(missing)} "
            f"trials; add {missing} (got {kinds})."
        )
    pair_kinds = list(protocol.pairs.kinds)
    if "multi" in kinds and set(pair_kinds) != {"EI", "EE", "II"}:
        raise InputError(
            "config key dendrite.protocol.pairs.kinds: the multi-input validation predicts "
            f"with kappa of every pair type, so it needs EI, EE and II (got {pair_kinds}); "
            "add them, or remove 'multi' from dendrite.protocol.kinds."
        )
    start, stop = window.window_ms
    if not 0 <= start < stop <= protocol.trial_ms:
        raise InputError(
            f"config key kappa.window_ms: [{start:g}, {stop:g}] must be an increasing window "
            f"inside the trial, 0 .. {protocol.trial_ms:g} ms (dendrite.protocol.trial_ms)."
        )


def _distinct_time_constants(key: str, kinetics: ReceptorKinetics | Nmda) -> None:
    if kinetics.tau_rise_ms >= kinetics.tau_decay_ms:
        raise InputError(
            f"config keys {key}.tau_rise_ms and tau_decay_ms: the rise "
            f"({kinetics.tau_rise_ms:g} ms) must be faster than the decay "
            f"({kinetics.tau_decay_ms:g} ms) for a double-exponential conductance."
        )


@dataclass(frozen=True)
class PlanBudget:
    """The size of one cell's simulation, estimated before it runs."""

    cell: str
    trials: int
    samples: int  # recorded per trial
    compartments: int
    processes: int
    trace_bytes: int
    memory_bytes: int  # peak of the simulation job
    cpu_seconds: float

    @property
    def mem_mb(self) -> int:
        return math.ceil(self.memory_bytes / 2**20)

    def describe(self) -> str:
        return (
            f"cell {self.cell}: {self.trials} trials x {self.samples} samples on "
            f"{self.compartments} compartments; psp.nc about {_size(self.trace_bytes)}, the "
            f"simulation job needs about {_size(self.memory_bytes)} of memory and about "
            f"{_duration(self.cpu_seconds)} of CPU time ({self.processes} processes)"
        )


def plan_budget(cell: str, dendrite: DendriteConfig, n_sites: int, compartments: int) -> PlanBudget:
    """The budget of simulating `cell` (n_sites sites, `compartments` compartments) under the
    dendrite config; refuses a chunk count larger than the number of trials."""
    protocol = dendrite.protocol
    trials = sum(trial_counts(n_sites, protocol).values())
    if dendrite.chunks > trials:
        raise InputError(
            f"config key dendrite.chunks: {dendrite.chunks} processes for {trials} trials of "
            f"cell {cell}; use at most {trials}."
        )
    samples = round(protocol.trial_ms / protocol.record_dt_ms)
    steps = round(protocol.trial_ms / protocol.dt_ms)
    trace_bytes = trials * samples * 8
    processes = dendrite.chunks
    return PlanBudget(
        cell=cell,
        trials=trials,
        samples=samples,
        compartments=compartments,
        processes=processes,
        trace_bytes=trace_bytes,
        memory_bytes=TRACE_COPIES * trace_bytes + processes * PROCESS_BYTES,
        cpu_seconds=trials * compartments * steps * SECONDS_PER_COMPARTMENT_STEP
        + processes * BUILD_SECONDS,
    )


def machine_memory_bytes() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def check_budget(budget: PlanBudget, available_bytes: int | None = None) -> None:
    """Refuse a plan whose simulation would not fit in the machine's memory."""
    available = machine_memory_bytes() if available_bytes is None else available_bytes
    if budget.memory_bytes > MEMORY_SHARE * available:
        raise InputError(
            f"{budget.describe()}: more than {MEMORY_SHARE:.0%} of this machine's "
            f"{_size(available)}. Fewer trials or samples: lower dendrite.sites.n_sites, "
            "dendrite.protocol.pairs.max_pairs_per_kind or dendrite.protocol.multi.n_trials, "
            "shorten dendrite.protocol.trial_ms or raise dendrite.protocol.record_dt_ms "
            "(or fewer dendrite.chunks)."
        )


def _size(n_bytes: float) -> str:
    exponent = min(4, int(math.log(max(n_bytes, 1), 1024)))
    if exponent == 0:
        return f"{n_bytes:.0f} bytes"
    return f"{n_bytes / 1024**exponent:.1f} {('KiB', 'MiB', 'GiB', 'TiB')[exponent - 1]}"


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


# What shows that datasets.<name>.root holds the dataset (any one file; for ImageNet every
# folder), as ann.data.expected_files gives it: copied here because the rules read it when
# the workflow is read and importing ann would load torch then (tests/test_config_sections.py
# checks that the two agree).
DATASET_FILES = {
    "fashion_mnist": ["train-images-idx3-ubyte.gz", "FashionMNIST/raw/train-images-idx3-ubyte.gz"],
    "cifar10": ["cifar-10-batches-py/data_batch_1", "data_batch_1"],
    "cifar100": ["cifar-100-python/train", "train"],
    "imagenet": ["train/", "val/"],
}


# The recipe of a (dataset, model): the workflow's copy of ann.recipes.recipe_choice, which the
# workflow cannot import when it reads the config without importing torch (3 s);
# tests/test_recipes.py checks that the two choose alike for every model and dataset.
def model_recipe(dataset: str, entry: Mapping, model: str) -> object:
    """The recipe choice of `datasets.<dataset>` for `model` (a name, or one per device type):
    its one `model_recipes` pattern that matches the model, else its `recipe`."""
    patterns = entry.get("model_recipes") or {}
    matches = [pattern for pattern in patterns if fnmatchcase(model, pattern)]
    if len(matches) > 1:
        raise InputError(
            f"config key datasets.{dataset}.model_recipes: model '{model}' matches "
            f"{matches[0]!r} and {matches[1]!r}; make the patterns exclusive."
        )
    return patterns[matches[0]] if matches else entry["recipe"]


def check_sync_bn(recipe_name: str, recipe: Mapping, processes: int, device: str) -> None:
    """torch's SyncBatchNorm needs CUDA: refuse a multi-process CPU run of a recipe that
    normalises BatchNorm over the global batch (sync_bn), naming the keys to change."""
    if processes > 1 and device == "cpu" and recipe.get("sync_bn", False):
        raise InputError(
            f"config key train.processes: {processes} processes on the CPU, but recipe "
            f"'{recipe_name}' normalises BatchNorm over the whole batch (sync_bn: true), which "
            "torch's SyncBatchNorm does on CUDA only; set train.processes: 1, train on GPUs, "
            f"or set recipes.{recipe_name}.sync_bn: false (per-process statistics)."
        )
