# The prior ablation's plan (workflow/rules/ablation.smk): its config, checked when the
# workflow is read, its seeds, datasets and runs, and what the report rule reads.
import itertools
from types import SimpleNamespace

ABLATION_REFERENCE = "zero"  # the paper's K = 0: every other prior is compared with it
ABLATION = config.get("experiments", {}).get("prior_ablation", {"enabled": False})
ABLATION_DIR = f"{RESULTS}/experiments/prior_ablation"


def ablation_seeds():
    """The seeds for the device the runs train on: a list, or one list per device type."""
    seeds = ABLATION["seeds"]
    if isinstance(seeds, dict):
        device = planned_device()
        if device not in seeds:
            raise WorkflowError(
                f"config key experiments.prior_ablation.seeds names no seeds for device "
                f"'{device}'; it has {', '.join(sorted(seeds))}."
            )
        return seeds[device]
    return seeds


def ablation_dataset_status(name):
    """Whether the dataset's data are there (or may be downloaded), and why not."""
    source = config["datasets"][name]
    downloads = source.get("download") and name != "imagenet"
    if not source.get("root"):
        return bool(downloads), "downloaded when missing" if downloads else "no data root set"
    root, expected = Path(source["root"]), DATASET_FILES[name]
    if name == "imagenet":
        found = all((root / folder).is_dir() for folder in expected)
    else:
        found = any((root / candidate).is_file() for candidate in expected)
    if found or downloads:
        return True, f"from {root}"
    return False, f"no data at {root}"


def check_ablation():
    reference = ABLATION_REFERENCE
    if reference not in ABLATION["priors"]:
        raise WorkflowError(
            f"config key experiments.prior_ablation.priors: the reference prior '{reference}' "
            f"must be one of them (the others are compared with it, seed by seed)."
        )
    if 0 < len(ablation_seeds()) < 3:
        logger.warning(
            "experiments.prior_ablation: fewer than three seeds give no interval and no test; "
            "list three or more"
        )


if ABLATION["enabled"]:
    check_ablation()
    ABLATION_SEEDS = ablation_seeds()
    ABLATION_STATUS = {
        name: (
            ablation_dataset_status(name) if ABLATION_SEEDS else (False, "no seeds for this device")
        )
        for name in ABLATION["datasets"]
    }
    ABLATION_DATASETS = [name for name, (ready, _) in ABLATION_STATUS.items() if ready]
    logger.info(
        f"prior ablation: seeds {ABLATION_SEEDS}; "
        + "; ".join(
            f"{name} {'run' if ready else 'skipped'} ({why})"
            for name, (ready, why) in ABLATION_STATUS.items()
        )
    )
else:
    ABLATION_SEEDS, ABLATION_STATUS, ABLATION_DATASETS = [], {}, []


def ablation_runs(dataset):
    """Per run of the experiment on a dataset: its metrics.json and its prior file (if any)."""
    grid = [
        (model, prior if mode == "init" else f"{prior}+{mode}")
        for model in ABLATION["models"]
        for mode in ABLATION.get("modes", ["init"])
        for prior in ABLATION["priors"]
    ]
    if ABLATION.get("plain_model"):
        grid.append((ABLATION["plain_model"], "none"))
    runs = []
    for (model, prior), seed in itertools.product(grid, ABLATION_SEEDS):
        wildcards = SimpleNamespace(dataset=dataset, model=model, prior=prior, seed=seed)
        runs.append(
            {
                "metrics": f"{RESULTS}/train/{dataset}/{model}/{prior}/seed{seed}/metrics.json",
                "prior_file": prior_file(wildcards).get("prior"),
            }
        )
    return runs


def ablation_inputs(wildcards):
    return [path for run in ablation_runs(wildcards.dataset) for path in run.values() if path]


def ablation_files(dataset):
    folder = f"{ABLATION_DIR}/{dataset}"
    return {
        "statistics": f"{folder}/statistics.csv",
        "summary": f"{folder}/summary.csv",
        "learned_k": f"{folder}/learned_k.csv",
        "figures": {
            "differences": f"{folder}/figures/paired_differences.png",
            "learned_k": f"{folder}/figures/learned_k.png",
        },
    }


def lowdata_files():
    folder = f"{RESULTS}/experiments/prior_lowdata"
    return {
        "statistics": f"{folder}/statistics.csv",
        "runs": f"{folder}/runs.csv",
        "survival": f"{folder}/survival.csv",
        "lr_sweep": f"{folder}/choices/lr_sweep.csv",
        "anchor_sweep": f"{folder}/choices/anchor_sweep.csv",
        "figures": {
            "contrasts": f"{folder}/figures/contrasts.png",
            "survival": f"{folder}/figures/survival.png",
        },
    }


# The report's inputs and params (workflow/rules/report.smk); none when both experiments are off.
ABLATION_REPORT = {dataset: ablation_files(dataset) for dataset in ABLATION_DATASETS}
LOWDATA_ON = config.get("experiments", {}).get("prior_lowdata", {}).get("enabled", False)
LOWDATA_REPORT = lowdata_files() if LOWDATA_ON and "fashion_mnist" in TRAINED_DATASETS else None
ABLATION_PAGE = (
    {
        "datasets": ABLATION_REPORT,
        "skipped": {name: why for name, (ready, why) in ABLATION_STATUS.items() if not ready},
        "sample_epochs": ABLATION.get("sample_epochs", []),
        "seeds": ABLATION_SEEDS,
        "device": planned_device() if ABLATION["enabled"] else None,
        "lowdata": LOWDATA_REPORT,
        "lowdata_skipped": (
            None
            if LOWDATA_REPORT or not LOWDATA_ON
            else "Fashion-MNIST is not trained (datasets.fashion_mnist.root)"
        ),
        "statistics": canonical(STATISTICS),
    }
    if ABLATION["enabled"] or LOWDATA_ON
    else None
)
