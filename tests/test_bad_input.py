"""Bad input gives one clear message naming the thing, and leaves no output behind."""

import copy
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import xarray as xr
import yaml
from conftest import run_snakemake, snakemake_cli, snakemake_command
from snakemake.utils import validate

from dendrite_sim.config import DendriteConfig, Protocol, from_mapping
from dendrite_sim.errors import InputError
from dendrite_sim.morphology import compartment_table, load_cell, load_morphology
from dendrite_sim.protocols import plan_trials
from dendrite_sim.sites import explicit_sites
from dendrite_sim.swc import read_swc
from pipeline import dendrite as stages
from pipeline.files import save_netcdf

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT / "workflow/schemas/config.schema.yaml"

GOOD_SWC = """# soma and one dendrite
1 1 0 0 0 10 -1
2 3 0 10 0 1 1
3 3 0 60 0 1 2
4 3 0 110 0 1 3
"""


@pytest.mark.parametrize(
    "rows, line, fragment",
    [
        ("1 1 0 0 0 10 -1\n2 3 0 10 0 1\n", 2, "expected 7 columns"),
        ("1 1 0 0 0 10 -1\n2 3 0 ten 0 1 1\n", 2, "must be a number"),
        ("1 1 0 0 0 10 -1\n# comment\n2 3 0 10 0 -1 1\n", 3, "radius must be positive"),
        ("1 1 0 0 0 10 -1\n1 3 0 10 0 1 1\n", 2, "appears twice"),
        ("1 1 0 0 0 10 -1\n2 3 0 10 0 1 7\n", 2, "parent 7"),
        ("1 1 0 0 0 10 -1\n2 3 0 10 0 1 -1\n", 2, "second root"),
        ("1 1 0 0 0 10 -1\n2.5 3 0 10 0 1 1\n", 2, "integers"),
    ],
)
def test_malformed_swc_names_file_and_line(tmp_path, default_config, rows, line, fragment):
    path = tmp_path / "cell.swc"
    path.write_text(rows)
    with pytest.raises(InputError) as err:
        load_morphology(str(path), DendriteConfig.from_mapping(default_config["dendrite"]))
    message = str(err.value)
    assert f"'{path}'" in message and f"line {line}:" in message and fragment in message


