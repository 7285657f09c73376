import copy
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def default_config() -> dict:
    return yaml.safe_load((ROOT / "config.yaml").read_text())


@pytest.fixture
def config(default_config) -> dict:
    return copy.deepcopy(default_config)


@pytest.fixture(scope="session")
def small_dendrite(default_config) -> dict:
    """The default dendrite section shrunk to a few sites, strengths and trials (read only)."""
    dendrite = copy.deepcopy(default_config["dendrite"])
    dendrite["sites"]["n_sites"] = 3
    protocol = dendrite["protocol"]
    protocol["strengths_nS"] = {"E": [1.0, 2.0], "I": [2.0, 4.0]}
    protocol["pairs"]["max_pairs_per_kind"] = 3
    protocol["timing"].update(n_pairs=1, delta_t_ms=[-5.0, 5.0])
    protocol["multi"].update(n_trials=2, n_E=4, n_I=2)
    protocol["trial_ms"] = 60.0
    dendrite["chunks"] = 2
    return dendrite
