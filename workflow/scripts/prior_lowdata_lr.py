from pipeline.lowdata import choose_lr
from pipeline.runner import run_stage

run_stage(
    choose_lr,
    snakemake.log[0],
    section=snakemake.params.section,
    priors=snakemake.params.priors,
    kappa_paths=snakemake.params.kappas,
    root=snakemake.params.root,
    output=snakemake.output[0],
)
