"""The config sections of the ann library that the workflow checks while it plans: the
`priors:` section (PriorSettings, and the prior names it defines) and the
`experiments.prior_lowdata` section (LowDataConfig).

Pure Python: the plan (every Snakemake process, every job step on a cluster) reads this module
without importing torch or timm. ann.priors and ann.lowdata build on it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from .errors import ConfigError, PriorError
from .sections import checked_choice, checked_keys

CONTROLS = ("shuffled", "block_mean", "sites_permuted", "spectrum_matched")
PRIORS = ("zero", "bio", *CONTROLS)  # the kinds of prior
DIAGONALS = ("zero", "same_site")


@dataclass(frozen=True)
class PriorSettings:
    """The `priors:` section of the config: whose kappa the bio prior and its controls read, the
    free choices of the mapping (module docstring) and how the prior acts in training
    (ann.prior_modes). Its defaults are the schema's (workflow/schemas/config.schema.yaml; a
    test checks they agree)."""

    cell: str
    fraction_inhibitory: float
    init_ratio: float
    diagonal: str = "zero"
    biological: Mapping[str, str] = field(default_factory=dict)  # more named priors -> cells
    calibration: str = "data"  # data: RMS response on real training inputs; gaussian: N(0, I)
    calibration_images: int = 256  # training images the data calibration measures on
    anchor_strength: float = 1.0e-2  # anchor mode: weight decay pulling K to its prior

    @classmethod
    def from_mapping(cls, values: object, where: str = "priors") -> PriorSettings:
        settings = cls(**checked_keys(cls, values, where, PriorError))
        checked_choice(settings.diagonal, DIAGONALS, f"{where}.diagonal", PriorError)
        checked_choice(settings.calibration, CALIBRATIONS, f"{where}.calibration", PriorError)
        if not 0 <= settings.fraction_inhibitory <= 1:
            raise PriorError(f"{where}.fraction_inhibitory must be in [0, 1].")
        if not settings.init_ratio > 0:
            raise PriorError(f"{where}.init_ratio must be positive.")
        if not settings.anchor_strength >= 0:
            raise PriorError(f"{where}.anchor_strength must be zero or positive.")
        if not settings.calibration_images >= 1:
            raise PriorError(f"{where}.calibration_images must be at least 1.")
        for name in settings.biological:
            if name in RESERVED or name.endswith(tuple(f"_{c}" for c in CONTROLS)) or "+" in name:
                raise PriorError(
                    f"config key {where}.biological.{name}: '{name}' is a built-in prior name, "
                    f"ends with a control's name or holds '+'; choose another name."
                )
        return settings

    def options(self) -> dict[str, float | str]:
        """The keywords of `bio_prior` (the mapping's free choices)."""
        return {
            "fraction_inhibitory": self.fraction_inhibitory,
            "init_ratio": self.init_ratio,
            "diagonal": self.diagonal,
        }

    def used_by(self, spec: PriorSpec) -> dict[str, object]:
        """The settings a training run of `spec` depends on: the mapping's for a built prior
        (with its own cell), and the anchor strength in anchor mode."""
        used: dict[str, object] = {}
        if spec.kind != "zero":
            used = {"cell": spec.cell, **self.options()}
            used |= {"calibration": self.calibration, "calibration_images": self.calibration_images}
        if spec.mode == "anchor":
            used["anchor_strength"] = self.anchor_strength
        return used

    def names(self) -> list[str]:
        """Every prior these settings define: zero, bio and its controls, and each named prior
        with its own controls (`<name>_<control>`)."""
        return ["zero", *(name for base in ("bio", *self.biological) for name in family(base))]

    def spec(self, text: str) -> PriorSpec:
        """The prior a run names, `<prior>` or `<prior>+<mode>` (modes: ann.prior_modes)."""
        name, _, mode = text.partition("+")
        mode = mode or "init"
        checked_choice(mode, MODES, f"the mode of prior '{text}'", PriorError)
        if name not in self.names():
            raise PriorError(
                f"no prior named '{name}'; there are {', '.join(self.names())} "
                f"(more under priors.biological)."
            )
        base, kind = name, "bio" if name != "zero" else "zero"
        for control in CONTROLS:
            if name == control:
                base, kind = "bio", control
            elif (
                name.endswith(f"_{control}") and name.removesuffix(f"_{control}") in self.biological
            ):
                base, kind = name.removesuffix(f"_{control}"), control
        cell = None if kind == "zero" else self.biological.get(base, self.cell)
        return PriorSpec(name, kind, cell, mode)


RESERVED = ("none", "zero", "bio", *CONTROLS)
MODES = ("init", "anchor", "fixed")
CALIBRATIONS = ("data", "gaussian")


def family(base: str) -> list[str]:
    """A biological prior and its controls: bio, shuffled, ... or bio_nmda, bio_nmda_shuffled."""
    if base == "bio":
        return ["bio", *CONTROLS]
    return [base, *(f"{base}_{control}" for control in CONTROLS)]


@dataclass(frozen=True)
class PriorSpec:
    """A prior as a run names it: its name, its kind (PRIORS), the cell whose kappa builds it
    (None for zero) and its mode (MODES)."""

    name: str
    kind: str
    cell: str | None
    mode: str = "init"

    @property
    def label(self) -> str:
        return self.name if self.mode == "init" else f"{self.name}+{self.mode}"


@dataclass(frozen=True)
class LowDataConfig:
    """The `experiments.prior_lowdata` section; the defaults are the schema's."""

    enabled: bool = True
    dataset: str = "fashion_mnist"
    shots: int = 200
    validation_per_class: int = 50
    seeds: tuple[int, ...] = tuple(range(10))
    priors: tuple[str, ...] = ("zero", "bio", "shuffled", "block_mean", "sites_permuted")
    modes: tuple[str, ...] = ("init", "anchor")
    epochs: int = 3
    batch_size: int = 50
    lr_grid: tuple[float, ...] = (0.005, 0.01, 0.02, 0.05)
    momentum: float = 0.9
    weight_decay: float = 5e-4
    quadratic_lr_mult: float = 10.0
    crop_padding: int = 2
    flip: bool = True
    anchor_strengths: tuple[float, ...] = (1e-2, 1e-1, 1.0, 10.0)
    choice_seeds: tuple[int, ...] = (1000, 1001)
    threads: int = 1

    @classmethod
    def from_mapping(cls, values: Mapping | None, where: str = "experiments.prior_lowdata"
                     ) -> LowDataConfig:  # fmt: skip
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in (values or {}).items()}
        checked_keys(cls, values, where)
        config = cls(**values)
        if "zero" not in config.priors:
            raise ConfigError(f"config key {where}.priors: 'zero' must be one (the reference).")
        if "bio" not in config.priors:
            raise ConfigError(f"config key {where}.priors: 'bio' must be one (what is tested).")
        if overlap := sorted(set(config.seeds) & set(config.choice_seeds)):
            raise ConfigError(
                f"config key {where}.choice_seeds: {overlap} are also evaluation seeds "
                f"({where}.seeds); choices must be made on other draws."
            )
        return config
