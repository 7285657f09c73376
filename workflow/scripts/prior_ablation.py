from pipeline.ablation import analyse
from pipeline.runner import run_stage

run_stage(
    analyse,
    snakemake.log[0],
    runs=snakemake.params.runs,
    sample_epochs=snakemake.params.sample_epochs,
    priors=snakemake.params.priors,
    statistics=snakemake.params.statistics,
    outputs=dict(snakemake.output.items()),
)
