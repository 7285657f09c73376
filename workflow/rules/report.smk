# Stage 5: summarise each dataset's runs, then write the linked HTML report (pipeline.summary,
# pipeline.report).


rule summarise_dataset:
    input:
        metrics=lambda wildcards: run_metrics(wildcards.dataset),
    output:
        runs=f"{RESULTS}/train/{{dataset}}/runs.csv",
        summary=report(
            f"{RESULTS}/train/{{dataset}}/summary.csv",
            caption="../report/dataset_summary.rst",
            category="Training",
            subcategory="{dataset}",
        ),
        curves=report(
            f"{RESULTS}/train/{{dataset}}/figures/training_curves.png",
            caption="../report/training_curves.rst",
            category="Training",
            subcategory="{dataset}",
        ),
        ablation=report(
            f"{RESULTS}/train/{{dataset}}/figures/prior_ablation.png",
            caption="../report/prior_ablation.rst",
            category="Training",
            subcategory="{dataset}",
        ),
    log:
        f"{RESULTS}/logs/summarise_dataset/{{dataset}}.log",
    localrule: True
    conda:
        "../envs/ann.yaml"
    script:
        "../scripts/summarise_dataset.py"


REPORT_CELLS = {cell: dendrite_inputs(cell) for cell in config["dendrite"]["cells"]}
REPORT_DATASETS = {dataset: dataset_inputs(dataset) for dataset in TRAINED_DATASETS}
REPORT_THEORY = {
    "tables": {name: f"{RESULTS}/theory/gaussian_{name}.csv" for name in GAUSSIAN_TABLES}
    | {
        "fewshot_summary": f"{RESULTS}/theory/fewshot_summary.csv",
        "fewshot_lr_sweep": f"{RESULTS}/theory/fewshot_lr_sweep.csv",
    },
    "figures": {
        key: f"{RESULTS}/theory/figures/{name}.png" for key, name in GAUSSIAN_FIGURES.items()
    }
    | {"fewshot_png": f"{RESULTS}/theory/figures/fewshot.png"},
}


REPORT_PRIORS = {
    "table": f"{RESULTS}/priors/statistics.csv",
    "structure": f"{RESULTS}/priors/structure.csv",
    "figure": f"{RESULTS}/priors/figures/prior_statistics.png",
}


rule report:
    input:
        flat_paths(
            [
                REPORT_CELLS,
                REPORT_DATASETS,
                REPORT_THEORY,
                REPORT_PRIORS,
                ABLATION_REPORT,
                LOWDATA_REPORT or {},
            ]
        ),
    output:
        # The pages are built beside the report folder and replace it whole when complete, so
        # a failed or forced run never leaves a half-written report; the manifest lists them.
        manifest=f"{RESULTS}/report/manifest.json",
    log:
        f"{RESULTS}/logs/report.log",
    localrule: True
    conda:
        "../envs/ann.yaml"
    params:
        config=RESULT_SETTINGS,  # without run settings (chunks, threads, compile)
        cells=canonical(REPORT_CELLS),  # sorted: the order of dendrite.cells reruns nothing
        datasets=canonical(REPORT_DATASETS),
        theory=REPORT_THEORY,
        priors=REPORT_PRIORS,
        ablation=ABLATION_PAGE,  # workflow/rules/ablation_plan.smk; None when both are off
        templates=str(Path(workflow.basedir) / "workflow" / "report" / "templates"),
    script:
        "../scripts/build_report.py"
