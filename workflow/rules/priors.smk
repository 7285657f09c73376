# Stage 3: initial quadratic coefficients of the Dit layers from the fitted kappa (ann.priors).
# Each built prior reads the kappa of its own cell (common.smk: PRIOR_CELLS; a control: that of
# the prior it controls).


rule build_prior:
    input:
        kappa=prior_kappa,
    output:
        f"{RESULTS}/priors/{{model}}/{{prior}}/seed{{seed}}.pt",
    log:
        f"{RESULTS}/logs/build_prior/{{model}}/{{prior}}/seed{{seed}}.log",
    wildcard_constraints:
        prior="|".join(BUILT_PRIORS),
    localrule: True
    conda:
        "../envs/ann.yaml"
    params:
        kind=lambda wildcards: PRIOR_SETTINGS.spec(wildcards.prior).kind,
        priors=lambda wildcards: prior_settings(wildcards.prior),
    script:
        "../scripts/build_prior.py"


# What each named prior looks like: its cell's kappa beside its K's sign structure and
# eigen-spectrum, on the first Dit layer of a reference model (ann.prior_statistics).
PRIOR_STATISTICS_MODEL = "dit_resnet20"
PRIOR_KAPPAS = {prior: f"{RESULTS}/dendrite/{cell}/kappa.nc" for prior, cell in PRIOR_CELLS.items()}
# The page shows bio, its controls and every named prior (the named priors' own controls are
# built the same way from their cell's kappa).
PAGE_PRIORS = ["bio", *CONTROLS, *PRIOR_SETTINGS.biological]


rule prior_statistics:
    input:
        sorted({PRIOR_KAPPAS[name] for name in PAGE_PRIORS}),
    output:
        table=f"{RESULTS}/priors/statistics.csv",
        structure=f"{RESULTS}/priors/structure.csv",
        figure=report(
            f"{RESULTS}/priors/figures/prior_statistics.png",
            caption="../report/prior_statistics.rst",
            category="Priors",
        ),
    log:
        f"{RESULTS}/logs/prior_statistics.log",
    localrule: True
    conda:
        "../envs/ann.yaml"
    params:
        model=PRIOR_STATISTICS_MODEL,
        priors=canonical(
            {
                name: {
                    "kind": PRIOR_SETTINGS.spec(name).kind,
                    "cell": PRIOR_CELLS[name],
                    "kappa": PRIOR_KAPPAS[name],
                }
                for name in PAGE_PRIORS
            }
        ),
        settings=canonical(PRIOR_SETTINGS.options()),
        root=config["datasets"]["fashion_mnist"]["root"],
    script:
        "../scripts/prior_statistics.py"
