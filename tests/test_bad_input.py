"""Bad input gives one clear message naming the thing, and leaves no output behind."""

import copy
import subprocess
import sys
from pathlib import Path

import pytest
import xarray as xr
from conftest import run_snakemake
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


def snakemake_dry_run(tmp_path: Path, *config: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "-n",
            "--cores",
            "1",
            "-d",
            str(tmp_path),
            "-s",
            str(ROOT / "Snakefile"),
            "--configfile",
            str(ROOT / "config.yaml"),
            "--config",
            *config,
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


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
    assert "['dendrite']['chunks']" in run.stdout


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
PLAN_TIME_ERRORS = [
    ("train.experiments.fashion_mnist.seeds", [0, 0], "non-unique"),
    ("priors.cell", "../elsewhere", "config key priors.cell"),
    ("datasets.cifar10.root", "/no/such/cifar", "config key datasets.cifar10.root"),
    ("kappa.response_ms", "2e1", "config key kappa.response_ms: '2e1' is text to YAML"),
    ("dendrite.chunks", 100000, "config key dendrite.chunks: 100000 processes for 2590"),
    ("dendrite.protocol.multi.n_trials", 10**8, "more than 80% of this machine's"),
    ("datasets.fashion_mnist.recipe", "fmnist_typo", "no recipe named 'fmnist_typo'"),
    ("dendrite.synapses.I.tau_decay_ms", 1.0, "config keys dendrite.synapses.I.tau_rise_ms"),
    ("experiments.prior_ablation.priors", ["bio", "shuffled"], "reference prior 'zero'"),
]


@pytest.mark.slow
@pytest.mark.parametrize(
    "key, value, message", PLAN_TIME_ERRORS, ids=[e[0] for e in PLAN_TIME_ERRORS]
)
def test_plan_time_errors_name_the_key(tmp_path, config, key, value, message):
    run = run_snakemake(tmp_path, _set(config, key, value), "-n")
    assert run.returncode != 0
    assert message in run.stdout, run.stdout[-2000:]
    assert "Traceback (most recent call last)" not in run.stdout
    assert "Job stats" not in run.stdout  # no job was planned