def test_missing_or_empty_swc(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        read_swc(tmp_path / "nope.swc")
    (tmp_path / "empty.swc").write_text("# nothing\n")
    with pytest.raises(InputError, match="no points"):
        read_swc(tmp_path / "empty.swc")


def test_good_swc_loads_with_its_compartments(tmp_path, small_dendrite):
    path = tmp_path / "cell.swc"
    path.write_text(GOOD_SWC)
    table = load_cell(str(path), DendriteConfig.from_mapping(small_dendrite)).compartments()
    assert table.branch.tolist() == ["soma"] + ["dend[0]"] * 5
    # the dendrite starts at its first point, on the soma's surface (Import3d's wire),
    # 100 um long: d_lambda asks for 3 compartments, max_compartment_um (20) for 5
    assert table.distance_um.tolist() == pytest.approx([0.0, 10.0, 30.0, 50.0, 70.0, 90.0])
    assert table.y_um.tolist() == pytest.approx([0.0, 20.0, 40.0, 60.0, 80.0, 100.0])


@pytest.fixture(scope="module")
def pyramidal_table(default_config):
    return compartment_table(
        load_morphology(
            "builtin:pyramidal", DendriteConfig.from_mapping(default_config["dendrite"])
        )
    )


@pytest.mark.parametrize(
    "spec, fragment",
    [
        ([{"compartment": 10_000}], "out of range"),
        ([{"branch": "trunk.nowhere", "x": 0.5}], "no branch 'trunk.nowhere'"),
        ([{"branch": "basal1", "x": 1.5}], "x = 1.5 is out of range"),
    ],
)
def test_bad_explicit_site(pyramidal_table, spec, fragment):
    with pytest.raises(InputError, match="dendrite.sites.explicit") as err:
        explicit_sites(pyramidal_table, spec)
    assert fragment in str(err.value)


def test_unknown_protocol_kind(pyramidal_table, small_dendrite):
    protocol = copy.deepcopy(small_dendrite["protocol"])
    protocol["kinds"] = ["single", "quadruples"]
    sites = explicit_sites(pyramidal_table, [{"compartment": 5}])
    with pytest.raises(InputError, match="unknown protocol kind.*quadruples"):
        plan_trials(sites, from_mapping(Protocol, protocol, "dendrite.protocol"))


def test_input_outside_the_trial(pyramidal_table, small_dendrite):
    protocol = copy.deepcopy(small_dendrite["protocol"])
    protocol["timing"]["delta_t_ms"] = [-50.0]
    sites = explicit_sites(pyramidal_table, [{"compartment": 5}])
    with pytest.raises(InputError, match="outside the trial"):
        plan_trials(sites, from_mapping(Protocol, protocol, "dendrite.protocol"))


def _set(config: dict, dotted: str, value) -> dict:
    *parents, leaf = dotted.split(".")
    node = config
    for key in parents:
        node = node[key]
    if value is DELETE:
        del node[leaf]
    else:
        node[leaf] = value
    return config


DELETE = object()
BAD_CONFIGS = [
    ("dendrite.sites.n_sites", "eight", "n_sites"),
    ("dendrite.protocol.trial_ms", -100.0, "trial_ms"),
    ("dendrite.protocol.dt_ms", 0, "dt_ms"),
    ("dendrite.membrane.Rm_ohm_cm2", DELETE, "Rm_ohm_cm2"),
    ("dendrite.surprise", 1, "surprise"),
    ("dendrite.protocol.kinds", ["single", "triples"], "kinds"),
    ("dendrite.cells.pyramidal", "builtin:octopus", "pyramidal"),
    ("dendrite.protocol.strengths_nS.E", [], "E"),
    ("dendrite.protocol.strengths_nS.I", [1.0, -2.0], "I"),
    ("dendrite.chunks", 0, "chunks"),
    ("dendrite.protocol.pairs.kinds", ["IE"], "kinds"),
    ("dendrite.sites.explicit", [{"x": 0.5}], "explicit"),
    ("dendrite.synapses.E.tau_decay_ms", -3.0, "tau_decay_ms"),
    ("results_dir", 42, "results_dir"),
    ("recipes.imagenet.data_pipeline", "dali", "data_pipeline"),
]


@pytest.mark.parametrize("key, value, named", BAD_CONFIGS, ids=[b[0] for b in BAD_CONFIGS])
def test_bad_config_is_rejected_naming_the_key(config, key, value, named):
    validate(copy.deepcopy(config), str(SCHEMA))  # the shipped config is valid
    with pytest.raises(Exception) as err:
        validate(_set(config, key, value), str(SCHEMA))
    assert named in str(err.value)


def snakemake_dry_run(
    tmp_path: Path, *config: str, configfile: Path = ROOT / "config.yaml"
) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "snakemake", "-n", "--cores", "1", "-d", str(tmp_path)]
    command += ["-s", str(ROOT / "Snakefile"), "--configfile", str(configfile)]
    return snakemake_cli(command + (["--config", *config] if config else []), ROOT)


@pytest.mark.slow
def test_cli_missing_morphology_names_the_key(tmp_path):
    run = snakemake_dry_run(tmp_path, f"dendrite={{'cells': {{'mine': '{tmp_path}/gone.swc'}}}}")
    assert run.returncode != 0
    assert "dendrite.cells.mine" in run.stdout and "does not exist" in run.stdout
    assert "Traceback (most recent call last)" not in run.stdout


@pytest.mark.slow
def test_cli_malformed_swc_names_file_and_line(tmp_path):
    swc = tmp_path / "broken.swc"
    swc.write_text("1 1 0 0 0 10 -1\n2 3 0 10 0 1\n")
    run = snakemake_dry_run(tmp_path, f"dendrite={{'cells': {{'mine': '{swc}'}}}}")
    assert run.returncode != 0
    assert f"SWC file '{swc}', line 2" in run.stdout
    assert "Traceback (most recent call last)" not in run.stdout


@pytest.mark.slow
def test_cli_schema_error_names_the_key(tmp_path):
    run = snakemake_dry_run(tmp_path, "dendrite={'chunks': -2}")
    assert run.returncode != 0
    assert "config key dendrite.chunks: " in run.stdout


