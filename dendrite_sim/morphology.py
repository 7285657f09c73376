"""Cells: the built-in reduced cells and SWC reconstructions, as Brian2 `Morphology` objects.

`load_cell(spec, dendrite)` (a dendrite_sim.config.DendriteConfig) gives a `Cell`: the
Brian2 morphology, labels for its branches and a description (compartments, segmentation
rule, soma, merged points, total length, soma input resistance) that goes into psp.nc's
attributes.

SWC files are read with NEURON Import3d's conventions (`dendrite_sim.swc`) and every
section is cut into compartments by the d_lambda rule (`dendrite_sim.cable`); each
compartment's membrane area and axial conductances are integrated over the file's
points, so the cell is NEURON's cell of the same file at the same segmentation. The
built-in cells are uniform cylinders cut by the same rule.

The compartment table (`compartment_table`) is the flat, labelled view of a morphology
that the rest of the package works with: one row per compartment, in Brian2's order
(root first, then each section depth-first), with its branch, path distance, position
and extent.
"""

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import brian2 as b2
import numpy as np
import pandas as pd
import scipy.sparse
import scipy.sparse.linalg

from .cable import Compartments, Segmentation, integrate
from .config import DendriteConfig
from .errors import InputError
from .swc import SwcCell, read_cell

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


@dataclass
class Cell:
    """A Brian2 morphology with branch labels and its description.

    `labels` is "path" (built-in cells: the dotted path from the soma, e.g.
    trunk.mid.oblique2) or "name" (SWC cells: NEURON's section name, e.g. dend[12]).
    """

    spec: str
    morphology: b2.Morphology
    labels: str
    segmentation: Segmentation
    soma: str
    merged_points: int = 0
    n_points: int = 0
    notes: list[str] = field(default_factory=list)

    def compartments(self) -> pd.DataFrame:
        """The compartment table (see `compartment_table`)."""
        return compartment_table(self.morphology, self.labels)

    def input_resistance_MOhm(self, Rm_ohm_cm2: float) -> float:
        """Soma input resistance at steady state with this axial and membrane resistivity."""
        return input_resistance_MOhm(self.morphology, Rm_ohm_cm2, self.segmentation.Ri_ohm_cm)

    def attrs(self, Rm_ohm_cm2: float) -> dict[str, str | int | float]:
        """The cell's description for NetCDF attributes (values with units in their names)."""
        table = self.compartments()
        return {
            "morphology": self.spec,
            "soma": self.soma,
            "n_compartments": int(len(table)),
            "n_sections": int(self.morphology.total_sections),
            "segmentation": self.segmentation.describe(),
            "d_lambda": self.segmentation.d_lambda,
            "d_lambda_frequency_Hz": self.segmentation.frequency_Hz,
            "max_compartment_um": self.segmentation.max_compartment_um,
            "swc_points": int(self.n_points),
            "merged_zero_length_segments": int(self.merged_points),
            "total_dendritic_length_um": float(table.length_um.sum()),
            "soma_input_resistance_MOhm": self.input_resistance_MOhm(Rm_ohm_cm2),
        }

    def summary(self) -> str:
        """One line for the log."""
        n = self.morphology.total_compartments
        text = f"{self.spec}: {n} compartments in {self.morphology.total_sections} sections ({self.segmentation.describe()})"
        return "; ".join([text, *self.notes])


