from stage import run_stage

from ann.stages import theory_fewshot

run_stage(
    theory_fewshot,
    snakemake.log[0],
    fewshot=snakemake.params.fewshot,
    root=snakemake.params.root,
    outputs=dict(snakemake.output.items()),
)