def test_failed_stage_leaves_no_output(tmp_path, small_dendrite):
    dendrite = copy.deepcopy(small_dendrite)
    bad = tmp_path / "bad.swc"
    bad.write_text("1 1 0 0 0 10 -1\n2 3 0 10 0 0 1\n")
    dendrite["cells"] = {"bad": str(bad)}
    with pytest.raises(InputError):
        stages.plan("bad", dendrite, tmp_path / "out" / "trials.nc")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_interrupted_write_leaves_nothing(tmp_path):
    ds = xr.Dataset({"v": ("x", [1.0, 2.0])}, attrs={"bad": {"a dict": "cannot be stored"}})
    with pytest.raises(TypeError):
        save_netcdf(ds, tmp_path / "psp.nc")
    assert list(tmp_path.iterdir()) == []


# Each of these stops `snakemake -n` at plan time with one line naming the key.
MULTI = {"n_trials": 30, "n_E": 15, "n_I": 5, "window_ms": 10.0, "seed": 2}
PLAN_TIME_ERRORS = [
    ({"train.experiments.fashion_mnist.seeds": [0, 0]}, "non-unique"),
    ({"priors.cell": "../elsewhere"}, "config key priors.cell"),
    ({"datasets.cifar10.root": "/no/such/cifar"}, "config key datasets.cifar10.root"),
    ({"kappa.response_ms": "2e1"}, "config key kappa.response_ms: '2e1' is text to YAML"),
    (
        {"dendrite.chunks": 1000, "dendrite.sites.n_sites": 1},
        "config key dendrite.chunks: 1000 processes for 186",  # 166 + 20 crowd trials
    ),
    (
        {"dendrite.protocol.multi": {**MULTI, "n_trials": 10**6, "n_E": 10**4}},
        "more than 80% of this machine's",
    ),
    ({"datasets.fashion_mnist.recipe": "fmnist_typo"}, "no recipe named 'fmnist_typo'"),
    ({"dendrite.synapses.I.tau_decay_ms": 1.0}, "config keys dendrite.synapses.I.tau_rise_ms"),
    (
        {
            "experiments.prior_ablation.enabled": True,
            "experiments.prior_ablation.priors": ["bio", "shuffled"],
        },
        "reference prior 'zero'",
    ),
    ({"experiments.prior_lowdata.priors": ["zero", "shuffled"]}, "'bio' must be one"),
    # issue 25: NaN (S5), a schema error in one line, a device without a recipe
    (
        {"dendrite.membrane.Rm_ohm_cm2": float("nan")},
        "config key dendrite.membrane.Rm_ohm_cm2 = nan",
    ),
    (
        {"dendrite.protocol.multi.n_trials": -3},
        "config key dendrite.protocol.multi.n_trials: -3 is less than the minimum of 1",
    ),
    (
        {"train.device": "cpu", "datasets.fashion_mnist.recipe": {"cuda": "fmnist_gpu"}},
        "datasets.fashion_mnist.recipe: no recipe for the device the runs train on (cpu",
    ),
]


@pytest.mark.slow
@pytest.mark.parametrize(
    "changes, message", PLAN_TIME_ERRORS, ids=[",".join(e[0]) for e in PLAN_TIME_ERRORS]
)
def test_plan_time_errors_name_the_key(tmp_path, config, changes, message):
    for key, value in changes.items():
        _set(config, key, value)
    # the whole config, in place of config.yaml (merged, a mapping could not lose a key)
    run = run_snakemake(tmp_path, config, "-n", "--replace-workflow-config")
    assert run.returncode != 0
    assert message in run.stdout, run.stdout[-2000:]
    assert "Traceback (most recent call last)" not in run.stdout
    assert "Job stats" not in run.stdout  # no job was planned
    errors = [line for line in run.stdout.splitlines() if message in line]
    assert len(errors) == 1


@pytest.mark.slow
def test_a_repeated_key_or_an_alias_bomb_stops_the_plan(tmp_path):
    """S9: a second `train:` block silently replaced the first; C10: an alias bomb did not
    finish planning in 60 s. Both stop in one line, before Snakemake merges the file."""
    repeated = (ROOT / "config.yaml").read_text() + "\ntrain:\n  device: cpu\n"
    (tmp_path / "config.yaml").write_text(repeated)
    run = snakemake_dry_run(tmp_path, configfile=tmp_path / "config.yaml")
    assert run.returncode != 0
    assert "key 'train' is given twice in one mapping (first on line" in run.stdout
    (tmp_path / "bomb.yaml").write_text(alias_bomb(mapping=False))
    run = snakemake_dry_run(tmp_path, configfile=tmp_path / "bomb.yaml")
    assert run.returncode != 0 and "its aliases expand to" in run.stdout


