"""The architecture's top level: neither library imports Snakemake or the workflow's glue
(pipeline), and ann never imports dendrite_sim (the only link between them is kappa.nc)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

# each test imports the libraries in a fresh interpreter
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]

ANN_MODULES = [
    "ann",
    "ann.train",
    "ann.theory.gaussian",
    "ann.theory.figures",
    "ann.theory.fewshot",
    "ann.priors",
    "ann.imagenet_gpu",
    "ann.layers.dit_triton",
    "ann.ablation",
    "ann.prior_statistics",
]
DENDRITE_MODULES = [
    "dendrite_sim.dataset",
    "dendrite_sim.figures",
    "dendrite_sim.kappa",
    "dendrite_sim.simulate",
]


def imported_modules(modules, path=()):
    """Every module that importing `modules` loads, with `path` on sys.path."""
    code = f"import importlib, sys\nfor m in {modules!r}: importlib.import_module(m)\n"
    code += "print('\\n'.join(sorted(sys.modules)))"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([*map(str, path), str(ROOT)])}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    return set(result.stdout.split())


# The strict config-file reader needs nothing but PyYAML; the workflow and `python -m ann.train
# --config` share it, so ann may load it (and the package module around it, which loads nothing).
SHARED = {"dendrite_sim", "dendrite_sim.config_file"}


def imported(modules, path=()):
    """The top-level packages that importing `modules` loads, beyond the shared config reader."""
    return {name.split(".")[0] for name in imported_modules(modules, path) - SHARED}


@pytest.mark.parametrize(
    "modules, forbidden",
    [
        (ANN_MODULES, {"dendrite_sim", "snakemake", "brian2", "pipeline"}),
        (DENDRITE_MODULES, {"ann", "snakemake", "torch", "pipeline"}),
    ],
    ids=["ann", "dendrite_sim"],
)
def test_libraries_stay_apart(modules, forbidden):
    assert not imported(modules) & forbidden


def test_the_dendrite_glue_needs_no_ann():
    """The dendrite rules' steps and the plan-time checks run without ann (their conda
    environment has no torch), and the rule files read the theory's file names without it."""
    glue = ["pipeline.runner", "pipeline.dendrite", "pipeline.plan_checks", "pipeline.theory"]
    assert not imported(glue, [ROOT / "workflow"]) & {"ann", "torch", "snakemake"}


def test_planning_the_workflow_imports_neither_torch_nor_timm(tmp_path):
    """Every Snakemake process plans the workflow (a run, a dry run, each job step on a
    cluster); what it reads of ann (ann.settings, ann.errors) is pure Python, so none of them
    pays the ~4 s of importing torch and timm. A real dry run, its imports listed by Python."""
    command = [sys.executable, "-X", "importtime", "-m", "snakemake", "-n", "--cores", "1"]
    command += ["-s", str(ROOT / "Snakefile"), "-d", str(tmp_path)]
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    loaded = {line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines()}
    assert "ann.settings" in loaded and "snakemake.workflow" in loaded
    assert not loaded & {"torch", "timm", "torchvision"}


def test_the_layers_and_priors_do_not_import_timm():
    """Jobs that read priors or write the report import ann.priors (and so ann.layers) but
    build no model; only ann.models imports timm (~1.7 s), where it registers the models and
    DitQuadratic as a torch.fx leaf."""
    code = "import sys, ann.priors, ann.prior_statistics; print('timm' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == "False"
