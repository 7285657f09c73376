"""Checks of the dendrite config beyond its schema, and the size estimate of a plan."""

import copy

import pytest

from dendrite_sim.config import DendriteConfig
from dendrite_sim.dataset import read_dataset
from dendrite_sim.errors import InputError
from dendrite_sim.protocols import trial_counts
from pipeline import dendrite as stages
from pipeline.plan_checks import check_budget, check_config, plan_budget


def bad(dendrite, kappa, dotted, value):
    config = {"dendrite": copy.deepcopy(dendrite), "kappa": copy.deepcopy(kappa)}
    *parents, leaf = dotted.split(".")
    node = config
    for key in parents:
        node = node[key]
    node[leaf] = value
    return config["dendrite"], config["kappa"]


CASES = [
    ("dendrite.synapses.E.tau_rise_ms", 3.0, "dendrite.synapses.E.tau_rise_ms"),
    ("dendrite.protocol.dt_ms", 200.0, "dendrite.protocol.dt_ms"),
    ("kappa.window_ms", [70.0, 10.0], "kappa.window_ms"),
    ("kappa.window_ms", [10.0, 500.0], "kappa.window_ms"),
    ("dendrite.protocol.strengths_nS.I", [1.0], "dendrite.protocol.strengths_nS.I"),
    ("dendrite.protocol.kinds", ["single", "multi"], "needs the pairs trials"),
    ("dendrite.protocol.pairs.kinds", ["EI"], "dendrite.protocol.pairs.kinds"),
]


def test_the_shipped_config_passes(default_config):
    check_config(default_config["dendrite"], default_config["kappa"])


@pytest.mark.parametrize("dotted, value, named", CASES, ids=[f"{c[0]}={c[1]}" for c in CASES])
def test_settings_that_would_fail_later_are_named(default_config, dotted, value, named):
    dendrite, kappa = bad(default_config["dendrite"], default_config["kappa"], dotted, value)
    with pytest.raises(InputError) as err:
        check_config(dendrite, kappa)
    assert named in str(err.value)


def test_budget_counts_the_trials_the_plan_makes(small_dendrite, tmp_path):
    stages.plan("pyramidal", small_dendrite, tmp_path / "trials.nc")
    trials = read_dataset(tmp_path / "trials.nc")
    config = DendriteConfig.from_mapping(small_dendrite)
    counts = trial_counts(trials.sizes["site"], config.protocol)
    assert sum(counts.values()) == trials.sizes["trial"]
    budget = plan_budget("pyramidal", config, trials.sizes["site"], 97)
    samples = round(config.protocol.trial_ms / config.protocol.record_dt_ms)
    assert (budget.trials, budget.samples) == (trials.sizes["trial"], samples)
    assert budget.trace_bytes == trials.sizes["trial"] * samples * 8
    assert budget.memory_bytes > budget.trace_bytes and budget.cpu_seconds > 0
    assert f"{budget.trials} trials" in budget.describe()


def test_a_plan_larger_than_memory_is_refused_with_the_keys_to_change(default_config):
    budget = plan_budget(
        "pyramidal", DendriteConfig.from_mapping(default_config["dendrite"]), 8, 97
    )
    check_budget(budget, available_bytes=64 * 2**30)
    with pytest.raises(InputError) as err:
        check_budget(budget, available_bytes=budget.memory_bytes)
    for key in ("dendrite.sites.n_sites", "max_pairs_per_kind", "trial_ms", "record_dt_ms"):
        assert key in str(err.value)


def test_more_processes_than_trials_is_refused(small_dendrite):
    dendrite = DendriteConfig.from_mapping({**small_dendrite, "chunks": 10_000})
    with pytest.raises(InputError, match="config key dendrite.chunks"):
        plan_budget("pyramidal", dendrite, 3, 97)


def test_a_damaged_netcdf_file_is_named_with_how_to_rebuild_it(tmp_path):
    from ann.errors import PriorError
    from ann.priors import load_kappa

    truncated = tmp_path / "kappa.nc"
    truncated.write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(64))
    with pytest.raises(InputError, match=f"{truncated} cannot be read .* damaged or truncated"):
        read_dataset(truncated)
    with pytest.raises(PriorError, match="damaged or truncated. Delete it"):
        load_kappa(truncated)
