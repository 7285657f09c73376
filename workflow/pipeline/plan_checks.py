"""What is checked before any simulation starts: the config beyond its schema, and the size of
the plan (trials, output size, memory, CPU time) against the machine.

The workflow calls these when it reads the config (at plan time), so that a setting that
would fail hours later, or leave the fit without its trials, stops the run in one line that
names the key.
"""

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path

import yaml

from dendrite_sim.cable import Segmentation
from dendrite_sim.config import DendriteConfig, KappaConfig, Nmda, Protocol, ReceptorKinetics
from dendrite_sim.config_file import non_finite_number
from dendrite_sim.errors import InputError
from dendrite_sim.protocols import check_timing

# CPU time per compartment per integration step of the compiled simulator, from the
# measured figures (docs/measured.md: 5 ms per 100-ms trial of the 95-compartment cell at dt 0.05 ms,
# 21 ms for a 656-compartment reconstruction), with the C++ build of each process.
SECONDS_PER_COMPARTMENT_STEP = 2.6e-8
BUILD_SECONDS = 10.0
# A simulation process holds Brian2 and its compiled program besides the traces.
PROCESS_BYTES = 400 * 2**20
# Peak memory of the simulation job: the pieces' traces, their concatenation and the
# dataset being written, each a copy of the traces.
TRACE_COPIES = 3
MEMORY_SHARE = 0.8  # of the machine's memory a plan may take
# Bytes of one input slot of the trial table (site int32, type U1, strength and onset
# float64), held by the plan, by each process and in the dataset being written.
EVENT_BYTES = 24
# The most compartments a cell may have: about 30 times the 656 of the realistic
# reconstruction at NEURON's default rule (docs/measured.md, "Measured against NEURON"); more is a
# setting (d_lambda, max_compartment_um) or a file (radii, coordinates) out of range.
MAX_COMPARTMENTS = 20_000
# Entries a config file can remove by setting them to null (Snakemake merges a --configfile
# into config.yaml, so it cannot delete a key otherwise): (section, key).
REMOVABLE = (("dendrite", "cells"), ("priors", "biological"), ("train", "experiments"))
# YAML reads an exponent without a decimal point (2e1) as text.
YAML_TEXT_NUMBER = re.compile(r"[+-]?(\d+|\d*\.\d+|\d+\.)[eE][+-]?\d+")


def drop_removed_entries(config: dict) -> None:
    """Remove the entries of REMOVABLE set to null (`dendrite: {cells: {pyramidal_nmda:
    null}}` in a --configfile runs without that cell)."""
    for section, key in REMOVABLE:
        entries = (
            config.get(section, {}).get(key) if isinstance(config.get(section), dict) else None
        )
        if isinstance(entries, dict):
            for name in [name for name, value in entries.items() if value is None]:
                del entries[name]


def check_config_values(config: Mapping) -> None:
    """Every number in the config (the files and --config) is finite: JSON Schema's range
    checks are false for NaN, so the schema lets NaN through."""
    found = non_finite_number(config)
    if found:
        raise InputError(
            f"config key {found}: every number in the config must be finite (NaN and "
            "infinities are refused); give a value in the key's range."
        )


# libyaml's loader where PyYAML has it: the schema is read at every start of Snakemake, and
# the pure-Python loader takes about 0.5 s for it.
SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _types(schema_type: object) -> set[str]:
    return set(schema_type) if isinstance(schema_type, list) else {schema_type}


def schema_problem(config: Mapping, schema_path: str | Path) -> str | None:
    """The config's most relevant schema error as one line naming the key (None if it is
    valid); a number YAML read as text (2e1) gets the spelling that YAML reads."""
    import jsonschema

    schema = yaml.load(Path(schema_path).read_text(), Loader=SAFE_LOADER)
    error = jsonschema.exceptions.best_match(
        jsonschema.Draft202012Validator(schema).iter_errors(config)
    )
    if error is None:
        return None
    key = ".".join(str(part) for part in error.absolute_path) or "(top level)"
    value = error.instance
    if (
        error.validator == "type"
        and _types(error.validator_value) & {"number", "integer"}
        and isinstance(value, str)
        and YAML_TEXT_NUMBER.fullmatch(value)
    ):
        mantissa, exponent = re.split("[eE]", value)
        spelled = mantissa if "." in mantissa else f"{mantissa}.0"
        return (
            f"config key {key}: '{value}' is text to YAML, which reads an exponent as a number "
            f"only with a decimal point; write {spelled}e{exponent}."
        )
    message = " ".join(error.message.split())
    return f"config key {key}: {message[:400]}"


