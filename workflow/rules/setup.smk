# Before the jobs: what the conda environments and the results folder need from the workflow.
import os
from pathlib import Path

# `--sdm conda`: workflow/envs/*.post-deploy.sh install this project into each new
# environment from here, the checkout beside the Snakefile (set for them, not read).
os.environ.update(DENDRITIC_BILINEAR_ROOT=workflow.basedir)

UNTRACKED = "# Written by the workflow: git ignores its results, wherever results_dir is.\n*\n"
# What the workflow writes at the top of results_dir (.snakemake/ lives in the working folder)
WORKFLOW_ENTRIES = {"dendrite", "priors", "train", "theory", "experiments", "report", "logs"}


def keep_results_out_of_git(results_dir):
    """A .gitignore of `*` in results_dir, so that git ignores results outside results/ too;
    written only into a folder the workflow owns: new, or holding nothing but its outputs
    (a folder with other files is the user's, and one with a .gitignore is left as it is)."""
    folder = Path(results_dir)
    if folder.is_dir() and not {p.name for p in folder.iterdir()} <= WORKFLOW_ENTRIES:
        return
    folder.mkdir(parents=True, exist_ok=True)
    (folder / ".gitignore").write_text(UNTRACKED)


onstart:
    keep_results_out_of_git(RESULTS)
