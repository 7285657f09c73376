"""Compartments of a cable section: the d_lambda rule and NEURON's geometry integrals.

Segmentation (`n_compartments`). A section is cut into the number of compartments that
NEURON's d_lambda rule gives,

    n = int((L / (d_lambda * lambda_f) + 0.9) / 2) * 2 + 1,

an odd number with every compartment at most about d_lambda of the AC length constant
lambda_f at `frequency_Hz`, and into more (ceil(L / max_compartment_um)) if a compartment
would still be longer than `max_compartment_um`. lambda_f is NEURON's `lambda_f()` for a
section with 3-D points: the section's length divided by its electrotonic length

    sum over pieces of  dx / sqrt(d1 + d2) * sqrt(2) * sqrt(4 pi f Ri Cm)

(x and d in um, Ri in ohm*cm, Cm in F/cm**2, scaled to um), which for a cylinder of
diameter d is lambda_f = 0.5 * sqrt(d / (pi f Ri Cm)).

Geometry (`integrate`). Each compartment's membrane area and the axial resistance of
each of its halves are integrated over the section's 3-D points as NEURON does: the
area of every frustum piece (lateral surface, slant included; a diameter step at a
zero-length piece adds its annulus), the resistance Ri * integral of 4 / (pi d(x)**2) dx,
which for a linearly tapering piece is 4 Ri dx / (pi d1 d2).
"""

import math
from dataclasses import dataclass

import numpy as np

from .config import DendriteConfig


@dataclass(frozen=True)
class Segmentation:
    """The rule that sets the number of compartments of every section."""

    d_lambda: float
    frequency_Hz: float
    max_compartment_um: float
    Ri_ohm_cm: float
    Cm_uF_per_cm2: float

    @classmethod
    def from_config(cls, dendrite: DendriteConfig) -> "Segmentation":
        """From the `dendrite` config section (segmentation, max_compartment_um, membrane)."""
        rule, membrane = dendrite.segmentation, dendrite.membrane
        return cls(
            d_lambda=float(rule.d_lambda),
            frequency_Hz=float(rule.frequency_Hz),
            max_compartment_um=float(dendrite.max_compartment_um),
            Ri_ohm_cm=float(membrane.Ri_ohm_cm),
            Cm_uF_per_cm2=float(membrane.Cm_uF_per_cm2),
        )

    def describe(self) -> str:
        """The rule in words, for NetCDF attributes and logs."""
        return (
            f"d_lambda {self.d_lambda:g} at {self.frequency_Hz:g} Hz (NEURON's odd nseg from "
            f"lambda_f), at most {self.max_compartment_um:g} um per compartment"
        )

    def lambda_f_um(self, arc: np.ndarray, diameter: np.ndarray) -> float:
        """NEURON's lambda_f(frequency) of a section with these 3-D points (um)."""
        length = float(arc[-1] - arc[0])
        per_sqrt_um = (
            math.sqrt(2)
            * 1e-5
            * math.sqrt(4 * math.pi * self.frequency_Hz * self.Ri_ohm_cm * self.Cm_uF_per_cm2)
        )
        electrotonic = per_sqrt_um * float(
            np.sum(np.diff(arc) / np.sqrt(diameter[:-1] + diameter[1:]))
        )
        return length / electrotonic

    def n_d_lambda(self, arc: np.ndarray, diameter: np.ndarray) -> int:
        """NEURON's d_lambda number of segments: int((L/(d_lambda*lambda_f) + 0.9)/2)*2 + 1."""
        length = float(arc[-1] - arc[0])
        ratio = length / (self.d_lambda * self.lambda_f_um(arc, diameter))
        return int((ratio + 0.9) / 2) * 2 + 1

    def n_compartments(self, arc: np.ndarray, diameter: np.ndarray) -> int:
        """Compartments of a section: the d_lambda number, more if one would exceed the
        maximum length."""
        length = float(arc[-1] - arc[0])
        by_length = math.ceil(length / self.max_compartment_um - 1e-9)
        return max(self.n_d_lambda(arc, diameter), by_length, 1)

    def n_cylinder(self, length_um: float, diameter_um: float) -> int:
        """`n_compartments` of a uniform cylinder."""
        return self.n_compartments(np.array([0.0, length_um]), np.array([diameter_um, diameter_um]))


@dataclass(frozen=True)
class Compartments:
    """The compartments of one section, in um: equal lengths along the path, membrane
    area, and the Brian2 conductance factors of their halves (r_length = 1 / integral of
    4 / (pi d**2) dx over the half; axial conductance = r_length / Ri)."""

    length: np.ndarray
    area: np.ndarray
    r_length_1: np.ndarray
    r_length_2: np.ndarray
    boundary_xyz: np.ndarray  # (n + 1, 3)
    boundary_diameter: np.ndarray  # (n + 1,)
    midpoint_xyz: np.ndarray  # (n, 3): on the path, half-way along each compartment


def integrate(arc: np.ndarray, xyz: np.ndarray, diameter: np.ndarray, n: int) -> Compartments:
    """Cut the section with 3-D points (arc, xyz, diameter) into n equal compartments."""
    length = float(arc[-1])
    half = length / (2 * n)
    area = np.zeros(2 * n)
    resistive = np.zeros(2 * n)  # integral of dx / d**2 over each half compartment
    for k in range(len(arc) - 1):
        s0, s1, d0, d1 = arc[k], arc[k + 1], diameter[k], diameter[k + 1]
        if s1 <= s0:  # zero-length piece: a diameter step adds its annulus
            j = min(int(s0 / half), 2 * n - 1)
            area[j] += math.pi * abs(d0**2 - d1**2) / 4
            continue
        first, last = int(s0 / half), min(int(math.ceil(s1 / half)), 2 * n)
        cuts = np.clip(np.arange(first, last + 1) * half, s0, s1)
        cuts = np.unique(np.concatenate([[s0], cuts, [s1]]))
        dcut = d0 + (d1 - d0) * (cuts - s0) / (s1 - s0)
        dx = np.diff(cuts)
        ra, rb = dcut[:-1] / 2, dcut[1:] / 2
        j = np.minimum(((cuts[:-1] + cuts[1:]) / 2 / half).astype(int), 2 * n - 1)
        np.add.at(area, j, math.pi * (ra + rb) * np.sqrt((ra - rb) ** 2 + dx**2))
        np.add.at(resistive, j, dx / (dcut[:-1] * dcut[1:]))
    bounds = np.linspace(0.0, length, 2 * n + 1)
    along = np.column_stack([np.interp(bounds, arc, xyz[:, c]) for c in range(3)])
    bounds = bounds[0::2]
    boundary_diameter = np.interp(bounds, arc, diameter)
    return Compartments(
        length=np.full(n, length / n),
        area=area[0::2] + area[1::2],
        r_length_1=math.pi / (4 * resistive[0::2]),
        r_length_2=math.pi / (4 * resistive[1::2]),
        boundary_xyz=along[0::2],
        boundary_diameter=boundary_diameter,
        midpoint_xyz=along[1::2],
    )
