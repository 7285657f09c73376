# Stage 1: simulate PSPs on the dendritic cell (dendrite_sim).
# The trials are split over dendrite.chunks processes inside one job: the split changes how
# fast, not what is computed, so it is a thread count and no param (changing it reruns nothing).


rule plan_trials:
    input:
        morphology=lambda wildcards: morphology_file(wildcards.cell),
    output:
        f"{RESULTS}/dendrite/{{cell}}/trials.nc",
    log:
        f"{RESULTS}/logs/plan_trials/{{cell}}.log",
    localrule: True
    conda:
        "../envs/dendrite.yaml"
    params:
        dendrite=lambda wildcards: CELL_SETTINGS[wildcards.cell],
    script:
        "../scripts/plan_trials.py"


rule simulate_psp:
    input:
        trials=f"{RESULTS}/dendrite/{{cell}}/trials.nc",
        morphology=lambda wildcards: morphology_file(wildcards.cell),
    output:
        f"{RESULTS}/dendrite/{{cell}}/psp.nc",
    log:
        f"{RESULTS}/logs/simulate_psp/{{cell}}.log",
    conda:
        "../envs/dendrite.yaml"
    threads: config["dendrite"]["chunks"]
    resources:
        mem_mb=lambda wildcards: PLAN_BUDGETS[wildcards.cell].mem_mb,
        runtime=lambda wildcards: max(30, round(PLAN_BUDGETS[wildcards.cell].cpu_seconds / 30)),
    params:
        dendrite=lambda wildcards: CELL_SETTINGS[wildcards.cell],
    script:
        "../scripts/simulate_psp.py"


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
    localrule: True
    conda:
        "../envs/dendrite.yaml"
    script:
        "../scripts/morphology_figure.py"


# Stage 2: fit the bilinear coefficients and check the rule (dendrite_sim.kappa).
# The figures drawn from kappa.nc, by name (figures/<name>.png).
KAPPA_FIGURES = list(FIGURES)


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
        kappa=canonical(config["kappa"]),
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
    localrule: True
    conda:
        "../envs/dendrite.yaml"
    script:
        "../scripts/kappa_figures.py"
