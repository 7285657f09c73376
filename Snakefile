# From the biophysics of dendrites to Dit-CNNs. Run everything: snakemake --cores all
from snakemake.utils import min_version

min_version("8.20")


include: "workflow/rules/config_files.smk"


check_config_files()


configfile: workflow.source_path("config.yaml")


include: "workflow/rules/common.smk"  # checks and validates the config first


wildcard_constraints:
    cell="|".join(re.escape(name) for name in CELLS),
    dataset="|".join(DATASET_FILES),
    model=r"[a-z][a-z0-9_]*",
    prior=RUN_PRIOR,
    seed=r"\d+",


include: "workflow/rules/dendrite.smk"
include: "workflow/rules/sweeps.smk"
include: "workflow/rules/priors.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/theory.smk"
include: "workflow/rules/prior_lowdata.smk"
include: "workflow/rules/ablation_plan.smk"
include: "workflow/rules/ablation.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/setup.smk"


rule all:
    input:
        expand(f"{RESULTS}/dendrite/{{cell}}/kappa.nc", cell=config["dendrite"]["cells"]),
        expand(
            f"{RESULTS}/dendrite/{{cell}}/figures/{{name}}.png",
            cell=config["dendrite"]["cells"],
            name=KAPPA_FIGURES,
        ),
        expand(
            f"{RESULTS}/dendrite/{{cell}}/figures/morphology.png", cell=config["dendrite"]["cells"]
        ),
        expand(f"{RESULTS}/dendrite/sweeps/figures/{{sweep}}.png", sweep=SWEEP_NAMES),
        rules.report.output,
