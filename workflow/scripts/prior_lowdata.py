from pipeline.lowdata import analyse
from pipeline.runner import run_stage

run_stage(
    analyse,
    snakemake.log[0],
    section=snakemake.params.section,
    statistics=snakemake.params.statistics,
    run_files=list(snakemake.input.runs),
    lr_sweep=snakemake.input.lr_sweep,
    anchor_sweep_file=snakemake.input.anchor_sweep,
    outputs=dict(snakemake.output.items()),
)
