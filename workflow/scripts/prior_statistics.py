from pipeline.runner import run_stage
from pipeline.training import prior_statistics

run_stage(
    prior_statistics,
    snakemake.log[0],
    model=snakemake.params.model,
    kappa_paths=snakemake.params.kappas,
    cells=snakemake.params.cells,
    priors=snakemake.params.priors,
    outputs={"table": snakemake.output.table, "figure": snakemake.output.figure},
)
