"""The one check every config section's `from_mapping` makes before building its frozen
dataclass: no unknown keys, no missing required ones, each reported as one ConfigError line
that names the key."""

from collections.abc import Collection, Mapping
from dataclasses import MISSING, fields

from .errors import ConfigError

__all__ = ["checked_choice", "checked_keys", "required_fields"]


def required_fields(cls: type) -> tuple[str, ...]:
    """The fields of a dataclass without a default: the section's required keys."""
    return tuple(
        f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING
    )


def checked_keys(
    cls: type, values: Mapping, where: str, error: type[ConfigError] = ConfigError
) -> dict:
    """`values` as a dict, after checking its keys against the fields of dataclass `cls`."""
    if not isinstance(values, Mapping):
        raise error(f"config key {where}: expected a mapping of keys, got {type(values).__name__}.")
    known = [f.name for f in fields(cls)]
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise error(f"config key {where}.{unknown[0]}: unknown key; known keys: {sorted(known)}.")
    missing = [key for key in required_fields(cls) if key not in values]
    if missing:
        raise error(f"config key {where}.{missing[0]}: missing.")
    return dict(values)


def checked_choice(value: object, choices: Collection, key: str, error: type = ConfigError) -> None:
    """A ConfigError naming `key` unless value is one of `choices`."""
    if value not in choices:
        raise error(f"{key}: {value!r} is not one of {', '.join(map(str, choices))}.")
