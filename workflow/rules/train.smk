# Stage 4: train (dataset x model x prior x seed) runs (ann.train), then summarise each dataset.
TRAIN_DIR = f"{RESULTS}/train/{{dataset}}/{{model}}/{{prior}}/seed{{seed}}"


rule train:
    input:
        unpack(prior_file),
    output:
        metrics=f"{TRAIN_DIR}/metrics.json",
        curve=f"{TRAIN_DIR}/metrics.csv",
    log:
        f"{RESULTS}/logs/train/{{dataset}}/{{model}}/{{prior}}/seed{{seed}}.log",
    conda:
        "../envs/ann.yaml"
    threads: config["train"]["threads"]
    resources:
        gpu=1,
        tasks=config["train"]["processes"],
        mem_mb=4000,
        runtime=60 * 24,
    params:
        config=training_config,
        out_dir=lambda wildcards, output: str(Path(output.metrics).parent),
    script:
        "../scripts/train.py"
