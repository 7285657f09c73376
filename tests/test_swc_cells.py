"""Real reconstructions: SWC conventions against NEURON's Import3d, zero-length segments,
the d_lambda segmentation rule, and the whole stage chain on a realistic cell.

The cells are synthetic CA1-like reconstructions written at test time
(fixtures.write_reconstruction): ~7000 points with a soma of one of four kinds, basal and
apical trees with tapering radii, two 0.18 um thin basal stems, and 18 points that
repeat their parent's position.
"""

import copy
from pathlib import Path

import brian2 as b2
import numpy as np
import pytest
import xarray as xr
from fixtures import SOMA_KINDS, write_reconstruction

from dendrite_sim.cable import Segmentation
from dendrite_sim.config import DendriteConfig, KappaConfig
from dendrite_sim.errors import InputError
from dendrite_sim.model import CellModel
from dendrite_sim.morphology import _sections, load_cell
from dendrite_sim.neuron_ref import Import3dCell
from dendrite_sim.swc import read_cell, read_swc
from pipeline import dendrite as stages

pytest.importorskip("neuron")
ROOT = Path(__file__).resolve().parents[1]
PRECISION = 1e-5  # NEURON keeps 3-D points in single precision


@pytest.fixture(scope="module")
def reconstructions(tmp_path_factory):
    folder = tmp_path_factory.mktemp("swc")
    paths = {}
    for soma in SOMA_KINDS:
        paths[soma] = folder / f"{soma}.swc"
        write_reconstruction(paths[soma], soma=soma)
    return paths


def d_lambda_only(dendrite: dict) -> dict:
    """The dendrite config with NEURON's rule alone (no cap on the compartment length)."""
    return {**dendrite, "max_compartment_um": 1e9}


def our_sections(cell) -> dict:
    """name -> (area um2, half-compartment resistances MOhm, path distances um) per section."""
    ri = cell.segmentation.Ri_ohm_cm * 1e-2
    out = {}
    for _, _, section in _sections(cell.morphology):
        for child in section.children:
            name = section.children.name(child)
            out[name] = (
                np.asarray(child.area / b2.um**2),
                ri / np.asarray(child.r_length_1 / b2.meter) * 1e-6,
                ri / np.asarray(child.r_length_2 / b2.meter) * 1e-6,
                np.asarray(child.distance / b2.um),
            )
    return out


@pytest.mark.slow
@pytest.mark.parametrize("soma", SOMA_KINDS)
def test_geometry_is_neurons_import3d(reconstructions, small_dendrite, soma):
    """Same sections (names, d_lambda segments), same segment areas and axial
    resistances, same path distances and soma input resistance as NEURON's Import3d."""
    dendrite = d_lambda_only(small_dendrite)
    cell = load_cell(str(reconstructions[soma]), DendriteConfig.from_mapping(dendrite))
    model = CellModel.from_config(DendriteConfig.from_mapping(dendrite))
    sites = cell.compartments().iloc[:0]
    ref = Import3dCell(reconstructions[soma], model, sites)
    h = ref.h
    ours = our_sections(cell)
    neuron_soma = [s for s in ref.sections if "soma" in ref.name(s)]
    dendrites = [s for s in ref.sections if "soma" not in ref.name(s)]
    assert sorted(ours) == sorted(ref.name(s) for s in dendrites)
    assert cell.morphology.total_compartments == 1 + sum(s.nseg for s in dendrites)
    for sec in dendrites:
        area, r1, r2, distance = ours[ref.name(sec)]
        assert len(area) == sec.nseg
        segments = list(sec)
        np.testing.assert_allclose(area, [seg.area() for seg in segments], rtol=PRECISION)
        axial = np.concatenate([[r1[0]], r2[:-1] + r1[1:]])  # node to parent node
        np.testing.assert_allclose(axial, [seg.ri() for seg in segments], rtol=PRECISION)
        if soma in ("one-point", "three-point"):  # distances from the soma's centre node
            origin = neuron_soma[0](0.5)
            expected = [h.distance(origin, seg) for seg in segments]
            np.testing.assert_allclose(distance, expected, rtol=PRECISION, atol=1e-5)
    soma_area = sum(seg.area() for sec in neuron_soma for seg in sec)
    assert float(cell.morphology.area[0] / b2.um**2) == pytest.approx(soma_area, rel=PRECISION)
    # One isopotential soma compartment: exact for a sphere. NEURON's multi-point soma
    # (one segment) carries its end-attached dendrites half its axial resistance away;
    # the 50 um outline gets three segments.
    tolerance = {"multi-point": 1e-3, "outline": 0.01}.get(soma, PRECISION)
    rin = cell.input_resistance_MOhm(dendrite["membrane"]["Rm_ohm_cm2"])
    assert rin == pytest.approx(ref.input_resistance_MOhm(), rel=tolerance)