@pytest.mark.slow
def test_a_config_file_can_run_only_chosen_cells(tmp_path):
    """S10: a --configfile merges into config.yaml; null removes a cell (and its prior)."""
    (tmp_path / "only.yaml").write_text(
        "dendrite: {cells: {pyramidal_nmda: null}}\n"
        "priors: {biological: {bio_nmda: null}}\n"
        "experiments: {prior_ablation: {priors: [zero, bio, shuffled]}}\n"
    )
    run = snakemake_dry_run(tmp_path, configfile=tmp_path / "only.yaml")
    assert run.returncode == 0, run.stdout[-3000:]
    assert "pyramidal_nmda" not in run.stdout and "bio_nmda" not in run.stdout
    assert "results/dendrite/pyramidal/kappa.nc" in run.stdout


@pytest.mark.slow
def test_a_profile_that_gives_training_fewer_tasks_than_processes_is_refused(tmp_path, config):
    """S11: train.processes: 4 with the SLURM profile's tasks: 1 ran one process, silently."""
    profile = tmp_path / "profile"
    profile.mkdir()
    (profile / "config.yaml").write_text("cores: 1\nset-resources:\n  train:\n    tasks: 1\n")
    config["train"]["processes"] = 4
    command = snakemake_command(tmp_path, config, profile) + ["-n"]
    run = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    assert run.returncode != 0
    assert "train.processes: 4, but the profile gives each training job 1 task(s)" in (
        run.stdout + run.stderr
    )


