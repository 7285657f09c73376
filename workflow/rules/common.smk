# Shared by every rule file: the results root and checks the schema cannot express.
from pathlib import Path

from snakemake.exceptions import WorkflowError

from dendrite_sim.errors import InputError
from dendrite_sim.swc import read_cell

RESULTS = config["results_dir"]


def check_morphologies(cells):
    for name, spec in cells.items():
        if spec.startswith("builtin:"):
            continue
        if not Path(spec).is_file():
            raise InputError(
                f"config key dendrite.cells.{name}: morphology file '{spec}' does not exist."
            )
        read_cell(spec)  # the file's rows, its tree and its sections


def morphology_file(cell):
    """The SWC file of a cell as a list (empty for built-in cells): an input of the rules
    that build the cell, so that editing the file reruns them."""
    spec = config["dendrite"]["cells"][cell]
    return [] if spec.startswith("builtin:") else [spec]


try:
    check_morphologies(config["dendrite"]["cells"])
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


def dataset_present(name):
    """Whether a dataset's files are where the config says (or may be downloaded)."""
    source = config["datasets"][name]
    if source.get("download") and name != "imagenet":
        return True
    root = Path(source["root"]) if source.get("root") else None
    if root is None:
        return False
    expected = {
        "fashion_mnist": [
            "train-images-idx3-ubyte.gz",
            "FashionMNIST/raw/train-images-idx3-ubyte.gz",
        ],
        "cifar10": ["cifar-10-batches-py/data_batch_1", "data_batch_1"],
        "cifar100": ["cifar-100-python/train", "train"],
        "imagenet": ["train", "val"],
    }[name]
    if name == "imagenet":
        return all((root / folder).is_dir() for folder in expected)
    return any((root / candidate).is_file() for candidate in expected)


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


TRAINED_DATASETS = [d for d in config["train"]["experiments"] if dataset_present(d)]
