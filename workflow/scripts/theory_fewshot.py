from pipeline.runner import run_stage
from pipeline.theory import theory_fewshot

run_stage(
    theory_fewshot,
    snakemake.log[0],
    config=snakemake.params.fewshot,
    root=snakemake.params.root,
    outputs=dict(snakemake.output.items()),
)
