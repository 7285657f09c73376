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
    check_training_tasks,
    count_compartments,
    dataset_status,
    drop_removed_entries,
    plan_budget,
    results_folder,
    schema_problem,
)

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
    for name in CELLS:
        if cell_overrides(config["dendrite"]["cells"][name]):
            try:
                check_config(cell_settings(config["dendrite"], name), config["kappa"])
            except InputError as err:
                raise InputError(f"cell {name} (dendrite.cells.{name} overrides): {err}") from None


# Named priors: zero, shuffled (the control of bio) and one per biological prior, each built
# like bio from its own cell's kappa: bio from priors.cell, the others from priors.biological.
RESERVED_PRIORS = ("none", "zero", "bio", "shuffled")
PRIOR_CELLS = {"bio": config["priors"]["cell"], **config["priors"].get("biological", {})}
BUILT_PRIORS = [*PRIOR_CELLS, "shuffled"]  # the priors the build_prior rule makes
PRIOR_NAMES = ["zero", *BUILT_PRIORS]


def check_priors():
    for name, cell in config["priors"].get("biological", {}).items():
        key = f"priors.biological.{name}"
        if name in RESERVED_PRIORS:
            raise InputError(
                f"config key {key}: '{name}' is a built-in prior name ({', '.join(RESERVED_PRIORS)}); "
                "choose another name (bio is priors.cell's prior)."
            )
        if cell not in CELLS:
            raise InputError(
                f"config key {key}: cell '{cell}' is not one of the cells under dendrite.cells "
                f"({', '.join(CELLS)})."
            )
    if config["priors"]["cell"] not in CELLS:
        raise InputError(
            f"config key priors.cell: '{config['priors']['cell']}' is not one of the cells "
            f"under dendrite.cells ({', '.join(CELLS)})."
        )
    for prior, cell in PRIOR_CELLS.items():
        check_prior_cell(prior, cell, cell_settings(config["dendrite"], cell))
    for dataset, experiment in config["train"]["experiments"].items():
        for prior in (experiment or {}).get("priors", []):
            if prior not in PRIOR_NAMES:
                raise InputError(
                    f"config key train.experiments.{dataset}.priors: no prior named '{prior}' "
                    f"(there are: {', '.join(PRIOR_NAMES)}; add more under priors.biological)."
                )
    ablation = config.get("experiments", {}).get("prior_ablation", {})
    for prior in ablation.get("priors", []):
        if prior not in PRIOR_NAMES:
            raise InputError(
                f"config key experiments.prior_ablation.priors: no prior named '{prior}' "
                f"(there are: {', '.join(PRIOR_NAMES)}; add more under priors.biological)."
            )


def check_plan():
    check_cell_settings()
    check_priors()
    return {name: cell_budget(name) for name in CELLS}


try:
    PLAN_BUDGETS = check_plan()
except InputError as err:
    raise WorkflowError(str(err)) from None


def dataset_recipes(dataset):
    """The recipe names of a dataset: one, or one per device type."""
    chosen = config["datasets"][dataset]["recipe"]
    return list(chosen.values()) if isinstance(chosen, dict) else [chosen]


def check_recipes():
    for dataset in config["datasets"]:
        for name in dataset_recipes(dataset):
            if name not in config["recipes"]:
                raise WorkflowError(
                    f"config key datasets.{dataset}.recipe: no recipe named '{name}' under "
                    f"recipes (there are: {', '.join(config['recipes'])})."
                )


check_recipes()


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
    """The priors section as one built prior depends on: its cell (priors.cell for bio and
    shuffled) and the mapping's settings, without the other named priors."""
    cell = PRIOR_CELLS.get(prior, config["priors"]["cell"])
    settings = {k: v for k, v in config["priors"].items() if k != "biological"}
    return canonical(settings | {"cell": cell})


def prior_kappa(wildcards):
    """The kappa.nc a built prior reads: its own cell's (shuffled: bio's, priors.cell)."""
    cell = PRIOR_CELLS.get(wildcards.prior, config["priors"]["cell"])
    return f"{RESULTS}/dendrite/{cell}/kappa.nc"


def prior_file(wildcards):
    if wildcards.prior in BUILT_PRIORS:
        return {
            "prior": f"{RESULTS}/priors/{wildcards.model}/{wildcards.prior}/seed{wildcards.seed}.pt"
        }
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


def planned_recipe(dataset):
    """The name of the recipe a dataset's runs train with on the planned device."""
    chosen = config["datasets"][dataset]["recipe"]
    return chosen[planned_device()] if isinstance(chosen, dict) else chosen


def training_config(wildcards):
    """Only the config keys this run's numbers depend on (the run's identity, docs/reruns.md),
    so that editing one reruns exactly its runs: its dataset's files, its recipe on the
    planned device, the prior's settings, the device type and the number of processes. Not
    train.threads or train.compile (the same numbers), nor another device's recipe."""
    dataset, model = wildcards.dataset, wildcards.model
    source = config["datasets"][dataset]
    return canonical(
        {
            "datasets": {dataset: {k: v for k, v in source.items() if k != "recipe"}},
            "recipe": config["recipes"][planned_recipe(dataset)],
            "recipe_overrides": config["recipe_overrides"].get(dataset, {}).get(model, {}),
            "priors": prior_settings(wildcards.prior) if wildcards.prior in BUILT_PRIORS else {},
            "train": {"device": planned_device(), "processes": config["train"]["processes"]},
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
