from pipeline.dendrite import figures
from pipeline.runner import run_stage

run_stage(
    figures, snakemake.log[0], kappa_path=snakemake.input[0], outputs=dict(snakemake.output.items())
)
