"""The architecture's top level: neither library imports Snakemake, and ann never imports
dendrite_sim (the only link between them is kappa.nc)."""

import subprocess
import sys

import pytest

ANN_MODULES = [
    "ann",
    "ann.train",
    "ann.stages",
    "ann.ablation",
    "ann.ablation_stages",
    "ann.summary",
    "ann.report",
    "ann.theory",
    "ann.fewshot",
    "ann.priors",
    "ann.imagenet_gpu",
    "ann.layers.dit_triton",
]
DENDRITE_MODULES = ["dendrite_sim.stages", "dendrite_sim.figures", "dendrite_sim.plan_checks"]


def imported(modules):
    code = f"import importlib, sys\nfor m in {modules!r}: importlib.import_module(m)\n"
    code += "print('\\n'.join(sorted(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return {name.split(".")[0] for name in result.stdout.split()}


@pytest.mark.parametrize(
    "modules, forbidden",
    [
        (ANN_MODULES, {"dendrite_sim", "snakemake", "brian2"}),
        (DENDRITE_MODULES, {"ann", "snakemake", "torch"}),
    ],
    ids=["ann", "dendrite_sim"],
)
def test_libraries_stay_apart(modules, forbidden):
    assert not imported(modules) & forbidden
