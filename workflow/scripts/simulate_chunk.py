from stage import run_stage

from dendrite_sim.stages import simulate_chunk

run_stage(
    simulate_chunk,
    snakemake.log[0],
    trials_path=snakemake.input.trials,
    cell=snakemake.wildcards.cell,
    chunk=int(snakemake.wildcards.chunk),
    dendrite=snakemake.params.dendrite,
    out=snakemake.output[0],
)