class _IntegratedSection(b2.Section):
    """A Brian2 section whose compartment areas and axial conductance factors are the
    integrals over the reconstruction's points (`cable.integrate`), and whose
    compartment lengths are path lengths (Brian2 would take the straight chord between
    the compartment's end points and the frustum of its end diameters)."""

    def __init__(self, geometry: Compartments, origin: np.ndarray, section_type: str):
        relative = (geometry.boundary_xyz - origin) * b2.um
        super().__init__(
            diameter=geometry.boundary_diameter * b2.um,
            n=len(geometry.length),
            x=relative[:, 0],
            y=relative[:, 1],
            z=relative[:, 2],
            type=section_type,
        )
        self._length = geometry.length * b2.um
        self._integrated_area = geometry.area * b2.um**2
        self._r_length_1 = geometry.r_length_1 * b2.um
        self._r_length_2 = geometry.r_length_2 * b2.um
        self._midpoint = geometry.midpoint_xyz * 1e-6  # metres, like Brian2's x_, y_, z_

    # Midpoints on the path (Brian2's would be half-way along the chord)
    @property
    def x_(self) -> np.ndarray:
        return self._midpoint[:, 0]

    @property
    def y_(self) -> np.ndarray:
        return self._midpoint[:, 1]

    @property
    def z_(self) -> np.ndarray:
        return self._midpoint[:, 2]

    @property
    def area(self) -> b2.Quantity:
        return self._integrated_area

    @property
    def r_length_1(self) -> b2.Quantity:
        return self._r_length_1

    @property
    def r_length_2(self) -> b2.Quantity:
        return self._r_length_2


class _Soma(b2.Soma):
    """A Brian2 soma (one isopotential compartment) with a given membrane area."""

    def __init__(self, diameter_um: float, area_um2: float, xyz: np.ndarray):
        super().__init__(
            diameter=diameter_um * b2.um, x=xyz[0] * b2.um, y=xyz[1] * b2.um, z=xyz[2] * b2.um
        )
        self._integrated_area = np.array([area_um2]) * b2.um**2

    @property
    def area(self) -> b2.Quantity:
        return self._integrated_area


def builtin_morphology(name: str, segmentation: Segmentation) -> b2.Morphology:
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
            n = segmentation.n_cylinder(length, diameter)
            parent[leaf] = b2.Cylinder(length=length * b2.um, diameter=diameter * b2.um, n=n)
    return soma.generate_coordinates()


def swc_morphology(swc: SwcCell, segmentation: Segmentation) -> b2.Morphology:
    """The Brian2 morphology of an SWC cell: the soma and one integrated section per
    Import3d section, children attached as in NEURON (see `dendrite_sim.swc`)."""
    soma = _Soma(swc.soma.diameter, swc.soma.area, swc.soma.xyz)
    built: list[b2.Morphology] = []
    for section in swc.sections:
        arc = section.arc
        n = segmentation.n_compartments(arc, section.diameter)
        geometry = integrate(arc, section.xyz, section.diameter, n)
        if section.parent < 0:
            parent, origin = soma, swc.soma.xyz
        else:
            parent = built[section.parent]
            origin = swc.sections[section.parent].xyz[-1]
        child = _IntegratedSection(geometry, origin, section.name.split("[")[0])
        parent.children.add(section.name, child)
        built.append(child)
    return soma


def load_cell(spec: str, dendrite: DendriteConfig) -> Cell:
    """The cell for `spec` ("builtin:<name>" or the path of an SWC file), with the
    segmentation and membrane of the `dendrite` config section."""
    segmentation = Segmentation.from_config(dendrite)
    if spec.startswith("builtin:"):
        morphology = builtin_morphology(spec.removeprefix("builtin:"), segmentation)
        soma = f"sphere of diameter {SOMA_DIAMETER_UM:g} um"
        return Cell(spec, morphology, "path", segmentation, soma)
    path = Path(spec)
    if path.suffix.lower() != ".swc":
        raise InputError(f"morphology '{spec}': give 'builtin:<name>' or a path ending in .swc.")
    swc = read_cell(path)
    return Cell(
        spec,
        swc_morphology(swc, segmentation),
        "name",
        segmentation,
        swc.soma.convention,
        merged_points=swc.merged_points,
        n_points=swc.n_points,
        notes=swc.notes(),
    )


def load_morphology(spec: str, dendrite: DendriteConfig) -> b2.Morphology:
    """The Brian2 morphology of `load_cell`."""
    return load_cell(spec, dendrite).morphology


def _um(quantity: b2.Quantity) -> np.ndarray:
    return np.asarray(quantity / b2.um, dtype=float)


