"""The pipeline's config file, read strictly: what YAML lets pass silently is refused.

Both entry points read config.yaml: the workflow (workflow/rules/config_files.smk, before
Snakemake merges the files) and `python -m ann.train --config`. They share this module
because it needs nothing but PyYAML: the workflow must not load torch when it plans, and
ann.train must not import the workflow's glue.

Refused, each in one line that names the file and the key or line:
* a key given twice in one mapping (YAML keeps the last one silently);
* a key that is not text (`1: builtin:pyramidal`);
* aliases that expand to more than MAX_VALUES values (a "billion laughs" file: YAML stores
  an alias once, but everything that walks the config walks every copy);
* a number that is NaN or infinite (`.nan`, `.inf`), wherever it is: JSON Schema's range
  checks are false for NaN, so the schema alone lets it pass.
"""

import math
from collections.abc import Mapping
from pathlib import Path

import yaml

__all__ = ["MAX_VALUES", "ConfigFileError", "non_finite_number", "read_config_file"]

# config.yaml holds about 500 values; this leaves room for any grid, not for an alias bomb.
MAX_VALUES = 100_000


class ConfigFileError(ValueError):
    """A config file that cannot be read as the pipeline's config."""


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses a repeated key and a key that is not text. A merge key
    (`<<: *recipe`) is YAML's way to reuse a mapping: the keys written beside it override the
    merged ones, as YAML defines."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[object, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=deep)
            line = key_node.start_mark.line + 1
            if not isinstance(key, str):
                raise ConfigFileError(
                    f"line {line}: key {key!r} is not text ({type(key).__name__}); config keys "
                    f"are text: quote it ('{key}')."
                )
            if key in seen:
                raise ConfigFileError(
                    f"line {line}: key '{key}' is given twice in one mapping (first on line "
                    f"{seen[key]}); YAML would keep only the last one. Merge the two."
                )
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


def _expanded_size(node: yaml.Node, sizes: dict[int, int]) -> int:
    """The number of values `node` stands for with every alias expanded (each node is
    counted once, so this takes the time of the file, not of its expansion)."""
    if id(node) in sizes:
        if sizes[id(node)] < 0:
            raise ConfigFileError(f"line {node.start_mark.line + 1}: an alias refers to itself.")
        return sizes[id(node)]
    sizes[id(node)] = -1  # being counted
    if isinstance(node, yaml.MappingNode):
        children = [child for pair in node.value for child in pair]
    elif isinstance(node, yaml.SequenceNode):
        children = node.value
    else:
        children = []
    sizes[id(node)] = 1 + sum(_expanded_size(child, sizes) for child in children)
    return sizes[id(node)]


def read_config_file(path: str | Path) -> dict:
    """The mapping in a YAML (or JSON) config file, read strictly (module docstring)."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as err:
        raise ConfigFileError(f"config file '{path}' cannot be read: {err.strerror}.") from None
    try:
        loader = _StrictLoader(text)
        try:
            root = loader.get_single_node()
            if root is None:
                raise ConfigFileError(f"config file '{path}' is empty.")
            size = _expanded_size(root, {})
            if size > MAX_VALUES:
                raise ConfigFileError(
                    f"config file '{path}': its aliases expand to {size:,} values, more than "
                    f"{MAX_VALUES:,}; write the repeated parts out, or use fewer aliases."
                )
            config = loader.construct_document(root)
        finally:
            loader.dispose()
    except ConfigFileError as err:
        message = str(err)
        raise ConfigFileError(
            message if message.startswith("config file") else f"config file '{path}', {message}"
        ) from None
    except yaml.YAMLError as err:
        message = " ".join(str(err).split())
        raise ConfigFileError(f"config file '{path}' is not valid YAML: {message}") from None
    if not isinstance(config, dict):
        raise ConfigFileError(f"config file '{path}' does not hold a mapping of config keys.")
    return config


def non_finite_number(node: object, key: str = "") -> str | None:
    """The dotted key of the first NaN or infinite number in a config (None if there is
    none), with its value: 'dendrite.membrane.Rm_ohm_cm2 = nan'."""
    if isinstance(node, Mapping):
        items = [(f"{key}.{name}" if key else str(name), value) for name, value in node.items()]
    elif isinstance(node, list | tuple):
        items = [(f"{key}[{index}]", value) for index, value in enumerate(node)]
    else:
        if isinstance(node, float) and not math.isfinite(node):
            return f"{key} = {node}"
        return None
    for name, value in items:
        found = non_finite_number(value, name)
        if found:
            return found
    return None
