from stage import run_stage

from ann.ablation_stages import analyse

run_stage(
    analyse,
    snakemake.log[0],
    runs=snakemake.params.runs,
    sample_epochs=snakemake.params.sample_epochs,
    outputs=dict(snakemake.output.items()),
    reference=snakemake.params.reference,
)
