# Shared by all rule files - the checks the schema cannot express, the results root and the
# input functions. Every check runs when the workflow is read, before any job starts, and
# stops it in one line that names the config key.
import os
import re
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
    check_sync_bn,
    model_recipe,
    plan_budget,
)
from ann.errors import PriorError
from ann.priors import CONTROLS, MODES, PriorSettings

YAML_TEXT_NUMBER = re.compile(r"[+-]?(\d+|\d*\.\d+|\d+\.)[eE][+-]?\d+")


def check_yaml_numbers(node, key=""):
    """YAML reads 2e1 (an exponent without a decimal point) as text; say so, naming the key."""
    if isinstance(node, dict):
        for name, value in node.items():
            check_yaml_numbers(value, f"{key}.{name}" if key else str(name))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            check_yaml_numbers(value, f"{key}[{index}]")
    elif isinstance(node, str) and YAML_TEXT_NUMBER.fullmatch(node) and "." not in node:
        mantissa, exponent = re.split("[eE]", node)
        raise WorkflowError(
            f"config key {key}: '{node}' is text to YAML, which reads an exponent as a number "
            f"only with a decimal point; write {mantissa}.0e{exponent}."
        )


check_yaml_numbers(config)
validate(config, workflow.source_path("../schemas/config.schema.yaml"))


def canonical(value):
    """The value with the keys of every mapping sorted: params that compare equal however the
    config file orders its keys (Snakemake compares params by their text)."""
    if isinstance(value, dict):
        return {key: canonical(value[key]) for key in sorted(value)}
    if isinstance(value, list):
        return [canonical(item) for item in value]
    return value


RESULTS = config["results_dir"]
# What psp.nc depends on: the dendrite section without its run settings (dendrite.chunks).
SIMULATION_SETTINGS = canonical(simulation_settings(config["dendrite"]))
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
    """Build the cell (reading, repairing and segmenting an SWC file), choose its sites and
    estimate its simulation; refuse what cannot fit this machine."""
    spec = cell_morphology(config["dendrite"]["cells"][name])
    if not spec.startswith("builtin:") and not Path(spec).is_file():
        raise InputError(
            f"config key dendrite.cells.{name}: morphology file '{spec}' does not exist."
        )
    settings = DendriteConfig.from_mapping(cell_settings(config["dendrite"], name))
    built = load_cell(spec, settings)
    sites = select_sites(built.compartments(), settings.sites)
    budget = plan_budget(name, settings, len(sites), built.morphology.total_compartments)
    check_budget(budget)
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
    for dataset, experiment in config["train"]["experiments"].items():
        check_run_priors(f"train.experiments.{dataset}.priors", (experiment or {}).get("priors", []))
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


def dataset_status(name):
    """Whether the dataset's runs are planned, and why: skipped while its root is not set; an
    error when the root is set but does not hold the data (unless it may be downloaded)."""
    source = config["datasets"][name]
    if not config["train"]["experiments"].get(name):
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
        found = any((root / candidate).is_file() for candidate in expected)
    if found:
        return True, f"from {root}"
    if downloads:
        return True, f"downloaded into {root}"
    raise WorkflowError(
        f"config key datasets.{name}.root: '{root}' does not hold {' or '.join(expected)}; "
        f"fix the path, set datasets.{name}.download: true, or set root: null to skip {name}."
    )


DATASET_STATUS = {name: dataset_status(name) for name in config["datasets"]}
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


def training_config(wildcards):
    """Only the config keys this run depends on, so that editing one reruns exactly its runs:
    the dataset's entry with the recipe chosen for this model (datasets.<name>.model_recipes,
    else .recipe) as its `recipe`, that recipe, and this model's overrides. A multi-process CPU
    run of a recipe with sync_bn stops here, before any job starts. Of the priors section, what
    a run of its prior and mode depends on (PriorSettings.used_by)."""
    dataset, model, prior = wildcards.dataset, wildcards.model, wildcards.prior
    entry = config["datasets"][dataset]
    choice = model_recipe(dataset, entry, model)
    overrides = config["recipe_overrides"].get(dataset, {}).get(model, {})
    processes = config["train"]["processes"]
    device = planned_device() if processes > 1 else None
    name = choice.get(device) if isinstance(choice, dict) else choice
    if processes > 1 and name is not None:
        try:
            check_sync_bn(name, {**config["recipes"][name], **overrides}, processes, device)
        except InputError as err:
            raise WorkflowError(f"{dataset}/{model}: {err}") from None
    source = {key: value for key, value in entry.items() if key != "model_recipes"}
    return canonical(
        {
            "datasets": {dataset: {**source, "recipe": choice}},
            "recipes": {name: config["recipes"][name] for name in recipe_names(choice)},
            "recipe_overrides": {dataset: {model: overrides}},
            "priors": {} if prior == "none" else PRIOR_SETTINGS.used_by(PRIOR_SETTINGS.spec(prior)),
            "train": {k: v for k, v in config["train"].items() if k != "experiments"},
        }
    )


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
