# Experiment: does the quadratic prior matter? (experiments.prior_ablation; ann.ablation)
# Dit models x priors x seeds plus the plain model, trained by the train rule in the same run
# folders as the training grid (a run both ask for trains once), then paired statistics
# against the zero prior and the learned-K analysis per dataset, and the report page.

# Its plan: workflow/rules/ablation_plan.smk (included before this file).


rule prior_ablation:
    input:
        ablation_inputs,
    output:
        runs=f"{ABLATION_DIR}/{{dataset}}/runs.csv",
        summary=f"{ABLATION_DIR}/{{dataset}}/summary.csv",
        statistics=f"{ABLATION_DIR}/{{dataset}}/statistics.csv",
        learned_k=f"{ABLATION_DIR}/{{dataset}}/learned_k.csv",
        spectra=f"{ABLATION_DIR}/{{dataset}}/spectra.csv",
        differences=report(
            f"{ABLATION_DIR}/{{dataset}}/figures/paired_differences.png",
            caption="../report/prior_ablation_experiment.rst",
            category="Does the prior matter?",
            subcategory="{dataset}",
        ),
        learned_k_png=report(
            f"{ABLATION_DIR}/{{dataset}}/figures/learned_k.png",
            caption="../report/learned_k.rst",
            category="Does the prior matter?",
            subcategory="{dataset}",
        ),
    log:
        f"{RESULTS}/logs/prior_ablation/{{dataset}}.log",
    conda:
        "../envs/ann.yaml"
    params:
        runs=lambda wildcards: ablation_runs(wildcards.dataset),
        sample_epochs=ABLATION.get("sample_epochs", []),
        priors=ABLATION["priors"],
        statistics=canonical(STATISTICS),
    script:
        "../scripts/prior_ablation.py"