def test_dendrites_of_a_point_soma_start_at_their_first_point(reconstructions, small_dendrite):
    """No stub from the soma centre: the thin basal stems start on the soma's surface."""
    swc = read_cell(reconstructions["one-point"])
    points = read_swc(reconstructions["one-point"])
    on_soma = [s for s in swc.sections if s.parent == -1]
    assert len(on_soma) == 7 and all(s.wired for s in on_soma)  # 6 basal stems, 1 trunk
    for section in on_soma:
        first = points.xyz[np.flatnonzero(points.lines == section.first_line)[0]]
        np.testing.assert_array_equal(section.xyz[0], first)
        assert np.linalg.norm(first) == pytest.approx(7.5, abs=1e-3)  # on the surface
    table = load_cell(
        str(reconstructions["one-point"]), DendriteConfig.from_mapping(small_dendrite)
    ).compartments()
    for section in on_soma:  # path distance counts from the soma surface
        first = table[table.branch == section.name].iloc[0]
        start = first[["start_x_um", "start_y_um", "start_z_um"]].to_numpy(float)
        np.testing.assert_allclose(start, section.xyz[0], atol=1e-9)
        assert first.distance_um == pytest.approx(first.length_um / 2)


def test_three_point_soma_is_the_one_point_sphere(reconstructions, small_dendrite):
    one = load_cell(str(reconstructions["one-point"]), DendriteConfig.from_mapping(small_dendrite))
    three = load_cell(
        str(reconstructions["three-point"]), DendriteConfig.from_mapping(small_dendrite)
    )
    assert "three-point" in three.soma and "one-point" in one.soma
    a, b = one.compartments(), three.compartments()
    np.testing.assert_array_equal(a.branch, b.branch)
    np.testing.assert_allclose(a.distance_um, b.distance_um)
    rm = small_dendrite["membrane"]["Rm_ohm_cm2"]
    assert one.input_resistance_MOhm(rm) == pytest.approx(three.input_resistance_MOhm(rm))


def test_zero_length_segments_are_merged_and_counted(reconstructions, small_dendrite):
    cell = load_cell(str(reconstructions["one-point"]), DendriteConfig.from_mapping(small_dendrite))
    assert cell.merged_points == 18
    assert "merged 18 zero-length segments" in cell.summary()
    table = cell.compartments()
    assert (table.length_um[1:] > 0.1).all()
    area = np.asarray(cell.morphology.area / b2.um**2)
    assert np.isfinite(area).all() and (area > 0).all()
    # Brian2's own reader makes zero-length compartments of these points: NaN ahead
    brian = b2.Morphology.from_file(str(reconstructions["one-point"]))
    lengths = np.concatenate(
        [np.asarray(s.length / b2.um) for _, _, s in _sections(brian) if s is not brian]
    )
    assert (lengths == 0).sum() >= 10


def test_unsorted_file_gives_the_same_cell(reconstructions, small_dendrite, tmp_path):
    text = reconstructions["one-point"].read_text().splitlines()
    header, rows = text[:1], text[1:]
    order = np.random.default_rng(0).permutation(len(rows))
    shuffled = tmp_path / "shuffled.swc"
    shuffled.write_text("\n".join(header + [rows[k] for k in order]) + "\n")
    a = load_cell(
        str(reconstructions["one-point"]), DendriteConfig.from_mapping(small_dendrite)
    ).compartments()
    b = load_cell(str(shuffled), DendriteConfig.from_mapping(small_dendrite)).compartments()
    np.testing.assert_array_equal(a.branch, b.branch)
    np.testing.assert_allclose(
        a[["x_um", "y_um", "distance_um"]], b[["x_um", "y_um", "distance_um"]]
    )


