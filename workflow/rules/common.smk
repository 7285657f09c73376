# Shared by every rule file: the results root and checks the schema cannot express.
from pathlib import Path

from snakemake.exceptions import WorkflowError

from dendrite_sim.errors import InputError
from dendrite_sim.swc import read_swc

RESULTS = config["results_dir"]


def check_morphologies(cells):
    for name, spec in cells.items():
        if spec.startswith("builtin:"):
            continue
        if not Path(spec).is_file():
            raise InputError(
                f"config key dendrite.cells.{name}: morphology file '{spec}' does not exist."
            )
        read_swc(spec)


try:
    check_morphologies(config["dendrite"]["cells"])
except InputError as err:
    raise WorkflowError(str(err)) from None
