# Experiment: does a kappa prior help a Dit-CNN where data are scarce? (experiments.prior_lowdata;
# ann.lowdata, the steps: pipeline.lowdata). A small Dit-CNN on a few hundred Fashion-MNIST
# images per class, every prior x mode on each of >= 10 paired seeds (one job per seed), the
# learning rate and the anchor-strength sweep chosen on validation draws, then the contrasts
# (ann.statistics) and the report page "Does the prior matter?".
from ann.errors import ConfigError
from ann.settings import LowDataConfig

LOWDATA = config.get("experiments", {}).get("prior_lowdata", {"enabled": False})
try:
    LowDataConfig.from_mapping(LOWDATA)  # the design's checks, before any job starts
except ConfigError as err:
    raise WorkflowError(str(err)) from None
LOWDATA_DIR = f"{RESULTS}/experiments/prior_lowdata"
LOWDATA_READY = LOWDATA["enabled"] and "fashion_mnist" in TRAINED_DATASETS
LOWDATA_CELLS = sorted(
    {PRIOR_CELLS[p] for p in LOWDATA["priors"] if p != "zero"} | {PRIOR_CELLS["bio"]}
)
LOWDATA_NAMED = {  # the named biological priors the experiment uses, and their cells
    name: cell
    for name, cell in PRIOR_SETTINGS.biological.items()
    if any(p == name or p.startswith(f"{name}_") for p in LOWDATA["priors"])
}
LOWDATA_PARAMS = dict(
    section=canonical(LOWDATA),
    priors=canonical(config["priors"] | {"biological": LOWDATA_NAMED}),
    kappas={cell: f"{RESULTS}/dendrite/{cell}/kappa.nc" for cell in LOWDATA_CELLS},
    root=config["datasets"]["fashion_mnist"]["root"],
)


rule prior_lowdata_lr:
    input:
        list(LOWDATA_PARAMS["kappas"].values()),
    output:
        f"{LOWDATA_DIR}/choices/lr_sweep.csv",
    log:
        f"{RESULTS}/logs/prior_lowdata/lr_sweep.log",
    conda:
        "../envs/ann.yaml"
    threads: 1
    params:
        **LOWDATA_PARAMS,
    script:
        "../scripts/prior_lowdata_lr.py"


rule prior_lowdata_anchor:
    input:
        kappas=list(LOWDATA_PARAMS["kappas"].values()),
        lr_sweep=rules.prior_lowdata_lr.output[0],
    output:
        f"{LOWDATA_DIR}/choices/anchor_sweep.csv",
    log:
        f"{RESULTS}/logs/prior_lowdata/anchor_sweep.log",
    conda:
        "../envs/ann.yaml"
    threads: 1
    params:
        **LOWDATA_PARAMS,
    script:
        "../scripts/prior_lowdata_anchor.py"


rule prior_lowdata_seed:
    input:
        kappas=list(LOWDATA_PARAMS["kappas"].values()),
        lr_sweep=rules.prior_lowdata_lr.output[0],
        anchor_sweep=rules.prior_lowdata_anchor.output[0],
    output:
        f"{LOWDATA_DIR}/runs/seed{{seed}}.csv",
    log:
        f"{RESULTS}/logs/prior_lowdata/seed{{seed}}.log",
    conda:
        "../envs/ann.yaml"
    threads: 1
    params:
        **LOWDATA_PARAMS,
    script:
        "../scripts/prior_lowdata_seed.py"


rule prior_lowdata:
    input:
        runs=expand(f"{LOWDATA_DIR}/runs/seed{{seed}}.csv", seed=LOWDATA["seeds"]),
        lr_sweep=rules.prior_lowdata_lr.output[0],
        anchor_sweep=rules.prior_lowdata_anchor.output[0],
    output:
        runs=f"{LOWDATA_DIR}/runs.csv",
        statistics=f"{LOWDATA_DIR}/statistics.csv",
        survival=f"{LOWDATA_DIR}/survival.csv",
        differences=report(
            f"{LOWDATA_DIR}/figures/contrasts.png",
            caption="../report/prior_lowdata_contrasts.rst",
            category="Does the prior matter?",
        ),
        survival_png=report(
            f"{LOWDATA_DIR}/figures/survival.png",
            caption="../report/prior_lowdata_survival.rst",
            category="Does the prior matter?",
        ),
    log:
        f"{RESULTS}/logs/prior_lowdata/analysis.log",
    conda:
        "../envs/ann.yaml"
    params:
        section=canonical(LOWDATA),
        statistics=canonical(STATISTICS),
    script:
        "../scripts/prior_lowdata.py"