# ---------------------------------------------------------------- segmentation rule
def test_lambda_f_of_a_cylinder_is_the_textbook_formula():
    rule = Segmentation(0.1, 100.0, 1e9, Ri_ohm_cm=150.0, Cm_uF_per_cm2=1.0)
    for d in (0.3, 1.0, 4.0):
        textbook = 0.5 * np.sqrt(d * 1e-4 / (np.pi * 100.0 * 150.0 * 1e-6)) * 1e4  # um
        assert rule.lambda_f_um(np.array([0.0, 100.0]), np.array([d, d])) == pytest.approx(
            textbook, rel=1e-12
        )


def test_d_lambda_number_is_neurons(small_dendrite):
    """NEURON's own lambda_f and nseg formula on tapering 3-D sections of many lengths."""
    from neuron import h

    h.load_file("stdrun.hoc")
    rule = Segmentation(0.1, 100.0, 1e9, Ri_ohm_cm=150.0, Cm_uF_per_cm2=1.0)
    rng = np.random.default_rng(1)
    for length in (5.0, 40.0, 123.0, 400.0, 900.0):
        arc = np.sort(np.concatenate([[0.0, length], rng.uniform(0, length, 6)]))
        diameter = rng.uniform(0.3, 3.0, arc.size)
        sec = h.Section(name=f"taper{length:g}")
        for s, d in zip(arc, diameter, strict=True):
            h.pt3dadd(s, 0.0, 0.0, d, sec=sec)
        sec.Ra, sec.cm = 150.0, 1.0
        expected = int((sec.L / (0.1 * h.lambda_f(100.0, sec=sec)) + 0.9) / 2) * 2 + 1
        assert rule.n_d_lambda(arc, diameter) == expected
        assert rule.n_compartments(arc, diameter) == expected


def test_max_compartment_bound_and_config_change_the_count(small_dendrite):
    rule = Segmentation(0.1, 100.0, 20.0, Ri_ohm_cm=150.0, Cm_uF_per_cm2=1.0)
    assert rule.n_cylinder(200.0, 1.0) == 10  # d_lambda asks for 9, 20 um for 10
    assert rule.n_cylinder(200.0, 0.2) == 21  # thin (lambda_f 103 um): d_lambda asks for more
    pyramidal = load_cell("builtin:pyramidal", DendriteConfig.from_mapping(small_dendrite))
    table = pyramidal.compartments()
    assert len(table) == 97  # the obliques get 9 compartments by d_lambda, the rest 20 um
    assert table.length_um.max() <= 20.0 + 1e-9
    finer = copy.deepcopy(small_dendrite)
    finer["segmentation"] = {"d_lambda": 0.02, "frequency_Hz": 100.0}
    assert (
        load_cell(
            "builtin:pyramidal", DendriteConfig.from_mapping(finer)
        ).morphology.total_compartments
        > 150
    )


# ---------------------------------------------------------------- bad files
BAD_FILES = [
    ("1 1 0 0 0 5 -1\n2 3 0 10 0 1 3\n3 3 0 20 0 1 2\n", 2, "cycle"),
    ("1 3 0 0 0 5 -1\n2 3 0 10 0 1 1\n", 1, "not 1 (soma)"),
    ("1 1 0 0 0 5 -1\n2 3 0 10 0 1 1\n3 3 5 5 5 1 -1\n4 3 5 9 5 1 3\n", 3, "second root"),
    ("1 1 0 0 0 5 -1\n2 3 0 nan 0 1 1\n", 2, "finite"),
    ("1 1 0 0 0 5 -1\n2 3 0 10 0 0 1\n", 2, "radius must be positive"),
]


@pytest.mark.parametrize("rows, line, fragment", BAD_FILES)
def test_unrepairable_files_name_the_line(tmp_path, small_dendrite, rows, line, fragment):
    path = tmp_path / "bad.swc"
    path.write_text(rows)
    with pytest.raises(InputError) as err:
        load_cell(str(path), DendriteConfig.from_mapping(small_dendrite))
    message = str(err.value)
    assert f"SWC file '{path}', line {line}:" in message and fragment in message


