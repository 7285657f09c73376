from pathlib import Path

from stage import run_stage

from ann.stages import build_report

run_stage(
    build_report,
    snakemake.log[0],
    config=snakemake.params.config,
    out_dir=Path(snakemake.output.manifest).parent,
    templates=snakemake.params.templates,
    cells=snakemake.params.cells,
    datasets=snakemake.params.datasets,
    theory=snakemake.params.theory,
    priors=snakemake.params.priors,
    ablation=snakemake.params.ablation,
)
