from stage import run_stage

from dendrite_sim.stages import gather

run_stage(
    gather,
    snakemake.log[0],
    trials_path=snakemake.input.trials,
    chunk_paths=list(snakemake.input.chunks),
    cell=snakemake.wildcards.cell,
    dendrite=snakemake.params.dendrite,
    out=snakemake.output[0],
)
