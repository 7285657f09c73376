"""Run one library step from a Snakemake script: log to stderr and the rule's log, and
turn the projects' own error types (bad input, missing data, diverged training) into a
one-line message instead of a traceback. Other exceptions are bugs and keep theirs."""

import logging
import sys
from collections.abc import Callable

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
    except Exception as err:
        if type(err).__module__.split(".")[0] not in OUR_PACKAGES:
            raise
        logging.getLogger(step.__module__).error("error: %s", err)
        sys.exit(1)
