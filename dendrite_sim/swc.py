"""Read SWC morphology files and cut them into sections the way NEURON's Import3d does.

`read_swc` checks a file and returns its points; every problem that cannot be repaired
(a malformed row, a radius or coordinate out of range, a duplicate id, a parent that does not exist,
a second root, a cycle, a root that is not a soma point) is an `InputError` that names
the file, the line and what to do.

`swc_sections` turns the points into unbranched sections with the conventions of
NEURON's standard SWC reader (Import3d_SWC_read + Import3d_GUI.instantiate), so that a
cell built from a file here has the geometry NEURON users get from the same file:

* Sections are maximal runs of points of one type, each point followed by its only
  child on the next line; a branch point, a change of type or a child that is not on
  the next line ends a section. Sections are named like NEURON's: soma, dend[i],
  apic[i], axon[i] (dend_5[i] for other types), numbered in file order per type.
* Soma. A one-point soma is a sphere of the point's diameter (NEURON: a cylinder of
  length = diameter, the same membrane area). The NeuroMorpho three-point soma (a
  root and two points one radius away on either side, all of the same diameter, no
  children on the outer points) is the same sphere. Any other soma (several type-1
  points: a stack of cylinders or a traced outline) is the chain of frusta through
  its points, as Import3d builds it.
* Attachment at the soma. A dendrite of a one- or three-point soma starts at its own
  first point, connected to the soma centre by a "wire" of no length and no
  resistance (NEURON: pt3dstyle, parentx = 0.5); only a dendrite made of a single point
  runs from the soma centre to that point. On a multi-point soma a dendrite attached
  to an interior soma point is wired the same way; one attached to an end of the soma
  starts at that soma point (with its own first diameter) unless several soma
  branches leave that point. A branch that leaves the first point of a wired dendrite
  is connected to that dendrite's proximal end, i.e. to the soma.
* Elsewhere a child section starts with a copy of its parent point (position and
  diameter) and attaches to the end of the parent section.
* Zero-length segments: a point at its parent's position (closer than
  `ZERO_LENGTH_UM`) adds no length; it is merged into its parent, and where its
  diameter differs the cable's diameter steps there (as NEURON's 3-D points do). A
  section of zero length is dropped and its children attach to its parent (Import3d
  drops zero-length two-point sections the same way). `SwcCell.merged_points` counts them.

One module (about 490 lines) because reading, repairing and sectioning are one pass over
the same point table with one set of line numbers for the error messages.
"""

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import InputError

SWC_COLUMNS = "id type x y z radius parent"
SOMA = 1
TYPE_NAMES = {1: "soma", 2: "axon", 3: "dend", 4: "apic"}
# Points closer than this to their parent add no length (a zero-length segment).
ZERO_LENGTH_UM = 1e-4
# What a point may be: radii from below the thinnest axons (about 0.05 um) to above the
# largest somata (Betz cells, about 50 um), coordinates within 10 cm of the origin. Outside
# these a file is in other units or damaged, and its segmentation would be absurd (a radius of
# 1e-10 um gives 150,000 compartments; a point at 1e12 um asks for terabytes).
RADIUS_RANGE_UM = (0.01, 1000.0)
COORDINATE_LIMIT_UM = 1e5


@dataclass(frozen=True)
class SwcPoints:
    """The points of an SWC file in id order: parent[i] indexes the arrays (-1: root)."""

    path: Path
    ids: np.ndarray
    types: np.ndarray
    xyz: np.ndarray
    radius: np.ndarray
    parent: np.ndarray
    lines: np.ndarray

    def __len__(self) -> int:
        return len(self.ids)

    def where(self, i: int) -> str:
        """The start of a message about point i: SWC file '<path>', line <n>: point <id>."""
        return f"SWC file '{self.path}', line {self.lines[i]}: point {self.ids[i]}"


def _row_error(path: Path, line_no: int, line: str, why: str) -> InputError:
    return InputError(f"SWC file '{path}', line {line_no}: {why} (row: {line!r}).")


