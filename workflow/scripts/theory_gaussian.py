from stage import run_stage

from ann.stages import theory_gaussian

run_stage(
    theory_gaussian,
    snakemake.log[0],
    gaussian=snakemake.params.gaussian,
    outputs=dict(snakemake.output.items()),
)
