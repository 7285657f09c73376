"""The same cell and trials in the NEURON simulator: an independent reference.

Used by the speed benchmark and by a test that compares Brian2's traces with
NEURON's. Only the passive cable with double-exponential synapses (NEURON's Exp2Syn,
which also peaks at its weight) is translated; built-in morphologies only, since their
sections are uniform cylinders. NEURON is optional: `pip install -e .[bench]`.
"""

from collections.abc import Mapping

import brian2 as b2
import numpy as np
import xarray as xr

from .model import CellModel
from .morphology import _sections
from .simulate import _events


class NeuronCell:
    """A NEURON copy of a Brian2 morphology with the passive model and synapses at sites."""

    def __init__(self, morphology: b2.Morphology, model: CellModel, sites_compartment: np.ndarray):
        from neuron import h

        if model.hh or model.nmda:
            raise NotImplementedError("the NEURON reference covers the passive model only")
        h.load_file("stdrun.hoc")
        self.h, self.model = h, model
        self.sections, segments = {}, {}
        for path, section in _sections(morphology):
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
            sec.Ra, sec.cm = model.Ri_ohm_cm, model.Cm_uF_per_cm2
            sec.insert("pas")
            for seg in sec:
                seg.pas.g = 1.0 / model.Rm_ohm_cm2
                seg.pas.e = model.EL_mV
            self.sections[path] = sec
        self.synapses = {}
        for site, compartment in enumerate(sites_compartment):
            for receptor, kinetics in (("E", model.E), ("I", model.I)):
                syn = h.Exp2Syn(segments[int(compartment)])
                syn.tau1, syn.tau2, syn.e = (
                    kinetics.tau_rise_ms,
                    kinetics.tau_decay_ms,
                    kinetics.E_rev_mV,
                )
                self.synapses[site, receptor] = syn
        self.pending: list = []
        self._init_handler = h.FInitializeHandler(self._queue_events)

    def _queue_events(self) -> None:
        for netcon, t in self.pending:
            netcon.event(t)

    def run(self, trials: xr.Dataset, protocol: Mapping) -> np.ndarray:
        """Somatic potential minus rest (mV), shape (trial, time), like `simulate_trials`."""
        h = self.h
        h.dt, h.secondorder = protocol["dt_ms"], 0
        h.cvode_active(0)
        n_samples = round(protocol["trial_ms"] / protocol["record_dt_ms"])
        trace = h.Vector().record(self.sections["soma"](0.5)._ref_v, protocol["record_dt_ms"])
        out = np.empty((trials.sizes["trial"], n_samples))
        for t, events in enumerate(_events(trials)):
            self.pending = []
            for site, receptor, strength, onset in events:
                netcon = h.NetCon(None, self.synapses[site, receptor])
                netcon.weight[0] = strength * 1e-3  # nS -> uS
                self.pending.append((netcon, onset))
            h.finitialize(self.model.EL_mV)
            h.continuerun(protocol["trial_ms"])
            out[t] = np.asarray(trace)[:n_samples] - self.model.EL_mV
        return out