def _parse(path: Path) -> tuple[list[list[float]], list[int]]:
    rows: list[list[float]] = []
    lines: list[int] = []
    seen: dict[int, int] = {}
    for line_no, raw in enumerate(path.read_text(errors="replace").splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split()
        if len(fields) != 7:
            why = f"expected 7 columns ({SWC_COLUMNS}), found {len(fields)}"
            raise _row_error(path, line_no, line, why)
        try:
            values = [float(f) for f in fields]
        except ValueError:
            why = f"every column must be a number ({SWC_COLUMNS})"
            raise _row_error(path, line_no, line, why) from None
        if not all(np.isfinite(values)):
            raise _row_error(path, line_no, line, "every column must be a finite number")
        ident, kind, radius, parent = values[0], values[1], values[5], values[6]
        if not (ident.is_integer() and parent.is_integer() and kind.is_integer()):
            raise _row_error(path, line_no, line, "id, type and parent must be integers")
        if max(abs(v) for v in values[2:5]) > COORDINATE_LIMIT_UM:
            why = (
                f"a coordinate beyond {COORDINATE_LIMIT_UM:g} um of the origin; SWC "
                "coordinates are in micrometres"
            )
            raise _row_error(path, line_no, line, why)
        low, high = RADIUS_RANGE_UM
        if 0 < radius < low or radius > high:
            why = (
                f"radius {radius:g} um is outside {low:g} .. {high:g} um; SWC radii are in "
                "micrometres (a diameter in the radius column, or other units?)"
            )
            raise _row_error(path, line_no, line, why)
        if int(ident) in seen:
            why = f"id {int(ident)} appears twice (first on line {seen[int(ident)]}); renumber one"
            raise _row_error(path, line_no, line, why)
        if radius <= 0:
            why = (
                f"radius must be positive, got {radius:g}; give the point the radius of "
                "its neighbours (or remove it and re-parent its children)"
            )
            raise _row_error(path, line_no, line, why)
        seen[int(ident)] = line_no
        rows.append(values)
        lines.append(line_no)
    return rows, lines


def read_swc(path: str | Path) -> SwcPoints:
    """The points of an SWC file, checked to form one tree rooted at a soma point.

    Rows may come in any order; ids need not be contiguous. Raises InputError naming
    the file and line for: a malformed row, a non-finite value, a non-integer id, type or
    parent, a repeated id, a radius outside RADIUS_RANGE_UM (a non-positive one says so), a
    coordinate beyond COORDINATE_LIMIT_UM, a parent id that is not in the file, more than
    one root (points not connected to the cell), a cycle, a root that is not a soma
    point (type 1).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"SWC file '{path}' does not exist.")
    rows, lines = _parse(path)
    if not rows:
        raise InputError(f"SWC file '{path}' holds no points.")
    table = np.array(rows)
    order = np.argsort(table[:, 0], kind="stable")
    table, line_of = table[order], np.asarray(lines)[order]
    ids = table[:, 0].astype(np.int64)
    index = {int(i): k for k, i in enumerate(ids)}
    parent_ids = table[:, 6].astype(np.int64)
    parent = np.full(len(ids), -1, dtype=np.int64)
    roots = []
    for k, pid in enumerate(parent_ids):
        if pid < 0:
            roots.append(k)
        elif int(pid) not in index:
            raise InputError(
                f"SWC file '{path}', line {line_of[k]}: parent {pid} is not an id defined "
                "in the file; fix the parent column (-1 marks the root)."
            )
        else:
            parent[k] = index[int(pid)]
    points = SwcPoints(
        path, ids, table[:, 1].astype(np.int64), table[:, 2:5], table[:, 5], parent, line_of
    )
    if not roots:
        raise InputError(
            f"SWC file '{path}' has no root (a point with parent -1): every point has a "
            "parent, so the points form a cycle; give the soma's first point parent -1."
        )
    if len(roots) > 1:
        first, second = sorted(roots, key=lambda k: line_of[k])[:2]
        raise InputError(
            f"{points.where(second)} is a second root (parent -1) after the one on line "
            f"{line_of[first]}; its points are not connected to the cell. An SWC cell is "
            "one tree: connect this point to its parent or delete its subtree."
        )
    _check_reachable(points, roots[0])
    root = roots[0]
    if points.types[root] != SOMA:
        raise InputError(
            f"{points.where(root)}, the root, has type {points.types[root]}, not 1 "
            "(soma); the cell needs a soma at its root: set the type of the soma point(s) to 1."
        )
    return _topological(points, root)


def _check_reachable(points: SwcPoints, root: int) -> None:
    """Every point must lead to the root through its parents; otherwise name a cycle."""
    state = np.zeros(len(points), dtype=np.int8)  # 0 unknown, 1 on the current path, 2 reaches root
    state[root] = 2
    for start in range(len(points)):
        path = []
        k = start
        while state[k] == 0:
            state[k] = 1
            path.append(k)
            k = int(points.parent[k])
        if state[k] == 1:  # came back to a point of this walk: a cycle
            cycle = path[path.index(k) :]
            chain = " -> ".join(str(points.ids[c]) for c in cycle[:8])
            raise InputError(
                f"{points.where(k)} is on a cycle: the points {chain}{' ...' if len(cycle) > 8 else ''} "
                f"form a cycle through their parent column ({len(cycle)} points, lines "
                f"{', '.join(str(points.lines[c]) for c in cycle[:8])}); a neuron is a tree: "
                "fix the parent of one of them."
            )
        for c in path:
            state[c] = 2


def _topological(points: SwcPoints, root: int) -> SwcPoints:
    """The points reordered so that every parent comes before its children (id order
    wherever the file already has it), with parent indices remapped."""
    n = len(points)
    if points.parent[root] == -1 and root == 0 and np.all(points.parent[1:] < np.arange(1, n)):
        return points
    children: list[list[int]] = [[] for _ in range(n)]
    for k in range(n):
        if points.parent[k] >= 0:
            children[int(points.parent[k])].append(k)
    order, stack = [], [root]
    while stack:  # depth-first, children in id order
        k = stack.pop()
        order.append(k)
        stack.extend(reversed(children[k]))
    new = np.empty(n, dtype=np.int64)
    new[order] = np.arange(n)
    order = np.asarray(order)
    parent = np.where(points.parent[order] >= 0, new[np.maximum(points.parent[order], 0)], -1)
    return SwcPoints(
        points.path,
        points.ids[order],
        points.types[order],
        points.xyz[order],
        points.radius[order],
        parent,
        points.lines[order],
    )


@dataclass
class SwcSection:
    """One unbranched section: its 3-D points as NEURON stores them (pt3d), in um."""

    name: str
    type: int
    parent: int  # index of the parent section in SwcCell.sections, -1: the soma
    xyz: np.ndarray  # (n, 3)
    diameter: np.ndarray  # (n,)
    wired: bool  # attached to the soma by a wire (its first point is its own)
    first_line: int  # line of its first own point in the file

    @property
    def arc(self) -> np.ndarray:
        """Path length from the section's first point to each point (um)."""
        steps = np.linalg.norm(np.diff(self.xyz, axis=0), axis=1)
        steps[steps < ZERO_LENGTH_UM] = 0.0
        return np.concatenate([[0.0], np.cumsum(steps)])

    @property
    def length(self) -> float:
        return float(self.arc[-1])


@dataclass
class SwcSoma:
    """The soma as one isopotential compartment: its convention, centre and membrane area."""

    convention: str
    xyz: np.ndarray  # centre (um)
    diameter: float  # of a sphere with the same area (um)
    area: float  # um**2
    n_points: int


@dataclass
class SwcCell:
    """A cell read from an SWC file: the soma and the sections, parents before children."""

    path: Path
    soma: SwcSoma
    sections: list[SwcSection]
    n_points: int
    merged_points: int
    merged_lines: list[int] = field(default_factory=list)
    dropped_sections: list[int] = field(default_factory=list)  # their first lines

    def notes(self) -> list[str]:
        """What the reader made of the file, for the log: points, soma, repairs."""
        notes = [f"{self.n_points} points, {self.soma.convention}"]
        if self.merged_points:
            lines = ", ".join(str(n) for n in self.merged_lines[:5])
            more = ", ..." if self.merged_points > 5 else ""
            notes.append(
                f"merged {self.merged_points} zero-length segments (points at their "
                f"parent's position, lines {lines}{more})"
            )
        if self.dropped_sections:
            lines = ", ".join(str(n) for n in self.dropped_sections[:5])
            notes.append(
                f"dropped {len(self.dropped_sections)} zero-length sections (from lines {lines})"
            )
        return notes


def _frustum_area(xyz: np.ndarray, diameter: np.ndarray) -> float:
    steps = np.linalg.norm(np.diff(xyz, axis=0), axis=1)
    r1, r2 = diameter[:-1] / 2, diameter[1:] / 2
    return float(np.sum(np.pi * (r1 + r2) * np.sqrt((r1 - r2) ** 2 + steps**2)))


def _section_ends(points: SwcPoints) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
    """Import3d's section breaks: ends[i] says whether point i ends its section.

    Also returns, per point, the number of soma children of a soma point, whether a
    section starting at the point connects to the proximal end of its parent section,
    and whether the soma is NeuroMorpho's three-point soma.
    """
    n, parent, types = len(points), points.parent, points.types
    # Children counted in hundredths: +100 per child, +1 if not on the next line, +1 if
    # of another type; exactly 100 (one contiguous child of the same type) continues.
    nchild = np.zeros(n, dtype=np.int64)
    to_proximal = np.zeros(n, dtype=bool)
    for i in range(1, n):
        p = int(parent[i])
        nchild[p] += 100
        if p != i - 1:
            nchild[p] += 1
            grand = int(parent[p])
            if p > 1 and types[p] != SOMA and grand >= 0 and types[grand] == SOMA:
                to_proximal[i] = True  # p is the first point of a dendrite on the soma
                nchild[p] = 100
        if types[p] != types[i]:
            nchild[p] += 1
    soma_children = np.zeros(n, dtype=np.int64)
    for i in range(1, n):
        if types[i] == SOMA and types[parent[i]] == SOMA:
            soma_children[parent[i]] += 1
    three_point = _is_neuromorpho_three_point(points, nchild)
    if three_point:
        parent = parent.copy()
        parent[2] = 1
    for i in range(n - 1):
        if types[i] == SOMA and types[i + 1] == SOMA and parent[i + 1] == i:
            if not (i != 0 and soma_children[i] > 1):
                nchild[i] = 100
    ends = np.ones(n, dtype=bool)
    ends[:-1] = ~((nchild[:-1] == 100) & (parent[1:] == np.arange(n - 1)))
    return ends, soma_children, to_proximal, three_point


def _is_neuromorpho_three_point(points: SwcPoints, nchild: np.ndarray) -> bool:
    """NeuroMorpho's three-point soma: root and two outer points of the same diameter,
    one radius from the root on either side, the outer points without children."""
    if len(points) < 3 or np.count_nonzero(points.types == SOMA) != 3:
        return False
    if points.parent[1] != 0 or points.parent[2] != 0 or nchild[1] or nchild[2]:
        return False
    d = points.radius[:3]
    if not (d[1] == d[0] and d[2] == d[0]):
        return False
    length = np.linalg.norm(points.xyz[1] - points.xyz[0]) + np.linalg.norm(
        points.xyz[2] - points.xyz[0]
    )
    return abs(length / (2 * d[0]) - 1) < 0.01


def swc_sections(points: SwcPoints) -> SwcCell:
    """Sections, soma and attachments of `points` with NEURON Import3d's conventions
    (see the module docstring); zero-length segments merged, zero-length sections dropped."""
    n = len(points)
    types, xyz, diam = points.types, points.xyz, 2 * points.radius
    ends, soma_children, to_proximal, three_point = _section_ends(points)
    parent = points.parent.copy()
    if three_point:
        parent[2] = 1
    # ranges [first, last] of the raw sections, in file order; section of every point
    starts = np.concatenate([[0], np.flatnonzero(ends[:-1]) + 1])
    lasts = np.flatnonzero(ends)
    section_of = np.repeat(np.arange(len(starts)), lasts - starts + 1)
    root_last = 0 if three_point else int(lasts[0])
    root_points = root_last + 1
    soma_sections = {0}

    sections: list[SwcSection] = []
    section_index = {0: -1}  # raw section -> index in `sections` (-1: the soma)
    soma_area = 0.0
    if root_points == 1:
        d0 = diam[0]
        soma_area = np.pi * d0**2
        convention = (
            "three-point soma (NeuroMorpho): a sphere"
            if three_point
            else "one-point soma: a sphere"
        )
        convention += f" of diameter {d0:.4g} um"
    else:
        soma_area = _frustum_area(xyz[:root_points], diam[:root_points])
        convention = f"{root_points}-point soma: frusta through its points"
    soma_xyz = xyz[:root_points].mean(axis=0)
    extra_soma_points = 0
    for s in range(1, len(starts)):
        first, last = int(starts[s]), int(lasts[s])
        pp = int(parent[first])
        psec = int(section_of[pp])
        ptype = types[starts[psec]]
        own = last - first + 1
        wired = False
        if psec == 0:
            if types[first] != SOMA and ptype == SOMA and root_points == 1:
                wired = own > 1
            elif pp == 0:
                wired = types[first] != SOMA and soma_children[pp] > 1
            elif ptype == SOMA:
                wired = _wired_to_soma_point(types, pp, root_last, own, soma_children, first)
        elif ptype == SOMA:
            wired = _wired_to_soma_point(types, pp, int(lasts[psec]), own, soma_children, first)
        wired = bool(wired)
        sec_xyz = xyz[first : last + 1]
        sec_d = diam[first : last + 1]
        if not wired:
            copy_d = sec_d[0] if (ptype == SOMA and types[first] != SOMA) else diam[pp]
            sec_xyz = np.vstack([xyz[pp], sec_xyz])
            sec_d = np.concatenate([[copy_d], sec_d])
        if types[first] == SOMA and psec in soma_sections:
            # a further piece of a branched soma: part of the one soma compartment
            soma_sections.add(s)
            soma_area += _frustum_area(sec_xyz, sec_d)
            extra_soma_points += own
            section_index[s] = -1
            continue
        # a branch off the first point of a dendrite on the soma connects to that
        # dendrite's proximal end, which is the soma
        attach = -1 if to_proximal[first] else section_index[psec]
        section = SwcSection(
            name="",
            type=int(types[first]),
            parent=attach,
            xyz=sec_xyz,
            diameter=sec_d,
            wired=wired,
            first_line=int(points.lines[first]),
        )
        section_index[s] = len(sections)
        sections.append(section)
    if extra_soma_points:
        convention = (
            f"{root_points + extra_soma_points}-point branched soma: frusta through its points"
        )
    soma = SwcSoma(
        convention=convention,
        xyz=soma_xyz,
        diameter=float(np.sqrt(soma_area / np.pi)),
        area=float(soma_area),
        n_points=root_points + extra_soma_points,
    )
    merged = [
        int(points.lines[i])
        for i in range(1, n)
        if np.linalg.norm(xyz[i] - xyz[parent[i]]) < ZERO_LENGTH_UM
    ]
    sections, dropped = _drop_zero_length(sections)
    counters: dict[int, int] = {}
    for section in sections:  # NEURON's names, given after dropping as Import3d does
        number = counters.get(section.type, 0)
        counters[section.type] = number + 1
        kind = section.type
        name = TYPE_NAMES.get(kind, f"dend_{kind}" if kind > 0 else f"minus_{-kind}")
        section.name = f"{name}[{number}]"
    if not sections and n > root_points + extra_soma_points:
        raise InputError(
            f"SWC file '{points.path}': every dendritic section has zero length; "
            "the coordinates are probably missing."
        )
    return SwcCell(points.path, soma, sections, n, len(merged), merged, dropped)


def _wired_to_soma_point(
    types: np.ndarray, pp: int, soma_last: int, own: int, soma_children: np.ndarray, first: int
) -> bool:
    """Import3d's rule for a section whose parent point pp is on a multi-point soma."""
    if pp < soma_last:  # an interior soma point: wired if a dendrite of several points
        return types[first] != SOMA and own > 1
    return own > 1 and soma_children[pp] > 1 and types[first] != SOMA


def _drop_zero_length(sections: list[SwcSection]) -> tuple[list[SwcSection], list[int]]:
    """Remove sections of zero length; their children attach to their parent."""
    keep, dropped, new_index = [], [], {-1: -1}
    for k, section in enumerate(sections):
        parent = new_index[section.parent]
        if section.length < ZERO_LENGTH_UM:
            dropped.append(section.first_line)
            new_index[k] = parent
            continue
        section.parent = parent
        new_index[k] = len(keep)
        keep.append(section)
    return keep, dropped


def read_cell(path: str | Path) -> SwcCell:
    """`read_swc` then `swc_sections`: the checked file as a soma and sections."""
    return swc_sections(read_swc(path))
