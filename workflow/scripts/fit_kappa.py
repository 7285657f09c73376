from stage import run_stage

from dendrite_sim.stages import fit

run_stage(
    fit,
    snakemake.log[0],
    psp_path=snakemake.input[0],
    kappa_config=snakemake.params.kappa,
    out=snakemake.output[0],
)
