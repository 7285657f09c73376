# Shared by all rule files - the checks the schema cannot express, the results root and the
# input functions. Every check runs when the workflow is read, before any job starts, and
# stops it in one line that names the config key.
import os
import re
import shutil
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.logging import logger
from snakemake.utils import validate

# The workflow's glue (workflow/pipeline) is imported as `pipeline`: by the rule files here,
# and by the scripts of the jobs, which inherit PYTHONPATH (a SLURM job reads this file again).
GLUE_PATH = str(Path(workflow.basedir) / "workflow")
sys.path.insert(0, GLUE_PATH)
os.environ.update(
    PYTHONPATH=os.pathsep.join(
        [GLUE_PATH, *filter(None, os.getenv("PYTHONPATH", "").split(os.pathsep))]
    )
)

from dendrite_sim.dataset import cell_morphology, cell_overrides, cell_settings, simulation_settings
from dendrite_sim.config import DendriteConfig
from dendrite_sim.errors import InputError
from dendrite_sim.figures import FIGURES
from dendrite_sim.morphology import load_cell
from dendrite_sim.sites import select_sites
from pipeline.plan_checks import (
    DATASET_FILES,
    check_budget,
    check_config,
    check_prior_cell,
    check_config_values,
    check_device_recipes,
    check_sync_bn,
    check_training_tasks,
    count_compartments,
    dataset_status,
    drop_removed_entries,
    model_recipe,
    plan_budget,
    results_folder,
    schema_problem,
)
from pipeline.sweeps import SWEEPS, check_sweeps
from ann.errors import PriorError
from ann.settings import CONTROLS, MODES, PriorSettings

SCHEMA = workflow.source_path("../schemas/config.schema.yaml")


def check_config_keys():
    """The config's values (every number finite) and the schema, each problem in one line
    that names the key; then Snakemake's own validation, which fills in the defaults."""
    try:
        drop_removed_entries(config)
        check_config_values(config)
    except InputError as err:
        raise WorkflowError(str(err)) from None
    problem = schema_problem(config, SCHEMA)
    if problem:
        raise WorkflowError(problem)
    validate(config, SCHEMA)


check_config_keys()


def canonical(value):
    """The value with the keys of every mapping sorted: params that compare equal however the
    config file orders its keys (Snakemake compares params by their text)."""
    if isinstance(value, dict):
        return {key: canonical(value[key]) for key in sorted(value)}
    if isinstance(value, list):
        return [canonical(item) for item in value]
    return value


try:
    RESULTS = results_folder(config["results_dir"])
except InputError as err:
    raise WorkflowError(str(err)) from None
# What psp.nc depends on: the dendrite section without its run settings (dendrite.chunks).
SIMULATION_SETTINGS = canonical(simulation_settings(config["dendrite"]))
# The training's run settings: how fast, not what (docs/reruns.md).
TRAIN_RUN_SETTINGS = ("threads", "compile")
# The config without run settings: what the report copies (report/config.yaml), so that a
# change of run settings reruns nothing.
RESULT_SETTINGS = canonical(
    {
        **config,
        "dendrite": SIMULATION_SETTINGS,
        "train": {k: v for k, v in config["train"].items() if k not in TRAIN_RUN_SETTINGS},
    }
)
CELLS = list(config["dendrite"]["cells"])
# Per cell, the settings it is simulated with (its own overrides merged in, only its own entry
# under cells): the params of its rules, so that editing one cell reruns only that cell.
CELL_SETTINGS = {
    cell: canonical(simulation_settings(cell_settings(config["dendrite"], cell))) for cell in CELLS
}


def morphology_file(cell):
    """The SWC file of a cell as a list (empty for built-in cells): an input of the rules
    that build the cell, so that editing the file reruns them."""
    spec = cell_morphology(config["dendrite"]["cells"][cell])
    return [] if spec.startswith("builtin:") else [spec]


def cell_budget(name):
    """Estimate the cell's simulation from counts (compartments, trials, inputs) and refuse
    what cannot fit this machine; then build the cell (reading, repairing and segmenting an
    SWC file) and choose its sites."""
    spec = cell_morphology(config["dendrite"]["cells"][name])
    if not spec.startswith("builtin:") and not Path(spec).is_file():
        raise InputError(
            f"config key dendrite.cells.{name}: morphology file '{spec}' does not exist."
        )
    settings = DendriteConfig.from_mapping(cell_settings(config["dendrite"], name))
    compartments = count_compartments(name, spec, settings)
    n_sites = len(settings.sites.explicit) or settings.sites.n_sites
    budget = plan_budget(name, settings, n_sites, compartments)
    check_budget(budget)
    select_sites(load_cell(spec, settings).compartments(), settings.sites)
    logger.info(budget.describe())
    return budget


