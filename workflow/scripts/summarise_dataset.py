from pipeline.runner import run_stage
from pipeline.summary import summarise_dataset

run_stage(
    summarise_dataset,
    snakemake.log[0],
    metrics=list(snakemake.input.metrics),
    outputs=dict(snakemake.output.items()),
)
