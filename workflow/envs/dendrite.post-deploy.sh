#!/usr/bin/env bash
# Snakemake runs this inside the new conda environment (same name as the .yaml beside it).
# It installs this project from the checkout, editable, so that the environment follows the
# code as the workflow's scripts do. --no-deps: the environment file provides the
# dependencies from conda-forge. The Snakefile sets DENDRITIC_BILINEAR_ROOT to the folder
# of the Snakefile (the checkout); a relative path would not do, because conda runs pip in
# the folder of Snakemake's copy of the environment file (.snakemake/conda/ or
# --conda-prefix), not in workflow/envs/.
set -euo pipefail
root="${DENDRITIC_BILINEAR_ROOT:?is set by the Snakefile; run this through snakemake --sdm conda}"
python -m pip install --no-deps --no-build-isolation --editable "$root"
