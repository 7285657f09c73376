from pipeline.runner import run_stage
from pipeline.training import build_prior

run_stage(
    build_prior,
    snakemake.log[0],
    model=snakemake.wildcards.model,
    prior=snakemake.wildcards.prior,
    kind=snakemake.params.kind,
    seed=int(snakemake.wildcards.seed),
    kappa_path=snakemake.input.kappa,
    priors=snakemake.params.priors,
    out=snakemake.output[0],
)