def results_folder(value: str) -> str:
    """`results_dir` as the rules' paths use it (no trailing or doubled slash: `results/`
    is `results`), refused when it names a file."""
    folder = os.path.normpath(value)
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise InputError(
            f"config key results_dir: '{value}' is a file, not a folder; name a folder."
        )
    return folder


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
    _check_trial_contents(protocol)
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
    if "crowd" in kinds and "EE" not in pair_kinds:
        raise InputError(
            "config key dendrite.protocol.pairs.kinds: the crowd trials are predicted with "
            f"kappa_EE, so they need EE (got {pair_kinds}); add it, or remove 'crowd' from "
            "dendrite.protocol.kinds."
        )
    start, stop = window.window_ms
    if not 0 <= start < stop <= protocol.trial_ms:
        raise InputError(
            f"config key kappa.window_ms: [{start:g}, {stop:g}] must be an increasing window "
            f"inside the trial, 0 .. {protocol.trial_ms:g} ms (dendrite.protocol.trial_ms)."
        )
    if stop <= protocol.onset_ms:
        raise InputError(
            f"config key kappa.window_ms: [{start:g}, {stop:g}] ends before the inputs start "
            f"(dendrite.protocol.onset_ms = {protocol.onset_ms:g} ms), where every PSP is zero "
            "and kappa(t) would be NaN throughout; end it after the onset."
        )
    _check_readout(protocol, window.readout_ms)


def _check_readout(protocol: Protocol, readout_ms: float) -> None:
    """The read-out must fall inside the trial for the latest pair (a timing pair's I input
    comes up to max(delta_t) after the E input)."""
    latest = protocol.onset_ms + max([0.0, *protocol.timing.delta_t_ms])
    if "timing" not in protocol.kinds:
        latest = protocol.onset_ms
    if latest + readout_ms >= protocol.trial_ms:
        raise InputError(
            f"config key kappa.readout_ms: {readout_ms:g} ms after the latest input "
            f"({latest:g} ms) is past the end of the trial ({protocol.trial_ms:g} ms, "
            "dendrite.protocol.trial_ms); shorten it or lengthen the trial."
        )


def _check_trial_contents(protocol: Protocol) -> None:
    """Each listed protocol kind must make trials with inputs."""
    if "pairs" in protocol.kinds and not protocol.pairs.kinds:
        raise InputError(
            "config key dendrite.protocol.pairs.kinds: empty, but dendrite.protocol.kinds "
            "lists 'pairs' (the kappa fit's pair trials); list EI, EE and/or II."
        )
    if "crowd" in protocol.kinds and protocol.crowd.strength_nS not in protocol.strengths_nS.E:
        raise InputError(
            f"config key dendrite.protocol.crowd.strength_nS: {protocol.crowd.strength_nS:g} nS "
            f"is not one of dendrite.protocol.strengths_nS.E {list(protocol.strengths_nS.E)}; "
            "the crowd's predictions need the single PSP of that strength."
        )
    multi = protocol.multi
    if "multi" in protocol.kinds and multi.n_E + multi.n_I < 2:
        raise InputError(
            f"config keys dendrite.protocol.multi.n_E and n_I: {multi.n_E} + {multi.n_I} "
            "inputs per multi-input trial; the bilinear rule needs at least two (or remove "
            "'multi' from dendrite.protocol.kinds)."
        )