def check_cell_settings():
    """The config checks again for each cell with settings of its own, naming the cell."""
    check_config(config["dendrite"], config["kappa"])
    check_sweeps(config["dendrite"], config["kappa"], config["sweeps"])
    for name in CELLS:
        if cell_overrides(config["dendrite"]["cells"][name]):
            try:
                check_config(cell_settings(config["dendrite"], name), config["kappa"])
            except InputError as err:
                raise InputError(f"cell {name} (dendrite.cells.{name} overrides): {err}") from None


# Priors (ann.priors): zero, bio and its controls (shuffled, block_mean, sites_permuted,
# spectrum_matched), and each named prior of priors.biological with its own controls
# (bio_nmda, bio_nmda_shuffled, ...); a run names one with its mode: bio, bio+anchor, ...
try:
    PRIOR_SETTINGS = PriorSettings.from_mapping(config["priors"])
except PriorError as err:
    raise WorkflowError(str(err)) from None
PRIOR_NAMES = PRIOR_SETTINGS.names()
BUILT_PRIORS = [name for name in PRIOR_NAMES if name != "zero"]  # what build_prior makes
PRIOR_CELLS = {name: PRIOR_SETTINGS.spec(name).cell for name in BUILT_PRIORS}
RUN_PRIOR = rf"(none|({'|'.join(PRIOR_NAMES)})(\+({'|'.join(MODES)}))?)"  # the run's wildcard


# The declared analysis of the prior experiments (experiments.statistics; docs/statistics.md).
STATISTICS = config.get("experiments", {}).get(
    "statistics", {"endpoint": "final_test_top1", "margin_pp": 0.3, "alpha": 0.05, "power": 0.8}
)


def check_run_priors(key, priors):
    for prior in priors:
        try:
            PRIOR_SETTINGS.spec(prior)
        except PriorError as err:
            raise InputError(f"config key {key}: {err}") from None


def check_priors():
    for name, cell in config["priors"].get("biological", {}).items():
        if cell not in CELLS:
            raise InputError(
                f"config key priors.biological.{name}: cell '{cell}' is not one of the cells "
                f"under dendrite.cells ({', '.join(CELLS)})."
            )
    if config["priors"]["cell"] not in CELLS:
        raise InputError(
            f"config key priors.cell: '{config['priors']['cell']}' is not one of the cells "
            f"under dendrite.cells ({', '.join(CELLS)})."
        )
    for prior, cell in PRIOR_CELLS.items():
        check_prior_cell(prior, cell, cell_settings(config["dendrite"], cell))
    for dataset, experiment in config["train"]["experiments"].items():
        check_run_priors(
            f"train.experiments.{dataset}.priors", (experiment or {}).get("priors", [])
        )
    for name in ("prior_ablation", "prior_lowdata"):
        section = config.get("experiments", {}).get(name, {})
        check_run_priors(f"experiments.{name}.priors", section.get("priors", []))


def check_plan():
    check_cell_settings()
    check_priors()
    return {name: cell_budget(name) for name in CELLS}


try:
    PLAN_BUDGETS = check_plan()
except InputError as err:
    raise WorkflowError(str(err)) from None


def recipe_names(chosen):
    """The recipe names of a recipe choice: one, or one per device type."""
    return list(chosen.values()) if isinstance(chosen, dict) else [chosen]


def check_recipes():
    for dataset, entry in config["datasets"].items():
        chosen = {"recipe": entry["recipe"]}
        models = entry.get("model_recipes") or {}
        chosen |= {f"model_recipes.{k}": v for k, v in models.items()}
        for key, choice in chosen.items():
            for name in recipe_names(choice):
                if name not in config["recipes"]:
                    raise WorkflowError(
                        f"config key datasets.{dataset}.{key}: no recipe named '{name}' under "
                        f"recipes (there are: {', '.join(config['recipes'])})."
                    )
        for model in (config["train"]["experiments"].get(dataset) or {}).get("models", []):
            model_recipe(dataset, entry, model)  # one pattern per model


try:
    check_recipes()
except InputError as err:
    raise WorkflowError(str(err)) from None


try:
    DATASET_STATUS = {
        name: dataset_status(name, source, config["train"]["experiments"].get(name))
        for name, source in config["datasets"].items()
    }
except InputError as err:
    raise WorkflowError(str(err)) from None
TRAINED_DATASETS = [name for name, (enabled, _) in DATASET_STATUS.items() if enabled]
logger.info(
    "datasets: "
    + "; ".join(
        f"{name} {'trained' if enabled else 'skipped'} ({why})"
        for name, (enabled, why) in DATASET_STATUS.items()
    )
)


def experiment_runs(dataset):
    """(model, prior, seed) of every run configured for a dataset."""
    experiment = config["train"]["experiments"].get(dataset)
    if not experiment:
        return []
    return [
        (model, prior, seed)
        for model in experiment["models"]
        for prior in (experiment.get("priors", ["zero"]) if model.startswith("dit_") else ["none"])
        for seed in experiment["seeds"]
    ]


