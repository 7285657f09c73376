"""Run one library step from a Snakemake script: log to stderr and the rule's log, and
turn the libraries' error bases (`ann.errors.AnnError`, `dendrite_sim.errors.DendriteError`:
bad input, missing data, diverged training) into a one-line message instead of a
traceback. Other exceptions are bugs and keep theirs."""

import logging
import sys
from collections.abc import Callable

from ann.errors import AnnError
from dendrite_sim.errors import DendriteError

OUR_PACKAGES = ("dendrite_sim", "ann")


def run_stage(step: Callable, log_path: str | None = None, **kwargs) -> None:
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_path:
        handlers.append(logging.FileHandler(log_path, mode="w"))
    logging.basicConfig(
        level=logging.WARNING,
        format="%(asctime)s %(name)s: %(message)s",
        handlers=handlers,
        force=True,
    )
    for package in OUR_PACKAGES:
        logging.getLogger(package).setLevel(logging.INFO)
    try:
        step(**kwargs)
    except (AnnError, DendriteError) as err:
        logging.getLogger(step.__module__).error("error: %s", err)
        sys.exit(1)
