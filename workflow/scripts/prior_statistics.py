from pipeline.runner import run_stage
from pipeline.training import prior_statistics

run_stage(
    prior_statistics,
    snakemake.log[0],
    model=snakemake.params.model,
    priors=snakemake.params.priors,
    settings=snakemake.params.settings,
    root=snakemake.params.root,
    outputs=dict(snakemake.output.items()),
)
