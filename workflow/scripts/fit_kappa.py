from pipeline.dendrite import fit
from pipeline.runner import run_stage

run_stage(
    fit,
    snakemake.log[0],
    psp_path=snakemake.input[0],
    kappa_config=snakemake.params.kappa,
    out=snakemake.output[0],
)
