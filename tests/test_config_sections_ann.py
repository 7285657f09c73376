"""ann's config sections: each is a frozen dataclass whose fields are exactly the schema's
properties of that section, and whose defaults are the schema's (the schema and config.yaml
are the one source of defaults).

The recipe keys are the exception that the schema cannot carry: `recipe_overrides` shares
their definition (`$defs/recipe_keys`), and Snakemake's validate() writes every schema default
into the config, so a default there would turn every per-model override into a full recipe.
Their defaults live in Recipe alone, and the schema has none."""

import dataclasses
from pathlib import Path

import pytest
import yaml

from ann.engine.run import Experiment, TrainSettings
from ann.errors import ConfigError, PriorError, RecipeError
from ann.recipes import Recipe
from ann.sections import required_fields
from ann.settings import PriorSettings

SCHEMA = yaml.safe_load(
    (Path(__file__).parents[1] / "workflow" / "schemas" / "config.schema.yaml").read_text()
)


def resolved(node):
    while "$ref" in node:
        name = node["$ref"].removeprefix("#/$defs/")
        node = {**SCHEMA["$defs"][name], **{k: v for k, v in node.items() if k != "$ref"}}
    return node


SECTIONS = {
    "train": (TrainSettings, resolved(SCHEMA["properties"]["train"])),
    "priors": (PriorSettings, resolved(SCHEMA["properties"]["priors"])),
    "train.experiments.*": (Experiment, resolved(SCHEMA["$defs"]["experiment"])),
    "recipes.*": (Recipe, resolved(SCHEMA["$defs"]["recipe"])),
}


def comparable(value):
    return list(value) if isinstance(value, tuple | list) else value


@pytest.mark.parametrize("section", SECTIONS)
def test_schema_properties_are_the_dataclass_fields(section):
    cls, schema = SECTIONS[section]
    assert dataclasses.is_dataclass(cls) and cls.__dataclass_params__.frozen
    assert {f.name for f in dataclasses.fields(cls)} == set(schema["properties"])
    assert set(required_fields(cls)) == set(schema.get("required", ()))


@pytest.mark.parametrize("section", SECTIONS)
def test_schema_defaults_are_the_dataclass_defaults(section):
    cls, schema = SECTIONS[section]
    for field in dataclasses.fields(cls):
        declared = resolved(schema["properties"][field.name])
        default = field.default
        if field.default_factory is not dataclasses.MISSING:
            default = field.default_factory()
        if "default" in declared:
            assert comparable(default) == comparable(declared["default"]), field.name
        elif section != "recipes.*":
            assert field.default is dataclasses.MISSING, f"{field.name}: default not in schema"


def test_recipe_keys_have_no_schema_defaults():
    keys = SCHEMA["$defs"]["recipe_keys"]["properties"]
    assert not [name for name, node in keys.items() if "default" in resolved(node)]


def test_config_yaml_sections_build(default_config):
    train = TrainSettings.from_mapping(default_config["train"])
    assert train.device == default_config["train"]["device"]
    assert set(train.experiments) == set(default_config["train"]["experiments"])
    priors = PriorSettings.from_mapping(default_config["priors"])
    assert priors.options()["init_ratio"] == default_config["priors"]["init_ratio"]
    for name, recipe in default_config["recipes"].items():
        Recipe.from_mapping(recipe, name)


@pytest.mark.parametrize(
    "build, values, error, key",
    [
        (TrainSettings.from_mapping, {"device": "gpu", "experiments": {}}, ConfigError, "device"),
        (TrainSettings.from_mapping, {"device": "cpu"}, ConfigError, "experiments"),
        (
            TrainSettings.from_mapping,
            {"device": "cpu", "experiments": {}, "cores": 2},
            ConfigError,
            "cores",
        ),
        (
            TrainSettings.from_mapping,
            {"device": "cpu", "experiments": {}, "threads": 0},
            ConfigError,
            "threads",
        ),
        (
            PriorSettings.from_mapping,
            {"cell": "x", "fraction_inhibitory": 0.2, "init_ratio": 0.1, "diagonal": "self"},
            PriorError,
            "diagonal",
        ),
        (PriorSettings.from_mapping, {"cell": "x", "init_ratio": 0.1}, PriorError, "fraction"),
        (Recipe.from_mapping, {"epochs": 1}, RecipeError, "batch_size"),
        (Recipe.from_mapping, {"epochs": 1, "batch_size": 2, "lr_max": 1}, RecipeError, "lr_max"),
    ],
)
def test_a_bad_section_is_one_config_error_naming_the_key(build, values, error, key):
    with pytest.raises(error, match=key) as raised:
        build(values)
    assert "\n" not in str(raised.value)
