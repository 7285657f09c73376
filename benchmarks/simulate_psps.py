"""Trials per second of the pipeline's simulator against a naive Brian2 loop and NEURON.

Same cell (the default pyramidal), same trial plan (config.yaml's protocol), one process
each, measured side by side in one run; medians over --repeats.

  pipeline   dendrite_sim.simulate_trials: one cpp_standalone build, all trials in it
  naive      a new Brian2 runtime-mode network per trial (on a sample of the trials)
  NEURON     the same cell built in NEURON (dendrite_sim.neuron_ref), fixed step

Usage: .venv/bin/python benchmarks/simulate_psps.py [--repeats 3] [--naive-trials 20]
"""

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import yaml

from dendrite_sim.model import CellModel
from dendrite_sim.morphology import compartment_table, load_morphology
from dendrite_sim.protocols import plan_trials
from dendrite_sim.simulate import naive_loop, simulate_trials
from dendrite_sim.sites import select_sites

ROOT = Path(__file__).resolve().parents[1]


def timed(fn, repeats):
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--naive-trials", type=int, default=20)
    parser.add_argument("--config", default=str(ROOT / "config.yaml"))
    args = parser.parse_args()

    dendrite = yaml.safe_load(Path(args.config).read_text())["dendrite"]
    protocol = dendrite["protocol"]
    morphology = load_morphology(dendrite["cells"]["pyramidal"], dendrite["max_compartment_um"])
    sites = select_sites(compartment_table(morphology), dendrite["sites"])
    trials = plan_trials(sites, protocol)
    model = CellModel.from_config(dendrite)
    where = sites.compartment.values
    n = trials.sizes["trial"]
    print(
        f"cell: pyramidal, {morphology.total_compartments} compartments, {len(sites)} sites; "
        f"{n} trials of {protocol['trial_ms']} ms at dt = {protocol['dt_ms']} ms"
    )

    one = trials.isel(trial=[0])
    t_compile, _ = timed(
        lambda: simulate_trials(morphology, where, one, model, protocol), args.repeats
    )
    t_pipe, v_pipe = timed(
        lambda: simulate_trials(morphology, where, trials, model, protocol), args.repeats
    )

    sample = trials.isel(trial=np.linspace(0, n - 1, args.naive_trials).astype(int))
    naive_loop(morphology, where, sample.isel(trial=[0]), model, protocol)  # code generation cache
    t_naive, _ = timed(lambda: naive_loop(morphology, where, sample, model, protocol), 1)

    rows = [
        ("pipeline (compile included)", n, t_pipe),
        ("pipeline (per trial, compile excluded)", n - 1, t_pipe - t_compile),
        ("naive runtime loop", args.naive_trials, t_naive),
    ]
    try:
        from dendrite_sim.neuron_ref import NeuronCell

        cell = NeuronCell(morphology, model, where)
        t_neuron, v_neuron = timed(lambda: cell.run(trials, protocol), args.repeats)
        rows.append(("NEURON (fixed step)", n, t_neuron))
        diff = np.abs(v_pipe - v_neuron).max()
    except ImportError:
        t_neuron, diff = None, None
        print("NEURON is not installed (pip install -e '.[bench]'): its row is missing")

    print(f"\none-trial build (compile + start): {t_compile:.2f} s\n")
    print(f"{'simulator':42s} {'trials':>7s} {'seconds':>8s} {'ms/trial':>9s} {'trials/s':>9s}")
    per_trial = {}
    for name, count, seconds in rows:
        per_trial[name] = seconds / count
        print(
            f"{name:42s} {count:7d} {seconds:8.2f} {1e3 * seconds / count:9.2f} {count / seconds:9.1f}"
        )
    pipe = per_trial["pipeline (compile included)"]
    print(f"\nnaive / pipeline time per trial: {per_trial['naive runtime loop'] / pipe:.1f}x")
    if t_neuron is not None:
        neuron = per_trial["NEURON (fixed step)"]
        print(f"pipeline / NEURON time per trial: {pipe / neuron:.2f} (target <= 2.0)")
        marginal = per_trial["pipeline (per trial, compile excluded)"]
        print(f"pipeline without compile / NEURON: {marginal / neuron:.2f}")
        print(f"largest difference of the traces, pipeline vs NEURON: {diff:.2e} mV")


if __name__ == "__main__":
    main()
