from pathlib import Path

from pipeline.report import build_report
from pipeline.runner import run_stage

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