def check_prior_cell(prior: str, cell: str, dendrite: Mapping) -> None:
    """A prior reads kappa_EE, kappa_EI and kappa_II of its cell: the cell's protocol must
    fit them all. `dendrite`: the cell's settings (its overrides merged in)."""
    pairs = DendriteConfig.from_mapping(dendrite).protocol.pairs.kinds
    missing = [kind for kind in ("EI", "EE", "II") if kind not in pairs]
    if missing:
        raise InputError(
            f"config key dendrite.protocol.pairs.kinds: the prior '{prior}' is built from the "
            f"kappa of every pair type of cell {cell}, but it lacks {', '.join(missing)}; add "
            "them, or build no prior from that cell."
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


def count_trials(n_sites: int, protocol: Protocol) -> dict[str, int]:
    """How many trials `dendrite_sim.protocols.plan_trials` makes of each protocol kind for
    n_sites sites, counted without making them (tests/test_plan_checks.py compares)."""
    strengths = protocol.strengths_nS
    n = {receptor: len(getattr(strengths, receptor)) for receptor in ("E", "I")}
    site_pairs = {"EI": n_sites**2, "EE": n_sites * (n_sites + 1) // 2}
    site_pairs["II"] = site_pairs["EE"]
    counts = {
        "single": n_sites * (n["E"] + n["I"]),
        "pairs": sum(
            min(site_pairs[kind], protocol.pairs.max_pairs_per_kind) * n[kind[0]] * n[kind[1]]
            for kind in protocol.pairs.kinds
        ),
        "timing": min(site_pairs["EI"], protocol.timing.n_pairs)
        * len(protocol.timing.delta_t_ms)
        * n["E"]
        * n["I"],
        "multi": protocol.multi.n_trials,
        "crowd": protocol.crowd.max_inputs,
    }
    return {kind: counts[kind] for kind in protocol.kinds if kind in counts}


def _inputs_per_trial(protocol: Protocol) -> int:
    """The most inputs of one trial (the width of the trial table)."""
    widths = {"single": 1, "pairs": 2, "timing": 2}
    widths["multi"] = protocol.multi.n_E + protocol.multi.n_I
    widths["crowd"] = protocol.crowd.max_inputs
    return max(widths.get(kind, 1) for kind in protocol.kinds)


def count_compartments(cell: str, spec: str, dendrite: DendriteConfig) -> int:
    """The compartments `spec` gets under the segmentation rule, counted from the section
    lengths and diameters before anything is built; more than MAX_COMPARTMENTS is refused,
    naming the keys (and the file) that set the count."""
    from dendrite_sim.morphology import PYRAMIDAL_SECTIONS
    from dendrite_sim.swc import read_cell

    rule = Segmentation.from_config(dendrite)
    if spec == "builtin:pyramidal":
        counts = [rule.n_cylinder(length, d) for _, length, d in PYRAMIDAL_SECTIONS]
    elif spec.startswith("builtin:"):
        counts = []
    else:
        counts = [rule.n_compartments(s.arc, s.diameter) for s in read_cell(spec).sections]
    total = 1 + sum(counts)
    if total > MAX_COMPARTMENTS:
        source = (
            "" if spec.startswith("builtin:") else f" (SWC file '{spec}': its lengths and radii)"
        )
        raise InputError(
            f"cell {cell}: the segmentation rule gives {total:,} compartments{source}, more "
            f"than {MAX_COMPARTMENTS:,}; raise dendrite.segmentation.d_lambda (now "
            f"{rule.d_lambda:g}) or dendrite.max_compartment_um (now "
            f"{rule.max_compartment_um:g} um)."
        )
    return total


def plan_budget(cell: str, dendrite: DendriteConfig, n_sites: int, compartments: int) -> PlanBudget:
    """The budget of simulating `cell` (n_sites sites, `compartments` compartments) under the
    dendrite config, from counts alone; refuses a chunk count larger than the number of
    trials."""
    protocol = dendrite.protocol
    trials = sum(count_trials(n_sites, protocol).values())
    if dendrite.chunks > trials:
        raise InputError(
            f"config key dendrite.chunks: {dendrite.chunks} processes for {trials} trials of "
            f"cell {cell}; use at most {trials}."
        )
    samples = round(protocol.trial_ms / protocol.record_dt_ms)
    steps = round(protocol.trial_ms / protocol.dt_ms)
    trace_bytes = trials * samples * 8
    table_bytes = trials * _inputs_per_trial(protocol) * EVENT_BYTES
    processes = dendrite.chunks
    return PlanBudget(
        cell=cell,
        trials=trials,
        samples=samples,
        compartments=compartments,
        processes=processes,
        trace_bytes=trace_bytes,
        memory_bytes=TRACE_COPIES * (trace_bytes + table_bytes) + processes * PROCESS_BYTES,
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
            "dendrite.protocol.pairs.max_pairs_per_kind, dendrite.protocol.multi.n_trials "
            "(or its inputs per trial, n_E and n_I), "
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


def dataset_status(name: str, source: Mapping, experiment: Mapping | None) -> tuple[bool, str]:
    """Whether the dataset's runs are planned, and why: skipped while its root is not set or
    it has no train.experiments entry; an InputError when the root is set but does not hold
    the data (unless it may be downloaded) or holds an empty file."""
    if not experiment:
        return False, f"no train.experiments.{name} entry"
    downloads = source.get("download") and name != "imagenet"
    if not source.get("root"):
        if downloads:
            return True, "downloaded when missing"
        return False, f"datasets.{name}.root is not set"
    root = Path(source["root"])
    expected = DATASET_FILES[name]
    if name == "imagenet":
        found = all((root / folder).is_dir() for folder in expected)
    else:
        files = [root / candidate for candidate in expected if (root / candidate).is_file()]
        empty = [str(path) for path in files if path.stat().st_size == 0]
        if empty:
            raise InputError(
                f"config key datasets.{name}.root: '{empty[0]}' is empty (0 bytes), a "
                f"download or copy cut short; replace it (or set root: null to skip {name})."
            )
        found = bool(files)
    if found:
        return True, f"from {root}"
    if downloads:
        return True, f"downloaded into {root}"
    raise InputError(
        f"config key datasets.{name}.root: '{root}' does not hold {' or '.join(expected)}; "
        f"fix the path, set datasets.{name}.download: true, or set root: null to skip {name}."
    )


def check_device_recipes(config: Mapping, datasets: list[str], device: str) -> None:
    """Each trained dataset names a recipe for the device the runs train on."""
    for dataset in datasets:
        chosen = config["datasets"][dataset]["recipe"]
        if isinstance(chosen, Mapping) and device not in chosen:
            raise InputError(
                f"config key datasets.{dataset}.recipe: no recipe for the device the runs "
                f"train on ({device}, train.device: {config['train']['device']}); it has "
                f"{', '.join(sorted(chosen))}. Add one, or set train.device."
            )


def check_training_tasks(processes: int, tasks: object) -> None:
    """A profile's tasks for the training job (None: not set) must be train.processes: the
    job trains through torchrun with that many processes."""
    tasks = getattr(tasks, "value", tasks)  # Snakemake's Resource, or a plain number
    if tasks is not None and int(tasks) != processes:
        raise InputError(
            f"config key train.processes: {processes}, but the profile gives each training "
            f"job {tasks} task(s) (set-resources: train: tasks); set both to the same number "
            "(docs/cluster.md)."
        )
