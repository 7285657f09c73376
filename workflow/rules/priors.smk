# Stage 3: initial quadratic coefficients of the Dit layers from the fitted kappa (ann.priors).
PRIOR_CELL = config["priors"]["cell"]


rule build_prior:
    input:
        kappa=f"{RESULTS}/dendrite/{PRIOR_CELL}/kappa.nc",
    output:
        f"{RESULTS}/priors/{{model}}/{{prior}}/seed{{seed}}.pt",
    log:
        f"{RESULTS}/logs/build_prior/{{model}}_{{prior}}_{{seed}}.log",
    wildcard_constraints:
        prior="bio|shuffled",
    conda:
        "../envs/ann.yaml"
    params:
        priors=canonical(config["priors"]),
    script:
        "../scripts/build_prior.py"
