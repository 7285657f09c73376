"""Trials per second of the pipeline's simulator against a naive Brian2 loop and NEURON.

Same cell, same trial plan (config.yaml's protocol, or an evenly spaced sample of it with
--trials), one process each, measured side by side in one run, the simulators taking
turns; medians over --repeats.

  pipeline   dendrite_sim.simulate_trials: one cpp_standalone build, all trials in it
  naive      a new Brian2 runtime-mode network per trial (on a sample of the trials)
  NEURON     built-in cells: the same cell built in NEURON (dendrite_sim.neuron_ref.NeuronCell)
             SWC cells: NEURON's own Import3d of the file with d_lambda segments and
             synapses at the sites' coordinates (neuron_ref.Import3dCell), i.e. what a
             NEURON user would build; fixed step in both cases

Cells: --cell pyramidal (the default built-in cell), --cell realistic (the synthetic
CA1-like reconstruction of the test fixtures: ~7000 points, 18 zero-length segments,
written to a temporary file), or --swc PATH for your own file.

Usage: .venv/bin/python benchmarks/simulate_psps.py [--cell realistic] [--trials 400]
       [--repeats 3] [--naive-trials 20]
"""

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

from dendrite_sim.config import DendriteConfig
from dendrite_sim.model import CellModel
from dendrite_sim.morphology import load_cell
from dendrite_sim.protocols import plan_trials
from dendrite_sim.simulate import naive_loop, simulate_trials
from dendrite_sim.sites import select_sites

ROOT = Path(__file__).resolve().parents[1]


def realistic_swc(folder: Path) -> Path:
    sys.path.insert(0, str(ROOT / "tests"))
    from fixtures import write_reconstruction

    path = folder / "realistic.swc"
    write_reconstruction(path)
    return path


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cell", choices=["pyramidal", "realistic"], default="pyramidal")
    parser.add_argument("--swc", help="an SWC file instead of --cell")
    parser.add_argument("--trials", type=int, default=0, help="a sample of the plan (0: all)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--naive-trials", type=int, default=20)
    parser.add_argument("--config", default=str(ROOT / "config.yaml"))
    args = parser.parse_args()

    dendrite = DendriteConfig.from_mapping(
        yaml.safe_load(Path(args.config).read_text())["dendrite"]
    )
    protocol = dendrite.protocol
    scratch = tempfile.TemporaryDirectory()
    if args.swc:
        spec = args.swc
    elif args.cell == "realistic":
        spec = str(realistic_swc(Path(scratch.name)))
    else:
        spec = dendrite.cells["pyramidal"]
    cell = load_cell(spec, dendrite)
    morphology = cell.morphology
    sites = select_sites(cell.compartments(), dendrite.sites)
    trials = plan_trials(sites, protocol)
    if args.trials:
        pick = np.linspace(0, trials.sizes["trial"] - 1, args.trials).astype(int)
        trials = trials.isel(trial=pick)
    model = CellModel.from_config(dendrite)
    where = sites.compartment.values
    n = trials.sizes["trial"]
    print(f"cell: {cell.summary()}")
    print(f"{len(sites)} sites; {n} trials of {protocol.trial_ms} ms at dt = {protocol.dt_ms} ms")

    reference = None
    try:
        from dendrite_sim.neuron_ref import Import3dCell, NeuronCell

        if spec.startswith("builtin:"):
            reference = NeuronCell(morphology, model, where)
            label = "NEURON (same cell, fixed step)"
        else:
            seg = dendrite.get("segmentation", {})
            reference = Import3dCell(
                spec, model, sites, seg.get("d_lambda", 0.1), seg.get("frequency_Hz", 100.0)
            )
            label = "NEURON Import3d, d_lambda segments"
    except ImportError:
        print("NEURON is not installed (pip install -e '.[bench]'): its row is missing")

    one = trials.isel(trial=[0])
    times = {"compile": [], "pipeline": [], "neuron": []}
    v_pipe = v_neuron = None
    for _ in range(args.repeats):  # the simulators take turns
        start = time.perf_counter()
        simulate_trials(morphology, where, one, model, protocol)
        times["compile"].append(time.perf_counter() - start)
        start = time.perf_counter()
        v_pipe = simulate_trials(morphology, where, trials, model, protocol)
        times["pipeline"].append(time.perf_counter() - start)
        if reference is not None:
            start = time.perf_counter()
            v_neuron = reference.run(trials, protocol)
            times["neuron"].append(time.perf_counter() - start)
    t_compile = statistics.median(times["compile"])
    t_pipe = statistics.median(times["pipeline"])
    rows = [
        ("pipeline (compile included)", n, t_pipe),
        ("pipeline (per trial, compile excluded)", n - 1, t_pipe - t_compile),
    ]
    if args.naive_trials:
        sample = trials.isel(trial=np.linspace(0, n - 1, args.naive_trials).astype(int))
        naive_loop(morphology, where, sample.isel(trial=[0]), model, protocol)  # code cache
        start = time.perf_counter()
        naive_loop(morphology, where, sample, model, protocol)
        rows.append(("naive runtime loop", args.naive_trials, time.perf_counter() - start))
    if reference is not None:
        rows.append((label, n, statistics.median(times["neuron"])))

    print(f"\none-trial build (compile + start): {t_compile:.2f} s (median of {args.repeats})\n")
    print(f"{'simulator':44s} {'trials':>7s} {'seconds':>8s} {'ms/trial':>9s} {'trials/s':>9s}")
    per_trial = {}
    for name, count, seconds in rows:
        per_trial[name] = seconds / count
        print(
            f"{name:44s} {count:7d} {seconds:8.2f} {1e3 * seconds / count:9.2f} "
            f"{count / seconds:9.1f}"
        )
    pipe = per_trial["pipeline (compile included)"]
    marginal = per_trial["pipeline (per trial, compile excluded)"]
    if args.naive_trials:
        print(f"\nnaive / pipeline time per trial: {per_trial['naive runtime loop'] / pipe:.1f}x")
    if reference is not None:
        neuron = per_trial[label]
        print(f"pipeline / NEURON time per trial: {pipe / neuron:.2f} (target <= 2.0)")
        print(f"pipeline without compile / NEURON: {marginal / neuron:.2f}")
        peak = np.abs(v_neuron).max(axis=1)
        print(
            f"traces, pipeline vs NEURON: largest difference {np.abs(v_pipe - v_neuron).max():.2e} mV, "
            f"largest relative difference of the peaks "
            f"{np.max(np.abs(np.abs(v_pipe).max(axis=1) - peak) / peak):.2e}"
        )
        segments = getattr(reference, "nseg", morphology.total_compartments)
        print(f"compartments: pipeline {morphology.total_compartments}, NEURON {segments}")


if __name__ == "__main__":
    main()
