from pipeline.dendrite import plan
from pipeline.runner import run_stage

run_stage(
    plan,
    snakemake.log[0],
    cell=snakemake.wildcards.cell,
    dendrite=snakemake.params.dendrite,
    out=snakemake.output[0],
)