# ---------------------------------------------------------------- issue 25: a hostile probe
def numeric_leaves(node, path=()):
    """(path, value) of every number in a config (booleans are not numbers here)."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield from numeric_leaves(value, (*path, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from numeric_leaves(value, (*path, index))
    elif isinstance(node, int | float) and not isinstance(node, bool):
        yield path, node


def _put(config: dict, path: tuple, value) -> dict:
    node = config
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    return config


@pytest.fixture(scope="module")
def full_config(default_config) -> dict:
    """config.yaml with the schema's defaults filled in and every recipe key of Recipe set in
    one recipe: every number the config can hold."""
    from dataclasses import fields

    from ann.recipes import Recipe

    config = json.loads(json.dumps(default_config))  # no shared (aliased) parts
    validate(config, str(SCHEMA))
    recipe = config["recipes"]["imagenet"]
    for field in fields(Recipe):
        if isinstance(field.default, int | float) and field.name not in recipe:
            recipe[field.name] = field.default
    recipe.update(train_subset=1000, eval_subset=100)
    return config


def test_every_number_in_the_config_has_a_stated_range(full_config):
    import jsonschema

    validator = jsonschema.Draft202012Validator(yaml.safe_load(SCHEMA.read_text()))
    leaves = list(numeric_leaves(full_config))
    assert len(leaves) > 200
    unbounded = []
    for path, value in leaves:
        for sign in (1, -1):
            huge = sign * (10**30 if isinstance(value, int) else 1e30)
            if validator.is_valid(_put(copy.deepcopy(full_config), path, huge)):
                unbounded.append((".".join(map(str, path)), huge))
    assert unbounded == []


def test_every_number_must_be_finite_wherever_it_is(full_config):
    from pipeline.plan_checks import check_config_values

    check_config_values(full_config)
    for path, _ in numeric_leaves(full_config):
        for bad in (float("nan"), float("inf"), -float("inf")):
            config = _put(copy.deepcopy(full_config), path, bad)
            key = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path)[1:]
            with pytest.raises(InputError, match=f"config key {re.escape(key)}"):
                check_config_values(config)


# The cases S5 and C1 of issue 25 found passing the schema and the plan checks.
NON_FINITE = [
    "dendrite.protocol.strengths_nS.E",
    "dendrite.membrane.Rm_ohm_cm2",
    "dendrite.membrane.EL_mV",
    "dendrite.synapses.E.tau_decay_ms",
    "dendrite.protocol.onset_ms",
    "dendrite.protocol.timing.delta_t_ms",
    "dendrite.protocol.dt_ms",
    "dendrite.protocol.trial_ms",
    "dendrite.segmentation.d_lambda",
    "priors.init_ratio",
    "priors.fraction_inhibitory",
    "recipes.cifar.lr",
    "kappa.response_ms",
]


@pytest.mark.parametrize("key", NON_FINITE)
def test_the_non_finite_values_of_the_probe_are_refused_naming_the_key(config, key):
    from pipeline.plan_checks import check_config_values

    *parents, leaf = key.split(".")
    node = config
    for part in parents:
        node = node.setdefault(part, {})
    value = node.get(leaf)
    node[leaf] = [float("nan"), *value[1:]] if isinstance(value, list) else float("nan")
    with pytest.raises(InputError) as err:
        check_config_values(config)
    assert str(err.value).startswith(f"config key {key}")


def test_cli_refuses_a_non_finite_override_and_a_non_finite_config(default_config, tmp_path):
    from ann.engine.run import read_config
    from ann.errors import ConfigError

    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(default_config))
    with pytest.raises(ConfigError, match=r"^--set label_smoothing = nan: every number"):
        read_config(path, "fashion_mnist", {"label_smoothing": float("nan")}, "cpu")
    bad = _set(copy.deepcopy(default_config), "priors.init_ratio", float("nan"))
    path.write_text(yaml.safe_dump(bad))
    with pytest.raises(ConfigError, match="config key priors.init_ratio = nan"):
        read_config(path, "fashion_mnist", {}, "cpu")


def test_ann_train_refuses_a_seed_outside_the_generators_range(default_config):
    from ann.engine import run_from_config
    from ann.errors import ConfigError

    for seed in (2**32, -1):
        with pytest.raises(ConfigError, match=r"outside \[0, 2\^32\)"):
            run_from_config(default_config, "fashion_mnist", "resnet20", "none", seed, Path("x"))


@pytest.mark.parametrize("seed, valid", [(2**32 - 1, True), (2**32, False), (-1, False)])
def test_seeds_lie_in_the_range_of_the_generators(config, seed, valid):
    import jsonschema

    config["train"]["experiments"]["fashion_mnist"]["seeds"] = [seed]
    validator = jsonschema.Draft202012Validator(yaml.safe_load(SCHEMA.read_text()))
    assert validator.is_valid(config) is valid


@pytest.mark.parametrize(
    "key, value, named",
    [
        ("experiments.prior_ablation.plain_model", "dit_resnet20", "plain_model"),  # C11
        ("datasets.cifar10.root", "", "root"),  # "" is not "unset"
        ("dendrite.sites.n_sites", 20000, "n_sites"),  # C4
        ("dendrite.segmentation.d_lambda", 1e-6, "d_lambda"),
        ("dendrite.max_compartment_um", 1e-4, "max_compartment_um"),
        ("dendrite.protocol.multi.n_E", 10**7, "n_E"),
    ],
)
def test_absurd_values_are_outside_their_stated_range(config, key, value, named):
    with pytest.raises(Exception) as err:
        validate(_set(config, key, value), str(SCHEMA))
    assert named in str(err.value)


def test_a_schema_error_is_one_line_naming_the_key_and_numbers_as_text_get_their_spelling(
    config,
):
    from pipeline.plan_checks import schema_problem

    assert schema_problem(copy.deepcopy(config), SCHEMA) is None
    deep = _set(copy.deepcopy(config), "dendrite.protocol.multi.n_trials", -3)
    problem = schema_problem(deep, SCHEMA)
    assert problem.startswith("config key dendrite.protocol.multi.n_trials: -3 is less than")
    assert "\n" not in problem
    text = _set(copy.deepcopy(config), "recipes.cifar.lr", "1e-3")
    assert "write 1.0e-3" in schema_problem(text, SCHEMA)
    # text that looks like a number where text belongs is not a number written wrong
    assert (
        schema_problem(_set(copy.deepcopy(config), "recipes.imagenet.auto_augment", "1e5"), SCHEMA)
        is None
    )


BAD_FILES = [
    ("train: {threads: 1}\ntrain: {threads: 2}\n", "line 2: key 'train' is given twice"),  # S9
    ("a: &a {x: 1}\nb:\n  <<: *a\n  y: 2\n  y: 3\n", "line 5: key 'y' is given twice"),
    ("dendrite:\n  cells:\n    1: builtin:pyramidal\n", "line 3: key 1 is not text"),  # C2
    ("a: &a [1, *a]\n", "an alias refers to itself"),
    ("- 1\n- 2\n", "does not hold a mapping"),
    ("a: [1, 2\n", "is not valid YAML"),
]


@pytest.mark.parametrize(
    "text, message",
    BAD_FILES,
    ids=["repeated", "merged-repeated", "int-key", "recursive", "list", "yaml"],
)
def test_a_config_file_is_read_strictly(tmp_path, text, message):
    from dendrite_sim.config_file import ConfigFileError, read_config_file

    path = tmp_path / "config.yaml"
    path.write_text(text)
    with pytest.raises(ConfigFileError) as err:
        read_config_file(path)
    assert f"config file '{path}'" in str(err.value) and message in str(err.value)


def test_a_merge_key_reuses_a_mapping_and_the_keys_beside_it_win(tmp_path):
    from dendrite_sim.config_file import read_config_file

    path = tmp_path / "config.yaml"
    path.write_text("a: &a {x: 1, y: 1}\nb:\n  <<: *a\n  y: 2\n")
    assert read_config_file(path) == {"a": {"x": 1, "y": 1}, "b": {"x": 1, "y": 2}}


def alias_bomb(levels: int = 9, width: int = 9, mapping: bool = True) -> str:
    """A "billion laughs" YAML file: width**levels values in a few hundred bytes."""
    lines = ["l0: &l0 [lol, lol]"]
    for level in range(1, levels):
        refs = ", ".join(
            f"k{i}: *l{level - 1}" if mapping else f"*l{level - 1}" for i in range(width)
        )
        lines.append(
            f"l{level}: &l{level} {'{' if mapping else '['}{refs}{'}' if mapping else ']'}"
        )
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("mapping", [True, False], ids=["mappings", "lists"])
def test_an_alias_bomb_is_refused_without_expanding_it(tmp_path, mapping):
    from dendrite_sim.config_file import MAX_VALUES, ConfigFileError, read_config_file

    path = tmp_path / "bomb.yaml"
    path.write_text(alias_bomb(mapping=mapping))
    with pytest.raises(ConfigFileError, match=f"more than {MAX_VALUES:,}"):
        read_config_file(path)  # expanded, 9**8 * 2 values: this would not end
    assert read_config_file(ROOT / "config.yaml")["recipe_overrides"]["cifar100"]  # its alias


def test_a_null_entry_removes_what_a_merged_config_lists():
    from pipeline.plan_checks import drop_removed_entries

    config = {
        "dendrite": {"cells": {"pyramidal": "builtin:pyramidal", "pyramidal_nmda": None}},
        "priors": {"biological": {"bio_nmda": None}},
        "train": {"experiments": {"cifar10": None, "fashion_mnist": {"models": ["resnet20"]}}},
    }
    drop_removed_entries(config)
    assert config["dendrite"]["cells"] == {"pyramidal": "builtin:pyramidal"}
    assert config["priors"]["biological"] == {}
    assert list(config["train"]["experiments"]) == ["fashion_mnist"]


def test_results_dir_is_normalised_and_not_a_file(tmp_path):
    from pipeline.plan_checks import results_folder

    assert results_folder("results/") == "results"
    assert results_folder(f"{tmp_path}//out/./") == f"{tmp_path}/out"
    (tmp_path / "file").write_text("")
    with pytest.raises(InputError, match="config key results_dir: .* is a file"):
        results_folder(str(tmp_path / "file"))


def test_dataset_roots_that_hold_empty_files_are_refused(tmp_path):
    from pipeline.plan_checks import dataset_status

    experiment = {"models": ["resnet20"], "seeds": [0]}
    source = {"root": str(tmp_path), "download": False, "recipe": "cifar"}
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(b"")
    with pytest.raises(InputError, match="is empty .0 bytes."):
        dataset_status("fashion_mnist", source, experiment)
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(b"x")
    assert dataset_status("fashion_mnist", source, experiment)[0]
    assert not dataset_status("fashion_mnist", source, None)[0]


def test_a_device_without_a_recipe_and_a_profile_without_the_processes_are_refused(config):
    from pipeline.plan_checks import check_device_recipes, check_training_tasks

    config["datasets"]["fashion_mnist"]["recipe"] = {"cuda": "fmnist_gpu"}
    check_device_recipes(config, ["fashion_mnist"], "cuda")
    with pytest.raises(InputError, match=r"datasets.fashion_mnist.recipe: no recipe for .*\(cpu,"):
        check_device_recipes(config, ["fashion_mnist"], "cpu")
    check_training_tasks(4, 4)
    check_training_tasks(4, None)  # the profile does not set it: the rule's own (processes)
    with pytest.raises(InputError, match="train.processes: 4, but the profile gives .* 1 task"):
        check_training_tasks(4, 1)  # S11


def test_two_runs_never_share_a_log_file():
    """Each wildcard is a folder level of the log path: dit_resnet20 with prior transposed_zero
    and dit_resnet20_transposed with prior zero had one log file."""
    for rule, wildcards in (
        ("train.smk", ["{{dataset}}", "{{model}}", "{{prior}}", "seed{{seed}}.log"]),
        ("priors.smk", ["{{model}}", "{{prior}}", "seed{{seed}}.log"]),
    ):
        text = (ROOT / "workflow" / "rules" / rule).read_text()
        assert "/".join(wildcards) in text, rule


@pytest.mark.parametrize(
    "rows, fragment",
    [
        ("1 1 0 0 0 10 -1\n2 3.5 0 10 0 1 1\n", "id, type and parent must be integers"),
        ("1 1 0 0 0 10 -1\n2 3 0 1e12 0 1 1\n", "a coordinate beyond"),
        ("1 1 0 0 0 10 -1\n2 3 0 10 0 1e-10 1\n", "radius 1e-10 um is outside"),
        ("1 1 0 0 0 1e200 -1\n2 3 0 10 0 1 1\n", "radius 1e+200 um is outside"),
    ],
    ids=["type", "coordinate", "thin", "huge-soma"],
)
def test_absurd_swc_points_are_refused_with_file_and_line(tmp_path, rows, fragment):
    path = tmp_path / "cell.swc"
    path.write_text(rows)
    with pytest.raises(InputError) as err:
        read_swc(path)
    line = 1 if "huge" in rows or "1e200" in rows else 2
    assert f"SWC file '{path}', line {line}:" in str(err.value) and fragment in str(err.value)


# ---------------------------------------------------------------- crafted and damaged files
def kappa_dataset(n_sites: int = 3) -> xr.Dataset:
    """A kappa.nc's tables as fit_kappa writes them (planted values; psp_peak with the NaN
    of a strength only one receptor has)."""
    import numpy as np

    a, b = np.meshgrid(np.arange(n_sites), np.arange(n_sites), indexing="ij")
    peaks = np.ones((2, n_sites, 3))
    peaks[0, :, 2] = np.nan
    return xr.Dataset(
        {
            "kappa_EI": (("e_site", "i_site"), (10.0 + 3 * a + b) / 100),
            "kappa_EE": (("site_a", "site_b"), -(1.0 + a + b) / 100),
            "kappa_II": (("site_a", "site_b"), (5.0 + a * b) / 100),
            "psp_peak": (("receptor", "psp_site", "psp_strength"), peaks),
        }
    )


def crafted(ds: xr.Dataset, change: str) -> xr.Dataset:
    import numpy as np

    ds = ds.copy(deep=True)
    if change == "nan_peaks":
        ds["psp_peak"][:] = np.nan
    elif change == "zero_peaks":
        ds["psp_peak"][:] = 0.0
    elif change == "huge_kappa":
        ds["kappa_EE"][:] = 1e300
    elif change == "zero_kappa":
        for kind in ("EI", "EE", "II"):
            ds[f"kappa_{kind}"][:] = 0.0
    elif change == "inf_kappa":
        ds["kappa_II"][0, 0] = np.inf
    elif change == "wrong_shape":
        ds = ds.drop_vars("kappa_II").assign(kappa_II=(("site_a", "site_c"), np.ones((3, 2))))
    elif change == "wrong_sites":
        ds = ds.drop_vars(["kappa_II", "kappa_EE"]).assign(
            kappa_EE=(("site_a", "site_b"), np.ones((2, 2))),
            kappa_II=(("site_a", "site_b"), np.ones((2, 2))),
        )
    return ds


@pytest.mark.parametrize(
    "change, message",
    [
        ("nan_peaks", "psp_peak is infinite or has no value"),  # S6: NaN weights, rc 0
        ("zero_peaks", "median single-PSP peak is 0 mV"),  # S6: an all-zero K labelled bio
        ("huge_kappa", "|kappa| reaches 1e+300 /mV"),  # S6: kappa = 1e300, K all zero
        ("zero_kappa", "every kappa is zero"),
        ("inf_kappa", "kappa_II holds infinite values"),
        ("wrong_shape", "kappa_II has dimensions ('site_a', 'site_c')"),  # C9: IndexError
        ("wrong_sites", "do not share one number of sites"),
    ],
)
def test_a_crafted_kappa_file_is_refused_naming_it(tmp_path, change, message):
    from ann.errors import PriorError
    from ann.priors import load_kappa

    path = tmp_path / "kappa.nc"
    crafted(kappa_dataset(), change).to_netcdf(path, engine="h5netcdf")
    with pytest.raises(PriorError) as err:
        load_kappa(path)
    assert f"kappa file '{path}'" in str(err.value) and message in str(err.value)


def test_kappa_tables_are_read_by_dimension_name(tmp_path):
    """S6: kappa_EI stored as (i_site, e_site) was read by position, transposed silently."""
    import numpy as np

    from ann.priors import load_kappa

    ds = kappa_dataset()
    ds.to_netcdf(tmp_path / "plain.nc", engine="h5netcdf")
    flipped = ds.assign(kappa_EI=ds.kappa_EI.transpose("i_site", "e_site"))
    flipped.to_netcdf(tmp_path / "flipped.nc", engine="h5netcdf")
    plain, read = load_kappa(tmp_path / "plain.nc"), load_kappa(tmp_path / "flipped.nc")
    assert not np.array_equal(plain.EI, plain.EI.T)  # the test can tell them apart
    np.testing.assert_array_equal(read.EI, plain.EI)
    np.testing.assert_array_equal(plain.EI, ds.kappa_EI.values)
    assert plain.psp_scale_mV == 1.0  # the median of the peaks that exist


@pytest.fixture(scope="module")
def dit_model():
    from ann.models import create_model

    return create_model("dit_resnet20", num_classes=10, in_chans=1)


def prior_record(model, **changes) -> dict:
    import torch

    from ann.layers import DitQuadratic

    weights = {
        name: torch.full_like(m.weight, 0.01)
        for name, m in model.named_modules()
        if isinstance(m, DitQuadratic)
    }
    return {"model": "dit_resnet20", "prior": "bio", "seed": 0, "weights": weights} | changes


@pytest.mark.parametrize(
    "case, message",
    [
        ("truncated", "it is damaged or truncated"),  # C8: OSError with no path
        ("empty_weights", "has no weights for the quadratic layer(s)"),  # S12
        ("zero", "the 'bio' prior is zero in every layer"),
        ("nan", "holds NaN or infinite weights"),
        ("other_seed", "holds prior bio seed 1, not bio seed 0"),
    ],
)
def test_a_damaged_or_crafted_prior_file_is_refused_with_how_to_rebuild_it(
    tmp_path, dit_model, case, message
):
    import torch

    from ann.engine.build import check_prior_weights, read_prior_file
    from ann.errors import PriorError

    path = tmp_path / "seed0.pt"
    record = prior_record(dit_model)
    if case == "empty_weights":
        record["weights"] = {}
    elif case == "zero":
        record["weights"] = {k: torch.zeros_like(w) for k, w in record["weights"].items()}
    elif case == "nan":
        next(iter(record["weights"].values()))[0, 0] = float("nan")
    elif case == "other_seed":
        record["seed"] = 1
    torch.save(record, path)
    if case == "truncated":
        path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(PriorError) as err:
        saved = read_prior_file(path, "bio", 0)
        fix = f"rm {path}; snakemake"
        check_prior_weights(saved["weights"], dit_model, "bio", f"prior file '{path}'", fix)
    assert f"'{path}'" in str(err.value) and message in str(err.value)
    if case != "other_seed":
        assert f"rm {path}; snakemake" in str(err.value)


def test_a_zero_prior_file_may_be_zero(tmp_path, dit_model):
    import torch

    from ann.engine.build import check_prior_weights

    zeros = {k: torch.zeros_like(w) for k, w in prior_record(dit_model)["weights"].items()}
    check_prior_weights(zeros, dit_model, "zero", "prior file", "")


def test_a_psp_file_without_its_traces_is_named(tmp_path):
    """C9: a psp.nc missing `v` gave an AttributeError in the fit."""
    path = tmp_path / "psp.nc"
    xr.Dataset({"w": ("trial", [1.0])}, coords={"trial_time": [0.0]}).to_netcdf(
        path, engine="h5netcdf"
    )
    with pytest.raises(InputError, match=rf"{path} lacks \['v'\].*rm {path}; snakemake"):
        stages.fit(path, {"window_ms": [10.0, 50.0], "response_ms": 20.0}, tmp_path / "kappa.nc")
    assert not (tmp_path / "kappa.nc").exists()
