"""Checks of the dendrite config beyond its schema, and the size estimate of a plan."""

import copy

import pytest

from dendrite_sim.config import DendriteConfig
from dendrite_sim.dataset import read_dataset
from dendrite_sim.errors import InputError
from dendrite_sim.protocols import trial_counts
from pipeline import dendrite as stages
from pipeline.plan_checks import (
    MAX_COMPARTMENTS,
    check_budget,
    check_config,
    check_prior_cell,
    count_compartments,
    count_trials,
    plan_budget,
)


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
    # issue 25, S7: a window before the inputs gives a kappa(t) that is NaN throughout
    ("kappa.window_ms", [0.0, 5.0], "ends before the inputs start"),
    # S8, C5: protocol kinds that would make trials without inputs
    ("dendrite.protocol.pairs.kinds", [], "dendrite.protocol.pairs.kinds: empty"),
    (
        "dendrite.protocol.multi",
        {"n_trials": 30, "n_E": 1, "n_I": 0, "window_ms": 10.0, "seed": 2},
        "multi.n_E and n_I: 1 + 0",
    ),
    # issue 22: the one read-out must fall inside the trial for the latest timing pair
    ("kappa.readout_ms", 85.0, "kappa.readout_ms: 85 ms after the latest input (20 ms)"),
    # issue 22: the crowd trials are predicted from the single PSP of their strength
    ("dendrite.protocol.crowd.strength_nS", 0.3, "crowd.strength_nS: 0.3 nS is not one of"),
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


def test_trials_are_counted_without_making_them(default_config, small_dendrite):
    for dendrite in (small_dendrite, default_config["dendrite"]):
        protocol = DendriteConfig.from_mapping(dendrite).protocol
        for n_sites in (1, 3, 8, 15):
            assert count_trials(n_sites, protocol) == trial_counts(n_sites, protocol)
    # C4: 20000 sites would be 4e8 site pairs to enumerate; counting takes none
    protocol = DendriteConfig.from_mapping(default_config["dendrite"]).protocol
    counts = count_trials(20_000, protocol)
    assert counts["single"] == 20_000 * 8 and counts["pairs"] == 3 * 100 * 16
    assert counts["timing"] == 4 * 5 * 16 and counts["multi"] == 30


def test_the_plan_counts_the_inputs_of_the_multi_input_trials(default_config):
    """C4: multi.n_E: 1e7 passed, because the budget counted only the traces."""
    dendrite = copy.deepcopy(default_config["dendrite"])
    small = plan_budget("pyramidal", DendriteConfig.from_mapping(dendrite), 8, 97)
    dendrite["protocol"]["multi"]["n_E"] = 10_000
    large = plan_budget("pyramidal", DendriteConfig.from_mapping(dendrite), 8, 97)
    assert large.trials == small.trials
    grown = large.memory_bytes - small.memory_bytes
    assert grown == 3 * small.trials * (10_005 - 20) * 24  # copies x trials x inputs x bytes
    with pytest.raises(InputError, match="n_E and n_I"):
        check_budget(large, available_bytes=large.memory_bytes)


def test_compartments_are_counted_before_the_cell_is_built(default_config, tmp_path):
    from dendrite_sim.morphology import load_cell

    settings = DendriteConfig.from_mapping(default_config["dendrite"])
    assert count_compartments("pyramidal", "builtin:pyramidal", settings) == 97
    swc = tmp_path / "cell.swc"
    swc.write_text("1 1 0 0 0 10 -1\n2 3 0 10 0 1 1\n3 3 0 60 0 1 2\n4 3 0 610 0 0.3 3\n")
    built = load_cell(str(swc), settings).morphology.total_compartments
    assert count_compartments("mine", str(swc), settings) == built
    fine = DendriteConfig.from_mapping({**default_config["dendrite"], "max_compartment_um": 0.01})
    with pytest.raises(InputError) as err:
        count_compartments("pyramidal", "builtin:pyramidal", fine)
    message = str(err.value)
    assert f"more than {MAX_COMPARTMENTS:,}" in message and "dendrite.max_compartment_um" in message
    assert "gives 186,001 compartments" in message  # 1860 um of dendrite in 0.01-um pieces


def test_a_prior_needs_every_pair_type_of_its_cell(default_config):
    """S8: pairs.kinds [EI] without multi failed at build_prior with "rerun fit_kappa"."""
    check_prior_cell("bio", "pyramidal", default_config["dendrite"])
    dendrite = copy.deepcopy(default_config["dendrite"])
    dendrite["protocol"]["pairs"]["kinds"] = ["EI"]
    with pytest.raises(InputError, match="prior 'bio' .* cell pyramidal, but it lacks EE, II"):
        check_prior_cell("bio", "pyramidal", dendrite)


def test_crowd_needs_ee_pairs_and_a_site_of_the_cell(default_config):
    """The crowd is predicted with kappa_EE (refused without E-E pairs, naming the key), and
    its site must be one of the cell's (refused at plan time, naming the key and the range)."""
    import pandas as pd

    from dendrite_sim.protocols import plan_trials

    dendrite = copy.deepcopy(default_config["dendrite"])
    dendrite["protocol"]["kinds"] = ["single", "pairs", "crowd"]
    dendrite["protocol"]["pairs"]["kinds"] = ["EI", "II"]
    with pytest.raises(InputError, match="crowd trials are predicted with kappa_EE"):
        check_config(dendrite, default_config["kappa"])
    dendrite["protocol"]["pairs"]["kinds"] = ["EE"]
    dendrite["protocol"]["crowd"]["site"] = 5
    sites = pd.DataFrame(
        {"compartment": [3, 7], "branch": ["a", "b"], "distance_um": [20.0, 60.0]}
        | {axis: 0.0 for axis in ("x_um", "y_um", "z_um")}
    )
    protocol = DendriteConfig.from_mapping(dendrite).protocol
    with pytest.raises(InputError, match=r"crowd.site: 5 is not a site index .* 0 \.\. 1"):
        plan_trials(sites, protocol)
