"""Run trials on the cell with Brian2 and return the somatic PSPs.

`simulate_trials` compiles one Brian2 network per call (cpp_standalone device) and runs
all its trials back to back in that one binary: every `trial_ms` a regular operation
returns the cell to rest, and each trial's inputs are spikes of a SpikeGeneratorGroup
timed inside its own window, delivered by one Synapses object (E and I synapses told
apart by a flag). A rest trial (no inputs) runs first; its trace is subtracted from
every trial, so each result is the PSP or SSP relative to rest.

`simulate_trials(..., device="runtime")` runs the same network in Brian2's runtime
mode; `naive_loop` builds a fresh runtime network per trial (the slow baseline).
"""

import contextlib
import os
import tempfile
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import brian2 as b2
import numpy as np
import xarray as xr

from .config import Protocol
from .model import CellModel, mg_block
from .protocols import trials_events


def input_channels(
    events: list[list[tuple]], dt_ms: float, spines: bool = False
) -> tuple[list[tuple], list, list]:
    """Spike generator channels for a list of trials (trial 0 first, at time 0).

    A channel is one synapse: (site, receptor, strength, lane). Lanes separate inputs of
    the same site, receptor and strength that fall into the same time step of a trial.
    With `spines`, the lane is the input's spine at its site instead: the k-th input of a
    trial at a site (k = 0, 1, ...) is on the site's k-th spine, so two inputs of a trial
    never share a spine.
    Returns the channel list and the spike (channel index, time in ms) lists.
    """
    channels: dict[tuple, int] = {}
    indices, times = [], []
    for trial_events in events:
        lanes: dict[tuple, int] = defaultdict(int)
        for site, receptor, strength, onset in trial_events:
            group = (site,) if spines else (site, receptor, strength, round(onset / dt_ms))
            lane = lanes[group]
            lanes[group] += 1
            key = (site, receptor, strength, lane)
            indices.append(channels.setdefault(key, len(channels)))
            times.append(onset)
    return list(channels), indices, times


def _at_trial_start(reset_code: str, n_samples: int, record_dt_ms: float) -> str:
    """`reset_code` turned into code for every recording step that acts only when a
    trial starts. Reset and recording share one clock, so the reset always comes first
    (a clock of its own, with dt = trial_ms, drifts against the recording clock's
    time steps over thousands of trials)."""
    step = f"timestep(t, {record_dt_ms!r}*ms)"
    lines = [f"trial_start = int({step} % {n_samples} == 0)"]
    for statement in reset_code.splitlines():
        name, value = (part.strip() for part in statement.split("="))
        lines.append(f"{name} = trial_start*({value}) + (1 - trial_start)*{name}")
    return "\n".join(lines)


@contextlib.contextmanager
def _brian_device(device: str, build_dir: Path | None) -> Iterator[Path | None]:
    if device == "runtime":
        b2.set_device("runtime")
        yield None
        return
    with contextlib.ExitStack() as stack:
        if build_dir is None:
            build_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="brian2-")))
        b2.set_device("cpp_standalone", directory=str(build_dir), build_on_run=False)
        environment = dict(os.environ)  # Brian2 sets LD_BIND_NOW=1 for its runs; undo that
        try:
            yield build_dir
        finally:
            b2.device.reinit()
            b2.set_device("runtime")
            os.environ.clear()
            os.environ.update(environment)


def build_cell(
    morphology: b2.Morphology,
    model: CellModel,
    head_compartments: np.ndarray | None = None,
    clamp: bool = False,
) -> tuple[b2.SpatialNeuron, b2.NeuronGroup | None, list]:
    """The cell's SpatialNeuron at rest and, with spines, one spine head per entry of
    `head_compartments` (the compartment it sits on) with its neck coupling (model.py:
    HEAD_EQUATIONS). Returns the neuron, the heads (None without spines) and every Brian2
    object to put in the network. `clamp` adds the injected current I_clamp."""
    namespace = model.namespace()
    neuron = b2.SpatialNeuron(
        morphology,
        model.equations(clamp=clamp),
        Cm=model.Cm_uF_per_cm2 * b2.uF / b2.cm**2,
        Ri=model.Ri_ohm_cm * b2.ohm * b2.cm,
        method="exponential_euler",
        namespace=namespace,
    )
    neuron.v = model.EL_mV * b2.mV
    for name, value in model.soma_channels().items():
        getattr(neuron, name)[0] = value
    if model.spines is None or head_compartments is None or len(head_compartments) == 0:
        return neuron, None, [neuron]
    where = np.asarray(head_compartments, dtype=int)
    heads = b2.NeuronGroup(
        len(where), model.head_equations(), method="exponential_euler", namespace=namespace
    )
    heads.v_dend = b2.linked_var(neuron, "v", index=where)
    necks = b2.Synapses(
        heads,
        neuron,
        "g_spines_post = g_into_pre : siemens (summed)\nI_spines_post = I_into_pre : amp (summed)",
        namespace=namespace,
    )
    necks.connect(i=np.arange(len(where)), j=where)
    objects = [neuron, heads, necks]
    if model.nmda:
        objects.append(heads.run_regularly(model.head_block_code(), when="after_groups"))
        heads.block_head = mg_block(model.EL_mV, model.nmda.mg_mM)
    return neuron, heads, objects


