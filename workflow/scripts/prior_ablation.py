from pipeline.ablation import analyse
from pipeline.runner import run_stage

run_stage(
    analyse,
    snakemake.log[0],
    runs=snakemake.params.runs,
    sample_epochs=snakemake.params.sample_epochs,
    outputs=dict(snakemake.output.items()),
    reference=snakemake.params.reference,
)
