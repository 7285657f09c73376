# Theory: a quadratic neuron reaches the Bayes classifier on Gaussian classes (ann.theory).
THEORY_TABLES = ["bayes", "accuracy", "similarity", "sweep", "sweep_summary"]
THEORY_FIGURES = {
    "boundaries_png": "decision_boundaries",
    "sweep_png": "accuracy_vs_samples",
    "similarity_png": "quadratic_similarity",
}


rule theory_gaussian:
    output:
        **{name: f"{RESULTS}/theory/gaussian_{name}.csv" for name in THEORY_TABLES},
        **{
            key: report(
                f"{RESULTS}/theory/figures/{name}.png",
                caption=f"../report/theory_{name}.rst",
                category="Theory",
            )
            for key, name in THEORY_FIGURES.items()
        },
    params:
        gaussian=config["theory"]["gaussian"],
    threads: 1
    log:
        f"{RESULTS}/logs/theory_gaussian.log",
    script:
        "../scripts/theory_gaussian.py"
