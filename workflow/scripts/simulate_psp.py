from pipeline.dendrite import simulate
from pipeline.runner import run_stage

run_stage(
    simulate,
    snakemake.log[0],
    trials_path=snakemake.input.trials,
    cell=snakemake.wildcards.cell,
    dendrite=snakemake.params.dendrite,
    out=snakemake.output[0],
    processes=snakemake.threads,
)
