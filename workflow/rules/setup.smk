# Before the jobs: what the conda environments need from the workflow.
import os

# `--sdm conda`: workflow/envs/*.post-deploy.sh install this project into each new
# environment from here, the checkout beside the Snakefile (set for them, not read).
os.environ.update(DENDRITIC_BILINEAR_ROOT=workflow.basedir)
