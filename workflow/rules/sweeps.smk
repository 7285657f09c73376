# Stage 2b: sweeps of one biophysical parameter on a shrunk protocol (pipeline.sweeps): the
# NMDA conductance ratio and the GABA_A reversal, each one dataset with the swept parameter
# as its dimension, and its figure on the dendrite page of sweeps.cell.
SWEEP_NAMES = [name for name in SWEEPS if config["sweeps"].get(name)]


rule sweep:
    output:
        f"{RESULTS}/dendrite/sweeps/{{sweep}}.nc",
    log:
        f"{RESULTS}/logs/sweep/{{sweep}}.log",
    wildcard_constraints:
        sweep="|".join(SWEEPS),
    conda:
        "../envs/dendrite.yaml"
    params:
        dendrite=SIMULATION_SETTINGS,
        # only what the sweeps' summaries read: editing kappa.window_ms reruns no sweep
        kappa=canonical({key: config["kappa"][key] for key in ("readout_ms", "premise_cv_max")}),
        sweeps=canonical(config["sweeps"]),
        fraction_inhibitory=config["priors"]["fraction_inhibitory"],
    script:
        "../scripts/run_sweep.py"


rule sweep_figure:
    input:
        f"{RESULTS}/dendrite/sweeps/{{sweep}}.nc",
    output:
        report(
            f"{RESULTS}/dendrite/sweeps/figures/{{sweep}}.png",
            caption="../report/sweep.rst",
            category="Dendrite",
            subcategory="sweeps",
        ),
    log:
        f"{RESULTS}/logs/sweep_figure/{{sweep}}.log",
    wildcard_constraints:
        sweep="|".join(SWEEPS),
    localrule: True
    conda:
        "../envs/dendrite.yaml"
    script:
        "../scripts/sweep_figure.py"
