"""The same cell and trials in the NEURON simulator: an independent reference.

Used by the speed benchmarks and by tests that compare Brian2's traces with NEURON's.
Only the passive cable with double-exponential synapses (NEURON's Exp2Syn, which also
peaks at its weight) is translated. Two ways to build the cell:

  NeuronCell     a copy of one of our Brian2 morphologies (built-in cells: uniform
                 cylinders), section by section, with our compartments as segments
  Import3dCell   an SWC file read by NEURON's own Import3d, segmented by NEURON's
                 d_lambda rule, synapses at the sites' coordinates: what a NEURON user
                 builds from the same file, independent of our reader

NEURON is optional: `pip install -e .[bench]`.
"""

from pathlib import Path
from typing import Any

import brian2 as b2
import numpy as np
import pandas as pd
import xarray as xr

from .config import Protocol
from .model import CellModel
from .morphology import _sections
from .protocols import trials_events


def _neuron():
    from neuron import h

    h.load_file("stdrun.hoc")
    return h


class _Reference:
    """Synapses (Exp2Syn, E and I) at the sites' segments and the trial loop."""

    def __init__(self, model: CellModel, soma: Any, site_segments: list) -> None:
        if model.hh or model.nmda:
            raise NotImplementedError("the NEURON reference covers the passive model only")
        h = self.h
        self.model, self.soma = model, soma
        self.synapses = {}
        for site, segment in enumerate(site_segments):
            for receptor, kinetics in (("E", model.E), ("I", model.I)):
                syn = h.Exp2Syn(segment)
                syn.tau1, syn.tau2, syn.e = (
                    kinetics.tau_rise_ms,
                    kinetics.tau_decay_ms,
                    kinetics.E_rev_mV,
                )
                self.synapses[site, receptor] = syn
        self.pending: list = []
        self._init_handler = h.FInitializeHandler(self._queue_events)

    def _passive(self, sec: Any) -> None:
        sec.Ra, sec.cm = self.model.Ri_ohm_cm, self.model.Cm_uF_per_cm2
        sec.insert("pas")
        for seg in sec:
            seg.pas.g = 1.0 / self.model.Rm_ohm_cm2
            seg.pas.e = self.model.EL_mV

    def _queue_events(self) -> None:
        for netcon, t in self.pending:
            netcon.event(t)

    def input_resistance_MOhm(self) -> float:
        """Steady-state input resistance at the soma (NEURON's Impedance at 0 Hz)."""
        impedance = self.h.Impedance()
        impedance.loc(self.soma)
        impedance.compute(0)
        return float(impedance.input(self.soma))

    def run(self, trials: xr.Dataset, protocol: Protocol) -> np.ndarray:
        """Somatic potential minus rest (mV), shape (trial, time), like `simulate_trials`."""
        h = self.h
        h.dt, h.secondorder = protocol.dt_ms, 0
        h.cvode_active(0)
        n_samples = round(protocol.trial_ms / protocol.record_dt_ms)
        trace = h.Vector().record(self.soma._ref_v, protocol.record_dt_ms)
        out = np.empty((trials.sizes["trial"], n_samples))
        for t, events in enumerate(trials_events(trials)):
            self.pending = []
            for site, receptor, strength, onset in events:
                netcon = h.NetCon(None, self.synapses[site, receptor])
                netcon.weight[0] = strength * 1e-3  # nS -> uS
                self.pending.append((netcon, onset))
            h.finitialize(self.model.EL_mV)
            h.continuerun(protocol.trial_ms)
            out[t] = np.asarray(trace)[:n_samples] - self.model.EL_mV
        return out


