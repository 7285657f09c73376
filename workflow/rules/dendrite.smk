# Stage 1: simulate PSPs on the dendritic cell (dendrite_sim).
N_CHUNKS = config["dendrite"]["chunks"]


rule plan_trials:
    input:
        morphology=lambda wildcards: morphology_file(wildcards.cell),
    output:
        f"{RESULTS}/dendrite/{{cell}}/trials.nc",
    log:
        f"{RESULTS}/logs/plan_trials/{{cell}}.log",
    conda:
        "../envs/dendrite.yaml"
    params:
        dendrite=config["dendrite"],
    script:
        "../scripts/plan_trials.py"


rule simulate_chunk:
    input:
        trials=f"{RESULTS}/dendrite/{{cell}}/trials.nc",
        morphology=lambda wildcards: morphology_file(wildcards.cell),
    output:
        temp(f"{RESULTS}/dendrite/{{cell}}/chunks/psp_{{chunk}}.nc"),
    log:
        f"{RESULTS}/logs/simulate_chunk/{{cell}}_{{chunk}}.log",
    conda:
        "../envs/dendrite.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        dendrite=config["dendrite"],
    script:
        "../scripts/simulate_chunk.py"


rule gather_psp:
    input:
        trials=f"{RESULTS}/dendrite/{{cell}}/trials.nc",
        chunks=expand(
            f"{RESULTS}/dendrite/{{{{cell}}}}/chunks/psp_{{chunk}}.nc", chunk=range(N_CHUNKS)
        ),
    output:
        f"{RESULTS}/dendrite/{{cell}}/psp.nc",
    log:
        f"{RESULTS}/logs/gather_psp/{{cell}}.log",
    conda:
        "../envs/dendrite.yaml"
    params:
        dendrite=config["dendrite"],
    script:
        "../scripts/gather_psp.py"


rule morphology_figure:
    input:
        f"{RESULTS}/dendrite/{{cell}}/psp.nc",
    output:
        report(
            f"{RESULTS}/dendrite/{{cell}}/figures/morphology.png",
            caption="../report/morphology.rst",
            category="Dendrite",
            subcategory="{cell}",
        ),
    log:
        f"{RESULTS}/logs/morphology_figure/{{cell}}.log",
    conda:
        "../envs/dendrite.yaml"
    script:
        "../scripts/morphology_figure.py"


# Stage 2: fit the bilinear coefficients and check the rule (dendrite_sim.kappa).
KAPPA_FIGURES = [
    "kappa_heatmaps",
    "location_dependence",
    "shunting_fits",
    "kappa_over_time",
    "multi_input_validation",
]


rule fit_kappa:
    input:
        f"{RESULTS}/dendrite/{{cell}}/psp.nc",
    output:
        f"{RESULTS}/dendrite/{{cell}}/kappa.nc",
    log:
        f"{RESULTS}/logs/fit_kappa/{{cell}}.log",
    conda:
        "../envs/dendrite.yaml"
    params:
        kappa=config["kappa"],
    script:
        "../scripts/fit_kappa.py"


rule kappa_figures:
    input:
        f"{RESULTS}/dendrite/{{cell}}/kappa.nc",
    output:
        **{
            name: report(
                f"{RESULTS}/dendrite/{{cell}}/figures/{name}.png",
                caption=f"../report/{name}.rst",
                category="Dendrite",
                subcategory="{cell}",
            )
            for name in KAPPA_FIGURES
        },
    log:
        f"{RESULTS}/logs/kappa_figures/{{cell}}.log",
    conda:
        "../envs/dendrite.yaml"
    script:
        "../scripts/kappa_figures.py"
