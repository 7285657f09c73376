"""The simulation stage: dataset layout and units, determinism, and two cross-checks
of the compiled simulator (Brian2 runtime mode and the NEURON simulator)."""

import numpy as np
import pytest
import xarray as xr

from dendrite_sim.config import DendriteConfig
from dendrite_sim.model import CellModel
from dendrite_sim.morphology import compartment_table, load_morphology
from dendrite_sim.protocols import plan_trials
from dendrite_sim.simulate import simulate_trials
from dendrite_sim.sites import select_sites
from pipeline import dendrite as stages


@pytest.fixture(scope="module")
def psp(tmp_path_factory, small_dendrite):
    dendrite = small_dendrite
    out = tmp_path_factory.mktemp("psp")
    stages.plan("pyramidal", dendrite, out / "trials.nc")
    stages.simulate(out / "trials.nc", "pyramidal", dendrite, out / "psp.nc", processes=2)
    with xr.open_dataset(out / "psp.nc") as ds:
        return dendrite, out, ds.load()


def test_dataset_layout_and_units(psp):
    dendrite, _, ds = psp
    protocol = dendrite["protocol"]
    n_time = round(protocol["trial_ms"] / protocol["record_dt_ms"])
    assert ds.v.dims == ("trial", "trial_time")
    assert ds.v.shape == (ds.sizes["trial"], n_time)
    assert ds.v.attrs["units"] == "mV"
    assert ds.trial_time.attrs["units"] == "ms"
    assert ds.event_strength.attrs["units"] == "nS"
    assert ds.site_distance.attrs["units"] == "um"
    assert set(np.unique(ds.kind)) == {"E", "I", "EE", "EI", "II", "multi", "crowd"}
    n_sites = dendrite["sites"]["n_sites"]
    assert ds.sizes["site"] == n_sites
    assert (ds.kind == "E").sum() == n_sites * len(protocol["strengths_nS"]["E"])
    assert ds.attrs["Rm"] == "20000.0 ohm*cm**2"
    assert ds.attrs["brian2_version"]
    assert ds.attrs["config_hash"]


def test_traces_start_at_rest_and_have_the_right_sign(psp):
    _, _, ds = psp
    np.testing.assert_array_equal(ds.v.isel(trial_time=0), 0.0)
    assert (ds.v.sel(trial=ds.kind == "E").max("trial_time") > 0.1).all()
    assert (ds.v.sel(trial=ds.kind == "I").min("trial_time") < -0.05).all()
    epsp = ds.v.sel(trial=ds.kind == "E")
    assert (
        np.abs(epsp.isel(trial_time=-1)) < 0.2 * epsp.max("trial_time")
    ).all()  # decayed by the end


@pytest.mark.slow
def test_rerun_in_one_process_gives_identical_traces(psp):
    """The split of the trials over processes (dendrite.chunks) does not change any trace,
    nor the dataset's record of the settings it depends on."""
    dendrite, out, ds = psp
    stages.simulate(out / "trials.nc", "pyramidal", {**dendrite, "chunks": 1}, out / "again.nc")
    with xr.open_dataset(out / "again.nc") as again:
        np.testing.assert_array_equal(again.v.values, ds.v.values)
        assert again.attrs["config_hash"] == ds.attrs["config_hash"]
        assert "chunks" not in again.attrs["config_yaml"]


def small_plan(dendrite: DendriteConfig):
    morphology = load_morphology("builtin:pyramidal", dendrite)
    sites = select_sites(compartment_table(morphology), dendrite.sites)
    trials = plan_trials(sites, dendrite.protocol)
    pick = [int(np.flatnonzero(trials.kind == k)[0]) for k in ("E", "I", "EE", "EI", "II", "multi")]
    return morphology, sites, trials.isel(trial=pick)


@pytest.mark.slow
def test_compiled_runs_equal_runtime_mode(small_dendrite, monkeypatch):
    import brian2

    config = DendriteConfig.from_mapping(small_dendrite)
    morphology, sites, trials = small_plan(config)
    model, protocol = CellModel.from_config(config), config.protocol
    compiled = simulate_trials(morphology, sites.compartment.values, trials, model, protocol)
    monkeypatch.setitem(brian2.prefs, "codegen.target", "numpy")  # no Cython build in the test
    runtime = simulate_trials(
        morphology, sites.compartment.values, trials, model, protocol, "runtime"
    )
    np.testing.assert_allclose(compiled, runtime, atol=1e-6)  # mV; C++ -ffast-math vs numpy


@pytest.mark.slow
def test_brian2_agrees_with_neuron(small_dendrite):
    from dendrite_sim.neuron_ref import NeuronCell

    config = DendriteConfig.from_mapping(small_dendrite)
    morphology, sites, trials = small_plan(config)
    model, protocol = CellModel.from_config(config), config.protocol
    brian = simulate_trials(morphology, sites.compartment.values, trials, model, protocol)
    neuron = NeuronCell(morphology, model, sites.compartment.values).run(trials, protocol)
    peak = np.abs(brian).max(axis=1, keepdims=True)
    assert (peak > 0.05).all()
    np.testing.assert_allclose(brian / peak, neuron / peak, atol=1e-4)


@pytest.mark.slow
def test_simulation_leaves_the_environment_alone(small_dendrite, monkeypatch):
    import os

    monkeypatch.delenv("LD_BIND_NOW", raising=False)
    config = DendriteConfig.from_mapping(small_dendrite)
    morphology, sites, trials = small_plan(config)
    simulate_trials(
        morphology,
        sites.compartment.values,
        trials.isel(trial=[0]),
        CellModel.from_config(config),
        config.protocol,
    )
    assert "LD_BIND_NOW" not in os.environ
