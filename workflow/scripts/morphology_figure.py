from pipeline.dendrite import morphology
from pipeline.runner import run_stage

run_stage(morphology, snakemake.log[0], psp_path=snakemake.input[0], out=snakemake.output[0])