# ---------------------------------------------------------------- the stage chain
@pytest.fixture(scope="module")
def realistic_run(reconstructions, small_dendrite, tmp_path_factory):
    """plan, simulate, gather, fit, figures and the morphology figure on the realistic
    cell: 3 sites, every site pair (so E and I at the same site too), timing and
    multi-input trials."""
    from dendrite_sim.figures import FIGURES

    folder = tmp_path_factory.mktemp("realistic")
    dendrite = copy.deepcopy(small_dendrite)
    dendrite["cells"] = {"ca1": str(reconstructions["one-point"])}
    dendrite["chunks"] = 1
    dendrite["protocol"]["pairs"]["max_pairs_per_kind"] = 100
    kappa = {"window_ms": [10.0, 50.0], "response_ms": 20.0}
    stages.plan("ca1", dendrite, folder / "trials.nc")
    stages.simulate(folder / "trials.nc", "ca1", dendrite, folder / "psp.nc")
    stages.fit(folder / "psp.nc", kappa, folder / "kappa.nc")
    figures = {name: folder / f"{name}.png" for name in FIGURES}
    stages.figures(folder / "kappa.nc", figures)
    stages.morphology(folder / "psp.nc", folder / "morphology.png")
    figures["morphology"] = folder / "morphology.png"
    return dendrite, kappa, folder, figures


def test_realistic_cell_runs_end_to_end_without_nan(realistic_run):
    from pipeline.report import Report, dendrite_page

    dendrite, _, folder, figures = realistic_run
    assert all(path.is_file() for path in figures.values())
    with xr.open_dataset(folder / "psp.nc") as psp, xr.open_dataset(folder / "kappa.nc") as k:
        assert np.isfinite(psp.v).all()
        assert np.isfinite(k.kappa_EI).all() and np.isfinite(k.attrs["median_r2_EI"])
        attrs = psp.attrs
        assert attrs["merged_zero_length_segments"] == 18
        assert attrs["n_compartments"] == psp.sizes["compartment"] > 600
        assert "d_lambda 0.1 at 100 Hz" in attrs["segmentation"]
        assert "one-point soma" in attrs["soma"]
        assert 100 < attrs["soma_input_resistance_MOhm"] < 200
        assert all(len(b) <= 9 for b in psp.site_branch.values)  # e.g. dend[12]
    report = Report(folder / "report", ROOT / "workflow/report/templates", {"dendrite": dendrite})
    html = dendrite_page(report, "ca1", folder / "kappa.nc", figures).read_text()
    for text in ("zero-length segments merged", "soma input resistance", "morphology.png", "dend["):
        assert text in html


def psp_of(trials: xr.Dataset, v: np.ndarray, record_dt_ms: float) -> xr.Dataset:
    time = np.arange(v.shape[1]) * record_dt_ms
    return trials.assign(v=(("trial", "trial_time"), v)).assign_coords(trial_time=time)


@pytest.mark.slow
def test_psps_and_kappa_agree_with_neurons_import3d(reconstructions, realistic_run):
    """The realistic cell as the pipeline built it (default segmentation) against an
    independent NEURON model of the same file: Import3d, d_lambda 0.1 at 100 Hz, same
    membrane and synapses, synapses at our sites' coordinates, the same trials. Targets:
    single-PSP peaks within 3 %, co-located kappa_EI within 5 %, at every site."""
    from dendrite_sim.kappa import fit_kappa

    dendrite, kappa, folder, _ = realistic_run
    with xr.open_dataset(folder / "psp.nc") as psp_ds, xr.open_dataset(folder / "kappa.nc") as k:
        psp, ours = psp_ds.load(), np.diag(k.kappa_EI.values)
    sites = psp.site.to_dataframe()[["site_branch", "site_x", "site_y", "site_z"]]
    sites.columns = ["branch", "x_um", "y_um", "z_um"]
    config = DendriteConfig.from_mapping(dendrite)
    ref = Import3dCell(reconstructions["one-point"], CellModel.from_config(config), sites)
    assert [ref.name(sec) for sec, _, _ in ref.site_locations] == list(sites.branch)
    assert max(gap for _, _, gap in ref.site_locations) < 1e-3  # um: on its sections
    neuron = ref.run(psp, config.protocol)
    single = psp.kind.isin(["E", "I"]).values
    peak_ours, peak_neuron = np.abs(psp.v.values).max(1)[single], np.abs(neuron).max(1)[single]
    assert (peak_neuron > 0.01).all()
    np.testing.assert_allclose(peak_ours, peak_neuron, rtol=0.03)
    reference = psp_of(psp.drop_vars("v"), neuron, config.protocol.record_dt_ms)
    theirs = np.diag(fit_kappa(reference, KappaConfig.from_mapping(kappa)).kappa_EI.values)
    assert (theirs > 0).all()
    np.testing.assert_allclose(ours, theirs, rtol=0.05)