def _sections(
    morpho: b2.Morphology, path: str = "soma"
) -> Iterator[tuple[str, str, b2.Morphology]]:
    """(dotted path from the soma, own name, section) of every section, depth-first."""
    yield path, path, morpho
    for child in morpho.children:
        name = morpho.children.name(child)
        yield from _sections(child, name if path == "soma" else f"{path}.{name}")


def _own_names(morpho: b2.Morphology) -> Iterator[tuple[str, b2.Morphology]]:
    for _, _, section in _sections(morpho):
        for child in section.children:
            yield section.children.name(child), child


def compartment_table(morpho: b2.Morphology, labels: str = "path") -> pd.DataFrame:
    """One row per compartment: branch label, path distance, midpoint, start and end
    positions, diameter, length (um). `labels`: "path" (dotted path from the soma) or
    "name" (the section's own name)."""
    parts = []
    names = {id(section): name for name, section in _own_names(morpho)}
    for path, _, section in _sections(morpho):
        label = path if (labels == "path" or path == "soma") else names[id(section)]
        soma = path == "soma"
        coords = {}
        for axis in "xyz":
            mid = _um(getattr(section, axis))
            start = mid if soma else _um(getattr(section, f"start_{axis}"))
            end = mid if soma else _um(getattr(section, f"end_{axis}"))
            coords |= {f"{axis}_um": mid, f"start_{axis}_um": start, f"end_{axis}_um": end}
        parts.append(
            pd.DataFrame(
                {
                    "compartment": np.asarray(section.indices[:], dtype=int),
                    "branch": label,
                    "distance_um": _um(section.distance),
                    **coords,
                    "diameter_um": _um(section.diameter),
                    "length_um": _um(section.length) if not soma else 0.0,
                }
            )
        )
    table = pd.concat(parts).sort_values("compartment").reset_index(drop=True)
    if not np.array_equal(table.compartment, np.arange(len(table))):
        raise AssertionError("compartment indices are not a contiguous range")
    return table


def input_resistance_MOhm(morpho: b2.Morphology, Rm_ohm_cm2: float, Ri_ohm_cm: float) -> float:
    """Steady-state input resistance at the soma (MOhm) of the passive cable.

    Nodes are the compartments and one junction per section end with children (as in
    Brian2 and NEURON); leak conductance = area / Rm, axial conductance = r_length / Ri.
    """
    n = morpho.total_compartments
    rows, cols, values = [], [], []

    def couple(a: int, b: int, g: float) -> None:
        rows.extend([a, b, a, b])
        cols.extend([a, b, b, a])
        values.extend([g, g, -g, -g])

    leak = np.zeros(n)
    junctions = n
    ri = Ri_ohm_cm * 1e-2  # ohm * m
    for _, _, section in _sections(morpho):
        index = np.asarray(section.indices[:], dtype=int)
        leak[index] = np.asarray(section.area / b2.meter**2) / (Rm_ohm_cm2 * 1e-4)
        if index[0] == 0:  # the soma: its children attach to it directly
            end = 0
        else:
            g1 = np.asarray(section.r_length_1 / b2.meter) / ri
            g2 = np.asarray(section.r_length_2 / b2.meter) / ri
            for k in range(len(index) - 1):
                couple(index[k], index[k + 1], 1.0 / (1.0 / g2[k] + 1.0 / g1[k + 1]))
            end = junctions
            junctions += 1
            couple(index[-1], end, float(g2[-1]))
        for child in section.children:
            g_child = float(np.asarray(child.r_length_1[0] / b2.meter)) / ri
            couple(end, int(child.indices[0]), g_child)
    size = junctions
    matrix = scipy.sparse.coo_matrix((values, (rows, cols)), shape=(size, size)).tocsc()
    matrix = matrix + scipy.sparse.diags(np.concatenate([leak, np.zeros(size - n)]))
    current = np.zeros(size)
    current[0] = 1.0
    v = scipy.sparse.linalg.spsolve(matrix.tocsc(), current)
    return float(v[0]) * 1e-6
