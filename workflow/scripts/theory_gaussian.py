from pipeline.runner import run_stage
from pipeline.theory import theory_gaussian

run_stage(
    theory_gaussian,
    snakemake.log[0],
    config=snakemake.params.gaussian,
    outputs=dict(snakemake.output.items()),
)
