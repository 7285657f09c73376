"""Each config section is one frozen dataclass whose fields are the schema's properties of
that section, with the schema's defaults (the schema and config.yaml are the one source of
defaults), and a bad key reaches the user as one line naming it."""

import copy
import dataclasses
from pathlib import Path

import pytest
import yaml

from ann.data import DatasetSource, expected_files
from ann.errors import ConfigError
from ann.theory.fewshot import FewShotConfig
from ann.theory.gaussian import GaussianConfig
from dendrite_sim import config as dendrite_config
from dendrite_sim.errors import InputError
from pipeline.plan_checks import DATASET_FILES

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = yaml.safe_load((ROOT / "workflow/schemas/config.schema.yaml").read_text())

# schema path (property names, "#name" for a $defs entry) -> the dataclass of that section
SECTIONS = {
    "dendrite": dendrite_config.DendriteConfig,
    "dendrite.segmentation": dendrite_config.SegmentationRule,
    "dendrite.membrane": dendrite_config.Membrane,
    "dendrite.active_soma": dendrite_config.ActiveSoma,
    "dendrite.nmda": dendrite_config.Nmda,
    "dendrite.spines": dendrite_config.Spines,
    "dendrite.synapses": dendrite_config.Synapses,
    "dendrite.synapses.E": dendrite_config.ReceptorKinetics,
    "dendrite.sites": dendrite_config.Sites,
    "dendrite.protocol": dendrite_config.Protocol,
    "dendrite.protocol.strengths_nS": dendrite_config.Strengths,
    "dendrite.protocol.pairs": dendrite_config.Pairs,
    "dendrite.protocol.timing": dendrite_config.Timing,
    "dendrite.protocol.multi": dendrite_config.Multi,
    "dendrite.protocol.crowd": dendrite_config.Crowd,
    "kappa": dendrite_config.KappaConfig,
    "theory.gaussian": GaussianConfig,
    "theory.fewshot": FewShotConfig,
    "#dataset": DatasetSource,
}


def resolve(node: dict) -> dict:
    while "$ref" in node:
        name = node["$ref"].removeprefix("#/$defs/")
        node = {**SCHEMA["$defs"][name], **{k: v for k, v in node.items() if k != "$ref"}}
    return node


def schema_section(path: str) -> dict:
    if path.startswith("#"):
        return resolve(SCHEMA["$defs"][path[1:]])
    node = SCHEMA
    for name in path.split("."):
        node = resolve(node["properties"][name])
    return node


def plain(value: object) -> object:
    return list(value) if isinstance(value, tuple) else value


@pytest.mark.parametrize("path", SECTIONS)
def test_schema_properties_are_the_dataclass_fields(path):
    section, cls = schema_section(path), SECTIONS[path]
    assert set(section["properties"]) == {f.name for f in dataclasses.fields(cls)}


@pytest.mark.parametrize("path", SECTIONS)
def test_defaults_are_the_schemas(path):
    """A field has a default exactly where the schema has one (or where its section's
    properties all have one), and it is the schema's."""
    section, cls = schema_section(path), SECTIONS[path]
    for spec in dataclasses.fields(cls):
        prop = resolve(section["properties"][spec.name])
        if spec.default is not dataclasses.MISSING:
            assert "default" in prop, f"{path}.{spec.name}: a default the schema lacks"
            assert plain(spec.default) == prop["default"], f"{path}.{spec.name}"
        elif spec.default_factory is not dataclasses.MISSING:
            nested = dataclasses.asdict(spec.default_factory())
            defaults = {k: resolve(v).get("default") for k, v in prop["properties"].items()}
            assert nested == defaults, f"{path}.{spec.name}"
        else:
            assert "default" not in prop, f"{path}.{spec.name}: the schema's default is lost"
            assert spec.name in section.get("required", []), f"{path}.{spec.name}"


def test_the_default_config_builds_every_section(default_config):
    dendrite_config.DendriteConfig.from_mapping(default_config["dendrite"])
    dendrite_config.KappaConfig.from_mapping(default_config["kappa"])
    GaussianConfig.from_mapping(default_config["theory"]["gaussian"])
    FewShotConfig.from_mapping(default_config["theory"]["fewshot"])
    for name, source in default_config["datasets"].items():
        DatasetSource.from_mapping(source, f"datasets.{name}")


def test_a_bad_key_is_one_line_naming_it(default_config):
    dendrite = copy.deepcopy(default_config["dendrite"])
    dendrite["protocol"]["multi"]["n_trails"] = 3
    with pytest.raises(
        InputError, match=r"^config key dendrite\.protocol\.multi\.n_trails: unknown"
    ):
        dendrite_config.DendriteConfig.from_mapping(dendrite)
    del dendrite["protocol"]["multi"]["n_trails"], dendrite["membrane"]["EL_mV"]
    with pytest.raises(InputError, match=r"^config key dendrite\.membrane\.EL_mV: missing"):
        dendrite_config.DendriteConfig.from_mapping(dendrite)
    with pytest.raises(ConfigError, match=r"^config key theory\.gaussian\.n_trian: unknown"):
        GaussianConfig.from_mapping({"n_trian": 3})
    with pytest.raises(ConfigError, match=r"^config key datasets\.cifar10\.rot: unknown"):
        DatasetSource.from_mapping({"rot": "x", "recipe": "r"}, "datasets.cifar10")


def test_the_workflow_looks_for_the_files_ann_reads(default_config):
    assert set(DATASET_FILES) == set(default_config["datasets"])
    assert DATASET_FILES == {name: expected_files(name) for name in DATASET_FILES}


def test_the_rules_settings_build_without_the_run_settings(default_config):
    """The dendrite rules pass the section without dendrite.chunks (simulation_settings);
    the steps build it all the same, absent sections at their defaults."""
    from dendrite_sim.dataset import simulation_config, simulation_settings

    dendrite = simulation_settings(default_config["dendrite"])
    assert "chunks" not in dendrite
    built = simulation_config(dendrite)
    assert built == dendrite_config.DendriteConfig.from_mapping({**dendrite, "chunks": 1})
    assert (
        simulation_config(default_config["dendrite"]).chunks == default_config["dendrite"]["chunks"]
    )
    del dendrite["nmda"]
    assert simulation_config(dendrite).nmda == dendrite_config.Nmda()
