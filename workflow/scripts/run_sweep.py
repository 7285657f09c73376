from pipeline.runner import run_stage
from pipeline.sweeps import run_sweep

run_stage(
    run_sweep,
    snakemake.log[0],
    sweep=snakemake.wildcards.sweep,
    dendrite=snakemake.params.dendrite,
    kappa=snakemake.params.kappa,
    sweeps=snakemake.params.sweeps,
    fraction_inhibitory=snakemake.params.fraction_inhibitory,
    out=snakemake.output[0],
    processes=snakemake.threads,
)
