"""The optional membrane mechanisms: Hodgkin-Huxley Na/K on the soma and NMDA with Mg block."""

import copy
from dataclasses import replace

import numpy as np
import pytest

from dendrite_sim.config import DendriteConfig, Strengths
from dendrite_sim.model import CellModel
from dendrite_sim.morphology import compartment_table, load_morphology
from dendrite_sim.protocols import plan_trials
from dendrite_sim.simulate import simulate_trials
from dendrite_sim.sites import explicit_sites

# each test simulates the default cell in Brian2's runtime mode (over a minute)
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def morphology(default_config):
    return load_morphology(
        "builtin:pyramidal", DendriteConfig.from_mapping(default_config["dendrite"])
    )


def single_inputs(dendrite: dict, site: dict, strengths: list[float], morphology) -> tuple:
    sites = explicit_sites(compartment_table(morphology), [site])
    config = DendriteConfig.from_mapping(dendrite)
    protocol = replace(
        config.protocol,
        kinds=("single",),
        trial_ms=100.0,
        strengths_nS=Strengths(E=tuple(strengths), I=(1.0,)),
    )
    trials = plan_trials(sites, protocol)
    e_trials = trials.sel(trial=trials.kind == "E")
    traces = simulate_trials(
        morphology, sites.compartment.values, e_trials, CellModel.from_config(config), protocol
    )
    return traces, protocol


def with_option(dendrite: dict, name: str) -> dict:
    changed = copy.deepcopy(dendrite)
    changed[name] = {**changed.get(name, {}), "enabled": True}
    if name == "nmda":
        changed["nmda"] |= {
            "g_ratio": 1.0,
            "E_mV": 0.0,
            "tau_rise_ms": 2.0,
            "tau_decay_ms": 80.0,
            "mg_mM": 1.0,
        }
    else:
        changed["active_soma"] |= {
            "gNa_mS_per_cm2": 120.0,
            "gK_mS_per_cm2": 36.0,
            "ENa_mV": 50.0,
            "EK_mV": -77.0,
        }
    return changed


def test_active_soma_rests_at_EL_and_fires_on_a_strong_input(default_config, morphology):
    dendrite = default_config["dendrite"]
    soma = {"compartment": 0}
    passive, _ = single_inputs(dendrite, soma, [1.0, 60.0], morphology)
    active, _ = single_inputs(with_option(dendrite, "active_soma"), soma, [1.0, 60.0], morphology)
    np.testing.assert_array_equal(active[:, 0], 0.0)
    assert np.abs(active[0, :50]).max() < 1e-6  # at rest until the input arrives at 10 ms
    assert active[1].max() > 80.0  # an action potential overshoots 0 mV (rest -70 mV)
    assert passive[1].max() < 60.0  # the passive soma only approaches E_E
    assert (
        abs(active[0].max() - passive[0].max()) < 0.5 * passive[0].max()
    )  # small inputs stay subthreshold


def test_nmda_adds_a_slow_voltage_dependent_component(default_config, morphology):
    dendrite = default_config["dendrite"]
    tuft = {"branch": "trunk.mid.distal.tuft1", "x": 0.8}
    strengths = [0.25, 2.0]
    ampa, protocol = single_inputs(dendrite, tuft, strengths, morphology)
    nmda, _ = single_inputs(with_option(dendrite, "nmda"), tuft, strengths, morphology)
    late = round(60.0 / protocol.record_dt_ms)
    assert (nmda.max(axis=1) > ampa.max(axis=1)).all()
    assert (nmda[:, late] > 2 * ampa[:, late]).all()  # 50 ms after the input: NMDA decays slowly
    gain = nmda.max(axis=1) / ampa.max(axis=1)
    assert gain[1] > gain[0]  # depolarisation relieves the Mg block: supralinear in strength
