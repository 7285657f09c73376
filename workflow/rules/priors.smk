# Stage 3: initial quadratic coefficients of the Dit layers from the fitted kappa (ann.priors).
# Each built prior reads the kappa of its own cell (common.smk: PRIOR_CELLS; shuffled: bio's).


def prior_kappa(wildcards):
    cell = PRIOR_CELLS.get(wildcards.prior, config["priors"]["cell"])
    return f"{RESULTS}/dendrite/{cell}/kappa.nc"


rule build_prior:
    input:
        kappa=prior_kappa,
    output:
        f"{RESULTS}/priors/{{model}}/{{prior}}/seed{{seed}}.pt",
    log:
        f"{RESULTS}/logs/build_prior/{{model}}_{{prior}}_{{seed}}.log",
    wildcard_constraints:
        prior="|".join(BUILT_PRIORS),
    conda:
        "../envs/ann.yaml"
    params:
        priors=lambda wildcards: prior_settings(wildcards.prior),
    script:
        "../scripts/build_prior.py"
