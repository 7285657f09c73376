"""No NaN passes a stage: simulation, fit and figures each stop with a message
that names the cell, the trials and the likely cause, and write nothing."""

import copy

import brian2 as b2
import numpy as np
import pytest
import xarray as xr
from test_kappa import planted_psp

from dendrite_sim.config import DendriteConfig, KappaConfig
from dendrite_sim.errors import NotFiniteError
from dendrite_sim.figures import FIGURES
from dendrite_sim.kappa import check_fit, fit_kappa
from dendrite_sim.morphology import Cell, load_cell
from pipeline import dendrite as stages
from pipeline.files import save_netcdf

KAPPA = {"window_ms": [12.0, 60.0], "response_ms": 20.0}


@pytest.fixture
def planned(tmp_path, small_dendrite):
    dendrite = copy.deepcopy(small_dendrite)
    stages.plan("pyramidal", dendrite, tmp_path / "trials.nc")
    return dendrite, tmp_path


@pytest.mark.slow
def test_simulation_with_nan_traces_writes_nothing(planned, monkeypatch):
    dendrite, folder = planned

    def broken(morphology, sites, trials, model, protocol):
        v = np.zeros((trials.sizes["trial"], 10))
        v[[1, 3], 4:] = np.nan
        return v

    monkeypatch.setattr(stages, "simulate_trials", broken)
    with pytest.raises(NotFiniteError) as err:
        stages.simulate(folder / "trials.nc", "pyramidal", dendrite, folder / "psp.nc")
    message = str(err.value)
    for text in ("cell pyramidal", "2 of", "trials 1, 3", "sample 4", "zero length"):
        assert text in message
    assert not (folder / "psp.nc").exists()


SWC_WITH_A_DUPLICATE = """1 1 0 0 0 5 -1
2 3 0 5 0 0.5 1
3 3 0 25 0 0.5 2
4 3 0 25 0 0.5 3
5 3 0 45 0 0.5 4
"""


@pytest.mark.slow
def test_brian2s_own_reading_of_a_duplicate_point_is_caught(planned, monkeypatch):
    """The defect of the issue: Brian2's reader turns a point at its parent's position into
    a compartment of zero length, and the compiled simulation silently gives NaN (numpy's
    runtime mode would raise instead); the stage stops."""
    dendrite, folder = planned
    swc = folder / "dup.swc"
    swc.write_text(SWC_WITH_A_DUPLICATE)
    dendrite["cells"] = {"dup": str(swc)}
    dendrite["sites"] = {"n_sites": 1, "explicit": [{"compartment": 3}]}
    dendrite["protocol"]["kinds"] = ["single"]
    ours = load_cell(str(swc), DendriteConfig.from_mapping(dendrite))
    assert ours.merged_points == 1 and ours.compartments().length_um[1:].min() > 0
    stages.plan("dup", dendrite, folder / "dup.nc")
    with xr.open_dataset(folder / "dup.nc") as plan:
        trials = plan.load()
    del trials.attrs["n_compartments"]  # planned on our cell, simulated on Brian2's
    save_netcdf(trials, folder / "dup.nc")
    brian = b2.Morphology.from_file(str(swc))
    monkeypatch.setattr(
        stages,
        "load_cell",
        lambda spec, config: Cell(spec, brian, "path", ours.segmentation, "Brian2's"),
    )
    with pytest.raises(NotFiniteError, match="cell dup: 4 of 4 trials .*NaN"):
        stages.simulate(folder / "dup.nc", "dup", dendrite, folder / "psp.nc")
    assert not (folder / "psp.nc").exists()


def test_fit_refuses_nan_traces(tmp_path):
    psp, _ = planted_psp(np.random.default_rng(7))
    psp.attrs["cell"] = "planted"
    psp.v[5, 100:] = np.nan
    save_netcdf(psp, tmp_path / "psp.nc")
    with pytest.raises(NotFiniteError, match=r"cell planted: .*psp.nc: 1 of \d+ trials.*trials 5"):
        stages.fit(tmp_path / "psp.nc", KAPPA, tmp_path / "kappa.nc")
    assert not (tmp_path / "kappa.nc").exists()


def test_fit_refuses_a_nan_kappa(tmp_path):
    """A single PSP of zero amplitude makes V1*V2 = 0 at every strength: kappa = 0/0."""
    psp, _ = planted_psp(np.random.default_rng(7))
    psp.attrs["cell"] = "planted"
    silent = ((psp.kind == "E") & (psp.event_site[:, 0] == 1)).values
    psp.v[silent] = 0.0
    ds = fit_kappa(psp, KappaConfig.from_mapping(KAPPA))
    with pytest.raises(NotFiniteError, match=r"cell planted: kappa_EI is NaN .*\(1, 0\)"):
        check_fit(ds, psp)
    save_netcdf(psp, tmp_path / "psp.nc")
    with pytest.raises(NotFiniteError):
        stages.fit(tmp_path / "psp.nc", KAPPA, tmp_path / "kappa.nc")
    assert not (tmp_path / "kappa.nc").exists()


def test_figures_refuse_a_kappa_file_without_finite_values(tmp_path):
    psp, _ = planted_psp(np.random.default_rng(7))
    ds = fit_kappa(psp, KappaConfig.from_mapping(KAPPA))
    ds.attrs["cell"] = "planted"
    ds["kappa_EI"][:] = np.nan
    save_netcdf(ds, tmp_path / "kappa.nc")
    outputs = {name: tmp_path / f"{name}.png" for name in FIGURES}
    with pytest.raises(NotFiniteError, match="cell planted: .*kappa.nc holds no finite kappa_EI"):
        stages.figures(tmp_path / "kappa.nc", outputs)
    assert not any(path.exists() for path in outputs.values())
