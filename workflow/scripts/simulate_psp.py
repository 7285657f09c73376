from stage import run_stage

from dendrite_sim.stages import simulate

run_stage(
    simulate,
    snakemake.log[0],
    trials_path=snakemake.input.trials,
    cell=snakemake.wildcards.cell,
    dendrite=snakemake.params.dendrite,
    out=snakemake.output[0],
    processes=snakemake.threads,
)