def run_metrics(dataset):
    return [
        f"{RESULTS}/train/{dataset}/{model}/{prior}/seed{seed}/metrics.json"
        for model, prior, seed in experiment_runs(dataset)
    ]


# Input functions of the training rule (workflow/rules/train.smk).
def prior_settings(prior):
    """The priors section as one built prior's file depends on: its cell and the mapping's
    choices (not the other named priors, not how the prior acts in training)."""
    spec = PRIOR_SETTINGS.spec(prior)
    return canonical({"cell": spec.cell, **PRIOR_SETTINGS.options()})


def prior_kappa(wildcards):
    """The kappa.nc a built prior reads: its own cell's."""
    return f"{RESULTS}/dendrite/{PRIOR_CELLS[wildcards.prior]}/kappa.nc"


def prior_file(wildcards):
    name = wildcards.prior.partition("+")[0]
    if name in BUILT_PRIORS:
        return {"prior": f"{RESULTS}/priors/{wildcards.model}/{name}/seed{wildcards.seed}.pt"}
    return {}


def planned_device():
    """cuda or cpu: where the training jobs will run (train.device; auto: CUDA when present)."""
    device = config["train"]["device"]
    if device != "auto":
        return device
    if shutil.which("nvidia-smi") is None:
        return "cpu"  # no NVIDIA driver: no need to import torch to know
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def training_config(wildcards):
    """Only the config keys this run's numbers depend on (the run's identity, docs/reruns.md),
    so that editing one reruns exactly its runs: its dataset's entry without the recipe choice,
    the recipe chosen for this model on the planned device (datasets.<name>.model_recipes, else
    .recipe) with its name, this model's overrides, what its prior and mode depend on
    (PriorSettings.used_by), the device type and the number of processes. Not train.threads or
    train.compile (the same numbers), nor another device's or model's recipe. A multi-process
    CPU run of a recipe with sync_bn stops here, before any job starts."""
    dataset, model, prior = wildcards.dataset, wildcards.model, wildcards.prior
    entry = config["datasets"][dataset]
    choice = model_recipe(dataset, entry, model)
    device = planned_device()
    name = choice.get(device) if isinstance(choice, dict) else choice
    if name is None:
        raise WorkflowError(
            f"config key datasets.{dataset}: no recipe for {model} on the device the runs "
            f"train on ({device}); add one, or set train.device."
        )
    overrides = config["recipe_overrides"].get(dataset, {}).get(model, {})
    processes = config["train"]["processes"]
    if processes > 1:
        try:
            check_sync_bn(name, {**config["recipes"][name], **overrides}, processes, device)
        except InputError as err:
            raise WorkflowError(f"{dataset}/{model}: {err}") from None
    source = {k: v for k, v in entry.items() if k not in ("recipe", "model_recipes")}
    return canonical(
        {
            "datasets": {dataset: source},
            "recipe": {"name": name, **config["recipes"][name]},
            "recipe_overrides": overrides,
            "priors": {} if prior == "none" else PRIOR_SETTINGS.used_by(PRIOR_SETTINGS.spec(prior)),
            "train": {"device": device, "processes": processes},
        }
    )


def check_training_plan():
    """The planned device has a recipe for every dataset with data, and a profile that sets the
    training job's tasks (set-resources: train: tasks) gives it train.processes of them."""
    resources = workflow.resource_settings.overwrite_resources.get("train") or {}
    try:
        # every dataset with data may train: in the grid or in the prior ablation
        with_data = [n for n, s in config["datasets"].items() if s.get("root") or s.get("download")]
        check_device_recipes(config, with_data, planned_device())
        check_training_tasks(config["train"]["processes"], resources.get("tasks"))
    except InputError as err:
        raise WorkflowError(str(err)) from None


check_training_plan()


# Input functions of the report rules (workflow/rules/report.smk).
def dendrite_inputs(cell):
    folder = f"{RESULTS}/dendrite/{cell}"
    figures = {name: f"{folder}/figures/{name}.png" for name in KAPPA_FIGURES + ["morphology"]}
    if cell == config["sweeps"]["cell"]:  # the sweeps' figures go on their cell's page
        figures |= {
            f"sweep_{name}": f"{RESULTS}/dendrite/sweeps/figures/{name}.png" for name in SWEEP_NAMES
        }
    return {"kappa": f"{folder}/kappa.nc", "psp": f"{folder}/psp.nc", "figures": figures}


def dataset_inputs(dataset):
    folder = f"{RESULTS}/train/{dataset}"
    return {
        "metrics": run_metrics(dataset),
        "summary": f"{folder}/summary.csv",
        "runs": f"{folder}/runs.csv",
        "figures": {
            "curves": f"{folder}/figures/training_curves.png",
            "ablation": f"{folder}/figures/prior_ablation.png",
        },
    }


def flat_paths(nested):
    if isinstance(nested, dict):
        return [p for value in nested.values() for p in flat_paths(value)]
    if isinstance(nested, list):
        return [p for value in nested for p in flat_paths(value)]
    return [nested]
