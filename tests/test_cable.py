"""Brian2's cable with our passive parameters against the analytic sealed-end cylinder."""

import brian2 as b2
import numpy as np
import pytest

from dendrite_sim.config import DendriteConfig
from dendrite_sim.model import CellModel

LENGTH_UM, DIAMETER_UM, N = 800.0, 1.0, 160
I_INJECT = 20 * b2.pA


@pytest.fixture(scope="module")
def steady_state(default_config):
    model = CellModel.from_config(DendriteConfig.from_mapping(default_config["dendrite"]))
    b2.set_device("runtime")
    b2.prefs.codegen.target = "numpy"
    b2.start_scope()
    b2.defaultclock.dt = 0.05 * b2.ms
    morphology = b2.Cylinder(length=LENGTH_UM * b2.um, diameter=DIAMETER_UM * b2.um, n=N)
    eqs = "Im = gL*(EL - v) : amp/meter**2\nI : amp (point current)"
    neuron = b2.SpatialNeuron(
        morphology,
        eqs,
        Cm=model.Cm_uF_per_cm2 * b2.uF / b2.cm**2,
        Ri=model.Ri_ohm_cm * b2.ohm * b2.cm,
        namespace=model.namespace(),
    )
    neuron.v = model.EL_mV * b2.mV
    neuron.I[0] = I_INJECT
    b2.run(300 * b2.ms)  # 15 membrane time constants
    u = np.asarray((neuron.v - model.EL_mV * b2.mV) / b2.volt)
    x = np.asarray(neuron.distance / b2.meter)
    b2.prefs.codegen.target = "auto"
    return model, x, u


def cable_constants(model: CellModel) -> tuple[float, float]:
    d = DIAMETER_UM * 1e-6
    r_axial = 4 * model.Ri_ohm_cm * 1e-2 / (np.pi * d**2)  # ohm / m
    r_membrane = model.Rm_ohm_cm2 * 1e-4 / (np.pi * d)  # ohm * m
    return np.sqrt(r_membrane / r_axial), np.sqrt(r_axial * r_membrane)


@pytest.mark.slow
def test_input_resistance_matches_sealed_end_cable(steady_state):
    model, _, u = steady_state
    lam, r_inf = cable_constants(model)
    analytic = r_inf / np.tanh(LENGTH_UM * 1e-6 / lam)
    simulated = u[0] / float(I_INJECT / b2.amp)
    assert simulated == pytest.approx(analytic, rel=0.02)


@pytest.mark.slow
def test_steady_attenuation_matches_cable(steady_state):
    model, x, u = steady_state
    lam, _ = cable_constants(model)
    length = LENGTH_UM * 1e-6
    expected = np.cosh((length - x) / lam) / np.cosh((length - x[0]) / lam)
    assert u[-1] / u[0] < 0.8  # the check is not trivial: the far end is attenuated
    np.testing.assert_allclose(u / u[0], expected, rtol=0.02)
