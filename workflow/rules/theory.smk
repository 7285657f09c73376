# Theory: a quadratic neuron reaches the Bayes classifier on Gaussian classes, and few-shot
# Fashion-MNIST (ann.theory; the steps: pipeline.theory).
from pipeline.theory import GAUSSIAN_FIGURES, GAUSSIAN_TABLES


rule theory_gaussian:
    output:
        **{name: f"{RESULTS}/theory/gaussian_{name}.csv" for name in GAUSSIAN_TABLES},
        **{
            key: report(
                f"{RESULTS}/theory/figures/{name}.png",
                caption=f"../report/theory_{name}.rst",
                category="Theory",
            )
            for key, name in GAUSSIAN_FIGURES.items()
        },
    log:
        f"{RESULTS}/logs/theory_gaussian.log",
    conda:
        "../envs/ann.yaml"
    threads: 1
    params:
        gaussian=canonical(config["theory"]["gaussian"]),
    script:
        "../scripts/theory_gaussian.py"


rule theory_fewshot:
    output:
        runs=f"{RESULTS}/theory/fewshot_runs.csv",
        sweep=f"{RESULTS}/theory/fewshot_lr_sweep.csv",
        summary=report(
            f"{RESULTS}/theory/fewshot_summary.csv",
            caption="../report/theory_fewshot.rst",
            category="Theory",
        ),
        figure=report(
            f"{RESULTS}/theory/figures/fewshot.png",
            caption="../report/theory_fewshot.rst",
            category="Theory",
        ),
    log:
        f"{RESULTS}/logs/theory_fewshot.log",
    conda:
        "../envs/ann.yaml"
    threads: 1
    params:
        fewshot=canonical(config["theory"]["fewshot"]),
        root=config["datasets"]["fashion_mnist"]["root"],
    script:
        "../scripts/theory_fewshot.py"
