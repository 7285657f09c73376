from pipeline.lowdata import anchor_sweep
from pipeline.runner import run_stage

run_stage(
    anchor_sweep,
    snakemake.log[0],
    section=snakemake.params.section,
    priors=snakemake.params.priors,
    kappa_paths=snakemake.params.kappas,
    root=snakemake.params.root,
    lr_sweep=snakemake.input.lr_sweep,
    output=snakemake.output[0],
)
