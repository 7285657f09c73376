# Stage 4: train (dataset x model x prior x seed) runs (ann.train), then summarise each dataset.
TRAIN_DIR = f"{RESULTS}/train/{{dataset}}/{{model}}/{{prior}}/seed{{seed}}"


def prior_file(wildcards):
    if wildcards.prior in ("bio", "shuffled"):
        return {
            "prior": f"{RESULTS}/priors/{wildcards.model}/{wildcards.prior}/seed{wildcards.seed}.pt"
        }
    return {}


def training_config(wildcards):
    """Only the config keys this run depends on, so that editing one reruns exactly its runs."""
    dataset, model = wildcards.dataset, wildcards.model
    return canonical(
        {
            "datasets": {dataset: config["datasets"][dataset]},
            "recipes": {name: config["recipes"][name] for name in dataset_recipes(dataset)},
            "recipe_overrides": {
                dataset: {model: config["recipe_overrides"].get(dataset, {}).get(model, {})}
            },
            "priors": config["priors"] if wildcards.prior in ("bio", "shuffled") else {},
            "train": {k: v for k, v in config["train"].items() if k != "experiments"},
        }
    )


rule train:
    input:
        unpack(prior_file),
    output:
        metrics=f"{TRAIN_DIR}/metrics.json",
        curve=f"{TRAIN_DIR}/metrics.csv",
    log:
        f"{RESULTS}/logs/train/{{dataset}}_{{model}}_{{prior}}_{{seed}}.log",
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
