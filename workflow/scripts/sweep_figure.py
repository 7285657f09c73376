from pipeline.runner import run_stage
from pipeline.sweeps import figure

run_stage(figure, snakemake.log[0], sweep_path=snakemake.input[0], out=snakemake.output[0])
