"""Morphologies: the built-in reduced cells and SWC files, as Brian2 `Morphology` objects.

The compartment table (`compartment_table`) is the flat, labelled view of a morphology
that the rest of the package works with: one row per compartment, in Brian2's order
(root first, then each section depth-first), with its branch, path distance and position.
"""

import math
from pathlib import Path

import brian2 as b2
import numpy as np
import pandas as pd

from .errors import InputError
from .swc import read_swc

SOMA_DIAMETER_UM = 20.0

# A reduced pyramidal neuron: four basal dendrites, an apical trunk in three pieces
# with an oblique branch off each of the first two and a two-branch tuft at its end.
# (dotted path from the soma, length in um, diameter in um)
PYRAMIDAL_SECTIONS = (
    ("basal1", 200.0, 1.0),
    ("basal2", 200.0, 1.0),
    ("basal3", 200.0, 1.0),
    ("basal4", 200.0, 1.0),
    ("trunk", 120.0, 3.0),
    ("trunk.oblique1", 150.0, 0.8),
    ("trunk.mid", 120.0, 2.5),
    ("trunk.mid.oblique2", 150.0, 0.8),
    ("trunk.mid.distal", 120.0, 2.0),
    ("trunk.mid.distal.tuft1", 200.0, 1.0),
    ("trunk.mid.distal.tuft2", 200.0, 1.0),
)

BUILTIN_CELLS = ("pyramidal", "point")


def builtin_morphology(name: str, max_compartment_um: float = 20.0) -> b2.Morphology:
    """The built-in cell `name`: "pyramidal" (reduced pyramidal) or "point" (soma only)."""
    if name not in BUILTIN_CELLS:
        raise InputError(f"unknown built-in cell '{name}'; choose one of {BUILTIN_CELLS}.")
    soma = b2.Soma(diameter=SOMA_DIAMETER_UM * b2.um)
    if name == "pyramidal":
        for path, length, diameter in PYRAMIDAL_SECTIONS:
            *parents, leaf = path.split(".")
            parent = soma
            for part in parents:
                parent = parent[part]
            n = max(1, math.ceil(length / max_compartment_um))
            parent[leaf] = b2.Cylinder(length=length * b2.um, diameter=diameter * b2.um, n=n)
    return soma.generate_coordinates()


def load_morphology(spec: str, max_compartment_um: float = 20.0) -> b2.Morphology:
    """A morphology from `spec`: "builtin:<name>" or the path of an SWC file."""
    if spec.startswith("builtin:"):
        return builtin_morphology(spec.removeprefix("builtin:"), max_compartment_um)
    path = Path(spec)
    if path.suffix.lower() != ".swc":
        raise InputError(f"morphology '{spec}': give 'builtin:<name>' or a path ending in .swc.")
    read_swc(path)
    try:
        morpho = b2.Morphology.from_file(str(path))
    except Exception as err:  # Brian2 rejects some well-formed files (e.g. odd somata)
        raise InputError(
            f"SWC file '{path}' could not be turned into a morphology: {err}"
        ) from None
    return morpho.generate_coordinates()


def _um(quantity: b2.Quantity) -> np.ndarray:
    return np.asarray(quantity / b2.um, dtype=float)


def _sections(morpho: b2.Morphology, path: str = "soma"):
    yield path, morpho
    for child in morpho.children:
        name = morpho.children.name(child)
        yield from _sections(child, name if path == "soma" else f"{path}.{name}")


def compartment_table(morpho: b2.Morphology) -> pd.DataFrame:
    """One row per compartment: branch, path distance, midpoint position, diameter, length."""
    parts = []
    for path, section in _sections(morpho):
        parts.append(
            pd.DataFrame(
                {
                    "compartment": np.asarray(section.indices[:], dtype=int),
                    "branch": path,
                    "distance_um": _um(section.distance),
                    "x_um": _um(section.x),
                    "y_um": _um(section.y),
                    "z_um": _um(section.z),
                    "diameter_um": _um(section.diameter),
                    "length_um": _um(section.length) if path != "soma" else 0.0,
                }
            )
        )
    table = pd.concat(parts).sort_values("compartment").reset_index(drop=True)
    if not np.array_equal(table.compartment, np.arange(len(table))):
        raise AssertionError("compartment indices are not a contiguous range")
    return table
