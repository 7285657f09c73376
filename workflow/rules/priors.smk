# Stage 3: initial quadratic coefficients of the Dit layers from the fitted kappa (ann.priors).
# Each built prior reads the kappa of its own cell (common.smk: PRIOR_CELLS; shuffled: bio's).


rule build_prior:
    input:
        kappa=prior_kappa,
    output:
        f"{RESULTS}/priors/{{model}}/{{prior}}/seed{{seed}}.pt",
    log:
        f"{RESULTS}/logs/build_prior/{{model}}/{{prior}}/seed{{seed}}.log",
    wildcard_constraints:
        prior="|".join(BUILT_PRIORS),
    conda:
        "../envs/ann.yaml"
    params:
        priors=lambda wildcards: prior_settings(wildcards.prior),
    script:
        "../scripts/build_prior.py"


# What each named prior looks like: its cell's kappa beside its K's sign structure and
# eigen-spectrum, on the first Dit layer of a reference model (ann.prior_statistics).
PRIOR_STATISTICS_MODEL = "dit_resnet20"
PRIOR_KAPPAS = {prior: f"{RESULTS}/dendrite/{cell}/kappa.nc" for prior, cell in PRIOR_CELLS.items()}


rule prior_statistics:
    input:
        sorted(set(PRIOR_KAPPAS.values())),
    output:
        table=f"{RESULTS}/priors/statistics.csv",
        figure=report(
            f"{RESULTS}/priors/figures/prior_statistics.png",
            caption="../report/prior_statistics.rst",
            category="Priors",
        ),
    log:
        f"{RESULTS}/logs/prior_statistics.log",
    conda:
        "../envs/ann.yaml"
    params:
        model=PRIOR_STATISTICS_MODEL,
        kappas=canonical(PRIOR_KAPPAS),
        cells=canonical(PRIOR_CELLS),
        priors=canonical({k: v for k, v in config["priors"].items() if k != "biological"}),
    script:
        "../scripts/prior_statistics.py"
