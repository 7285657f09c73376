from stage import run_stage

from dendrite_sim.stages import morphology

run_stage(morphology, snakemake.log[0], psp_path=snakemake.input[0], out=snakemake.output[0])