class NeuronCell(_Reference):
    """A NEURON copy of a Brian2 morphology of uniform cylinders (the built-in cells),
    our compartments as its segments, synapses at the sites' compartments."""

    def __init__(self, morphology: b2.Morphology, model: CellModel, sites_compartment: np.ndarray):
        self.h = h = _neuron()
        self.model = model
        self.sections, segments = {}, {}
        for path, _, section in _sections(morphology):
            sec = h.Section(name=path)
            if path == "soma":
                sec.L = sec.diam = float(section.diameter[0] / b2.um)
                sec.nseg = 1
                segments[0] = sec(0.5)
            else:
                parent_path = path.rpartition(".")[0] or "soma"
                sec.L = float(np.sum(section.length) / b2.um)
                sec.nseg = section.n
                sec.diam = float(np.mean(section.diameter) / b2.um)
                parent = self.sections[parent_path]
                sec.connect(parent(0.5 if parent_path == "soma" else 1.0))
                for k, index in enumerate(section.indices[:]):
                    segments[int(index)] = sec((k + 0.5) / section.n)
            self._passive(sec)
            self.sections[path] = sec
        sites = [segments[int(c)] for c in sites_compartment]
        super().__init__(model, self.sections["soma"](0.5), sites)


class _Holder:
    """The object Import3d instantiates its sections into (soma, dend, apic, ... lists)."""


class Import3dCell(_Reference):
    """An SWC file read by NEURON's Import3d (Import3d_SWC_read, Import3d_GUI.instantiate),
    every section given NEURON's d_lambda number of segments, synapses at the segment
    nearest to each site's coordinates (x_um, y_um, z_um of the site table).

    `max_compartment_um`, when given, also caps the segment length as our segmentation
    does (default: d_lambda alone, as a NEURON user would)."""

    def __init__(
        self,
        swc_path: str | Path,
        model: CellModel,
        sites: pd.DataFrame,
        d_lambda: float = 0.1,
        frequency_Hz: float = 100.0,
        max_compartment_um: float | None = None,
    ) -> None:
        self.h = h = _neuron()
        h.load_file("import3d.hoc")
        self.model = model
        reader = h.Import3d_SWC_read()
        reader.quiet = 1
        reader.input(str(swc_path))
        self.cell = _Holder()
        self._gui = h.Import3d_GUI(reader, 0)
        self._gui.instantiate(self.cell)
        self.sections = list(self.cell.all)
        self.nseg = 0
        for sec in self.sections:
            self._passive(sec)  # lambda_f depends on Ra and cm
            ratio = sec.L / (d_lambda * h.lambda_f(frequency_Hz, sec=sec))
            nseg = int((ratio + 0.9) / 2) * 2 + 1
            if max_compartment_um:
                nseg = max(nseg, int(np.ceil(sec.L / max_compartment_um - 1e-9)))
            sec.nseg = nseg
            self.nseg += nseg
            for seg in sec:  # the new segments take the section's pas values
                seg.pas.g, seg.pas.e = 1.0 / model.Rm_ohm_cm2, model.EL_mV
        soma = self.cell.soma[0] if hasattr(self.cell.soma, "__len__") else self.cell.soma
        self.site_locations = [self.locate(row) for row in sites.itertuples()]
        segments = [sec(x) for sec, x, _ in self.site_locations]
        super().__init__(model, soma(0.5), segments)

    @staticmethod
    def name(sec: Any) -> str:
        """The section's name without the holder object's prefix, e.g. dend[12]."""
        return sec.name().rpartition(".")[2]

    def locate(self, site: Any) -> tuple:
        """(section, x, distance in um) of the point of the cell nearest to the site."""
        target = np.array([site.x_um, site.y_um, site.z_um])
        best = (None, 0.5, np.inf)
        for sec in self.sections:
            if (site.branch == "soma") != ("soma" in self.name(sec)):
                continue
            n = sec.n3d()
            points = np.array([[sec.x3d(i), sec.y3d(i), sec.z3d(i)] for i in range(n)])
            arc = np.array([sec.arc3d(i) for i in range(n)])
            start, step = points[:-1], np.diff(points, axis=0)
            length2 = np.maximum((step**2).sum(1), 1e-18)
            t = np.clip(((target - start) * step).sum(1) / length2, 0.0, 1.0)
            nearest = start + t[:, None] * step
            gap = np.linalg.norm(nearest - target, axis=1)
            k = int(np.argmin(gap))
            if gap[k] < best[2]:
                x = (arc[k] + t[k] * (arc[k + 1] - arc[k])) / sec.L
                best = (sec, float(np.clip(x, 0.0, 1.0)), float(gap[k]))
        return best
