"""The `dendrite` and `kappa` config sections as frozen dataclasses.

The schema (workflow/schemas/config.schema.yaml) and config.yaml are the one source of the
values; a default here exists only where the schema has one, and equals it
(tests/test_config_sections.py checks both: every schema property of a section is a field
of its dataclass and the other way round, with the same defaults). `from_mapping` builds a
section from the config; a key that does not belong, or a required one that is missing, is
an InputError that names it. The library takes these sections, never the config's mappings;
the workflow builds them once from the mapping it was given (dataset.simulation_config,
after the cell's overrides are merged on the mapping: dataset.cell_settings).
"""

from __future__ import annotations

import types
import typing
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields, is_dataclass
from typing import Any, TypeVar

from .errors import InputError

Section = TypeVar("Section")


def from_mapping(cls: type[Section], values: Mapping, where: str) -> Section:
    """`cls` built from `values`: sections inside it built the same way, lists as tuples."""
    if not isinstance(values, Mapping):
        raise InputError(f"config key {where}: expected a mapping, got {values!r}.")
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in fields(cls)}
    for key in values:
        if key not in known:
            raise InputError(f"config key {where}.{key}: unknown; known keys: {sorted(known)}.")
    built = {}
    for name, spec in known.items():
        if name not in values:
            if spec.default is MISSING and spec.default_factory is MISSING:
                raise InputError(f"config key {where}.{name}: missing.")
            continue
        value, kind = values[name], _section_type(hints[name])
        if kind is not None:
            value = from_mapping(kind, value, f"{where}.{name}")
        elif isinstance(value, list):
            value = tuple(value)
        built[name] = value
    return cls(**built)


def _section_type(hint: Any) -> type | None:
    """The dataclass a field holds, if it holds one."""
    if is_dataclass(hint):
        return hint
    if isinstance(hint, types.UnionType):
        return next((arg for arg in typing.get_args(hint) if is_dataclass(arg)), None)
    return None


@dataclass(frozen=True)
class SegmentationRule:
    """NEURON's d_lambda rule for the number of compartments of a section."""

    d_lambda: float = 0.1
    frequency_Hz: float = 100.0


@dataclass(frozen=True)
class Membrane:
    Cm_uF_per_cm2: float
    Rm_ohm_cm2: float
    Ri_ohm_cm: float
    EL_mV: float


@dataclass(frozen=True)
class ActiveSoma:
    """Hodgkin-Huxley Na/K channels on the soma."""

    enabled: bool = False
    gNa_mS_per_cm2: float = 120.0
    gK_mS_per_cm2: float = 36.0
    ENa_mV: float = 50.0
    EK_mV: float = -77.0


@dataclass(frozen=True)
class Nmda:
    """NMDA receptors with Mg block at the excitatory synapses."""

    enabled: bool = False
    g_ratio: float = 1.0
    E_mV: float = 0.0
    tau_rise_ms: float = 2.0
    tau_decay_ms: float = 80.0
    mg_mM: float = 1.0


@dataclass(frozen=True)
class Spines:
    """Spine necks at the synapses: every input on a spine head of its own, coupled to its
    site's compartment through the neck (dendrite_sim.spines)."""

    enabled: bool = False
    neck_length_um: float = 1.0
    neck_diameter_um: float = 0.15
    head_diameter_um: float = 0.5


@dataclass(frozen=True)
class ReceptorKinetics:
    E_rev_mV: float
    tau_rise_ms: float
    tau_decay_ms: float


@dataclass(frozen=True)
class Synapses:
    E: ReceptorKinetics
    I: ReceptorKinetics


@dataclass(frozen=True)
class Sites:
    n_sites: int
    explicit: tuple[Mapping, ...] = ()


@dataclass(frozen=True)
class Strengths:
    E: tuple[float, ...]
    I: tuple[float, ...]


@dataclass(frozen=True)
class Pairs:
    kinds: tuple[str, ...]
    max_pairs_per_kind: int
    seed: int


@dataclass(frozen=True)
class Timing:
    n_pairs: int
    delta_t_ms: tuple[float, ...]
    seed: int


@dataclass(frozen=True)
class Multi:
    n_trials: int
    n_E: int
    n_I: int
    window_ms: float
    seed: int


@dataclass(frozen=True)
class Crowd:
    """Crowds per branch: k = 1..max_inputs synchronous E inputs of strength_nS on the
    sites of one branch (the branch of site `site`), one trial per k."""

    max_inputs: int = 20
    strength_nS: float = 1.0
    site: int = -1


@dataclass(frozen=True)
class Protocol:
    kinds: tuple[str, ...]
    dt_ms: float
    record_dt_ms: float
    trial_ms: float
    onset_ms: float
    strengths_nS: Strengths
    pairs: Pairs
    timing: Timing
    multi: Multi
    crowd: Crowd = field(default_factory=Crowd)


@dataclass(frozen=True)
class DendriteConfig:
    """The `dendrite` section: the cells, their electrical model, the sites and the trials."""

    cells: Mapping[str, str]
    membrane: Membrane
    synapses: Synapses
    sites: Sites
    protocol: Protocol
    chunks: int
    segmentation: SegmentationRule = field(default_factory=SegmentationRule)
    max_compartment_um: float = 20.0
    active_soma: ActiveSoma = field(default_factory=ActiveSoma)
    nmda: Nmda = field(default_factory=Nmda)
    spines: Spines = field(default_factory=Spines)

    @classmethod
    def from_mapping(cls, values: Mapping, where: str = "dendrite") -> DendriteConfig:
        return from_mapping(cls, values, where)


@dataclass(frozen=True)
class KappaConfig:
    """The `kappa` section: where in a trial the bilinear rule is fitted."""

    window_ms: tuple[float, float]
    response_ms: float
    readout_ms: float = 7.0
    premise_cv_max: float = 0.1
    crowd_max_rel_error: float = 0.1

    @classmethod
    def from_mapping(cls, values: Mapping, where: str = "kappa") -> KappaConfig:
        return from_mapping(cls, values, where)
