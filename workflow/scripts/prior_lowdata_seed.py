from pipeline.lowdata import seed_runs
from pipeline.runner import run_stage

run_stage(
    seed_runs,
    snakemake.log[0],
    section=snakemake.params.section,
    priors=snakemake.params.priors,
    kappa_paths=snakemake.params.kappas,
    root=snakemake.params.root,
    lr_sweep=snakemake.input.lr_sweep,
    anchor_sweep_file=snakemake.input.anchor_sweep,
    seed=int(snakemake.wildcards.seed),
    output=snakemake.output[0],
)
