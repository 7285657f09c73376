from stage import run_stage

from dendrite_sim.stages import figures

run_stage(
    figures, snakemake.log[0], kappa_path=snakemake.input[0], outputs=dict(snakemake.output.items())
)
