from pipeline.runner import run_stage
from pipeline.training import train_run

run_stage(
    train_run,
    snakemake.log[0],
    config=snakemake.config,  # params.config holds the keys the run depends on (reruns)
    dataset=snakemake.wildcards.dataset,
    model=snakemake.wildcards.model,
    prior=snakemake.wildcards.prior,
    seed=int(snakemake.wildcards.seed),
    out_dir=snakemake.params.out_dir,
    prior_file=snakemake.input.get("prior"),
    threads=snakemake.threads,
    processes=snakemake.config["train"]["processes"],  # the plan checked the job's tasks
)
