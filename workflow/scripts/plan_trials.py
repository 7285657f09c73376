from stage import run_stage

from dendrite_sim.stages import plan

run_stage(
    plan,
    snakemake.log[0],
    cell=snakemake.wildcards.cell,
    dendrite=snakemake.params.dendrite,
    out=snakemake.output[0],
)