def simulate_trials(
    morphology: b2.Morphology,
    sites_compartment: np.ndarray,
    trials: xr.Dataset,
    model: CellModel,
    protocol: Protocol,
    device: str = "cpp_standalone",
    build_dir: Path | None = None,
) -> np.ndarray:
    """Somatic potential minus rest (mV), shape (trial, time), for every trial in `trials`.

    `sites_compartment[s]` is the compartment of site s; `protocol` (the dendrite.protocol
    section) gives dt_ms,
    record_dt_ms and trial_ms. The build directory is temporary unless given.
    """
    dt, rec_dt, trial_ms = protocol.dt_ms, protocol.record_dt_ms, protocol.trial_ms
    events = [[]] + trials_events(trials)
    n_trials, n_samples = len(events), round(trial_ms / rec_dt)
    spines = model.spines is not None
    channels, indices, times = input_channels(events, dt, spines)
    spike_times = np.asarray(times) + trial_ms * np.repeat(
        np.arange(n_trials), [len(e) for e in events]
    )
    # with spines: one head per (site, spine) that any channel uses, on the site's compartment
    spine_list = sorted({(c[0], c[3]) for c in channels}) if spines else []
    with _brian_device(device, build_dir) as project_dir:
        b2.start_scope()
        b2.defaultclock.dt = dt * b2.ms
        namespace = model.namespace()
        neuron, heads, objects = build_cell(
            morphology, model, np.array([sites_compartment[s] for s, _ in spine_list], dtype=int)
        )
        record_clock = b2.Clock(dt=rec_dt * b2.ms)
        reset = neuron.run_regularly(
            _at_trial_start(model.reset_code(), n_samples, rec_dt),
            clock=record_clock,
            when="start",
            order=-1,
        )
        objects.append(reset)
        if heads is not None:
            objects.append(
                heads.run_regularly(
                    _at_trial_start(model.head_reset_code(), n_samples, rec_dt),
                    clock=record_clock,
                    when="start",
                    order=-1,
                )
            )
        if channels:
            generator = b2.SpikeGeneratorGroup(len(channels), indices, spike_times * b2.ms)
            synapses = b2.Synapses(
                generator,
                heads if heads is not None else neuron,
                "w : siemens\nis_E : 1 (constant)",
                on_pre=model.on_pre(),
                namespace=namespace,
            )
            if heads is not None:
                head_of = {spine: k for k, spine in enumerate(spine_list)}
                targets = np.array([head_of[(c[0], c[3])] for c in channels])
            else:
                targets = np.array([sites_compartment[c[0]] for c in channels])
            synapses.connect(i=np.arange(len(channels)), j=targets)
            synapses.w = np.array([c[2] for c in channels]) * b2.nS
            synapses.is_E = np.array([float(c[1] == "E") for c in channels])
            objects += [generator, synapses]
        monitor = b2.StateMonitor(neuron, "v", record=[0], clock=record_clock)
        network = b2.Network(*objects, monitor)
        network.run(n_trials * trial_ms * b2.ms, namespace={})
        if project_dir is not None:
            b2.device.build(directory=str(project_dir), compile=True, run=True, with_output=False)
        v = np.asarray(monitor.v[0] / b2.mV)
    traces = v[: n_trials * n_samples].reshape(n_trials, n_samples)
    return traces[1:] - traces[0]


def naive_loop(
    morphology: b2.Morphology,
    sites_compartment: np.ndarray,
    trials: xr.Dataset,
    model: CellModel,
    protocol: Protocol,
) -> np.ndarray:
    """The slow baseline: a new runtime-mode network for every single trial."""
    return np.concatenate(
        [
            simulate_trials(
                morphology, sites_compartment, trials.isel(trial=[t]), model, protocol, "runtime"
            )
            for t in range(trials.sizes["trial"])
        ]
    )


def step_input_resistance(
    morphology: b2.Morphology,
    compartment: int,
    model: CellModel,
    current_pA: float = 10.0,
    duration_ms: float = 200.0,
    dt_ms: float = 0.1,
) -> float:
    """Input resistance (MOhm) measured by a current step: the potential change at the end of
    a `duration_ms` step of `current_pA`, divided by the current. Without spines the step is
    injected into `compartment` and read there; with spines (model.spines), into a spine head
    on `compartment` and read at the head. Runs in Brian2's runtime mode (its codegen target
    as set by the caller); `duration_ms` should span several membrane time constants."""
    with _brian_device("runtime", None):
        b2.start_scope()
        b2.defaultclock.dt = dt_ms * b2.ms
        spines = model.spines is not None
        neuron, heads, objects = build_cell(
            morphology, model, np.array([compartment]) if spines else None, clamp=not spines
        )
        if heads is not None:
            heads.I_clamp = current_pA * b2.pA
            monitor = b2.StateMonitor(heads, "v_head", record=[0])
        else:
            neuron.I_clamp[compartment] = current_pA * b2.pA
            monitor = b2.StateMonitor(neuron, "v", record=[compartment])
        b2.Network(*objects, monitor).run(duration_ms * b2.ms, namespace={})
        v_end = float(getattr(monitor, "v_head" if heads is not None else "v")[0][-1] / b2.mV)
    return (v_end - model.EL_mV) / current_pA * 1e3
