"""Per-cell settings (a dendrite.cells entry with its own nmda, membrane, active_soma) and the
science of the NMDA cell: with NMDA at the E synapses, E-E summation turns supralinear."""

import copy

import numpy as np
import pytest
import xarray as xr
import yaml
from snakemake.utils import validate
from test_bad_input import SCHEMA

from dendrite_sim.config import DendriteConfig
from dendrite_sim.dataset import cell_morphology, cell_overrides, cell_settings
from dendrite_sim.model import CellModel
from pipeline import dendrite as stages

# The supralinear counterfactual (config.yaml: pyramidal_nmda_supralinear), not the shipped cell.
NMDA_CELL = {"morphology": "builtin:pyramidal", "nmda": {"enabled": True, "g_ratio": 3.0}}


def test_shipped_nmda_cell_and_prior(default_config):
    cells = default_config["dendrite"]["cells"]
    assert cells["pyramidal"] == "builtin:pyramidal"
    assert cells["pyramidal_nmda"]["nmda"]["enabled"] is True
    assert default_config["priors"]["biological"] == {"bio_nmda": "pyramidal_nmda"}


def test_cell_settings_merge_the_overrides_over_the_global_sections(default_config):
    dendrite = copy.deepcopy(default_config["dendrite"])
    dendrite["cells"] = {"passive": "builtin:pyramidal", "nmda": NMDA_CELL}
    passive, nmda = cell_settings(dendrite, "passive"), cell_settings(dendrite, "nmda")
    assert passive["nmda"] == dendrite["nmda"] and passive["cells"] == {
        "passive": "builtin:pyramidal"
    }
    assert nmda["nmda"] == dendrite["nmda"] | {"enabled": True, "g_ratio": 3.0}
    assert nmda["membrane"] == dendrite["membrane"]
    assert cell_settings(nmda, "nmda") == nmda  # idempotent
    assert cell_morphology(NMDA_CELL) == "builtin:pyramidal"
    assert cell_overrides("builtin:pyramidal") == {}
    assert CellModel.from_config(DendriteConfig.from_mapping(nmda)).nmda is not None
    assert CellModel.from_config(DendriteConfig.from_mapping(passive)).nmda is None


def test_schema_takes_a_cell_mapping_and_rejects_unknown_keys(default_config):
    config = copy.deepcopy(default_config)
    config["dendrite"]["cells"]["mine"] = {"morphology": "builtin:point", "nmda": {"enabled": True}}
    validate(copy.deepcopy(config), str(SCHEMA))
    config["dendrite"]["cells"]["mine"]["nmda"]["strength"] = 2.0
    with pytest.raises(Exception, match="strength"):
        validate(copy.deepcopy(config), str(SCHEMA))
    config["dendrite"]["cells"]["mine"] = {"nmda": {"enabled": True}}
    with pytest.raises(Exception, match="morphology"):
        validate(config, str(SCHEMA))


def nmda_kappa(small_dendrite, tmp_path, nmda: bool) -> tuple[xr.Dataset, dict]:
    """The small protocol's kappa of the pyramidal cell, with or without NMDA (a per-cell
    override), through the plan, simulate and fit stages."""
    dendrite = copy.deepcopy(small_dendrite)
    dendrite["cells"] = {"cell": NMDA_CELL if nmda else "builtin:pyramidal"}
    dendrite["protocol"]["pairs"]["max_pairs_per_kind"] = 6  # every EE pair of the 3 sites
    stages.plan("cell", dendrite, tmp_path / "trials.nc")
    stages.simulate(tmp_path / "trials.nc", "cell", dendrite, tmp_path / "psp.nc", processes=1)
    # read 15 ms after the onset: NMDA (rise 2 ms, decay 80 ms) has risen there; at the default
    # read-out (7 ms) the counterfactual cell's same-site E-E pair is still sublinear
    fit = {"window_ms": [10.0, 50.0], "response_ms": 20.0, "readout_ms": 15.0}
    stages.fit(tmp_path / "psp.nc", fit, tmp_path / "kappa.nc")
    with xr.open_dataset(tmp_path / "psp.nc") as psp:
        attrs = dict(psp.attrs)
    with xr.open_dataset(tmp_path / "kappa.nc") as ds:
        return ds.load(), attrs


@pytest.fixture(scope="module")
def kappas(small_dendrite, tmp_path_factory):
    return {
        nmda: nmda_kappa(small_dendrite, tmp_path_factory.mktemp(f"nmda{nmda}"), nmda)
        for nmda in (False, True)
    }


def test_the_cell_override_reaches_psp_attrs(kappas):
    attrs = kappas[True][1]
    assert attrs["nmda"] == "NMDA with Mg block at E synapses"
    assert attrs["nmda_g_ratio"] == "3.0"
    assert yaml.safe_load(attrs["cell_overrides"]) == {"nmda": NMDA_CELL["nmda"]}
    assert yaml.safe_load(attrs["config_yaml"])["nmda"]["enabled"] is True
    passive = kappas[False][1]
    assert passive["nmda"] == "none" and yaml.safe_load(passive["cell_overrides"]) == {}
    assert passive["config_hash"] != attrs["config_hash"]


def test_nmda_turns_ee_summation_supralinear(kappas):
    passive, nmda = kappas[False][0], kappas[True][0]
    ee_passive, ee_nmda = passive.kappa_EE.values, nmda.kappa_EE.values
    assert np.isfinite(ee_nmda).all() and np.isfinite(ee_passive).all()
    assert (ee_passive < 0).all()  # passive cable: E-E sublinear (shared driving force)
    assert (ee_nmda > 0).all()  # NMDA's Mg unblock: supralinear at every site pair
    own = np.diag(ee_nmda)
    assert own.max() > np.median(ee_nmda[~np.eye(len(own), dtype=bool)])  # strongest nearby
    assert float(nmda.r2_EE.median()) > 0.9  # the peak-based fit still describes it
    ei = nmda.kappa_EI.values
    assert (ei[np.isfinite(ei)] > 0).all()  # E-I stays shunting (pairs not sampled: NaN)
