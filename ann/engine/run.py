"""What one training run is (Run) and how it is made from the pipeline's config: the
`train:` section (TrainSettings), the dataset's recipe and the `priors:` section, after
checking config.yaml against the workflow's schema."""

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml

from ann.data import DatasetSource
from ann.errors import ConfigError, DatasetError
from ann.recipes import Recipe, recipe_name, resolve_recipe
from ann.sections import checked_choice, checked_keys
from ann.settings import PriorSettings
from dendrite_sim.config_file import ConfigFileError, non_finite_number, read_config_file

from .distributed import device_type

__all__ = ["Experiment", "Run", "TrainSettings", "read_config", "run_from_config"]

DEVICES = ("auto", "cpu", "cuda")
COMPILE = ("auto", True, False)
SCHEMA = Path(__file__).resolve().parents[2] / "workflow" / "schemas" / "config.schema.yaml"


@dataclass(frozen=True)
class Experiment:
    """What the workflow trains on one dataset (`train.experiments.<dataset>`): every model,
    with each prior for the models that have quadratic layers, at each seed."""

    models: tuple[str, ...]
    seeds: tuple[int, ...]
    priors: tuple[str, ...] = ("zero",)

    @classmethod
    def from_mapping(cls, values: object, where: str) -> "Experiment":
        """The section; its prior names are checked against the priors section by the workflow
        (PriorSettings.spec)."""
        values = checked_keys(cls, values, where)
        return cls(**{key: tuple(value) for key, value in values.items()})


@dataclass(frozen=True)
class TrainSettings:
    """The `train:` section of the config. Its defaults are the schema's
    (workflow/schemas/config.schema.yaml; a test checks they agree)."""

    device: str  # auto (CUDA when present), cpu or cuda
    experiments: Mapping[str, Experiment]
    compile: bool | str = "auto"  # auto: on CUDA, off on the CPU
    threads: int = 1  # CPU threads per training job
    processes: int = 1  # >1: the job trains through torchrun

    @classmethod
    def from_mapping(cls, values: object, where: str = "train") -> "TrainSettings":
        values = checked_keys(cls, values, where)
        checked_choice(values["device"], DEVICES, f"{where}.device")
        checked_choice(values.get("compile", "auto"), COMPILE, f"{where}.compile")
        for key in ("threads", "processes"):
            if key in values and not (isinstance(values[key], int) and values[key] >= 1):
                raise ConfigError(f"{where}.{key} must be a positive integer, got {values[key]!r}.")
        experiments = values["experiments"] or {}
        values["experiments"] = {
            dataset: Experiment.from_mapping(experiment, f"{where}.experiments.{dataset}")
            for dataset, experiment in experiments.items()
        }
        return cls(**values)


@dataclass
class Run:
    """One training run: what to train, with which recipe and settings, where to write."""

    dataset: str
    model: str
    prior: str
    seed: int
    out: Path
    recipe: Recipe
    device: str  # train.device, or the command line's --device
    compile: bool | str  # train.compile, or --compile
    priors: PriorSettings
    root: str | None = None
    download: bool = False
    threads: int | None = None  # CPU threads (None: leave the process's count)
    micro_batches: int = 1  # gradient accumulation steps
    prior_file: Path | None = None  # prior weights from the build_prior rule
    kappa: Path | None = None  # kappa.nc for the bio and shuffled priors
    recipe_name: str | None = None  # the config's name of the recipe (metrics.json records it)

    def labels(self) -> dict[str, str | int]:
        """What names the run in metrics.json (its identity, ann.engine.identity, has more)."""
        return {
            "dataset": self.dataset,
            "model": self.model,
            "prior": self.prior,
            "seed": self.seed,
        }


def run_from_config(
    config: Mapping,
    dataset: str,
    model: str,
    prior: str,
    seed: int,
    out: Path,
    overrides: Mapping | None = None,
    *,
    device: str | None = None,
    compile: bool | str | None = None,  # noqa: A002  (the config key's name)
    threads: int | None = None,
    micro_batches: int = 1,
    prior_file: Path | None = None,
    kappa: Path | None = None,
) -> Run:
    """A Run for (dataset, model, prior, seed) from the pipeline's config.yaml contents;
    `device` and `compile`, when not None, replace train.device and train.compile. The recipe
    is the one chosen for the model on the dataset (`datasets.<name>.model_recipes`, else
    `datasets.<name>.recipe`) for the device the run trains on."""
    if dataset not in config["datasets"]:
        raise DatasetError(f"no dataset '{dataset}' under datasets in the config.")
    if not 0 <= seed < 2**32:
        raise ConfigError(
            f"seed {seed} is outside [0, 2^32), the range of numpy's and torch's seeds."
        )
    source = DatasetSource.from_mapping(config["datasets"][dataset], f"datasets.{dataset}")
    settings = TrainSettings.from_mapping(config["train"])
    device = device or settings.device
    checked_choice(device, DEVICES, "--device")
    name = recipe_name(config, dataset, device_type(device), model)
    return Run(
        dataset=dataset,
        model=model,
        prior=prior,
        seed=seed,
        out=Path(out),
        recipe=resolve_recipe(config, dataset, model, overrides, device_type(device)),
        device=device,
        compile=settings.compile if compile is None else compile,
        priors=PriorSettings.from_mapping(config["priors"]),
        root=source.root,
        download=source.download,
        threads=threads,
        micro_batches=micro_batches,
        prior_file=prior_file,
        kappa=kappa,
        recipe_name=name,
    )


def read_config(
    path: str | Path, dataset: str, overrides: Mapping, device: str, model: str | None = None
) -> dict:
    """config.yaml, read strictly (dendrite_sim.config_file: no repeated key, no alias bomb)
    and checked against the workflow's schema (the one Snakemake validates with), with the
    --set overrides applied to the recipe the run uses (the model's, when given); every number
    must be finite."""
    import jsonschema

    try:
        config = read_config_file(path)
    except ConfigFileError as err:
        raise ConfigError(str(err)) from None
    checked = copy.deepcopy(config)
    if overrides and dataset in checked.get("datasets", {}):
        name = recipe_name(checked, dataset, device_type(device), model)
        checked["recipes"][name] = {**checked["recipes"][name], **overrides}
    override, value = non_finite_number(overrides), non_finite_number(config)
    if override or value:
        where = f"--set {override}" if override else f"{path}: config key {value}"
        raise ConfigError(f"{where}: every number must be finite (NaN and infinities are refused).")
    schema = yaml.safe_load(SCHEMA.read_text())
    error = jsonschema.exceptions.best_match(
        jsonschema.Draft202012Validator(schema).iter_errors(checked)
    )
    if error is not None:
        key = ".".join(str(part) for part in error.absolute_path) or "(top level)"
        from_cli = key.startswith("recipes.") and key.split(".")[-1] in overrides
        where = f"--set {key.split('.')[-1]}" if from_cli else f"{path}: config key {key}"
        raise ConfigError(f"{where}: {error.message}")
    return config
